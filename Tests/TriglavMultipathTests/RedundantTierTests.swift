import Testing
import TriglavCore
@testable import TriglavMultipath

/// `redundant` respects the tiers: copies go to the primaries; a secondary only when no primary can carry data
/// or the primaries can't carry the load; a backup only when nothing else works.
@Suite struct RedundantTierTests {
    static let ms = Nanoseconds.millisecond
    let a = UplinkID(1), b = UplinkID(2), secondary = UplinkID(3), backup = UplinkID(4)

    private func readyDriver(primaries: [UplinkID]) throws -> EngineDriver {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .redundant
        var driver = try EngineDriver(configuration: configuration)
        for id in primaries { try driver.engine.addUplink(id, now: 0) }
        try driver.engine.addUplink(secondary, policy: UplinkPolicy(tier: .secondary), now: 0)
        try driver.engine.addUplink(backup, policy: UplinkPolicy(tier: .backup), now: 0)
        driver.run(until: 300 * Self.ms)
        for id in primaries + [secondary, backup] { #expect(driver.state(id) == .ready) }
        return driver
    }

    /// The uplinks used for `packets` packets of 1000 bytes, one every `interval` from `start`, and how many copies
    /// the last `packets / 2` of them got each (the sets alone would pass one copy a packet alternating uplinks).
    private func used(_ driver: inout EngineDriver, packets: Int, every interval: UInt64,
                      from start: UInt64) -> (uplinks: Set<UplinkID>, lateCopies: Set<Int>) {
        var used = Set<UplinkID>()
        var lateCopies = Set<Int>()
        for step in 0..<packets {
            let selection = driver.engine.schedule(packetLength: 1000, flowKey: nil, now: start + UInt64(step) * interval)
            used.formUnion(selection)
            if step >= packets / 2 { lateCopies.insert(selection.count) }
        }
        return (used, lateCopies)
    }

    @Test func copiesStayOnThePrimariesWhileTheyAreHealthy() throws {
        var driver = try readyDriver(primaries: [a, b])
        // 4 Mbit/s: well within the primaries' capacity.
        let healthy = used(&driver, packets: 2000, every: 2 * Self.ms, from: driver.now)
        #expect(healthy.uplinks == [a, b] && healthy.lateCopies == [2], "a copy on each primary: \(healthy)")
        // The primaries fail: the secondary carries, the backup still not.
        let later = driver.now + 5 * Nanoseconds.second
        driver.engine.handle(.systemLinkDown(a, at: later))
        driver.engine.handle(.systemLinkDown(b, at: later))
        #expect(used(&driver, packets: 200, every: 2 * Self.ms, from: later).uplinks == [secondary])
        // Nothing else works: the backup.
        driver.engine.handle(.systemLinkDown(secondary, at: later + Nanoseconds.second))
        #expect(used(&driver, packets: 200, every: 2 * Self.ms, from: later + Nanoseconds.second).uplinks == [backup])
    }

    @Test func theSecondaryJoinsWhenThePrimaryCantCarryTheLoad() throws {
        var driver = try readyDriver(primaries: [a])
        // Light load: one copy, on the primary.
        let light = used(&driver, packets: 200, every: 2 * Self.ms, from: driver.now)
        #expect(light.uplinks == [a] && light.lateCopies == [1])
        // Far above the primary's 10 Mbit/s initial capacity estimate: the secondary joins (a copy on each), the
        // backup doesn't.
        let heavy = used(&driver, packets: 20_000, every: 50_000, from: driver.now + 500 * Self.ms)
        #expect(heavy.uplinks == [a, secondary] && heavy.lateCopies == [2], "\(heavy)")
    }
}
