import Testing
import TriglavCore
@testable import TriglavMultipath

/// `maxReorderHold` is "the longest any packet is held" (docs/CONFIG.md `reorder_max_hold_ms`): with the delay
/// equaliser too, whose hold and the reorder wait used to add up.
@Suite struct MaximumHoldTests {
    static let ms = Nanoseconds.millisecond
    let fast = UplinkID(1), slow = UplinkID(2)
    static let maxHold = 60 * ms

    /// Two ready uplinks, RTT 30 and 110 ms, whose peer probes show one-way transits of 5 and 45 ms: with
    /// equalisation the fast uplink's packets are held 40 ms. Resend requests on: the wait for a gap (request delay
    /// + 2.5 fastest RTTs, ≥ 75 ms) is capped by the 60 ms maximum.
    func engine(equalizing: Bool) throws -> EngineDriver {
        var configuration = MultipathConfiguration()
        configuration.maxEqualizationDelay = equalizing ? 100 * Self.ms : 0
        configuration.maxReorderHold = Self.maxHold
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(fast, now: 0)
        try driver.engine.addUplink(slow, now: 0)
        let rtt: (UplinkID) -> UInt64 = { $0 == self.fast ? 30 * Self.ms : 110 * Self.ms }
        driver.run(until: 500 * Self.ms, rtt: rtt)
        for sent in stride(from: UInt64(0), to: 500 * Self.ms, by: Int(50 * Self.ms)) {
            let peerClock = sent + 3_000 * Self.ms
            driver.engine.handle(.probeReceived(fast, senderTimestamp: peerClock, at: 500 * Self.ms + sent + 5 * Self.ms))
            driver.engine.handle(.probeReceived(slow, senderTimestamp: peerClock, at: 500 * Self.ms + sent + 45 * Self.ms))
        }
        driver.run(until: 1_000 * Self.ms, rtt: rtt)
        #expect(driver.engine.equalizationHold(for: fast) == (equalizing ? 40 * Self.ms : 0))
        #expect(driver.engine.reorderWaitBound == Self.maxHold)
        return driver
    }

    /// Delivers what is due at each millisecond from `start` until `packet` comes out; returns when it did.
    func deliveryTime(of packet: Int, _ driver: inout EngineDriver, from start: UInt64) -> UInt64? {
        for time in stride(from: start, through: start + 500 * Self.ms, by: Int(Self.ms)) {
            _ = driver.engine.nextDuty(now: time)
            while let delivered = driver.engine.nextDelivery(now: time) {
                if delivered == packet { return time }
            }
        }
        return nil
    }

    /// A packet behind a gap that never fills leaves exactly `maxReorderHold` after it arrived: without the
    /// equaliser, and with it (its 40 ms hold no longer adds to the 60 ms wait, which held it 100 ms).
    @Test(arguments: [false, true])
    func aPacketBehindALostOneIsHeldExactlyTheMaximum(equalizing: Bool) throws {
        var driver = try engine(equalizing: equalizing)
        let now = driver.now
        let first = driver.engine.receive(0, sequence: 0, uplink: slow, counter: 1, bytes: 1400, now: now)
        #expect(first == .deliverNow)
        // Sequence 1 is lost; 2 arrives over the fast uplink.
        let behind = driver.engine.receive(2, sequence: 2, uplink: fast, counter: 1, bytes: 1400, now: now)
        #expect(behind == .buffered)
        let delivered = deliveryTime(of: 2, &driver, from: now + Self.ms)
        #expect(delivered.map { $0 - now } == Self.maxHold)
    }

    /// The equaliser's FIFO keeps order: a packet from the slow uplink that waited for its predecessor, which then
    /// came over the fast uplink and is held 40 ms, used to wait those 40 ms too (90 ms in all). It leaves at the
    /// maximum, and takes the one ahead of it along.
    @Test func aPacketWaitingBehindAnEqualisedOneIsHeldExactlyTheMaximum() throws {
        var driver = try engine(equalizing: true)
        let now = driver.now
        let start = driver.engine.receive(0, sequence: 0, uplink: slow, counter: 1, bytes: 1400, now: now)
        #expect(start == .deliverNow)
        let behind = driver.engine.receive(2, sequence: 2, uplink: slow, counter: 2, bytes: 1400, now: now)
        #expect(behind == .buffered)
        _ = driver.engine.nextDuty(now: now + 50 * Self.ms)
        let filled = driver.engine.receive(1, sequence: 1, uplink: fast, counter: 1, bytes: 1400, now: now + 50 * Self.ms)
        #expect(filled == .buffered)
        let early = driver.engine.nextDelivery(now: now + 50 * Self.ms)
        #expect(early == nil)
        let delivered = deliveryTime(of: 2, &driver, from: now + 51 * Self.ms)
        #expect(delivered.map { $0 - now } == Self.maxHold)
    }
}
