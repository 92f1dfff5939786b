import Testing
import TriglavCore
@testable import TriglavMultipath

/// Blackhole detection on an uplink whose other direction carries a download (issue 5): our probe replies and the
/// peer's feedback come back behind the download in the link's full buffer — late, and thinned out by its tail
/// drops — while the download itself keeps arriving. That is a busy link, not a dead one; a link on which nothing
/// arrives any more, or whose peer stops sending because our direction died, is still found (issue 4's bounds).
@Suite struct LateFeedbackTests {
    static let ms = Nanoseconds.millisecond

    static func milliseconds(_ time: UInt64, after origin: UInt64) -> Int64 {
        (Int64(clamping: time) - Int64(clamping: origin)) / Int64(ms)
    }

    /// One uplink (20 ms round trip) seen from a client that downloads over it and sends its ACKs on it (every
    /// 2 ms), against a scripted peer: it answers probes, reports what reached it every 20 ms like a receiving
    /// engine, and sends a data packet every millisecond while `peerSendsData`. Once `download(from:)` starts, the
    /// peer's direction holds `reverseQueue` in its buffer (reached over 100 ms) and drops `reverseDropPercent` of
    /// our probe replies and feedback reports; its data arrives behind the same queue. Both directions are FIFOs.
    struct Download {
        enum Item {
            case probeReply(UInt32), feedback(FeedbackReport), data(UInt32)  // towards us
            case probe(UInt32), ack(UInt64)                                    // towards the peer
        }

        var engine: MultipathEngine<Int>
        let uplink = UplinkID(1)
        var now: UInt64 = 0
        let oneWayDelay = 10 * LateFeedbackTests.ms
        var reverseQueue = 120 * LateFeedbackTests.ms
        var reverseDropPercent = 50.0
        var downloadStart: UInt64?
        var peerSendsData = false
        var sendsAcks = false
        /// Losses of the peer's feedback and probe replies besides those of a download's full buffer.
        var feedbackLost = false
        var probeReplyLossPercent = 0.0
        /// Our direction drops everything from this time on (the peer's does from `reverseDeadAt`).
        var forwardDeadAt = UInt64.max
        var reverseDeadAt = UInt64.max
        private(set) var downAt: UInt64?

        private var rng: SplitMix64
        private var inFlight: [(at: UInt64, item: Item)] = []
        private var lastArrivalTowardsUs: UInt64 = 0
        private var nextCounter: UInt64 = 1
        private var peerReceived: UInt64 = 0, peerBytes: UInt64 = 0, peerHighest: UInt64 = 0
        private var peerReported: UInt64 = 0, peerLastReport: UInt64 = 0
        private var peerSequence: UInt32 = 1

        init(seed: UInt64 = 5) throws {
            rng = SplitMix64(seed: seed)
            engine = try MultipathEngine(configuration: MultipathConfiguration())
            try engine.addUplink(uplink, now: 0)
        }

        mutating func download(from start: UInt64) {
            downloadStart = start
            peerSendsData = true
            sendsAcks = true
        }

        /// The peer's buffer at `time`: empty before the download, filling over its first 100 ms, then full.
        private func queue(at time: UInt64) -> UInt64 {
            guard let start = downloadStart, time > start else { return 0 }
            return min(reverseQueue, reverseQueue * (time - start) / (100 * LateFeedbackTests.ms))
        }

        private mutating func sendTowardsUs(_ item: Item, droppable: Bool) {
            guard now < reverseDeadAt else { return }
            if droppable, downloadStart.map({ now > $0 }) == true, rng.unit() * 100 < reverseDropPercent { return }
            switch item {
            case .feedback where feedbackLost: return
            case .probeReply where probeReplyLossPercent > 0 && rng.unit() * 100 < probeReplyLossPercent: return
            default: break
            }
            let at = max(now + oneWayDelay + queue(at: now), lastArrivalTowardsUs)
            lastArrivalTowardsUs = at
            inFlight.append((at, item))
        }

        private mutating func sendTowardsPeer(_ item: Item) {
            guard now < forwardDeadAt else { return }
            inFlight.append((now + oneWayDelay, item))
        }

        /// Cuts both directions now and expects the link down within `bound` (checked over 2 s).
        mutating func blackholeBothWays(expectDownWithin bound: UInt64) throws {
            let cutAt = now
            forwardDeadAt = cutAt
            reverseDeadAt = cutAt
            run(until: cutAt + 2 * Nanoseconds.second)
            let downAt = try #require(downAt)
            #expect(downAt > cutAt && downAt - cutAt <= bound,
                    "down \(LateFeedbackTests.milliseconds(downAt, after: cutAt)) ms after the blackhole")
        }

        mutating func run(until end: UInt64) {
            while now < end {
                now += LateFeedbackTests.ms
                let due = inFlight.filter { $0.at <= now }.sorted { $0.at < $1.at }
                inFlight.removeAll { $0.at <= now }
                for arrival in due {
                    switch arrival.item {
                    case .probeReply(let id): engine.handle(.probeReplied(uplink, probeID: id, at: now))
                    case .feedback(let report): engine.handle(.feedbackReceived(uplink, report, at: now))
                    case .data(let sequence):
                        _ = engine.receive(0, sequence: sequence, uplink: uplink, counter: UInt64(sequence), bytes: 1400,
                                           now: now, ordered: false)
                        while engine.nextDelivery(now: now) != nil {}
                    case .probe(let id): sendTowardsUs(.probeReply(id), droppable: true)
                    case .ack(let counter):
                        peerReceived += 1
                        peerBytes += 100
                        peerHighest = max(peerHighest, counter)
                    }
                }
                if peerReceived > peerReported, now >= peerLastReport + 20 * LateFeedbackTests.ms {
                    peerReported = peerReceived
                    peerLastReport = now
                    sendTowardsUs(.feedback(FeedbackReport(highestCounter: peerHighest, receivedPackets: peerReceived,
                                                           receivedBytes: peerBytes, reportedAt: now)), droppable: true)
                }
                if peerSendsData {
                    sendTowardsUs(.data(peerSequence), droppable: false)
                    peerSequence &+= 1
                }
                if sendsAcks, now % (2 * LateFeedbackTests.ms) == 0,
                   engine.statistics(for: uplink)?.state.carriesData == true {
                    let counter = nextCounter
                    nextCounter += 1
                    engine.handle(.packetSent(uplink, counter: counter, sequence: UInt32(truncatingIfNeeded: counter),
                                              bytes: 100, at: now))
                    sendTowardsPeer(.ack(counter))
                }
                while let duty = engine.nextDuty(now: now) {
                    switch duty {
                    case .sendProbe(_, let id, _): sendTowardsPeer(.probe(id))
                    case .stateChanged(_, _, let to) where to == .down && downAt == nil: downAt = now
                    default: break
                    }
                }
            }
        }
    }

    /// A ready link, then a download that keeps 120 ms in the peer's buffer and drops half our confirmations
    /// (the reply to a probe takes 140 ms, above the 100 ms loss deadline): not down, in five seeds' worth of time.
    @Test func feedbackLateBehindADownloadIsNotABlackhole() throws {
        var link = try Download()
        link.run(until: 2 * Nanoseconds.second)
        #expect(link.engine.statistics(for: link.uplink)?.state == .ready)
        link.download(from: link.now)
        link.run(until: 12 * Nanoseconds.second)
        #expect(link.downAt == nil, "down \(Self.milliseconds(link.downAt ?? 0, after: 2 * Nanoseconds.second)) ms into the download")
    }

    /// The same download, then a blackhole both ways. The arrivals stop once the packets queued before it have
    /// arrived (130 ms), so the rule for any link applies: down within the loss deadline after the last
    /// confirmation, at most a round trip (here 140 ms under the load) plus 250 ms, as for any slow link
    /// (`UplinkStateMachineTests.linkSlowerThanTheLossDeadlineBecomesReady`).
    @Test func blackholeDuringADownloadIsStillFound() throws {
        var link = try Download()
        link.run(until: 2 * Nanoseconds.second)
        link.download(from: link.now)
        link.run(until: 4 * Nanoseconds.second)
        #expect(link.downAt == nil)
        try link.blackholeBothWays(expectDownWithin: (140 + 250) * Self.ms)
    }

    /// A few packets sent before a pause whose feedback is lost (it was tail-dropped behind a download) leave the
    /// link idle, not under traffic, once a later probe has been answered: its heartbeats at 20 % loss make it
    /// degraded at worst, never down (the rule for traffic, one loss deadline without a reply, would take it
    /// down whenever two replies in a row are lost).
    @Test(arguments: [1, 2, 3] as [UInt64])
    func packetsWhoseFeedbackWasLostDoNotKeepAPausedLinkUnderTraffic(seed: UInt64) throws {
        var link = try Download(seed: seed)
        link.run(until: 2 * Nanoseconds.second)
        link.feedbackLost = true
        link.sendsAcks = true
        link.run(until: link.now + 10 * Self.ms)
        link.sendsAcks = false
        link.run(until: link.now + 100 * Self.ms)
        link.feedbackLost = false
        link.probeReplyLossPercent = 20
        link.run(until: 32 * Nanoseconds.second)
        #expect(link.downAt == nil, "down \(Self.milliseconds(link.downAt ?? 0, after: 2 * Nanoseconds.second)) ms after the pause began")
        // Still found when it really is blackholed, within the idle bound.
        try link.blackholeBothWays(expectDownWithin: Nanoseconds.second)
    }

    /// Only our direction dies: the peer's data keeps coming until the peer notices that our feedback stopped
    /// (its own loss deadline, at most 250 ms), then the link is down within a loss deadline of the last arrival.
    /// A peer that never stops (it can't happen with a Triglav peer) still can't keep the link up past the bound.
    @Test(arguments: [250 as UInt64, .max])
    func deadForwardDirectionIsFoundOnceThePeerStopsSending(peerNoticesAfterMs: UInt64) throws {
        var link = try Download()
        link.run(until: 2 * Nanoseconds.second)
        link.download(from: link.now)
        link.run(until: 4 * Nanoseconds.second)
        #expect(link.downAt == nil)
        let cutAt = link.now
        link.forwardDeadAt = cutAt
        if peerNoticesAfterMs != .max {
            link.run(until: cutAt + peerNoticesAfterMs * Self.ms)
            link.peerSendsData = false
        }
        link.run(until: cutAt + 3 * Nanoseconds.second)
        let downAt = try #require(link.downAt)
        // The peer's notice + its queued data (130 ms) + the gap that ends the flow (40 ms); a peer that never stops:
        // the loss deadline after the last confirmation (about 160 + 265 ms here) + 1 s.
        let bound = peerNoticesAfterMs == .max ? 1_500 * Self.ms : (peerNoticesAfterMs + 130 + 40 + 10) * Self.ms
        #expect(downAt > cutAt && downAt - cutAt <= bound, "down \(Self.milliseconds(downAt, after: cutAt)) ms after our direction died")
    }
}
