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

    /// The uplinks used for `packets` packets of 1000 bytes, one every `interval` from `start`.
    private func used(_ driver: inout EngineDriver, packets: Int, every interval: UInt64, from start: UInt64) -> Set<UplinkID> {
        var used = Set<UplinkID>()
        for step in 0..<packets {
            used.formUnion(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: start + UInt64(step) * interval))
        }
        return used
    }

    @Test func copiesStayOnThePrimariesWhileTheyAreHealthy() throws {
        var driver = try readyDriver(primaries: [a, b])
        // 4 Mbit/s: well within the primaries' capacity.
        #expect(used(&driver, packets: 2000, every: 2 * Self.ms, from: driver.now) == [a, b])
        // The primaries fail: the secondary carries, the backup still not.
        let later = driver.now + 5 * Nanoseconds.second
        driver.engine.handle(.systemLinkDown(a, at: later))
        driver.engine.handle(.systemLinkDown(b, at: later))
        #expect(used(&driver, packets: 200, every: 2 * Self.ms, from: later) == [secondary])
        // Nothing else works: the backup.
        driver.engine.handle(.systemLinkDown(secondary, at: later + Nanoseconds.second))
        #expect(used(&driver, packets: 200, every: 2 * Self.ms, from: later + Nanoseconds.second) == [backup])
    }

    @Test func theSecondaryJoinsWhenThePrimaryCantCarryTheLoad() throws {
        var driver = try readyDriver(primaries: [a])
        // Light load: one copy, on the primary.
        #expect(used(&driver, packets: 200, every: 2 * Self.ms, from: driver.now) == [a])
        // Far above the primary's 10 Mbit/s initial capacity estimate: the secondary joins, the backup doesn't.
        #expect(used(&driver, packets: 20_000, every: 50_000, from: driver.now + 500 * Self.ms) == [a, secondary])
    }
}
