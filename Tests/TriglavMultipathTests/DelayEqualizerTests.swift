import Testing
import TriglavCore
@testable import TriglavMultipath

@Suite struct DelayEqualizerTests {
    static let ms = Nanoseconds.millisecond
    static let ms64 = Int64(Nanoseconds.millisecond)
    let eth = UplinkID(1), wifi = UplinkID(2), lte = UplinkID(3)

    typealias Path = DelayEqualizer<Int>.PathDelay

    func paths(_ list: [Path], into equalizer: inout DelayEqualizer<Int>, now: UInt64 = 0) {
        equalizer.updatePaths(count: list.count, now: now) { list[$0] }
    }

    func path(_ id: UplinkID, _ transitMs: Int64?, jitter: UInt64 = 0, usable: Bool = true,
              striped: Bool = true) -> Path {
        Path(id: id, transit: transitMs.map { $0 * Self.ms64 }, jitter: jitter, isUsable: usable, isAlwaysStriped: striped)
    }

    @Test func fasterPathsAreHeldToTheSlowestPlusAJitterMargin() throws {
        var equalizer = try DelayEqualizer<Int>(capacity: 64, maxHold: 100 * Self.ms)
        // The lab's uplinks: eth 5 ms, wifi 20 ms, lte 45 ms (jitter 3 ms), transits relative to any base.
        paths([path(eth, 1005), path(wifi, 1020), path(lte, 1045, jitter: 3 * Self.ms)], into: &equalizer)
        #expect(equalizer.hold(for: eth) == 43 * Self.ms)
        #expect(equalizer.hold(for: wifi) == 28 * Self.ms)
        #expect(equalizer.hold(for: lte) == 0)
        // The margin never exceeds the difference itself: a path 1 ms faster is held 2 ms, not 1 + 3.
        paths([path(eth, 44), path(lte, 45, jitter: 3 * Self.ms)], into: &equalizer)
        #expect(equalizer.hold(for: eth) == 2 * Self.ms)
        #expect(equalizer.hold(for: UplinkID(9)) == 0)
    }

    @Test func holdsAreCappedAndZeroWhenOff() throws {
        var equalizer = try DelayEqualizer<Int>(capacity: 64, maxHold: 30 * Self.ms)
        paths([path(eth, 0), path(lte, 200)], into: &equalizer)
        #expect(equalizer.hold(for: eth) == 30 * Self.ms)
        equalizer.maxHold = 0
        paths([path(eth, 0), path(lte, 200)], into: &equalizer)
        #expect(equalizer.hold(for: eth) == 0)
    }

    @Test func onlyUsableFreshPathsThatStripeOrCarryDataSetTheTarget() throws {
        var equalizer = try DelayEqualizer<Int>(capacity: 64, maxHold: 100 * Self.ms)
        // One path alone: nothing to equalise with.
        paths([path(eth, 5)], into: &equalizer)
        #expect(equalizer.hold(for: eth) == 0)
        // A down path, or one without a fresh transit, doesn't count; a stale path isn't held either.
        paths([path(eth, 5), path(lte, 45, usable: false)], into: &equalizer)
        #expect(equalizer.hold(for: eth) == 0)
        paths([path(eth, 5), path(wifi, 20), path(lte, nil)], into: &equalizer)
        #expect(equalizer.hold(for: eth) == 15 * Self.ms)
        #expect(equalizer.hold(for: lte) == 0)
        // A backup (not always striped) sets the target only once data arrives on it, for `dataWindow`.
        let now: UInt64 = 1_000 * Self.ms
        paths([path(eth, 5), path(wifi, 20), path(lte, 45, striped: false)], into: &equalizer, now: now)
        #expect(equalizer.hold(for: eth) == 15 * Self.ms)
        _ = equalizer.noteData(on: lte, at: now)
        paths([path(eth, 5), path(wifi, 20), path(lte, 45, striped: false)], into: &equalizer, now: now + Self.ms)
        #expect(equalizer.hold(for: eth) == 40 * Self.ms)
        // The arrival is remembered by ID when the caller's order changes (an uplink removed before it).
        paths([path(lte, 45, striped: false), path(eth, 5)], into: &equalizer, now: now + 2 * Self.ms)
        #expect(equalizer.hold(for: eth) == 40 * Self.ms)
        let later = now + DelayEqualizer<Int>.dataWindow + Self.ms
        paths([path(lte, 45, striped: false), path(eth, 5)], into: &equalizer, now: later)
        #expect(equalizer.hold(for: eth) == 0)
    }

    @Test func releasesInOrderAtTheirTimeOnAVirtualClock() throws {
        var equalizer = try DelayEqualizer<Int>(capacity: 8, maxHold: 100 * Self.ms)
        #expect(equalizer.canPassThrough(releaseAt: 10, now: 10))
        #expect(!equalizer.canPassThrough(releaseAt: 11, now: 10))
        // Packet 1 is due at 40 ms; packet 2 (from the slow path) at 30 ms, but must not overtake it.
        let r1 = equalizer.enqueue(1, releaseAt: 40 * Self.ms, now: 0)
        #expect(r1)
        #expect(!equalizer.canPassThrough(releaseAt: 0, now: 5 * Self.ms))
        let r2 = equalizer.enqueue(2, releaseAt: 30 * Self.ms, now: 30 * Self.ms)
        #expect(r2)
        let r3 = equalizer.enqueue(3, releaseAt: 50 * Self.ms, now: 10 * Self.ms)
        #expect(r3)
        #expect(equalizer.nextDeadline == 40 * Self.ms)
        let r4 = equalizer.dequeue(now: 39 * Self.ms)
        #expect(r4 == nil)
        let r5 = equalizer.dequeue(now: 40 * Self.ms)
        #expect(r5 == 1)
        let r6 = equalizer.dequeue(now: 40 * Self.ms)
        #expect(r6 == 2)
        #expect(equalizer.nextDeadline == 50 * Self.ms)
        let r7 = equalizer.dequeue(now: 49 * Self.ms)
        #expect(r7 == nil)
        let r8 = equalizer.dequeue(now: 50 * Self.ms)
        #expect(r8 == 3)
        #expect(equalizer.nextDeadline == nil)
        #expect(equalizer.isEmpty)
        #expect(equalizer.statistics.held == 3)
        #expect(equalizer.statistics.totalHold == (40 + 10 + 40) * Self.ms)
    }

    @Test func memoryIsBoundedAndPressureReleasesEarly() throws {
        var equalizer = try DelayEqualizer<Int>(capacity: 16, maxHold: 100 * Self.ms)
        let footprint = equalizer.storageFootprint
        for round in 0..<100 {
            for index in 0..<16 {
                let queued = equalizer.enqueue(index, releaseAt: 1_000 * Self.ms, now: UInt64(round))
                #expect(queued)
            }
            let r9 = equalizer.enqueue(99, releaseAt: 0, now: 0)
            #expect(!r9)
            let r10 = equalizer.dequeue(now: UInt64(round))
            #expect(r10 == nil)
            for index in 0..<16 {
                let released = equalizer.dequeue(now: UInt64(round), pressure: true)
                #expect(released == index)
            }
            let r11 = equalizer.dequeue(now: UInt64(round), pressure: true)
            #expect(r11 == nil)
        }
        #expect(equalizer.statistics.releasedEarly == 1_600)
        #expect(equalizer.storageFootprint == footprint)
        #expect(throws: MultipathError.self) { try DelayEqualizer<Int>(capacity: 0, maxHold: 0) }
    }
}

/// The equaliser inside the engine: the reorder buffer's in-order output waits until the slowest uplink
/// would have delivered it.
@Suite struct EngineDelayEqualizationTests {
    static let ms = Nanoseconds.millisecond
    let fast = UplinkID(1), slow = UplinkID(2)

    /// Two ready uplinks whose probes from the peer show one-way transits 5 ms and 45 ms.
    func engine(maxHold: UInt64) throws -> EngineDriver {
        var configuration = MultipathConfiguration()
        configuration.maxEqualizationDelay = maxHold
        configuration.requestsResends = false
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(fast, now: 0)
        try driver.engine.addUplink(slow, now: 0)
        driver.run(until: 500 * Self.ms, rtt: { $0 == self.fast ? 10 * Self.ms : 90 * Self.ms })
        // The peer's probes, sent every 50 ms on both uplinks (its clock is 7 s ahead of ours).
        for sent in stride(from: UInt64(0), to: 500 * Self.ms, by: Int(50 * Self.ms)) {
            let peerClock = sent + 7_000 * Self.ms
            driver.engine.handle(.probeReceived(fast, senderTimestamp: peerClock, at: 500 * Self.ms + sent + 5 * Self.ms))
            driver.engine.handle(.probeReceived(slow, senderTimestamp: peerClock, at: 500 * Self.ms + sent + 45 * Self.ms))
        }
        driver.run(until: 1_000 * Self.ms)
        return driver
    }

    @Test func packetsFromTheFastUplinkWaitForTheSlowOnesDelay() throws {
        var driver = try engine(maxHold: 100 * Self.ms)
        #expect(driver.state(fast) == .ready && driver.state(slow) == .ready)
        #expect(driver.engine.equalizationHold(for: fast) == 40 * Self.ms)
        #expect(driver.engine.equalizationHold(for: slow) == 0)
        let now = driver.now
        // Sequence 0 on the fast uplink: in order, but held 40 ms.
        let r12 = driver.engine.receive(0, sequence: 0, uplink: fast, counter: 1, bytes: 1400, now: now)
        #expect(r12 == .buffered)
        let r13 = driver.engine.nextDelivery(now: now)
        #expect(r13 == nil)
        #expect(driver.engine.nextDeadline().map { $0 <= now + 40 * Self.ms } == true)
        // Sequence 1 on the slow uplink, 10 ms later: due at once, but not before sequence 0.
        let r14 = driver.engine.receive(1, sequence: 1, uplink: slow, counter: 1, bytes: 1400, now: now + 10 * Self.ms)
        #expect(r14
            == .buffered)
        // Sequence 3 on the fast uplink: waits for 2 in the reorder buffer, then for its own hold.
        let r15 = driver.engine.receive(3, sequence: 3, uplink: fast, counter: 2, bytes: 1400, now: now + 12 * Self.ms)
        #expect(r15
            == .buffered)
        let r16 = driver.engine.nextDelivery(now: now + 39 * Self.ms)
        #expect(r16 == nil)
        let r17 = driver.engine.nextDelivery(now: now + 40 * Self.ms)
        #expect(r17 == 0)
        let r18 = driver.engine.nextDelivery(now: now + 40 * Self.ms)
        #expect(r18 == 1)
        let r19 = driver.engine.nextDelivery(now: now + 40 * Self.ms)
        #expect(r19 == nil)
        let r20 = driver.engine.receive(2, sequence: 2, uplink: slow, counter: 2, bytes: 1400, now: now + 45 * Self.ms)
        #expect(r20
            == .deliverNow)
        let r21 = driver.engine.nextDelivery(now: now + 45 * Self.ms)
        #expect(r21 == nil)
        let r22 = driver.engine.nextDelivery(now: now + 52 * Self.ms)
        #expect(r22 == 3)
        // Pure ACKs are never held; duplicates are still dropped.
        let r23 = driver.engine.receive(4, sequence: 4, uplink: fast, counter: 3, bytes: 60, now: now + 53 * Self.ms,
                                      ordered: false)
        #expect(r23 == .deliverNow)
        let r24 = driver.engine.receive(9, sequence: 3, uplink: fast, counter: 4, bytes: 1400, now: now + 53 * Self.ms)
        #expect(r24
            == .duplicate)
        #expect(driver.engine.equalizerStatistics.held == 3)
    }

    @Test func aGapIsSkippedSoonAfterThePacketsBehindItWouldLeaveTheEqualiser() throws {
        var driver = try engine(maxHold: 100 * Self.ms)
        let now = driver.now
        let start = driver.engine.receive(0, sequence: 0, uplink: slow, counter: 1, bytes: 1400, now: now)
        #expect(start == .deliverNow)
        // Sequence 1 is lost; 2 comes over the slow uplink (not held). Nothing can still be on its way after
        // 2's equalised arrival plus a jitter margin, so the wait is that margin, not the 40 ms spread.
        let first = driver.engine.receive(2, sequence: 2, uplink: slow, counter: 2, bytes: 1400, now: now)
        #expect(first == .buffered)
        _ = driver.engine.nextDuty(now: now + Self.ms)
        #expect(driver.engine.reorderWaitBound < 10 * Self.ms)
        let early = driver.engine.nextDelivery(now: now + Self.ms)
        #expect(early == nil)
        let skipped = driver.engine.nextDelivery(now: now + 10 * Self.ms)
        #expect(skipped == 2)
        // Sequence 4 over the fast uplink, 3 lost: it would leave the equaliser 40 ms after arrival anyway, and
        // the gap is skipped just after that.
        let second = driver.engine.receive(4, sequence: 4, uplink: fast, counter: 1, bytes: 1400, now: now + 20 * Self.ms)
        #expect(second == .buffered)
        let waiting = driver.engine.nextDelivery(now: now + 59 * Self.ms)
        #expect(waiting == nil)
        let released = driver.engine.nextDelivery(now: now + 70 * Self.ms)
        #expect(released == 4)
    }

    /// Only `aggregate` stripes a flow's packets over paths of different delay; in every other mode a packet
    /// arriving on the fast uplink is delivered at its own path's delay, not lifted to the slow one's (the daemon
    /// runs with equalisation configured whatever the mode).
    @Test(arguments: [SchedulerMode.lowestLatency, .flow, .redundant, .failover])
    func onlyAggregateEqualises(mode: SchedulerMode) throws {
        var driver = try engine(maxHold: 100 * Self.ms)
        #expect(driver.engine.equalizationHold(for: fast) == 40 * Self.ms)
        try driver.engine.setScheduler(mode)
        driver.run(until: driver.now + Self.ms)
        #expect(driver.engine.equalizationHold(for: fast) == 0)
        let now = driver.now
        for sequence in UInt32(0)..<4 {
            let verdict = driver.engine.receive(Int(sequence), sequence: sequence, uplink: fast,
                                                counter: UInt64(sequence) + 1, bytes: 1400, now: now)
            #expect(verdict == .deliverNow)
        }
        // A reordered packet waits for its gap only, not for the slow uplink's delay on top.
        let ahead = driver.engine.receive(5, sequence: 5, uplink: fast, counter: 5, bytes: 1400, now: now)
        #expect(ahead == .buffered)
        let filled = driver.engine.receive(4, sequence: 4, uplink: slow, counter: 1, bytes: 1400, now: now + Self.ms)
        #expect(filled == .deliverNow)
        let next = driver.engine.nextDelivery(now: now + Self.ms)
        #expect(next == 5)
        #expect(driver.engine.equalizerStatistics.held == 0)
        // Back in `aggregate` the holds return with the next tick.
        try driver.engine.setScheduler(.aggregate)
        driver.run(until: driver.now + Self.ms)
        #expect(driver.engine.equalizationHold(for: fast) == 40 * Self.ms)
        let held = driver.engine.receive(6, sequence: 6, uplink: fast, counter: 6, bytes: 1400, now: driver.now)
        #expect(held == .buffered)
    }

    @Test func offByDefaultAndWhenTheSlowUplinkGoesDown() throws {
        var off = try engine(maxHold: 0)
        let r25 = off.engine.receive(0, sequence: 0, uplink: fast, counter: 1, bytes: 1400, now: off.now)
        #expect(r25 == .deliverNow)
        #expect(MultipathConfiguration().maxEqualizationDelay == 0)

        var driver = try engine(maxHold: 100 * Self.ms)
        driver.engine.handle(.systemLinkDown(slow, at: driver.now))
        driver.run(until: driver.now + Self.ms)
        #expect(driver.engine.equalizationHold(for: fast) == 0)
        let r26 = driver.engine.receive(0, sequence: 0, uplink: fast, counter: 1, bytes: 1400, now: driver.now)
        #expect(r26
            == .deliverNow)
    }

    /// The lab's download starts as soon as one uplink answers: the first packets (the inner TCP handshake) may
    /// arrive before any uplink is measured, and BBR keeps their RTT as its minimum for 10 s.
    @Test func aFlowThatStartsBeforeTheUplinksAreMeasuredWaitsTheLongestHold() throws {
        var configuration = MultipathConfiguration()
        configuration.maxEqualizationDelay = 100 * Self.ms
        configuration.requestsResends = false
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(fast, now: 0)
        try driver.engine.addUplink(slow, now: 0)
        let rtt: (UplinkID) -> UInt64 = { $0 == self.fast ? 10 * Self.ms : 90 * Self.ms }
        driver.run(until: 2 * Self.ms, rtt: rtt)
        #expect(driver.engine.equalizationHold(for: fast) == 100 * Self.ms)
        #expect(driver.engine.equalizationHold(for: slow) == 100 * Self.ms)
        // The fast uplink answered (10 ms) but the slow one hasn't yet: still the longest hold.
        driver.run(until: 20 * Self.ms, rtt: rtt)
        #expect(driver.state(fast) == .ready && driver.state(slow) != .ready)
        #expect(driver.engine.equalizationHold(for: fast) == 100 * Self.ms)
        let now = driver.now
        let first = driver.engine.receive(0, sequence: 0, uplink: fast, counter: 1, bytes: 60, now: now)
        #expect(first == .buffered)
        driver.run(until: now + 99 * Self.ms, rtt: rtt)
        let early = driver.engine.nextDelivery(now: driver.now)
        #expect(early == nil)
        driver.run(until: now + 100 * Self.ms, rtt: rtt)
        let due = driver.engine.nextDelivery(now: driver.now)
        #expect(due == 0)

        // Both answered; only the fast uplink has carried a probe from the peer (transit 5 ms on its clock). The
        // slow one is placed by its RTT: half of 90 ms vs half of 10 ms, 40 ms behind, no jitter yet.
        driver.run(until: 300 * Self.ms, rtt: rtt)
        driver.engine.handle(.probeReceived(fast, senderTimestamp: 7_000 * Self.ms, at: 300 * Self.ms))
        driver.run(until: 301 * Self.ms, rtt: rtt)
        #expect(driver.state(fast) == .ready && driver.state(slow) == .ready)
        #expect(driver.engine.equalizationHold(for: fast) == 40 * Self.ms)
        #expect(driver.engine.equalizationHold(for: slow) == 0)

        // A third uplink that never answers stops counting once it is down (1 s without a reply); until then
        // everything waits the longest hold.
        let silent = UplinkID(3)
        try driver.engine.addUplink(silent, now: driver.now)
        driver.run(until: 400 * Self.ms, rtt: rtt, silent: { id, _ in id == silent })
        #expect(driver.engine.equalizationHold(for: fast) == 100 * Self.ms)
        driver.run(until: 2_100 * Self.ms, rtt: rtt, silent: { id, _ in id == silent })
        #expect(driver.state(silent) == .down || driver.state(silent) == .probing)
        #expect(driver.engine.equalizationHold(for: fast) < 100 * Self.ms)
    }

    /// With equalisation on, the receiver lifts every data packet to the slowest uplink's delay, so the sender
    /// splits by queue alone: without it, the 5 ms uplink took everything until its queue was 40 ms deep.
    @Test func withEqualisationTheSenderSplitsByQueueNotByPathDelay() throws {
        func split(maxHold: UInt64, acknowledgements: Bool = false) throws -> [UplinkID: Int] {
            var configuration = MultipathConfiguration()
            configuration.maxEqualizationDelay = maxHold
            configuration.ingressQueueTarget = nil
            var driver = try EngineDriver(configuration: configuration)
            try driver.engine.addUplink(fast, now: 0)
            try driver.engine.addUplink(slow, now: 0)
            driver.run(until: 500 * Self.ms, rtt: { $0 == self.fast ? 10 * Self.ms : 90 * Self.ms })
            var counts: [UplinkID: Int] = [:]
            for _ in 0..<20 {
                for id in driver.engine.schedule(packetLength: acknowledgements ? 60 : 1400, flowKey: nil,
                                                 now: driver.now, isAcknowledgement: acknowledgements) {
                    counts[id, default: 0] += 1
                }
            }
            return counts
        }
        // Equal capacity estimates (both still at the initial one): the packets alternate.
        let equalized = try split(maxHold: 100 * Self.ms)
        #expect((9...11).contains(equalized[fast] ?? 0) && (9...11).contains(equalized[slow] ?? 0))
        // Without equalisation the earliest arrival wins: 20 packets are 22 ms on the fast uplink, still earlier
        // than the slow one's 45 ms.
        let raw = try split(maxHold: 0)
        #expect(raw[fast] == 20)
        // Pure ACKs aren't equalised: they take the fast uplink either way.
        let acknowledgements = try split(maxHold: 100 * Self.ms, acknowledgements: true)
        #expect(acknowledgements[fast] == 20)
    }

    @Test func heldPacketsLeaveEarlyRatherThanOverflowTheCallersStorage() throws {
        var driver = try engine(maxHold: 100 * Self.ms)
        let capacity = driver.engine.configuration.reorderCapacity
        let now = driver.now
        var delivered = 0
        for sequence in 0..<UInt32(2 * capacity) {
            switch driver.engine.receive(Int(sequence), sequence: sequence, uplink: fast, counter: UInt64(sequence) + 1,
                                         bytes: 1400, now: now) {
            case .deliverNow: delivered += 1
            case .buffered: break
            default: Issue.record("unexpected verdict for \(sequence)")
            }
            while driver.engine.nextDelivery(now: now) != nil { delivered += 1 }
            #expect(driver.engine.equalizerHeldCount + driver.engine.reorderBufferedCount <= capacity * 3 / 4)
        }
        #expect(delivered == 2 * capacity - capacity * 3 / 4 + 1)
        #expect(driver.engine.equalizerStatistics.releasedEarly > 0)
    }
}
