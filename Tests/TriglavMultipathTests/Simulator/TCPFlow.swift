@testable import TriglavMultipath

/// A Reno-style TCP sender and receiver over the simulated tunnel, close enough to the kernel that
/// reordering and loss hurt the way they do there: slow start, AIMD congestion avoidance, fast
/// retransmit after 3 duplicate ACKs with SACK-guided recovery (one hole per ACK, halved window),
/// and an RTO (SRTT + 4·RTTVAR, min 200 ms, exponential backoff) that falls back to slow start.
/// Segments are numbered 0, 1, 2, …; every segment is one full-size inner packet.
final class TCPFlow {
    let flowID: Int
    /// Segments to transfer (Int.max: unlimited, run by time).
    let totalSegments: Int
    /// Receive window cap in segments.
    let receiveWindow: Double = 4000
    /// Diagnostics: the sender never lets its window fall below this (0: plain Reno). Shows whether a
    /// sender with a big enough window (what CUBIC/BBR or several flows would have) gets the rate.
    var minimumWindow: Double = 0

    // Sender state.
    private(set) var sndUna = 0
    private(set) var sndNxt = 0
    private(set) var cwnd: Double = 10
    private(set) var ssthresh: Double = .greatestFiniteMagnitude
    private var dupAcks = 0
    private(set) var inRecovery = false
    /// The current recovery began with a retransmission timeout (not a fast retransmit).
    private var recoveringFromTimeout = false
    private var recover = 0
    private var holeCursor = 0
    private var sacked = Set<Int>()
    private var highestSacked = -1
    private var retransmittedInEpisode = Set<Int>()
    private var sendTimes: [UInt64] = []
    private var everRetransmitted: [Bool] = []
    private(set) var srtt: UInt64 = 0
    private var rttvar: UInt64 = 0
    private(set) var rto: UInt64 = Nanoseconds.second
    private var rtoGeneration = 0
    private(set) var retransmissions = 0
    private(set) var fastRetransmits = 0
    private(set) var timeouts = 0

    // Receiver state.
    private(set) var rcvNxt = 0
    private var outOfOrder = Set<Int>()
    /// Times at which in-order delivery advanced, with the new rcvNxt.
    private(set) var deliveries: [(time: UInt64, rcvNxt: Int)] = []
    private(set) var completedAt: UInt64?

    /// Hooks into the tunnel: send a segment (A→B) or an ACK (B→A).
    var sendSegment: (_ segment: Int) -> Void = { _ in }
    var sendAck: (_ ack: Int, _ sack: Int?) -> Void = { _, _ in }
    var setTimer: (_ delay: UInt64, _ fire: @escaping () -> Void) -> Void = { _, _ in }
    var clock: () -> UInt64 = { 0 }
    /// Congestion events (fast retransmit, timeout) for debugging traces.
    private(set) var congestionLog: [(time: UInt64, event: String)] = []

    init(flowID: Int, totalSegments: Int = Int.max) {
        self.flowID = flowID
        self.totalSegments = totalSegments
    }

    func start() { trySend() }

    /// Segments believed in the network (RFC 6675 "pipe", simplified): outstanding minus SACKed minus
    /// holes below the highest SACK (in recovery), plus retransmissions of this episode.
    private var flight: Double {
        let outstanding = sndNxt - sndUna
        guard inRecovery else { return Double(outstanding - sacked.count) }
        let lost = max(0, highestSacked + 1 - sndUna - sacked.count)
        return Double(outstanding - sacked.count - lost + retransmittedInEpisode.count)
    }

    private func transmit(_ segment: Int, retransmission: Bool) {
        let now = clock()
        if segment == sendTimes.count {
            sendTimes.append(now)
            everRetransmitted.append(false)
        } else if segment < sendTimes.count {
            sendTimes[segment] = now
            if retransmission { everRetransmitted[segment] = true }
        }
        if retransmission { retransmissions += 1 }
        sendSegment(segment)
    }

    private func trySend() {
        var budget = 10_000
        while budget > 0, flight < min(max(cwnd, minimumWindow), receiveWindow) {
            budget -= 1
            if inRecovery {
                while holeCursor <= highestSacked,
                      sacked.contains(holeCursor) || retransmittedInEpisode.contains(holeCursor) || holeCursor < sndUna {
                    holeCursor += 1
                }
                if holeCursor <= highestSacked {
                    retransmittedInEpisode.insert(holeCursor)
                    transmit(holeCursor, retransmission: true)
                    continue
                }
            }
            guard sndNxt < totalSegments else { break }
            let segment = sndNxt
            sndNxt += 1
            transmit(segment, retransmission: false)
        }
        if !timerArmed { armTimer() }
    }

    private var timerArmed = false

    /// (Re)starts the retransmission timer (RFC 6298 §5: on sending when it isn't running, and whenever
    /// new data is acknowledged; never merely because more duplicate ACKs arrived).
    private func armTimer() {
        rtoGeneration += 1
        timerArmed = false
        guard sndUna < sndNxt else { return }
        timerArmed = true
        let generation = rtoGeneration
        setTimer(rto) { [weak self] in
            guard let self, self.rtoGeneration == generation else { return }
            self.timerArmed = false
            self.onTimeout()
        }
    }

    private func onTimeout() {
        timeouts += 1
        congestionLog.append((clock(), "timeout una=\(sndUna) nxt=\(sndNxt)"))
        // As Linux (tcp_enter_loss): ssthresh is reduced only if it wasn't already inside this window,
        // so a timeout during fast recovery doesn't halve it a second time.
        if !(inRecovery && recover > sndUna) {
            ssthresh = max(Double(sndNxt - sndUna - sacked.count) / 2, 2)
        }
        cwnd = 1
        inRecovery = true
        recoveringFromTimeout = true
        recover = sndNxt
        holeCursor = sndUna
        highestSacked = sndNxt - 1
        retransmittedInEpisode.removeAll()
        rto = min(rto * 2, 60 * Nanoseconds.second)
        trySend()
    }

    /// Sender: an ACK arrived.
    func onAck(_ ack: Int, sack: Int?) {
        let now = clock()
        if let s = sack, s >= ack, s >= sndUna {
            if sacked.insert(s).inserted { highestSacked = max(highestSacked, s) }
            // A SACKed retransmission has left the network: it no longer counts in the pipe (RFC 6675 §4).
            retransmittedInEpisode.remove(s)
        }
        if ack > sndUna {
            let acked = ack - sndUna
            let last = ack - 1
            if last < sendTimes.count, !everRetransmitted[last], now >= sendTimes[last] {
                sampleRTT(now - sendTimes[last])
            }
            for segment in sndUna..<ack { sacked.remove(segment); retransmittedInEpisode.remove(segment) }
            sndUna = ack
            holeCursor = max(holeCursor, sndUna)
            dupAcks = 0
            armTimer()
            if inRecovery {
                if ack >= recover {
                    inRecovery = false
                    // Fast recovery ends with the window deflated to ssthresh (RFC 6582); recovery after a
                    // timeout ends where slow start has got to (Linux leaves CA_Loss without touching cwnd),
                    // not with a jump to ssthresh (a window-sized burst).
                    if !recoveringFromTimeout { cwnd = max(ssthresh, 2) }
                    recoveringFromTimeout = false
                    retransmittedInEpisode.removeAll()
                } else if cwnd < ssthresh {
                    slowStart(acked: acked) // after a timeout
                }
            } else if cwnd < ssthresh {
                slowStart(acked: acked)
            } else {
                cwnd += Double(acked) / cwnd
            }
            if sndUna >= totalSegments { rtoGeneration += 1; timerArmed = false }
        } else if ack == sndUna, sndNxt > sndUna, sack != nil {
            dupAcks += 1
            if !inRecovery && dupAcks >= 3 {
                fastRetransmits += 1
                congestionLog.append((now, "fast retransmit una=\(sndUna) nxt=\(sndNxt) sacked=\(sacked.sorted().prefix(5)) cwnd=\(Int(cwnd))"))
                ssthresh = max(Double(sndNxt - sndUna - sacked.count) / 2, 2)
                cwnd = ssthresh
                inRecovery = true
                recover = sndNxt
                holeCursor = sndUna + 1
                retransmittedInEpisode.removeAll()
                // Fast retransmit: the first hole goes out at once, whatever the pipe (RFC 5681 §3.2).
                retransmittedInEpisode.insert(sndUna)
                transmit(sndUna, retransmission: true)
            }
        }
        trySend()
    }

    /// RFC 3465 byte counting with L = 2 segments per ACK, and no further than ssthresh (as Linux's
    /// `tcp_slow_start`). Adding everything an ACK covers let one cumulative ACK after a timeout (the receiver
    /// had most of the window) open the window by hundreds of segments at once: a burst the path then drops.
    private func slowStart(acked: Int) {
        cwnd = min(cwnd + Double(min(acked, 2)), max(ssthresh, cwnd))
    }

    private func sampleRTT(_ sample: UInt64) {
        if srtt == 0 {
            srtt = sample
            rttvar = sample / 2
        } else {
            let deviation = srtt > sample ? srtt - sample : sample - srtt
            rttvar = (3 * rttvar + deviation) / 4
            srtt = (7 * srtt + sample) / 8
        }
        rto = max(200 * Nanoseconds.millisecond, srtt + 4 * rttvar)
    }

    /// Receiver: a segment came out of the tunnel.
    func onSegment(_ segment: Int) {
        let now = clock()
        var sack: Int?
        if segment == rcvNxt {
            rcvNxt += 1
            while outOfOrder.remove(rcvNxt) != nil { rcvNxt += 1 }
            deliveries.append((now, rcvNxt))
            if rcvNxt >= totalSegments && completedAt == nil { completedAt = now }
        } else if segment > rcvNxt {
            outOfOrder.insert(segment)
            sack = segment
        }
        sendAck(rcvNxt, sack)
    }

    /// Longest time without in-order progress between `start` and the completion (or `end`).
    func longestDeliveryGap(from start: UInt64, to end: UInt64) -> UInt64 {
        var previous = start
        var longest: UInt64 = 0
        for delivery in deliveries where delivery.time >= start && delivery.time <= end {
            longest = max(longest, delivery.time - previous)
            previous = delivery.time
        }
        let finish = completedAt.map { min($0, end) } ?? end
        if finish > previous { longest = max(longest, finish - previous) }
        return longest
    }

    /// Segments delivered in order by `time`.
    func delivered(by time: UInt64) -> Int {
        var low = 0, high = deliveries.count
        while low < high {
            let mid = (low + high) / 2
            if deliveries[mid].time <= time { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? 0 : deliveries[low - 1].rcvNxt
    }
}
