import Testing
import TriglavCore
@testable import TriglavMultipath

/// `DroppedSegmentLedger` (the segments the paced AQM dropped) and how `admitShared(…retransmitting:…)` places their
/// retransmissions: protected after a shedding, ahead of the shared queue for a while after a failover.
@Suite struct DroppedSegmentLedgerTests {
    static let ms = Nanoseconds.millisecond

    @Test func aDropIsAnsweredOnceWithItsKind() {
        var ledger = DroppedSegmentLedger(capacity: 8)
        ledger.remember(42, as: .refused)
        ledger.remember(7, as: .shed)
        ledger.remember(0, as: .shed)
        #expect(ledger.count == 3)
        #expect(ledger.take(42) == .refused)
        #expect(ledger.take(42) == nil, "answered once")
        #expect(ledger.take(7) == .shed)
        #expect(ledger.take(0) == .shed, "key 0 is a key like any other")
        #expect(ledger.take(99) == nil)
        #expect(ledger.count == 0)
        // Dropped again (refused, then its retransmission shed): the latest kind counts.
        ledger.remember(5, as: .refused)
        ledger.remember(5, as: .shed)
        #expect(ledger.count == 1)
        #expect(ledger.take(5) == .shed)
    }

    @Test func theOldestIsForgottenWhenFullAndMemoryStaysFixed() {
        var ledger = DroppedSegmentLedger(capacity: 16)
        let footprint = ledger.storageFootprint
        for key in UInt64(0)..<16 { ledger.remember(key, as: .refused) }
        ledger.remember(100, as: .shed)
        #expect(ledger.count == 16)
        #expect(!ledger.contains(0), "the oldest went")
        #expect(ledger.contains(1) && ledger.contains(15) && ledger.contains(100))
        // A flood of distinct drops (sequence-number jumps, a huge overshoot): still 16 entries in the same storage.
        for key in UInt64(1_000)..<101_000 { ledger.remember(key &* 1_460, as: .shed) }
        #expect(ledger.count == 16)
        #expect(ledger.storageFootprint == footprint)
        for key in UInt64(100_984)..<101_000 { #expect(ledger.take(key &* 1_460) == .shed) }
        #expect(ledger.count == 0)
    }

    /// Property-style: random remembers and takes agree with a dictionary model that forgets a drop once `capacity`
    /// newer ones were remembered, so the table's backward-shift deletion never loses or invents an entry.
    @Test func randomOperationsAgreeWithADictionary() {
        let capacity = 64
        var ledger = DroppedSegmentLedger(capacity: capacity)
        var model: [UInt64: (drop: DroppedSegmentLedger.Drop, number: Int)] = [:]
        var remembered = 0
        var random = SplitMix64(seed: 4)
        for _ in 0..<20_000 {
            // Few distinct keys with clustered hashes (consecutive TCP sequence numbers of a few flows).
            let key = (random.next() % 4) << 40 | (random.next() % 100) * 1_448
            if random.next() % 2 == 0 {
                let drop: DroppedSegmentLedger.Drop = random.next() % 2 == 0 ? .refused : .shed
                ledger.remember(key, as: drop)
                model[key] = (drop, remembered)
                remembered += 1
                model = model.filter { $0.value.number >= remembered - capacity }
            } else {
                #expect(ledger.take(key) == model.removeValue(forKey: key)?.drop)
            }
            #expect(ledger.count == model.count)
        }
        for (key, entry) in model { #expect(ledger.take(key) == entry.drop) }
        #expect(ledger.count == 0)
    }

    /// Before any failover: a shed segment's retransmission is protected at the tail, a refused one's goes through the
    /// AQM as any packet. Within a second of an uplink going down both go ahead; after that second, as before.
    @Test func retransmissionsOfDropsGoAheadOnlyAfterAFailover() throws {
        let tests = LateBindingTests()
        var driver = try tests.twoUplinks(target: 30 * Self.ms)
        let packet = LateBindingTests.packet
        func admit(_ drop: DroppedSegmentLedger.Drop?, backlogMilliseconds: Int = 5, at time: UInt64) -> SharedAdmission {
            driver.engine.admitShared(packetLength: packet,
                                      backlogBytes: 2 * LateBindingTests.bytes(ofMilliseconds: backlogMilliseconds),
                                      retransmitting: drop, now: time)
        }
        let now = driver.now
        #expect(admit(nil, at: now) == .queued)
        #expect(admit(.refused, at: now) == .queued)
        #expect(admit(.shed, at: now) == .queuedProtected)
        // Far past twice the hard limit a refused segment's retransmission is refused again; a shed one's is not.
        #expect(admit(.refused, backlogMilliseconds: 400, at: now) == .refused)
        #expect(admit(.shed, backlogMilliseconds: 400, at: now) == .queuedProtected)
        #expect(!driver.engine.isRecoveringFromFailover(now: now))

        let failover = now + 10 * Self.ms
        driver.engine.handle(.systemLinkDown(tests.a, at: failover))
        #expect(driver.engine.isRecoveringFromFailover(now: failover))
        #expect(admit(.refused, backlogMilliseconds: 400, at: failover + Self.ms) == .queuedAhead)
        #expect(admit(.shed, at: failover + 500 * Self.ms) == .queuedAhead)
        #expect(admit(nil, at: failover + 500 * Self.ms) == .queued, "other packets queue as always")

        let after = failover + Nanoseconds.second + Self.ms
        #expect(!driver.engine.isRecoveringFromFailover(now: after))
        #expect(admit(.refused, at: after) == .queued)
        #expect(admit(.shed, at: after) == .queuedProtected)
    }
}
