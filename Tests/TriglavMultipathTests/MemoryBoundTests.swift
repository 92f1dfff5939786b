import Testing
import TriglavCore
@testable import TriglavMultipath

/// Elements of every collection reachable from `value`'s stored properties, private ones included
/// (found by reflection, so a collection added to the engine later is counted without changing this).
/// Fixed-size rings keep this constant; anything that appends per packet, per event or per sequence
/// makes it grow.
func reachableCollectionElements(in value: Any, depth: Int = 0) -> Int {
    let mirror = Mirror(reflecting: value)
    var total = 0
    switch mirror.displayStyle {
    case .collection?, .dictionary?, .set?: total += mirror.children.count
    default: break
    }
    guard depth < 16 else { return total }
    for child in mirror.children { total += reachableCollectionElements(in: child.value, depth: depth + 1) }
    return total
}

/// Memory of the engine stays bounded under 100% loss, floods of duplicates, sequence-number jumps and
/// floods of events (issue 4, last "done when"). Measured as elements in use, not preallocated capacity:
/// every collection the engine reaches, the reorder buffer's held packets, and the pending resends and
/// notices as they come out of `nextDuty`.
@Suite struct MemoryBoundTests {
    static let ms = Nanoseconds.millisecond
    static let second = Nanoseconds.second
    let a = UplinkID(1), b = UplinkID(2), c = UplinkID(3)

    /// Documented bounds: the reorder buffer holds at most `reorderCapacity` packets (ReorderBuffer),
    /// pending resends are a ring of `MultipathLimits.maxPendingResends`, and notices (state changes) a
    /// ring of 4 × `MultipathLimits.maxUplinks`; each overflow drops the oldest.
    static let noticeBound = 4 * MultipathLimits.maxUplinks

    @Test func reflectionCountsNestedAndPrivateCollections() {
        struct Ring { private var items = [UInt64](repeating: 0, count: 8); var extra: [[Int]] = [[1, 2], []] }
        struct Holder { var rings = [Ring(), Ring()]; var optional: [Int]? = [7]; var pair = (Set([1, 2, 3]), ["k": 1]) }
        // 2 rings + 2×(8 + 2 + 2) + 1 + 3 + 1
        #expect(reachableCollectionElements(in: Holder()) == 31)
    }

    private func warmEngine() throws -> ScriptedPeer {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .redundant
        var peer = try ScriptedPeer(configuration: configuration, uplinks: [a, b, c])
        peer.dataInterval = Self.ms
        peer.run(until: Self.second)
        #expect([a, b, c].allSatisfy { peer.state($0) == .ready })
        return peer
    }

    /// Drains every duty due at `now`; returns the `.resend` and `.stateChanged` counts.
    private func drain(_ engine: inout MultipathEngine<Int>, at now: UInt64) -> (resends: [UInt32], notices: Int) {
        var resends: [UInt32] = []
        var notices = 0
        while let duty = engine.nextDuty(now: now) {
            switch duty {
            case .resend(let sequence): resends.append(sequence)
            case .stateChanged: notices += 1
            default: break
            }
        }
        return (resends, notices)
    }

    @Test func totalLossKeepsEveryCollectionAtItsSize() throws {
        let peer = try warmEngine()
        var engine = peer.engine
        let baseline = reachableCollectionElements(in: engine)
        var now = peer.now
        var counter: UInt64 = 1_000_000
        var sequence: UInt32 = 1_000_000
        // 150k packets on each uplink into a black hole (no feedback, no probe replies), the scheduler asked
        // for each as well; the send history must wrap, not grow.
        for step in 0..<150_000 {
            now += 10_000
            _ = engine.schedule(packetLength: 1400, flowKey: nil, now: now)
            for id in [a, b, c] {
                counter += 1
                engine.handle(.packetSent(id, counter: counter, sequence: sequence, bytes: 1400, at: now))
            }
            sequence &+= 1
            if step % 1000 == 0 { _ = drain(&engine, at: now) }
        }
        #expect([a, b, c].allSatisfy { engine.statistics(for: $0)?.state == .down })
        #expect([a, b, c].allSatisfy { engine.statistics(for: $0)?.txPackets ?? 0 > 150_000 })
        #expect(reachableCollectionElements(in: engine) == baseline)
    }

    @Test func resendAndNoticeFloodsAreCappedAtTheirRings() throws {
        var engine = try warmEngine().engine
        let baseline = reachableCollectionElements(in: engine)
        let now: UInt64 = 2 * Nanoseconds.second
        // 200 requests × 256 sequences (the per-request cap) = 51 200 pending, never drained in between.
        for request in 0..<200 {
            engine.handle(.resendRequested(firstSequence: UInt32(request) * 256, count: 10_000, at: now))
        }
        // 3 uplinks × 1000 down/up cycles = 6000 state changes, never drained in between.
        for _ in 0..<1000 {
            for id in [a, b, c] {
                engine.handle(.systemLinkDown(id, at: now))
                engine.handle(.systemLinkUp(id, at: now))
            }
        }
        #expect(reachableCollectionElements(in: engine) == baseline)
        let drained = drain(&engine, at: now)
        #expect(drained.notices == Self.noticeBound)
        #expect(drained.resends.count == MultipathLimits.maxPendingResends)
        // The oldest were dropped: what is left is the newest 4096 requested sequences, in order.
        #expect(drained.resends.first == 200 * 256 - UInt32(MultipathLimits.maxPendingResends))
        #expect(drained.resends.last == UInt32(200 * 256 - 1))
        #expect(reachableCollectionElements(in: engine) == baseline)
    }

    @Test func duplicateFloodHoldsNothingExtra() throws {
        var engine = try warmEngine().engine
        let baseline = reachableCollectionElements(in: engine)
        let capacity = engine.configuration.reorderCapacity
        var now: UInt64 = 2 * Nanoseconds.second
        var verdicts: [ReorderVerdict: Int] = [:]
        var most = 0
        // Sequences 1…300 with 2 missing, each arriving 3 times over 3 uplinks (redundant mode), then the
        // same window replayed 300 times: 270 000 receptions.
        for replay in 0..<300 {
            for sequence in UInt32(1)...300 where sequence != 2 {
                for (copy, id) in [a, b, c].enumerated() {
                    now += 1_000
                    let verdict = engine.receive(Int(sequence), sequence: sequence, uplink: id, counter: UInt64(replay * 1000) + UInt64(sequence) * 3 + UInt64(copy),
                                                 bytes: 100, now: now)
                    verdicts[verdict, default: 0] += 1
                    most = max(most, engine.reorderBufferedCount)
                }
            }
            while engine.nextDelivery(now: now) != nil {}
        }
        #expect(most <= capacity && most <= 300)
        // Only the first copy of each sequence in the first replay was new: 1 delivered, 298 held.
        let receptions = 300 * 299 * 3
        #expect(verdicts[.deliverNow] == 1 && verdicts[.buffered] == 298, "\(verdicts)")
        #expect((verdicts[.duplicate] ?? 0) + (verdicts[.stale] ?? 0) == receptions - 299, "\(verdicts)")
        #expect(reachableCollectionElements(in: engine) == baseline)
        // Once the wait bound passes, the gap at 2 is skipped and nothing stays held.
        now += engine.configuration.maxReorderHold + Self.ms
        while engine.nextDelivery(now: now) != nil {}
        _ = drain(&engine, at: now)
        #expect(engine.reorderBufferedCount == 0)
    }

    @Test func sequenceJumpsNeverHoldMoreThanTheCapacity() throws {
        var engine = try warmEngine().engine
        let baseline = reachableCollectionElements(in: engine)
        let capacity = engine.configuration.reorderCapacity
        var rng = SplitMix64(seed: 11)
        var now: UInt64 = 2 * Nanoseconds.second
        var most = 0
        var base: UInt32 = 5
        // 40 blocks: a jump (anywhere in the sequence space, just past the window, or far backwards), then
        // every sequence of the window ahead of a gap that never fills, mixed with stale ones. Drained after
        // every packet, as the data plane does.
        for block in 0..<40 {
            switch block % 3 {
            case 0: base = UInt32(truncatingIfNeeded: rng.next())
            case 1: base &+= UInt32(capacity) + 1
            default: base &-= 70_000
            }
            for step in 0...(capacity - 2) {
                now += 2_000
                // The jump target, then a permutation of the offsets 2 … capacity−1 (1237 is prime to 2046),
                // so sequence base+1 stays missing and everything else in the window arrives.
                let sequence = step == 0 ? base : base &+ 2 &+ UInt32((step - 1) * 1237 % (capacity - 2))
                var arrivals = [sequence]
                if step % 100 == 99 { arrivals.append(base &- UInt32(rng.next() % 70_000)) } // far behind
                for arrival in arrivals {
                    _ = engine.receive(step, sequence: arrival, uplink: [a, b, c][step % 3],
                                       counter: UInt64(block * 10_000 + step), bytes: 1200, now: now)
                    most = max(most, engine.reorderBufferedCount)
                    while engine.nextDelivery(now: now) != nil {}
                }
            }
            _ = drain(&engine, at: now)
        }
        #expect(most <= capacity, "held \(most) with capacity \(capacity)")
        // Offsets 2 … capacity−1 behind the never-filled gap at 1: the buffer was full to its last slot.
        #expect(most == capacity - 2, "the flood filled the buffer (\(most)), so the bound was exercised")
        #expect(reachableCollectionElements(in: engine) == baseline)
    }

    @Test func garbageFeedbackAndProbeFloodsKeepMemoryConstant() throws {
        var engine = try warmEngine().engine
        let baseline = reachableCollectionElements(in: engine)
        var rng = SplitMix64(seed: 12)
        var now: UInt64 = 2 * Nanoseconds.second
        for step in 0..<60_000 {
            now += 5_000
            let id = [a, b, c, UplinkID(99)][step % 4] // an unknown uplink too
            switch step % 3 {
            case 0:
                engine.handle(.feedbackReceived(id, FeedbackReport(highestCounter: rng.next(), receivedPackets: rng.next() % 1_000_000,
                                                                   receivedBytes: rng.next(), reportedAt: rng.next()), at: now))
            case 1:
                engine.handle(.probeReceived(id, senderTimestamp: rng.next(), at: now))
            default:
                engine.handle(.probeReplied(id, probeID: UInt32(truncatingIfNeeded: rng.next()), at: now))
                engine.handle(.resendDeclined(firstSequence: UInt32(truncatingIfNeeded: rng.next()), count: UInt32(rng.next() % 100_000), at: now))
            }
            if step % 500 == 0 { _ = drain(&engine, at: now) }
        }
        #expect(reachableCollectionElements(in: engine) == baseline)
    }
}
