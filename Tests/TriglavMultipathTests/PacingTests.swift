import Testing
import TriglavCore
@testable import TriglavMultipath

/// Sender-side pacing (`MultipathConfiguration.pacingQueueAllowance`): the release gate, resends ahead of the
/// queued data, the paced ingress AQM, and the probe correction of the model.
@Suite struct PacingTests {
    static let ms = Nanoseconds.millisecond
    let a = UplinkID(1), b = UplinkID(2)

    static func pacedDriver(target: UInt64? = 80 * Nanoseconds.millisecond) throws -> EngineDriver {
        var configuration = MultipathConfiguration()
        configuration.pacingQueueAllowance = 5 * ms
        configuration.ingressQueueTarget = target
        return try EngineDriver(configuration: configuration)
    }

    @Test func aZeroAllowanceIsRejected() throws {
        var configuration = MultipathConfiguration()
        configuration.pacingQueueAllowance = 0
        #expect(throws: MultipathError.self) { try MultipathEngine<Int>(configuration: configuration) }
        configuration.pacingQueueAllowance = 5 * Self.ms
        _ = try MultipathEngine<Int>(configuration: configuration)
    }

    @Test func withoutPacingEveryPacketIsReleasedAtOnce() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        driver.run(until: 200 * Self.ms)
        for counter in 1...100 {
            driver.engine.handle(.packetSent(a, counter: UInt64(counter), sequence: UInt32(counter), bytes: 1500, at: driver.now))
        }
        #expect(driver.engine.releaseTime(on: a) == 0)
        #expect(driver.engine.releaseTime(on: b) == nil)
    }

    @Test func releasesStopOnceTheAllowanceIsInTheNetwork() throws {
        var driver = try Self.pacedDriver()
        try driver.engine.addUplink(a, now: 0)
        driver.run(until: 200 * Self.ms)
        let now = driver.now
        #expect(try #require(driver.engine.releaseTime(on: a)) <= now)
        // 10 Mbit/s initial estimate × 1.25 probing gain: 1250 bytes take 0.8 ms, so 7 of them are 5.6 ms.
        var sent = 0
        while try #require(driver.engine.releaseTime(on: a)) <= now, sent < 100 {
            sent += 1
            driver.engine.handle(.packetSent(a, counter: UInt64(sent), sequence: UInt32(sent), bytes: 1250, at: now))
        }
        #expect(sent == 7, "sent \(sent) packets before the gate closed")
        let next = try #require(driver.engine.releaseTime(on: a))
        #expect(next > now && next <= now + Self.ms, "next release \(next - now) ns from now")
    }

    @Test func aResendGoesAheadOfQueuedDataToTheUplinkWithTheShortestNetworkQueue() throws {
        var driver = try Self.pacedDriver(target: nil)
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, now: 0)
        // a is 10 ms one way, b 40 ms.
        driver.run(until: 300 * Self.ms, rtt: { $0 == UplinkID(1) ? 20 * Self.ms : 80 * Self.ms })
        let now = driver.now
        // 100 ms of data queued for a on our side, nothing handed to the network yet.
        for _ in 0..<100 {
            let selection = driver.engine.schedule(packetLength: 1250, flowKey: nil, now: now, excluding: b)
            #expect(selection.first == a)
        }
        let queued = try #require(driver.engine.modelQueueDelay(for: a, now: now))
        #expect(queued >= 50 * Self.ms)
        // Data would now arrive sooner on b; a resend skips a's queue, so a (10 ms) still wins.
        #expect(driver.engine.schedule(packetLength: 1250, flowKey: nil, now: now).first == b)
        #expect(driver.engine.scheduleResend(packetLength: 1250, originalUplink: nil, now: now).first == a)
        #expect(try #require(driver.engine.releaseTime(on: a)) <= now, "the resend may go out at once")
    }

    @Test func theIngressAQMRefusesOncePerRoundTripUntilTheHardLimit() throws {
        var driver = try Self.pacedDriver(target: 20 * Nanoseconds.millisecond)
        try driver.engine.addUplink(a, now: 0)
        driver.run(until: 300 * Self.ms)
        let now = driver.now
        // 0.8 ms per packet (10 Mbit/s × 1.25): the queue passes the 20 ms target after 25 packets. The first
        // packet past it is refused, the next ones are taken (TCP needs one loss and room for its
        // retransmission), until target + 50 ms headroom, beyond which everything is refused.
        var refusedAt: [Int] = []
        for index in 0..<120 where driver.engine.schedule(packetLength: 1250, flowKey: nil, now: now).isEmpty {
            refusedAt.append(index)
        }
        #expect(refusedAt.first.map { (24...27).contains($0) } == true, "refusals at \(refusedAt.prefix(3))")
        #expect(refusedAt.count >= 2 && refusedAt[1] >= 80 && refusedAt[1] <= 95, "refusals at \(refusedAt.prefix(3))")
        #expect(refusedAt.dropFirst().allSatisfy { $0 >= refusedAt[1] })
        #expect(driver.engine.ingressDrops == UInt64(refusedAt.count))
    }

    /// Packets (1250 bytes) the pacer releases on a paced uplink (20 ms allowance, 10 Mbit/s initial estimate, no
    /// delivery feedback, so the estimate stays) kept busy for 3 s, counted over the last second: 1000 at the
    /// estimate, 1250 with the probing gain. `rtt` picks each probe's RTT.
    static func releasedInLastSecond(fullJitterMultiple: UInt64, rtt: (UplinkID) -> UInt64) throws -> Int {
        var configuration = MultipathConfiguration()
        configuration.pacingQueueAllowance = 20 * ms
        configuration.pacingFullJitterMultiple = fullJitterMultiple
        let id = UplinkID(1)
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(id, now: 0)
        var sent = 0, counted = 0
        while driver.now < 3 * Nanoseconds.second {
            driver.run(until: driver.now + ms, rtt: rtt)
            while try #require(driver.engine.releaseTime(on: id)) <= driver.now {
                sent += 1
                if driver.now > 2 * Nanoseconds.second { counted += 1 }
                driver.engine.handle(.packetSent(id, counter: UInt64(sent), sequence: UInt32(sent), bytes: 1250, at: driver.now))
            }
        }
        return counted
    }

    @Test func aJitteryLinkWithTheAllowanceQueuedKeepsItsProbingGain() throws {
        // The lab's LTE link, paced: 45 ms ± 10 ms each way plus the allowance in its buffer, so probes see 90–130 ms
        // with nothing beyond the allowance. The minimum sits at the low end; a sample lies up to the jitter's range
        // (40 ms) above it, more than allowance + 3 ms + one RTT jitter (~13 ms): with one jitter such a probe
        // counted as a full link, which took the probing gain away for 2 s at a time (and a paced link's estimate
        // can't rise without it: it delivers only what it is given).
        func jittery(multiple: UInt64) throws -> Int {
            var state: UInt64 = 12345
            return try Self.releasedInLastSecond(fullJitterMultiple: multiple) { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return 90 * Self.ms + (state >> 33) % (40 * Self.ms)
            }
        }
        let three = try jittery(multiple: 3), one = try jittery(multiple: 1)
        #expect(three >= 1200, "\(three) packets in the last second with 3 jitters: the link lost its probing gain")
        #expect(one <= 1100, "\(one) packets in the last second with 1 jitter (the simulator's): expected no gain")
        // A queue beyond the allowance and the jitter's range (the link really is full) still takes the gain away for
        // `capacityWindow` (2 s): 60 ms of standing queue between 1 and 2 s, no jitter.
        var probes = 0
        let full = try Self.releasedInLastSecond(fullJitterMultiple: 3) { _ in
            probes += 1
            return (10..<20).contains(probes) ? 150 * Self.ms : 90 * Self.ms
        }
        #expect(full <= 1050, "\(full) packets in the last second: the probing gain stayed on a full link")
    }

    @Test func aProbeThatQueuedMoreThanModelledMovesTheModelBack() throws {
        var driver = try Self.pacedDriver(target: nil)
        try driver.engine.addUplink(a, now: 0)
        driver.run(until: 300 * Self.ms, rtt: { _ in 20 * Self.ms })
        let before = try #require(driver.engine.releaseTime(on: a))
        #expect(before <= driver.now)
        // The next probes find 30 ms of queue the model didn't expect (the link is slower than estimated): the
        // model moves back by that much, so releases pause while the network drains.
        var longestPause: UInt64 = 0
        while driver.now < 420 * Self.ms {
            driver.run(until: driver.now + Self.ms, rtt: { _ in 50 * Self.ms })
            let release = try #require(driver.engine.releaseTime(on: a))
            longestPause = max(longestPause, release > driver.now ? release - driver.now : 0)
        }
        #expect(longestPause >= 20 * Self.ms && longestPause <= 30 * Self.ms, "longest pause \(longestPause / Self.ms) ms")
        let stats = try #require(driver.engine.statistics(for: a))
        #expect(stats.state == .ready)
    }
}
