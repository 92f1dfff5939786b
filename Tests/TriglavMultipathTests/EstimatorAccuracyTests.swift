import Testing
import TriglavCore
@testable import TriglavMultipath

/// RFC 6298 §2 smoothed RTT and variance, and an RFC 3550 §6.4.1-style jitter (mean deviation of
/// consecutive samples, gain 1/16), in floating point: the specification the integer estimator must match.
private struct ReferenceRTT {
    var smoothed = 0.0, variance = 0.0, jitter = 0.0, latest = 0.0
    var count = 0

    mutating func add(_ sample: Double) {
        if count == 0 {
            smoothed = sample
            variance = sample / 2
        } else {
            variance = 0.75 * variance + 0.25 * abs(smoothed - sample) // with the previous SRTT
            smoothed = 0.875 * smoothed + 0.125 * sample
            jitter += (abs(latest - sample) - jitter) / 16
        }
        latest = sample
        count += 1
    }
}

/// Quality estimators (issue 4, requirement 1) against known values: jittered and uneven delays,
/// expiring windows, and the engine's statistics against a reference model of the same samples.
@Suite struct EstimatorAccuracyTests {
    static let ms = Nanoseconds.millisecond
    static let second = Nanoseconds.second
    let a = UplinkID(1), b = UplinkID(2), c = UplinkID(3)

    // MARK: RTT, variance, jitter

    @Test func jacobsonKarelsByHand() {
        var rtt = RTTEstimator()
        rtt.add(sample: 100 * Self.ms, at: 0)
        #expect(rtt.smoothed == 100 * Self.ms && rtt.variance == 50 * Self.ms && rtt.jitter == 0)
        rtt.add(sample: 140 * Self.ms, at: 100 * Self.ms)
        // RTTVAR = ¾·50 + ¼·|100 − 140| = 47.5; SRTT = ⅞·100 + ⅛·140 = 105; jitter = 40/16 = 2.5.
        #expect(rtt.variance == 47_500_000)
        #expect(rtt.smoothed == 105_000_000)
        #expect(rtt.jitter == 2_500_000)
        rtt.add(sample: 60 * Self.ms, at: 200 * Self.ms)
        // RTTVAR = ¾·47.5 + ¼·|105 − 60| = 46.875; SRTT = ⅞·105 + ⅛·60 = 99.375; jitter = 2.5 + (80 − 2.5)/16.
        #expect(rtt.variance == 46_875_000)
        #expect(rtt.smoothed == 99_375_000)
        #expect(rtt.jitter == 7_343_750)
        #expect(rtt.latest == 60 * Self.ms && rtt.windowedMinimum == 60 * Self.ms)
    }

    @Test func alternatingSamplesConvergeToTheirDeviation() {
        // 20, 40, 20, 40 … ms: consecutive samples differ by 20 ms, each is 10 ms from the mean.
        var rtt = RTTEstimator()
        for index in 0..<400 { rtt.add(sample: (index % 2 == 0 ? 20 : 40) * Self.ms, at: UInt64(index) * 50 * Self.ms) }
        #expect(rtt.jitter > 19_900_000 && rtt.jitter <= 20 * Self.ms, "jitter \(rtt.jitter)")
        #expect(rtt.smoothed > 28 * Self.ms && rtt.smoothed < 32 * Self.ms, "srtt \(rtt.smoothed)")
        #expect(rtt.variance > 9 * Self.ms && rtt.variance < 11 * Self.ms, "rttvar \(rtt.variance)")
        #expect(rtt.windowedMinimum == 20 * Self.ms)
    }

    @Test(arguments: [(40, 20, UInt64(1)), (15, 4, UInt64(2)), (120, 60, UInt64(3))])
    func engineStatisticsMatchTheReferenceOnJitteredProbes(roundTripMs: Int, jitterMs: Int, seed: UInt64) throws {
        var peer = try ScriptedPeer(uplinks: [a], seed: seed)
        peer.roundTrip[a] = UInt64(roundTripMs) * Self.ms
        peer.jitter[a] = UInt64(jitterMs) * Self.ms // per direction, uniform
        peer.run(until: 8 * Self.second)
        let samples = try #require(peer.rttSamples[a])
        #expect(samples.count > 70)
        var reference = ReferenceRTT()
        for sample in samples { reference.add(Double(sample)) }
        let stats = try #require(peer.engine.statistics(for: a))
        // Integer rounding keeps the estimator within a few nanoseconds of the real-valued recurrences.
        let tolerance = 1_000.0
        #expect(abs(Double(stats.smoothedRTT) - reference.smoothed) < tolerance, "srtt \(stats.smoothedRTT) vs \(reference.smoothed)")
        #expect(abs(Double(stats.rttVariance) - reference.variance) < tolerance, "rttvar \(stats.rttVariance) vs \(reference.variance)")
        #expect(abs(Double(stats.jitter) - reference.jitter) < tolerance, "jitter \(stats.jitter) vs \(reference.jitter)")
        #expect(stats.minimumRTT == samples.min())
        // The samples really are jittered: a constant-RTT estimate would be far off.
        #expect(reference.jitter > Double(jitterMs) * 0.25 * Double(Self.ms))
    }

    // MARK: minimum RTT window

    @Test func windowedMinimumExpiresToTheNextBest() {
        var filter = WindowedFilter(keepsMaximum: false, window: 1000)
        filter.update(50, at: 0)
        filter.update(30, at: 100)
        filter.update(40, at: 600)
        filter.update(60, at: 1050)
        #expect(filter.best == 30, "30 is 950 old: still inside the window")
        filter.update(70, at: 1150)
        #expect(filter.best == 40, "30 expired; 40 (from 600) is the best left")
        filter.update(80, at: 1700)
        #expect(filter.best == 60, "40 expired too")
        filter.update(10, at: 1701)
        #expect(filter.best == 10, "a new best takes over at once")
    }

    @Test func engineMinimumRTTForgetsAShorterPathAfterTenSeconds() throws {
        var peer = try ScriptedPeer(uplinks: [a])
        peer.roundTrip[a] = 20 * Self.ms
        peer.run(until: 3 * Self.second)
        #expect(peer.engine.statistics(for: a)?.minimumRTT == 20 * Self.ms)
        // The path gets longer (a route change): the old minimum must not stay forever (BBR: 10 s).
        let changedAt = peer.now
        peer.roundTrip[a] = 50 * Self.ms
        peer.run(until: changedAt + 9800 * Self.ms, step: 5 * Self.ms)
        #expect(peer.engine.statistics(for: a)?.minimumRTT == 20 * Self.ms)
        peer.run(until: changedAt + 10_300 * Self.ms, step: 5 * Self.ms)
        #expect(peer.engine.statistics(for: a)?.minimumRTT == 50 * Self.ms)
    }

    // MARK: one-way delay difference between uplinks

    /// Feeds the peer's probes (sender timestamps on the peer's clock, 7 s ahead of ours) arriving over
    /// each uplink with `delay(id)`, every 100 ms per uplink at different phases, and returns the mean of
    /// each uplink's relative one-way delay sampled after every round (the estimate is an EWMA, so the
    /// mean over time is what should equal the expected value).
    private func relativeDelays(_ engine: inout MultipathEngine<Int>, rounds: Int, from start: UInt64,
                                delay: (UplinkID, inout SplitMix64) -> UInt64) -> [UplinkID: Double] {
        var rng = SplitMix64(seed: 42)
        var sums: [UplinkID: Double] = [:]
        let peerClockOffset = 7 * Self.second
        for round in 0..<rounds {
            var arrivals: [(at: UInt64, id: UplinkID, sentAt: UInt64)] = []
            for (phase, id) in [a, b, c].enumerated() {
                let sentAt = start + UInt64(round) * 100 * Self.ms + UInt64(phase) * 7 * Self.ms
                arrivals.append((sentAt + delay(id, &rng), id, sentAt))
            }
            for arrival in arrivals.sorted(by: { $0.at < $1.at }) {
                engine.handle(.probeReceived(arrival.id, senderTimestamp: arrival.sentAt + peerClockOffset, at: arrival.at))
            }
            for id in [a, b, c] { sums[id, default: 0] += Double(engine.statistics(for: id)?.relativeOneWayDelay ?? .max) }
        }
        return sums.mapValues { $0 / Double(rounds) }
    }

    @Test func relativeOneWayDelayWithConstantDelaysIsExact() throws {
        var engine = try MultipathEngine<Int>()
        for id in [a, b, c] { try engine.addUplink(id, now: 0) }
        #expect(engine.statistics(for: a)?.relativeOneWayDelay == nil, "nil before any probe arrived")
        let delays: [UplinkID: UInt64] = [a: 10 * Self.ms, b: 35 * Self.ms, c: 22 * Self.ms]
        _ = relativeDelays(&engine, rounds: 20, from: Self.second) { id, _ in delays[id]! }
        #expect(engine.statistics(for: a)?.relativeOneWayDelay == 0)
        #expect(engine.statistics(for: b)?.relativeOneWayDelay == 25 * Self.ms)
        #expect(engine.statistics(for: c)?.relativeOneWayDelay == 12 * Self.ms)
        // The fastest uplink goes down: the others are measured against the fastest one left.
        engine.handle(.systemLinkDown(a, at: 4 * Self.second))
        #expect(engine.statistics(for: c)?.relativeOneWayDelay == 0)
        #expect(engine.statistics(for: b)?.relativeOneWayDelay == 13 * Self.ms)
    }

    @Test func relativeOneWayDelayWithUnevenJitterIsTheDifferenceOfMeans() throws {
        var engine = try MultipathEngine<Int>()
        for id in [a, b, c] { try engine.addUplink(id, now: 0) }
        // a: 10 ms + U[0, 4] (mean 12); b: 35 ms + U[0, 20] (mean 45); c: 30 ms + an occasional 25 ms
        // spike on one probe in five (mean 35). Expected: a 0, b 33, c 23 ms.
        let means = relativeDelays(&engine, rounds: 600, from: Self.second) { id, rng in
            switch id {
            case a: 10 * Self.ms + rng.next() % (4 * Self.ms + 1)
            case b: 35 * Self.ms + rng.next() % (20 * Self.ms + 1)
            default: 30 * Self.ms + (rng.next() % 5 == 0 ? 25 * Self.ms : 0)
            }
        }
        let a0 = try #require(means[a]), b0 = try #require(means[b]), c0 = try #require(means[c])
        #expect(a0 == 0, "a is always the fastest: \(a0 / 1e6) ms")
        #expect(abs(b0 - 33e6) < 1e6, "b: \(b0 / 1e6) ms, expected 33")
        #expect(abs(c0 - 23e6) < 1e6, "c: \(c0 / 1e6) ms, expected 23")
    }

    // MARK: loss ratio window

    @Test func lossWindowSlidesBucketByBucket() {
        // 10 packets every 100 ms for 3 s; the first 1.5 s lose half of them, then nothing is lost.
        var window = LossWindow()
        var percentAt: [UInt64: Double?] = [:]
        for step in 0..<30 {
            let now = UInt64(step) * 100 * Self.ms
            window.record(expected: 10, lost: step < 15 ? 5 : 0, at: now)
            percentAt[now] = window.percent(at: now)
        }
        #expect(percentAt[0] == .some(nil), "10 packets are below the 20-sample minimum")
        #expect(percentAt[100 * Self.ms] == 50)
        #expect(percentAt[1400 * Self.ms] == 50)
        // 2 s window of 200 ms buckets: at 1.9 s the window is buckets 0…9 (all 20 steps): 75 of 200 lost.
        #expect(percentAt[1900 * Self.ms] == 37.5)
        // At 2.9 s it is buckets 5…14 (steps 10…29): 25 lost of 200.
        #expect(percentAt[2900 * Self.ms] == 12.5)
        // Read at 3.1 s without new records: buckets 6…14 (steps 12…29), 15 lost of 180.
        #expect(window.percent(at: 3100 * Self.ms) == Double(15) * 100 / 180)
        #expect(window.percent(at: 3500 * Self.ms) == 0, "buckets 8…17 hold steps 16…29 only")
        #expect(window.percent(at: 4900 * Self.ms) == nil, "everything expired")
    }

    @Test func engineLossRatioFollowsTheLinkAndForgetsIt() throws {
        var peer = try ScriptedPeer(uplinks: [a], seed: 7)
        peer.dataInterval = Self.ms
        peer.run(until: Self.second)
        #expect(peer.engine.statistics(for: a)?.lossPercent == 0)
        peer.lossPercent[a] = 12
        peer.run(until: 4 * Self.second)
        let lossy = try #require(peer.engine.statistics(for: a)?.lossPercent)
        #expect(lossy > 10 && lossy < 14, "measured \(lossy)% for 12%")
        peer.lossPercent[a] = 0
        let cleanAt = peer.now
        peer.run(until: cleanAt + Self.second)
        let half = try #require(peer.engine.statistics(for: a)?.lossPercent)
        #expect(half > 3 && half < 9, "half a window later: \(half)%")
        peer.run(until: cleanAt + 2300 * Self.ms)
        #expect(peer.engine.statistics(for: a)?.lossPercent == 0)
    }

    // MARK: delivery rate

    /// Cumulative feedback for one uplink as the receiver would send it every 20 ms: `rate(t)` bits/s
    /// delivered, reported on the receiver's clock, arriving after 10 ms plus up to `jitter`.
    private func feedDeliveries(_ engine: inout MultipathEngine<Int>, from start: UInt64, until end: UInt64,
                                bytesSoFar: inout UInt64, jitter: UInt64, rng: inout SplitMix64,
                                rate: (UInt64) -> UInt64) {
        var reportAt = start
        while reportAt + 20 * Self.ms <= end {
            reportAt += 20 * Self.ms
            bytesSoFar += rate(reportAt) / 8 / 50 // 20 ms worth
            let arrival = reportAt + 10 * Self.ms + (jitter == 0 ? 0 : rng.next() % (jitter + 1))
            let report = FeedbackReport(highestCounter: bytesSoFar / 1250, receivedPackets: bytesSoFar / 1250,
                                        receivedBytes: bytesSoFar, reportedAt: reportAt)
            engine.handle(.feedbackReceived(a, report, at: arrival))
        }
    }

    @Test(arguments: [UInt64(0), 15 * Nanoseconds.millisecond])
    func deliveryRateIsAWindowedMaximum(feedbackJitter: UInt64) throws {
        var engine = try MultipathEngine<Int>()
        try engine.addUplink(a, now: 0)
        #expect(engine.statistics(for: a)?.capacityBitsPerSecond == 10_000_000, "the configured initial capacity")
        var bytes: UInt64 = 0
        var rng = SplitMix64(seed: 3)
        func capacity() -> UInt64 { engine.statistics(for: a)?.capacityBitsPerSecond ?? 0 }
        // 20 Mbit/s for 3 s: measured exactly, on the receiver's clock, whatever the feedback's own jitter.
        feedDeliveries(&engine, from: 0, until: 3 * Self.second, bytesSoFar: &bytes, jitter: feedbackJitter, rng: &rng) { _ in 20_000_000 }
        #expect(capacity() == 20_000_000)
        // Down to 5 Mbit/s: the maximum holds for the 2 s window, then the lower rate shows.
        let dropAt = 3 * Self.second
        feedDeliveries(&engine, from: dropAt, until: dropAt + 1900 * Self.ms, bytesSoFar: &bytes, jitter: feedbackJitter,
                       rng: &rng) { _ in 5_000_000 }
        #expect(capacity() == 20_000_000, "still inside the window")
        feedDeliveries(&engine, from: dropAt + 1900 * Self.ms, until: dropAt + 2600 * Self.ms, bytesSoFar: &bytes,
                       jitter: feedbackJitter, rng: &rng) { _ in 5_000_000 }
        #expect(capacity() == 5_000_000, "the 20 Mbit/s samples expired")
        // Up to 40 Mbit/s: a higher rate counts as soon as one sample span (100 ms) has seen it.
        let riseAt = dropAt + 2600 * Self.ms
        feedDeliveries(&engine, from: riseAt, until: riseAt + 140 * Self.ms, bytesSoFar: &bytes, jitter: feedbackJitter,
                       rng: &rng) { _ in 40_000_000 }
        #expect(capacity() == 40_000_000)
    }
}
