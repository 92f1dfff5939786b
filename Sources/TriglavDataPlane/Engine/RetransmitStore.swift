#if canImport(Glibc)
import Glibc
#endif
import TriglavCore
import TriglavMultipath
import TriglavProtocol

/// Copies of recently sent inner packets by tunnel sequence, so the multipath engine's `resend` duties (packets
/// that were in flight on an uplink that just died, or that the peer asked for with a resend request) can be sent
/// again on another uplink. Fixed memory: `capacity` slots, the newest packet overwrites the one `capacity`
/// sequences older. Not thread-safe: used under the owning tunnel's lock.
///
/// It also answers the peer's resend requests (`answer`), within a budget: at most one resend per
/// `ResendBudget.sentPerResend` packets sent, plus a burst of `ResendBudget.burst`, so a peer can't make us
/// resend without bound; what it asks for beyond that, or for sequences we no longer hold (or never sent), is
/// declined at the cost of one store lookup each.
final class RetransmitStore {
    let capacity: Int
    let slotSize: Int
    private let storage: UnsafeMutableRawPointer
    private var sequences: [UInt32]
    private var lengths: [Int]
    /// The uplink (raw ID) the packet was first sent on, `noUplink` when unknown: a resend avoids it.
    private var uplinks: [UInt32]
    private static let noUplink = UInt32.max
    /// Whether the packet's uplink had a long queue when it was sent: its loss was then most likely a tail drop,
    /// a congestion signal the inner TCP must see, so a request for it is declined (see `QueueCongestion`).
    private var sentIntoQueue: [Bool]
    /// Uplinks (raw IDs) whose queue the probes last found long (`noteQueue`); a handful, scanned per store.
    private var congestedUplinks: [UInt32] = []
    /// Budget for the peer's resend requests (see `answer`).
    private var budget = ResendBudget()
    /// The peer has asked for a resend at least once: it runs with resend requests on, so a `resend` duty we can't
    /// carry out is answered with a resend-declined frame (its reorder buffer then stops waiting at once).
    private(set) var peerRequestsResends = false
    /// Counters of the peer's requests: sequences asked for, handed to the engine to resend, declined.
    private(set) var requestedSequences: UInt64 = 0
    private(set) var acceptedSequences: UInt64 = 0
    private(set) var declinedSequences: UInt64 = 0
    /// Of those declined, the sequences sent into a long queue (congestion losses left to the inner TCP).
    private(set) var congestionDeclinedSequences: UInt64 = 0
    /// The peer's requests as the statistics report them.
    var requestedResends: RequestedResendCounters {
        RequestedResendCounters(accepted: acceptedSequences, declined: declinedSequences)
    }

    init(capacity: Int, slotSize: Int = TunnelMTU.largestDatagram) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "retransmit store capacity must be a power of two")
        self.capacity = capacity
        self.slotSize = slotSize
        storage = .allocate(byteCount: capacity * slotSize, alignment: 16)
        sequences = Array(repeating: 0, count: capacity)
        lengths = Array(repeating: 0, count: capacity)
        uplinks = Array(repeating: Self.noUplink, count: capacity)
        sentIntoQueue = Array(repeating: false, count: capacity)
        congestedUplinks.reserveCapacity(16)
    }

    deinit { storage.deallocate() }

    func store(sequence: UInt32, packet: UnsafeRawBufferPointer, sentOn uplink: UplinkID? = nil) {
        let index = Int(sequence) & (capacity - 1)
        guard packet.count <= slotSize else { lengths[index] = 0; return }
        UnsafeMutableRawBufferPointer(start: storage + index * slotSize, count: packet.count).copyMemory(from: packet)
        sequences[index] = sequence
        lengths[index] = packet.count
        uplinks[index] = uplink?.rawValue ?? Self.noUplink
        sentIntoQueue[index] = uplink.map { congestedUplinks.contains($0.rawValue) } ?? false
    }

    /// Records whether `uplink`'s queue is long now (`QueueCongestion.isCongested` of its statistics; nil: unknown
    /// uplink, not congested). Called when a probe reply updated its RTT, not per packet.
    func noteQueue(of uplink: UplinkID, statistics: TriglavMultipath.UplinkStatistics?) {
        let congested = statistics.map(QueueCongestion.isCongested) ?? false
        if let position = congestedUplinks.firstIndex(of: uplink.rawValue) {
            if !congested { congestedUplinks.remove(at: position) }
        } else if congested {
            congestedUplinks.append(uplink.rawValue)
        }
    }

    /// Whether the packet with `sequence` (held here) was sent while its uplink's queue was long.
    func wasSentIntoQueue(sequence: UInt32) -> Bool {
        let index = Int(sequence) & (capacity - 1)
        return lengths[index] > 0 && sequences[index] == sequence && sentIntoQueue[index]
    }

    /// The packet sent with `sequence`, nil when it was overwritten (or never stored).
    func packet(sequence: UInt32) -> UnsafeRawBufferPointer? {
        let index = Int(sequence) & (capacity - 1)
        guard lengths[index] > 0, sequences[index] == sequence else { return nil }
        return UnsafeRawBufferPointer(start: storage + index * slotSize, count: lengths[index])
    }

    /// The uplink the packet with `sequence` was first sent on (nil: not held, or not recorded).
    func uplink(sequence: UInt32) -> UplinkID? {
        let index = Int(sequence) & (capacity - 1)
        guard lengths[index] > 0, sequences[index] == sequence, uplinks[index] != Self.noUplink else { return nil }
        return UplinkID(uplinks[index])
    }

    /// Splits the peer's request for `run` into the sequences to resend — held here, sent while their uplink's queue
    /// was short (random loss: worth hiding from the inner TCP), within the budget — and those to decline (a packet
    /// sent into a long queue was most likely a tail drop: congestion the inner TCP must see, and its resend would
    /// only join a full queue and stall in-order delivery behind it), in runs: `resend(first, count)` for each run to hand to the engine (`resendRequested`),
    /// `decline(first, count)` for each run to answer with a resend-declined frame, at most
    /// `maxDeclinedRunsPerRequest` of them (a request whose holes alternate would otherwise cost a frame per
    /// sequence; the peer skips the rest after its wait). `transmitSequence` is the next sequence we will send: the
    /// budget grows with what was sent since the last request. Counts beyond `ProtocolConstants.maxResendRun` are
    /// clamped (the frame parser refuses them already). No allocation.
    func answer(_ run: ResendRun, transmitSequence: UInt32,
                resend: (_ first: UInt32, _ count: UInt32) -> Void, decline: (_ first: UInt32, _ count: UInt32) -> Void) {
        peerRequestsResends = true
        budget.earn(transmitSequence: transmitSequence)
        let count = min(max(run.count, 1), ProtocolConstants.maxResendRun)
        requestedSequences &+= UInt64(count)
        var runStart = run.firstSequence
        var runLength: UInt32 = 0
        var runHeld = false
        var declinedRuns = 0
        func flush() {
            guard runLength > 0 else { return }
            if runHeld {
                acceptedSequences &+= UInt64(runLength)
                resend(runStart, runLength)
            } else {
                declinedSequences &+= UInt64(runLength)
                if declinedRuns < Self.maxDeclinedRunsPerRequest { decline(runStart, runLength) }
                declinedRuns += 1
            }
        }
        var sequence = run.firstSequence
        for _ in 0..<count {
            // Only sequences sent within the last `capacity` can be here; anything else costs no lookup.
            let age = transmitSequence &- sequence
            var held = age >= 1 && age <= UInt32(capacity) && packet(sequence: sequence) != nil
            if held && sentIntoQueue[Int(sequence) & (capacity - 1)] {
                held = false
                congestionDeclinedSequences &+= 1
            }
            held = held && budget.spend()
            if runLength > 0 && held != runHeld {
                flush()
                runStart = sequence
                runLength = 0
            }
            runHeld = held
            runLength += 1
            sequence &+= 1
        }
        flush()
    }

    /// Resend-declined frames one request may cost at most.
    static let maxDeclinedRunsPerRequest = 4
}

/// When an uplink's queue counts as long (congested) for resend answers: the queueing delay the probes see (the
/// predicted RTT above the 10 s minimum, as the engine's own queue estimate) exceeds max(10 ms, ½ minimum RTT).
/// Why: a tail drop needs a full buffer, and the lab's (and many modems') buffers hold ~100 ms, so a queue past half
/// the propagation RTT is well on its way there; jitter alone (±5–10 ms on the lab's wifi/LTE, smoothed) stays
/// below both bounds, and random loss on an idle or lightly loaded link keeps being repaired. The 10 ms floor keeps
/// a short link (5 ms ethernet) from counting its own jitter as a queue.
enum QueueCongestion {
    static let minimumQueueDelay: UInt64 = 10 * TriglavMultipath.Nanoseconds.millisecond

    static func isCongested(_ statistics: TriglavMultipath.UplinkStatistics) -> Bool {
        guard statistics.minimumRTT > 0, statistics.predictedRTT > statistics.minimumRTT else { return false }
        return statistics.predictedRTT - statistics.minimumRTT > max(minimumQueueDelay, statistics.minimumRTT / 2)
    }
}

/// How many requested resends a peer may have: one per `sentPerResend` packets sent to it, at most `burst` saved
/// up. With 1 % loss on the lossiest uplink a peer asks for about one packet in a hundred; 25 % leaves room for a
/// burst of losses (a dying link) and still bounds what a misbehaving peer can make us send to an extra quarter.
struct ResendBudget {
    static let sentPerResend: UInt32 = 4
    static let burst: UInt32 = 512
    private(set) var credit: UInt32 = ResendBudget.burst
    private var creditedThrough: UInt32?

    /// Adds the credit earned by the packets sent since the last call (`transmitSequence` is the next to send).
    mutating func earn(transmitSequence: UInt32) {
        guard let last = creditedThrough else { creditedThrough = transmitSequence; return }
        let earned = (transmitSequence &- last) / Self.sentPerResend
        creditedThrough = last &+ earned &* Self.sentPerResend
        credit = UInt32(min(UInt64(Self.burst), UInt64(credit) + UInt64(earned)))
    }

    /// Takes one resend from the credit; false when none is left.
    mutating func spend() -> Bool {
        guard credit > 0 else { return false }
        credit -= 1
        return true
    }
}

/// Whether receivers ask for resends (`MultipathConfiguration.requestsResends` in the data plane's defaults).
/// On unless the environment variable `TRIGLAV_RESEND_REQUESTS` is `0`: loss-based TCP (CUBIC, Reno) over a lossy
/// uplink reaches 4–8× the rate with repair, BBR about the same (docs/DATAPLANE.md "Resend requests"). Both sides
/// answer requests whatever it says.
enum ResendRequestSwitch {
    static let environmentVariable = "TRIGLAV_RESEND_REQUESTS"

    static var enabledByEnvironment: Bool { EnvironmentSwitch.isOn(environmentVariable) }
}

/// Consecutive sequences the network pump could not resend (gone from the store, or no uplink took them), gathered
/// into runs so a burst costs one resend-declined frame, not one per sequence.
struct DeclineAccumulator {
    private(set) var pending: ResendRun?

    /// Adds `sequence`; returns a run to send now when `sequence` doesn't extend the pending one (or it is full).
    mutating func add(_ sequence: UInt32) -> ResendRun? {
        if var run = pending, run.firstSequence &+ run.count == sequence, run.count < ProtocolConstants.maxResendRun {
            run.count += 1
            pending = run
            return nil
        }
        let finished = pending
        pending = ResendRun(firstSequence: sequence, count: 1)
        return finished
    }

    /// The pending run, if any, to send now.
    mutating func take() -> ResendRun? {
        defer { pending = nil }
        return pending
    }
}

/// What resend repair did on one side of a tunnel, for the pumps' periodic log line: the resend requests this
/// side's reorder buffer sent and the sequences it skipped (lost for good), and the sequences the peer asked for,
/// those handed to the engine to resend and those declined; `resent` counts every resend (failover ones too).
struct ResendRepairCounters: Equatable, CustomStringConvertible {
    var requestsSent: UInt64 = 0
    var skippedSequences: UInt64 = 0
    /// Packets that arrived after their gap had been skipped (delivered out of order: the inner TCP saw a hole first).
    var deliveredLate: UInt64 = 0
    var peerRequested: UInt64 = 0
    var peerAccepted: UInt64 = 0
    var peerDeclined: UInt64 = 0
    var peerDeclinedCongestion: UInt64 = 0
    var resent: UInt64 = 0

    init() {}

    init(reorder: ReorderStatistics, store: RetransmitStore, resent: UInt64) {
        requestsSent = reorder.resendRequests
        skippedSequences = reorder.skippedSequences
        deliveredLate = reorder.deliveredLate
        peerRequested = store.requestedSequences
        peerAccepted = store.acceptedSequences
        peerDeclined = store.declinedSequences
        peerDeclinedCongestion = store.congestionDeclinedSequences
        self.resent = resent
    }

    var description: String {
        "sent \(requestsSent) requests, skipped \(skippedSequences) sequences (\(deliveredLate) arrived late); the peer asked for \(peerRequested) "
            + "sequences, \(peerAccepted) taken, \(peerDeclined) declined "
            + "(\(peerDeclinedCongestion) sent into a long queue); \(resent) packets resent in all"
    }
}
