import Testing
import TriglavCore
import TriglavProtocol
@testable import TriglavMultipath
@testable import TriglavDataPlane

/// How a tunnel side answers the peer's resend requests (`RetransmitStore.answer`): what it still holds goes to the
/// engine to resend, within `ResendBudget`; the rest is declined in few frames; absurd requests cost nothing else.
@Suite("resend answers")
struct ResendAnswerTests {
    struct Answer: Equatable {
        var resend: [ResendRun] = []
        var declined: [ResendRun] = []
    }

    /// A store of `capacity` that sent sequences `0..<sent` (packet i holds byte i), on uplink 1 for even, 2 for odd.
    static func store(capacity: Int = 64, sent: UInt32) -> RetransmitStore {
        let store = RetransmitStore(capacity: capacity, slotSize: 64)
        for sequence in 0..<sent {
            let packet = [UInt8](repeating: UInt8(truncatingIfNeeded: sequence), count: 20)
            packet.withUnsafeBytes { store.store(sequence: sequence, packet: $0, sentOn: UplinkID(1 + sequence % 2)) }
        }
        return store
    }

    static func answer(_ store: RetransmitStore, _ first: UInt32, _ count: UInt32, transmitSequence: UInt32) -> Answer {
        var result = Answer()
        store.answer(ResendRun(firstSequence: first, count: count), transmitSequence: transmitSequence,
                     resend: { result.resend.append(ResendRun(firstSequence: $0, count: $1)) },
                     decline: { result.declined.append(ResendRun(firstSequence: $0, count: $1)) })
        return result
    }

    @Test("held sequences go to the engine; those already overwritten are declined in one run")
    func heldAndOverwritten() {
        let store = Self.store(capacity: 64, sent: 100)  // holds 36..<100
        #expect(!store.peerRequestsResends)
        let answer = Self.answer(store, 30, 10, transmitSequence: 100)
        #expect(answer == Answer(resend: [ResendRun(firstSequence: 36, count: 4)], declined: [ResendRun(firstSequence: 30, count: 6)]))
        #expect(store.peerRequestsResends)
        #expect(store.requestedSequences == 10 && store.acceptedSequences == 4 && store.declinedSequences == 6)
        // The statistics' figures: every requested sequence is accepted or declined.
        #expect(store.requestedResends == RequestedResendCounters(accepted: 4, declined: 6))
        #expect(store.packet(sequence: 36)?.first == 36)
        #expect(store.uplink(sequence: 36) == UplinkID(1) && store.uplink(sequence: 37) == UplinkID(2))
        #expect(store.uplink(sequence: 30) == nil)
    }

    @Test("sequences never sent (ahead of the transmit sequence, or far behind it) are declined without effect")
    func neverSent() {
        let store = Self.store(sent: 10)
        #expect(Self.answer(store, 10, 256, transmitSequence: 10) == Answer(declined: [ResendRun(firstSequence: 10, count: 256)]))
        #expect(Self.answer(store, 0x8000_0000, 1, transmitSequence: 10) == Answer(declined: [ResendRun(firstSequence: 0x8000_0000, count: 1)]))
        // A run that starts before sequence 0 (mod 2^32) and reaches into what was sent.
        #expect(Self.answer(store, UInt32.max - 1, 4, transmitSequence: 10)
            == Answer(resend: [ResendRun(firstSequence: 0, count: 2)], declined: [ResendRun(firstSequence: UInt32.max - 1, count: 2)]))
        #expect(store.acceptedSequences == 2)
    }

    @Test("a count beyond the frame limit is clamped: one request names at most 256 sequences")
    func clampedCount() {
        let store = Self.store(capacity: 1024, sent: 1000)
        let answer = Self.answer(store, 0, .max, transmitSequence: 1000)
        #expect(answer == Answer(resend: [ResendRun(firstSequence: 0, count: ProtocolConstants.maxResendRun)]))
    }

    @Test("a request with alternating holes costs at most a few declined frames")
    func alternatingHoles() {
        let store = RetransmitStore(capacity: 64, slotSize: 64)
        let packet = [UInt8](repeating: 1, count: 10)
        for sequence: UInt32 in stride(from: 0, to: 64, by: 2) { packet.withUnsafeBytes { store.store(sequence: sequence, packet: $0) } }
        let answer = Self.answer(store, 0, 64, transmitSequence: 64)
        #expect(answer.resend.count == 32 && answer.resend.allSatisfy { $0.count == 1 && $0.firstSequence % 2 == 0 })
        #expect(answer.declined.count == RetransmitStore.maxDeclinedRunsPerRequest)
        #expect(store.declinedSequences == 32)
    }

    @Test("a peer repeating its requests gets at most the burst plus one resend per four packets sent")
    func budget() {
        let store = Self.store(capacity: 1024, sent: 1000)
        var resent: UInt32 = 0
        for _ in 0..<10 {
            let answer = Self.answer(store, 500, 256, transmitSequence: 1000)
            resent += answer.resend.reduce(0) { $0 + $1.count }
        }
        #expect(resent == ResendBudget.burst, "nothing was sent in between: only the saved-up burst")
        // Once spent, the same request is declined whole, in one frame.
        #expect(Self.answer(store, 500, 256, transmitSequence: 1000) == Answer(declined: [ResendRun(firstSequence: 500, count: 256)]))
        // 40 packets sent since earn 10 more resends.
        let later = Self.answer(store, 800, 30, transmitSequence: 1040)
        #expect(later.resend == [ResendRun(firstSequence: 800, count: 10)])
        #expect(later.declined == [ResendRun(firstSequence: 810, count: 20)])
    }

    @Test("the budget is saved up to the burst only, and survives the sequence wrapping")
    func budgetWraps() {
        var budget = ResendBudget()
        budget.earn(transmitSequence: UInt32.max - 100)
        var spent: UInt32 = 0
        while budget.spend() { spent += 1 }
        #expect(spent == ResendBudget.burst)
        budget.earn(transmitSequence: 100)  // 201 sent across the wrap: 50 earned
        #expect(budget.credit == 50)
        budget.earn(transmitSequence: 100 &+ 1_000_000)
        #expect(budget.credit == ResendBudget.burst)
    }

    @Test("resend duties that can't be carried out are declined in runs of consecutive sequences")
    func declineRuns() {
        var accumulator = DeclineAccumulator()
        var sent: [ResendRun] = []
        for sequence: UInt32 in [5, 6, 7, 9, UInt32.max, 0, 1] {
            if let run = accumulator.add(sequence) { sent.append(run) }
        }
        if let run = accumulator.take() { sent.append(run) }
        #expect(sent == [ResendRun(firstSequence: 5, count: 3), ResendRun(firstSequence: 9, count: 1),
                         ResendRun(firstSequence: UInt32.max, count: 3)])
        #expect(accumulator.take() == nil)
        for sequence in 0..<(ProtocolConstants.maxResendRun + 1) { _ = accumulator.add(sequence) }
        #expect(accumulator.take() == ResendRun(firstSequence: ProtocolConstants.maxResendRun, count: 1), "a full run was sent first")
    }

    /// Statistics of uplink `id` whose probes see `minimum` ms propagation RTT and `predicted` ms now.
    static func statistics(_ id: UInt32, minimum: UInt64, predicted: UInt64) -> TriglavMultipath.UplinkStatistics {
        UplinkStatistics(id: UplinkID(id), policy: UplinkPolicy(), state: .ready, stateSince: 0,
                         smoothedRTT: predicted * TriglavMultipath.Nanoseconds.millisecond, rttVariance: 0,
                         minimumRTT: minimum * TriglavMultipath.Nanoseconds.millisecond, jitter: 0,
                         predictedRTT: predicted * TriglavMultipath.Nanoseconds.millisecond, lossPercent: nil, capacityBitsPerSecond: 0,
                         relativeOneWayDelay: nil, txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0)
    }

    @Test("a queue counts as long above max(10 ms, half the minimum RTT); jitter-sized excesses don't")
    func congestionThreshold() {
        #expect(!QueueCongestion.isCongested(Self.statistics(1, minimum: 90, predicted: 130)))  // 40 ≤ 45
        #expect(QueueCongestion.isCongested(Self.statistics(1, minimum: 90, predicted: 140)))   // 50 > 45
        #expect(!QueueCongestion.isCongested(Self.statistics(1, minimum: 10, predicted: 19)))   // 9 ≤ 10 (floor)
        #expect(QueueCongestion.isCongested(Self.statistics(1, minimum: 10, predicted: 25)))
        #expect(!QueueCongestion.isCongested(Self.statistics(1, minimum: 0, predicted: 200)), "no RTT sample yet")
    }

    @Test("a request for a packet sent while its uplink's queue was long is declined; one sent on a short queue is resent")
    func congestionLossDeclined() {
        let store = RetransmitStore(capacity: 64, slotSize: 64)
        let packet = [UInt8](repeating: 7, count: 20)
        // Uplink 1 fills up after sequence 3; uplink 2 stays short throughout.
        store.noteQueue(of: UplinkID(1), statistics: Self.statistics(1, minimum: 40, predicted: 42))
        store.noteQueue(of: UplinkID(2), statistics: Self.statistics(2, minimum: 40, predicted: 45))
        for sequence: UInt32 in 0..<4 { packet.withUnsafeBytes { store.store(sequence: sequence, packet: $0, sentOn: UplinkID(1)) } }
        store.noteQueue(of: UplinkID(1), statistics: Self.statistics(1, minimum: 40, predicted: 120))
        for sequence: UInt32 in 4..<8 { packet.withUnsafeBytes { store.store(sequence: sequence, packet: $0, sentOn: UplinkID(1)) } }
        for sequence: UInt32 in 8..<12 { packet.withUnsafeBytes { store.store(sequence: sequence, packet: $0, sentOn: UplinkID(2)) } }
        // The queue drained again: what is sent from now on counts as random loss again.
        store.noteQueue(of: UplinkID(1), statistics: Self.statistics(1, minimum: 40, predicted: 50))
        packet.withUnsafeBytes { store.store(sequence: 12, packet: $0, sentOn: UplinkID(1)) }

        let answer = Self.answer(store, 2, 11, transmitSequence: 13)
        #expect(answer == Answer(resend: [ResendRun(firstSequence: 2, count: 2), ResendRun(firstSequence: 8, count: 5)],
                                 declined: [ResendRun(firstSequence: 4, count: 4)]))
        #expect(store.wasSentIntoQueue(sequence: 5) && !store.wasSentIntoQueue(sequence: 3) && !store.wasSentIntoQueue(sequence: 12))
        #expect(store.acceptedSequences == 7 && store.declinedSequences == 4 && store.congestionDeclinedSequences == 4)
    }
}
