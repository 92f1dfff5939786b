@testable import TriglavMultipath

/// One direction of a simulated link: a FIFO byte queue drained at `rate`, then propagation `delay` plus
/// uniform jitter (FIFO order kept, as on a real path), independent random loss, and blackhole outages
/// during which everything entering or arriving vanishes while the interface stays "up".
final class SimLink {
    struct Parameters {
        var rateBitsPerSecond: UInt64
        var delay: UInt64
        var jitter: UInt64 = 0
        var loss: Double = 0
        /// Queue limit as time at `rate` (so 100 ms means rate·100 ms bytes).
        var queueTime: UInt64 = 100 * Nanoseconds.millisecond
    }
    var parameters: Parameters
    private var busyUntil: UInt64 = 0
    private var departures: [(time: UInt64, bytes: Int)] = []
    private var departureHead = 0
    private var queuedBytes = 0
    private var lastArrival: UInt64 = 0
    var outages: [(start: UInt64, end: UInt64)] = []
    /// A window without random loss (benchmarks only); the random draw still happens, so the run stays the same
    /// seed's run everywhere else.
    var lossFree: (start: UInt64, end: UInt64)?
    private(set) var carriedPackets = 0
    private(set) var droppedQueueFull = 0

    init(_ parameters: Parameters) { self.parameters = parameters }

    /// Queueing delay a packet entering now would see (for traces).
    func queueDelay(at now: UInt64) -> UInt64 { busyUntil > now ? busyUntil - now : 0 }

    var queueLimitBytes: Int { Int(parameters.rateBitsPerSecond / 8 * parameters.queueTime / Nanoseconds.second) }

    func isBlackholed(at time: UInt64) -> Bool { outages.contains { time >= $0.start && time < $0.end } }

    /// Enqueues `bytes` at `now`; returns the arrival time, or nil if the packet is lost.
    func transmit(bytes: Int, now: UInt64, rng: inout SplitMix64) -> UInt64? {
        while departureHead < departures.count, departures[departureHead].time <= now {
            queuedBytes -= departures[departureHead].bytes
            departureHead += 1
        }
        if departureHead > 4096 { departures.removeFirst(departureHead); departureHead = 0 }
        if isBlackholed(at: now) { return nil }
        if queuedBytes + bytes > max(queueLimitBytes, 3000) {
            droppedQueueFull += 1
            return nil
        }
        let departure = max(now, busyUntil) + UInt64(bytes) * 8 * Nanoseconds.second / parameters.rateBitsPerSecond
        busyUntil = departure
        departures.append((departure, bytes))
        queuedBytes += bytes
        if parameters.loss > 0, rng.unit() < parameters.loss, !(lossFree.map { now >= $0.start && now < $0.end } ?? false) { return nil }
        let jitter = parameters.jitter > 0 ? rng.next() % parameters.jitter : 0
        let arrival = max(departure + parameters.delay + jitter, lastArrival)
        lastArrival = arrival
        carriedPackets += 1
        return arrival
    }
}
