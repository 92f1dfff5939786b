import Testing
import TriglavCore
@testable import TriglavMultipath

/// The reorder buffer's wait adapts to the one-way delay spread between the uplinks (plus a jitter margin),
/// never above `maxReorderHold`, and a gap holds the packets behind it — of any flow — no longer than that.
@Suite struct AdaptiveReorderBoundTests {
    static let ms = Nanoseconds.millisecond
    let fast = UplinkID(1), slow = UplinkID(2)

    /// Two uplinks whose probes take `fastTransit` and `slowTransit` one way (±`jitter`, alternating), with round
    /// trips twice that; runs until `end`, a probe from the peer on each uplink every 10 ms.
    private func run(_ driver: inout EngineDriver, until end: UInt64, fastTransit: UInt64, slowTransit: UInt64,
                     jitter: UInt64 = Self.ms) {
        var flip = false
        while driver.now < end {
            let now = driver.now + 10 * Self.ms
            flip.toggle()
            for (id, transit) in [(fast, fastTransit), (slow, slowTransit)] {
                let sample = flip ? transit + jitter : transit - jitter
                // The peer's clock runs 1 s ahead of ours: only differences between uplinks count.
                driver.engine.handle(.probeReceived(id, senderTimestamp: now + Nanoseconds.second - sample, at: now))
            }
            driver.run(until: now, rtt: { $0 == fast ? 2 * fastTransit : 2 * slowTransit })
        }
    }

    private func driver(requestsResends: Bool) throws -> EngineDriver {
        var configuration = MultipathConfiguration()
        configuration.requestsResends = requestsResends
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(fast, now: 0)
        try driver.engine.addUplink(slow, now: 0)
        return driver
    }

    @Test func theBoundIsTheSpreadPlusAJitterMarginAndNeverAboveTheMaximumHold() throws {
        var driver = try driver(requestsResends: false)
        run(&driver, until: 2 * Nanoseconds.second, fastTransit: 10 * Self.ms, slowTransit: 60 * Self.ms)
        let bound = driver.engine.reorderWaitBound
        let minimumWait = driver.engine.configuration.minReorderWait
        // 50 ms spread; jitter of ±1 ms per probe and the RTT's jitter add a few milliseconds at most.
        #expect(bound >= 50 * Self.ms + minimumWait && bound <= 58 * Self.ms, "bound \(bound / Self.ms) ms")
        // A spread beyond the maximum hold: the bound stops there.
        run(&driver, until: 5 * Nanoseconds.second, fastTransit: 10 * Self.ms, slowTransit: 500 * Self.ms)
        #expect(driver.engine.reorderWaitBound == driver.engine.configuration.maxReorderHold)
        // Back to the small spread: the bound follows it down (the RTT jitter of the change fades more slowly).
        run(&driver, until: 8 * Nanoseconds.second, fastTransit: 10 * Self.ms, slowTransit: 60 * Self.ms)
        #expect(driver.engine.reorderWaitBound <= 65 * Self.ms, "bound \(driver.engine.reorderWaitBound / Self.ms) ms")
        // With resend requests the bound also leaves room for a repair, still never above the maximum hold.
        var repairing = try self.driver(requestsResends: true)
        run(&repairing, until: 2 * Nanoseconds.second, fastTransit: 10 * Self.ms, slowTransit: 500 * Self.ms)
        #expect(repairing.engine.reorderWaitBound <= repairing.engine.configuration.maxReorderHold)
    }

    @Test func oneFlowsGapHoldsOtherPacketsNoLongerThanTheBound() throws {
        var driver = try driver(requestsResends: false)
        run(&driver, until: 2 * Nanoseconds.second, fastTransit: 10 * Self.ms, slowTransit: 60 * Self.ms)
        let bound = driver.engine.reorderWaitBound
        // Sequence 0 arrives; 1 (one flow's packet) is lost; 2…40 (another flow's) arrive 1 ms apart.
        var arrivals: [Int: UInt64] = [:], holds: [Int: UInt64] = [:]
        func deliver(_ packet: Int, at now: UInt64) { holds[packet] = now - (arrivals[packet] ?? now) }
        var now = driver.now
        for sequence in [0] + Array(2...40) {
            now += Self.ms
            arrivals[sequence] = now
            if driver.engine.receive(sequence, sequence: UInt32(sequence), uplink: sequence % 2 == 0 ? fast : slow,
                                     counter: UInt64(sequence + 1), bytes: 1000, now: now) == .deliverNow {
                deliver(sequence, at: now)
            }
            while let packet = driver.engine.nextDelivery(now: now) { deliver(packet, at: now) }
        }
        let end = now + driver.engine.configuration.maxReorderHold
        while now < end {
            now += Self.ms / 4
            _ = driver.engine.nextDuty(now: now)
            while let packet = driver.engine.nextDelivery(now: now) { deliver(packet, at: now) }
        }
        #expect(holds.count == 40 && holds[1] == nil)
        let longest = holds.values.max() ?? 0
        #expect(longest <= bound + Self.ms / 4, "held \(longest / Self.ms) ms with a bound of \(bound / Self.ms) ms")
        // The gap did hold them: the first packet behind it waited the bound.
        #expect((holds[2] ?? 0) + Self.ms / 4 >= bound, "held only \((holds[2] ?? 0) / Self.ms) ms")
    }
}
