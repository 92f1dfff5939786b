/// Jacobson/Karels smoothed RTT (RFC 6298 gains), in nanoseconds.
struct SmoothedRTT {
    private(set) var smoothed: UInt64?
    private(set) var variance: UInt64 = 0

    mutating func add(_ sample: UInt64) {
        guard let current = smoothed else {
            smoothed = sample
            variance = sample / 2
            return
        }
        let difference = current > sample ? current - sample : sample - current
        variance = (3 * variance + difference) / 4
        smoothed = (7 * current + sample) / 8
    }
}
