/// Jacobson/Karels smoothed RTT and variance (RFC 6298 §2), RTT jitter (RFC 3550 §6.4.1 style mean
/// deviation of consecutive samples), windowed minimum, and a short-horizon trend. Integer nanoseconds.
struct RTTEstimator {
    private(set) var smoothed: UInt64 = 0
    private(set) var variance: UInt64 = 0
    private(set) var jitter: UInt64 = 0
    private(set) var latest: UInt64 = 0
    private(set) var sampleCount: UInt64 = 0
    private var minimum = WindowedFilter(keepsMaximum: false, window: Tuning.minRTTWindow)
    /// RTT change per second (ns/s), smoothed; positive means the queue is building.
    private(set) var slope: Int64 = 0
    private var lastSampleAt: UInt64 = 0

    var hasSample: Bool { sampleCount > 0 }
    var windowedMinimum: UInt64 { minimum.best ?? smoothed }

    mutating func add(sample rtt: UInt64, at now: UInt64) {
        let sample = max(rtt, 1)
        if sampleCount == 0 {
            smoothed = sample
            variance = sample / 2
        } else {
            let srtt = Int64(clamping: smoothed), s = Int64(clamping: sample)
            let deviation = (srtt - s).magnitude
            let rttvar = Int64(clamping: variance)
            variance = UInt64(rttvar + (Int64(clamping: deviation) - rttvar) >> Tuning.rttvarGainShift)
            smoothed = UInt64(srtt + (s - srtt) >> Tuning.srttGainShift)
            let step = Int64(clamping: (Int64(clamping: latest) - s).magnitude)
            let j = Int64(clamping: jitter)
            jitter = UInt64(max(0, j + (step - j) >> Tuning.jitterGainShift))
            if now > lastSampleAt {
                // Slope of this sample against the smoothed value, per second, smoothed with gain 1/4.
                let elapsed = Int64(clamping: now - lastSampleAt)
                let instant = (s - Int64(clamping: latest)).multipliedReportingOverflow(by: 1_000_000_000)
                if !instant.overflow {
                    let perSecond = instant.partialValue / max(elapsed, 1)
                    let bounded = max(-1_000_000_000, min(1_000_000_000, perSecond))
                    slope += (bounded - slope) >> 2
                }
            }
        }
        latest = sample
        lastSampleAt = now
        sampleCount &+= 1
        minimum.update(sample, at: now)
    }

    /// RTT expected `horizon` from now: SRTT moved along the trend, kept within [min RTT, SRTT + 4·RTTVAR].
    func predicted(horizon: UInt64) -> UInt64 {
        guard hasSample else { return 0 }
        let shift = Int64(clamping: horizon) / 1_000_000 * slope / 1000
        let raw = Int64(clamping: smoothed) + shift
        let low = Int64(clamping: windowedMinimum)
        let high = Int64(clamping: smoothed + 4 * variance)
        return UInt64(max(low, min(high, raw)))
    }
}

/// Kathleen Nichols' windowed min/max filter (as in BBR): the best value seen within `window`, kept with
/// three samples so that an expired best is replaced by the next-best without storing every sample.
struct WindowedFilter {
    private struct Sample { var value: UInt64; var time: UInt64 }
    private var samples: (Sample, Sample, Sample)? = nil
    let keepsMaximum: Bool
    var window: UInt64

    init(keepsMaximum: Bool, window: UInt64) {
        self.keepsMaximum = keepsMaximum
        self.window = window
    }

    var best: UInt64? { samples?.0.value }

    mutating func reset() { samples = nil }

    private func better(_ a: UInt64, than b: UInt64) -> Bool { keepsMaximum ? a >= b : a <= b }

    mutating func update(_ value: UInt64, at now: UInt64) {
        let fresh = Sample(value: value, time: now)
        guard var s = samples, !better(value, than: s.0.value), now &- s.2.time <= window else {
            samples = (fresh, fresh, fresh)
            return
        }
        if better(value, than: s.1.value) {
            s.1 = fresh
            s.2 = fresh
        } else if better(value, than: s.2.value) {
            s.2 = fresh
        }
        // Age out the best samples; the promoted ones carry their own timestamps.
        if now &- s.0.time > window {
            s.0 = s.1
            s.1 = s.2
            s.2 = fresh
            if now &- s.0.time > window {
                s.0 = s.1
                s.1 = s.2
            }
        } else if s.1.time == s.0.time && now &- s.1.time > window / 4 {
            s.1 = fresh
            s.2 = fresh
        } else if s.2.time == s.1.time && now &- s.0.time > window / 2 {
            s.2 = fresh
        }
        samples = s
    }
}

/// Loss ratio over a sliding window of fixed time buckets: fixed memory whatever the traffic.
struct LossWindow {
    private var expected = [UInt64](repeating: 0, count: Tuning.lossBuckets)
    private var lost = [UInt64](repeating: 0, count: Tuning.lossBuckets)
    private var currentBucket: UInt64 = 0

    private mutating func advance(to now: UInt64) {
        let bucket = now / Tuning.lossBucketLength
        if bucket <= currentBucket { return }
        let steps = min(bucket - currentBucket, UInt64(Tuning.lossBuckets))
        for step in 1...steps {
            let index = Int((currentBucket + step) % UInt64(Tuning.lossBuckets))
            expected[index] = 0
            lost[index] = 0
        }
        currentBucket = bucket
    }

    mutating func record(expected count: UInt64, lost lostCount: UInt64, at now: UInt64) {
        advance(to: now)
        let index = Int(currentBucket % UInt64(Tuning.lossBuckets))
        expected[index] &+= count
        lost[index] &+= min(lostCount, count)
    }

    /// Takes back up to `count` packets counted lost (newest buckets first): they arrived after all, late
    /// (reordered within the link). Returns how many were taken back; losses already out of the window stay.
    @discardableResult
    mutating func credit(_ count: UInt64, at now: UInt64) -> UInt64 {
        advance(to: now)
        var remaining = count
        for age in 0..<UInt64(Tuning.lossBuckets) where remaining > 0 && currentBucket >= age {
            let index = Int((currentBucket - age) % UInt64(Tuning.lossBuckets))
            let taken = min(remaining, lost[index])
            lost[index] -= taken
            remaining -= taken
        }
        return count - remaining
    }

    /// (lost, expected) within the window ending at `now`.
    func totals(at now: UInt64) -> (lost: UInt64, expected: UInt64) {
        let bucket = now / Tuning.lossBucketLength
        var e: UInt64 = 0, l: UInt64 = 0
        for age in 0..<UInt64(Tuning.lossBuckets) where bucket >= age {
            let b = bucket - age
            guard b <= currentBucket, currentBucket - b < UInt64(Tuning.lossBuckets) else { continue }
            let index = Int(b % UInt64(Tuning.lossBuckets))
            e &+= expected[index]
            l &+= lost[index]
        }
        return (l, e)
    }

    /// Loss percentage in the window, nil with fewer than `minimumSamples` expected packets.
    func percent(at now: UInt64, minimumSamples: UInt64 = 20) -> Double? {
        let (l, e) = totals(at: now)
        guard e >= minimumSamples else { return nil }
        return Double(l) * 100 / Double(e)
    }
}
