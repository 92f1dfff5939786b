import TriglavCore
@testable import TriglavMultipath

/// Drives one engine against a scripted peer on a virtual clock, through the public API only: the peer
/// answers probes, counts the data packets that reach it and returns cumulative feedback every
/// `feedbackInterval`, like a real receiving engine. Each uplink's round trip, extra jitter, random loss
/// and blackhole can be changed between `run` calls.
///
/// Jitter delays each packet by a random extra amount but keeps each direction in order (a FIFO).
/// Loss and blackholes: a probe round trip or a data packet is lost with `lossPercent` (seeded RNG, so
/// every run is reproducible); anything sent while the uplink is blackholed, or still on the way when
/// it becomes blackholed, vanishes — probes, replies, data and feedback alike.
///
/// `dataInterval` (nil = idle): one data packet every so often on each uplink that may carry data
/// (`ready` or `degraded`), reported straight to the engine with `packetSent`. The scheduler is left out
/// on purpose: its queue model would mark links congested, which these tests don't want to depend on.
struct ScriptedPeer {
    struct Transition: Equatable {
        var at: UInt64
        var uplink: UplinkID
        var from: UplinkState
        var to: UplinkState
        /// The uplink's loss percentage at that instant (nil: too few samples).
        var lossPercent: Double?
    }

    private enum InFlight {
        case probeReply(UplinkID, probeID: UInt32)
        case data(UplinkID, counter: UInt64, bytes: Int)
        case feedback(UplinkID, FeedbackReport)

        var uplink: UplinkID {
            switch self {
            case .probeReply(let id, _), .data(let id, _, _), .feedback(let id, _): id
            }
        }
    }

    private struct Received {
        var packets: UInt64 = 0
        var bytes: UInt64 = 0
        var highestCounter: UInt64 = 0
        var packetsReported: UInt64 = 0
        var lastFeedbackAt: UInt64 = 0
    }

    static let ms = Nanoseconds.millisecond

    var engine: MultipathEngine<Int>
    var now: UInt64 = 0
    var roundTrip: [UplinkID: UInt64] = [:]
    /// Extra delay per packet, uniform in [0, jitter], added to each direction separately.
    var jitter: [UplinkID: UInt64] = [:]
    var lossPercent: [UplinkID: Double] = [:]
    var blackholed: Set<UplinkID> = []
    /// false: jitter may reorder packets within one uplink (as a path with per-packet load balancing).
    var keepsOrder = true
    var dataInterval: UInt64?
    var dataBytes = 1200
    var feedbackInterval: UInt64 = 20 * Nanoseconds.millisecond

    private(set) var transitions: [Transition] = []
    private(set) var probesSent: [UplinkID: Int] = [:]
    private(set) var dataSent: [UplinkID: Int] = [:]
    /// Every RTT sample the engine could take: reply time minus probe time, in reply order.
    private(set) var rttSamples: [UplinkID: [UInt64]] = [:]

    private var rng: SplitMix64
    private var inFlight: [(at: UInt64, item: InFlight)] = []
    private var probeSentAt: [UInt32: UInt64] = [:]
    private var received: [UplinkID: Received] = [:]
    private var nextCounter: UInt64 = 1
    private var nextSequence: UInt32 = 1
    private var lastArrival: [UInt32: UInt64] = [:]

    init(configuration: MultipathConfiguration = MultipathConfiguration(), uplinks: [UplinkID], seed: UInt64 = 1) throws {
        engine = try MultipathEngine(configuration: configuration)
        rng = SplitMix64(seed: seed)
        for id in uplinks { try engine.addUplink(id, now: 0) }
    }

    func state(_ id: UplinkID) -> UplinkState? { engine.statistics(for: id)?.state }

    func transitions(of id: UplinkID) -> [Transition] { transitions.filter { $0.uplink == id } }

    /// The first transition of `id` into `state` at or after `since`.
    func firstEntry(of id: UplinkID, into state: UplinkState, since: UInt64 = 0) -> Transition? {
        transitions.first { $0.uplink == id && $0.to == state && $0.at >= since }
    }

    private mutating func oneWayDelay(_ id: UplinkID) -> UInt64 {
        let base = (roundTrip[id] ?? 20 * Self.ms) / 2
        let spread = jitter[id] ?? 0
        return base + (spread == 0 ? 0 : rng.next() % (spread + 1))
    }

    /// Arrival of something leaving at `departure` in one direction of `id`. Each direction is a FIFO
    /// (a queue, as real links are): jitter delays packets but never reorders them.
    private mutating func arrival(_ id: UplinkID, towardPeer: Bool, departure: UInt64) -> UInt64 {
        let earliest = departure + oneWayDelay(id)
        let key = towardPeer ? id.rawValue : id.rawValue | 0x8000_0000
        let at = keepsOrder ? max(earliest, lastArrival[key] ?? 0) : earliest
        lastArrival[key] = at
        return at
    }

    private mutating func survives(_ id: UplinkID) -> Bool {
        if blackholed.contains(id) { return false }
        let percent = lossPercent[id] ?? 0
        return percent == 0 || rng.unit() * 100 >= percent
    }

    /// Advances the clock to `end` in steps of `step`, doing everything that falls due on the way.
    mutating func run(until end: UInt64, step: UInt64 = Nanoseconds.millisecond) {
        while now < end {
            now = min(end, now + step)
            deliverArrivals()
            sendFeedback()
            sendData()
            performDuties()
        }
    }

    private mutating func deliverArrivals() {
        guard inFlight.contains(where: { $0.at <= now }) else { return }
        let due = inFlight.filter { $0.at <= now }.sorted { $0.at < $1.at }
        inFlight.removeAll { $0.at <= now }
        for arrival in due where !blackholed.contains(arrival.item.uplink) {
            switch arrival.item {
            case .probeReply(let id, let probeID):
                if let sentAt = probeSentAt.removeValue(forKey: probeID) { rttSamples[id, default: []].append(now - sentAt) }
                engine.handle(.probeReplied(id, probeID: probeID, at: now))
            case .data(let id, let counter, let bytes):
                received[id, default: Received()].packets += 1
                received[id, default: Received()].bytes += UInt64(bytes)
                received[id, default: Received()].highestCounter = max(received[id]?.highestCounter ?? 0, counter)
            case .feedback(let id, let report):
                engine.handle(.feedbackReceived(id, report, at: now))
            }
        }
    }

    private mutating func sendFeedback() {
        for id in received.keys.sorted() {
            guard var counts = received[id], counts.packets > counts.packetsReported,
                  now >= counts.lastFeedbackAt + feedbackInterval else { continue }
            counts.packetsReported = counts.packets
            counts.lastFeedbackAt = now
            received[id] = counts
            let report = FeedbackReport(highestCounter: counts.highestCounter, receivedPackets: counts.packets,
                                        receivedBytes: counts.bytes, reportedAt: now)
            if !blackholed.contains(id) { inFlight.append((arrival(id, towardPeer: false, departure: now), .feedback(id, report))) }
        }
    }

    private mutating func sendData() {
        guard let interval = dataInterval, now % interval == 0 else { return }
        for id in engine.uplinkIDs where state(id)?.carriesData == true {
            let counter = nextCounter
            nextCounter += 1
            engine.handle(.packetSent(id, counter: counter, sequence: nextSequence, bytes: dataBytes, at: now))
            nextSequence &+= 1
            dataSent[id, default: 0] += 1
            if survives(id) {
                inFlight.append((arrival(id, towardPeer: true, departure: now), .data(id, counter: counter, bytes: dataBytes)))
            }
        }
    }

    private mutating func performDuties() {
        while let duty = engine.nextDuty(now: now) {
            switch duty {
            case .sendProbe(let id, let probeID, _):
                probesSent[id, default: 0] += 1
                if survives(id) {
                    probeSentAt[probeID] = now
                    let atPeer = arrival(id, towardPeer: true, departure: now)
                    inFlight.append((arrival(id, towardPeer: false, departure: atPeer), .probeReply(id, probeID: probeID)))
                }
            case .stateChanged(let id, let from, let to):
                transitions.append(Transition(at: now, uplink: id, from: from, to: to,
                                              lossPercent: engine.statistics(for: id)?.lossPercent))
            default:
                break
            }
        }
    }
}
