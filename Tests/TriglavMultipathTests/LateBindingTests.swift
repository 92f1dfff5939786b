import Testing
import TriglavCore
@testable import TriglavMultipath

/// Late binding (`MultipathEngine.admitShared` / `dequeueShared`): one shared queue, the uplink chosen when a pacer
/// can send, earliest completion first, and the paced AQM with shedding at the head.
@Suite struct LateBindingTests {
    static let ms = Nanoseconds.millisecond
    let a = UplinkID(1), b = UplinkID(2)
    /// 1250 bytes at the initial 10 Mbit/s estimate × 1.25 probing gain: 0.8 ms.
    static let packet = 1250
    static func bytes(ofMilliseconds milliseconds: Int) -> Int { milliseconds * 1250 * 10 / 8 }

    /// a: 10 ms one way, b: 40 ms; both ready with RTT samples.
    func twoUplinks(target: UInt64?) throws -> EngineDriver {
        var driver = try PacingTests.pacedDriver(target: target)
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, now: 0)
        driver.run(until: 300 * Self.ms, rtt: { $0 == UplinkID(1) ? 20 * Self.ms : 80 * Self.ms })
        return driver
    }

    @Test func theHeadGoesToTheFastUplinkUntilItsPacerIsFullThenToTheSlowOneOnlyForALongBacklog() throws {
        var driver = try twoUplinks(target: nil)
        let now = driver.now
        func dequeue(backlog: Int) -> SharedQueueDecision {
            driver.engine.dequeueShared(packetLength: Self.packet, backlogBytes: backlog, now: now)
        }
        let admitted = driver.engine.admitShared(packetLength: Self.packet, backlogBytes: 0, now: now)
        #expect(admitted, "no target: admitted")
        var sentOnA = 0
        while case .send(let id) = dequeue(backlog: Self.packet), sentOnA < 100 {
            #expect(id == a)
            sentOnA += 1
            driver.engine.handle(.packetSent(id, counter: UInt64(sentOnA), sequence: UInt32(sentOnA), bytes: Self.packet, at: now))
        }
        // a took what its 5 ms allowance holds (7 × 0.8 ms); b is free but 30 ms slower, and a carries a short
        // backlog sooner than that.
        #expect(sentOnA == 7)
        let short = dequeue(backlog: Self.bytes(ofMilliseconds: 10))
        #expect(short == .wait)
        // A backlog that would keep a busy for 50 ms: b takes the head now.
        let long = dequeue(backlog: Self.bytes(ofMilliseconds: 50))
        #expect(long == .send(b))
    }

    @Test func withEqualisationAnIdleSlowUplinkTakesTheHeadOfAShortBacklog() throws {
        // Receivers equalise (100 ms): a packet on a (10 ms) is delivered no earlier than one on b (40 ms), so once a's
        // allowance is full, b — free — delivers a short backlog's head as early as a could; raw ranking kept b out.
        func decision(equalizedBinding: Bool) throws -> SharedQueueDecision {
            var configuration = MultipathConfiguration()
            configuration.pacingQueueAllowance = 5 * Self.ms
            configuration.maxEqualizationDelay = 100 * Self.ms
            configuration.equalizedLateBinding = equalizedBinding
            var driver = try EngineDriver(configuration: configuration)
            try driver.engine.addUplink(a, now: 0)
            try driver.engine.addUplink(b, now: 0)
            driver.run(until: 300 * Self.ms, rtt: { $0 == UplinkID(1) ? 20 * Self.ms : 80 * Self.ms })
            let now = driver.now
            // a's allowance full: 7 packets of 0.8 ms in its network queue.
            for counter in 1...7 {
                driver.engine.handle(.packetSent(a, counter: UInt64(counter), sequence: UInt32(counter), bytes: Self.packet, at: now))
            }
            #expect(try #require(driver.engine.releaseTime(on: a)) > now)
            return driver.engine.dequeueShared(packetLength: Self.packet, backlogBytes: Self.bytes(ofMilliseconds: 10), now: now)
        }
        let equalized = try decision(equalizedBinding: true)
        #expect(equalized == .send(b))
        let raw = try decision(equalizedBinding: false)
        #expect(raw == .wait)
    }

    @Test func aDeadUplinkIsNeverChosen() throws {
        var driver = try twoUplinks(target: nil)
        func dequeue() -> SharedQueueDecision {
            driver.engine.dequeueShared(packetLength: Self.packet, backlogBytes: Self.packet, now: driver.now)
        }
        driver.engine.handle(.systemLinkDown(a, at: driver.now))
        let first = dequeue()
        #expect(first == .send(b))
        driver.engine.handle(.systemLinkDown(b, at: driver.now))
        let second = dequeue()
        #expect(second == .wait)
        let admitted = driver.engine.admitShared(packetLength: Self.packet, backlogBytes: 0, now: driver.now)
        #expect(!admitted, "no uplink: refused, even without a target")
    }

    @Test func theAQMRefusesOnceForAPersistentQueueShedsAtTheHeadPastTheHardLimitAndStaysQuietARoundTrip() throws {
        // Target 30 ms; slowest uplink 40 ms one way, so the hard limit is 30 + 80 ms, a queue is persistent after
        // 80 ms above the target, and a round trip through the queue is 80 ms + the queue.
        var driver = try twoUplinks(target: 30 * Self.ms)
        let now = driver.now
        // Both uplinks carry the backlog, at 2 × 12.5 Mbit/s; a packet behind n ms of it arrives n + 10.8 ms from now
        // (on a), i.e. queues n − 29.2 ms beyond the slowest uplink's delay.
        func admit(_ milliseconds: Int, at time: UInt64) -> Bool {
            driver.engine.admitShared(packetLength: Self.packet, backlogBytes: 2 * Self.bytes(ofMilliseconds: milliseconds), now: time)
        }
        func dequeue(_ milliseconds: Int, at time: UInt64) -> SharedQueueDecision {
            driver.engine.dequeueShared(packetLength: Self.packet, backlogBytes: 2 * Self.bytes(ofMilliseconds: milliseconds), now: time)
        }
        let belowTarget = admit(5, at: now)
        let burst = admit(80, at: now + 10 * Self.ms)
        let stillBurst = admit(80, at: now + 80 * Self.ms)
        let persistent = admit(80, at: now + 95 * Self.ms)
        let quiet = admit(80, at: now + 96 * Self.ms)
        #expect(belowTarget)
        #expect(burst && stillBurst, "a queue above the target for less than 80 ms is a burst: admitted")
        #expect(!persistent, "the first packet once it has persisted is refused")
        #expect(quiet, "then none for a round trip")
        #expect(driver.engine.ingressDrops == 1)
        // Past the hard limit the head is shed and newcomers (TCP's retransmissions) are still taken, up to twice it.
        let later = now + 400 * Self.ms
        let shed = dequeue(150, at: later)
        let newcomer = admit(150, at: later)
        let flood = admit(300, at: later)
        #expect(shed == .drop)
        #expect(newcomer)
        #expect(!flood)
        // The shedding keeps single refusals away for a round trip through that ~120 ms queue (80 + 120 ms), not just
        // through the target's (80 + 30 ms), and until the queue has been below the target again.
        let within = admit(80, at: later + 150 * Self.ms)
        let stillReacting = admit(80, at: later + 260 * Self.ms)
        let drained = admit(5, at: later + 270 * Self.ms)
        let newBurst = admit(80, at: later + 280 * Self.ms)
        let newEpisode = admit(80, at: later + 370 * Self.ms)
        #expect(within)
        #expect(stillReacting)
        #expect(drained && newBurst)
        #expect(!newEpisode)
    }

    @Test func theAQMMarksAnECNCapablePacketWhereItWouldRefuseOneAndStillRefusesPastItsBound() throws {
        // The same queue as above: target 30 ms, a queue above it for 95 ms is persistent.
        func signal(ecnCapable: Bool) throws -> (SharedAdmission, MultipathEngine<Int>) {
            var driver = try twoUplinks(target: 30 * Self.ms)
            let now = driver.now
            func admit(_ milliseconds: Int, at time: UInt64) -> SharedAdmission {
                driver.engine.admitShared(packetLength: Self.packet, backlogBytes: 2 * Self.bytes(ofMilliseconds: milliseconds),
                                          retransmitting: nil, ecnCapable: ecnCapable, now: time)
            }
            let burst = admit(80, at: now + 10 * Self.ms)
            #expect(burst == .queued)
            let persistent = admit(80, at: now + 95 * Self.ms)
            let quiet = admit(80, at: now + 96 * Self.ms)
            #expect(quiet == .queued, "one signal per episode, marked or dropped")
            return (persistent, driver.engine)
        }
        let (marked, markingEngine) = try signal(ecnCapable: true)
        #expect(marked == .queuedCongestionExperienced)
        #expect(markingEngine.congestionMarks == 1 && markingEngine.ingressDrops == 0)
        let (refused, droppingEngine) = try signal(ecnCapable: false)
        #expect(refused == .refused)
        #expect(droppingEngine.congestionMarks == 0 && droppingEngine.ingressDrops == 1)

        // Twice the hard limit bounds the queue: an ECN-capable packet is refused there too (a mark can't shorten it).
        var driver = try twoUplinks(target: 30 * Self.ms)
        let flood = driver.engine.admitShared(packetLength: Self.packet, backlogBytes: 2 * Self.bytes(ofMilliseconds: 300),
                                              retransmitting: nil, ecnCapable: true, now: driver.now)
        #expect(flood == .refused)
        #expect(driver.engine.congestionMarks == 0)
    }

    @Test func withoutPacingEverythingIsAdmitted() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        driver.run(until: 200 * Self.ms)
        let admitted = driver.engine.admitShared(packetLength: Self.packet, backlogBytes: 10_000_000, now: driver.now)
        #expect(admitted)
    }

    /// The skewed pair (1 ms / 50 ms) with late binding keeps the 85 % with both TCP models (91 %: a slow
    /// uplink takes only what it delivers no later than the fast one, and no original waits on our side for a
    /// resend to overtake it).
    @Test(arguments: TCPSenderModel.allCases)
    func skewedPairWithLateBindingKeepsEightyFivePercent(model: TCPSenderModel) throws {
        let result = try ThroughputScenario.twoLinksSkewed.run(seed: 1, seconds: 8, lateBinding: true, tcp: model)
        #expect(result.ratio >= 0.85, "\(model.rawValue): \(result.ratio * 100) %")
    }
}
