import Testing
import TriglavCore
import TriglavMultipath
import TriglavProtocol
@testable import TriglavDataPlane

/// The server's sender-side pacing with late binding (`PacedSendQueue`) driven by a real multipath engine on a
/// virtual clock, without sockets: what leaves when, and in which order (docs/DATAPLANE.md, "Sender-side pacing").
@Suite("paced send queue")
struct PacedSendQueueTests {
    static let ms = TriglavMultipath.Nanoseconds.millisecond
    static let wire = 1400

    /// An engine with pacing on and `count` uplinks made ready by probe round trips of `rtt` (virtual time up to
    /// `until`); returns it and the clock.
    static func readyEngine(uplinks count: Int = 2, rtt: UInt64 = 20 * ms, until: UInt64 = 600 * ms) throws -> MultipathEngine<Int> {
        var configuration = ServerTunnelConfiguration.pacedMultipathForTests
        configuration.scheduler = .aggregate
        var engine = try MultipathEngine<Int>(configuration: configuration)
        for id in 1...count { try engine.addUplink(UplinkID(UInt32(id)), now: 0) }
        var replies: [(at: UInt64, id: UplinkID, probe: UInt32)] = []
        var now: UInt64 = 0
        while now <= until {
            while let duty = engine.nextDuty(now: now) {
                if case .sendProbe(let id, let probeID, _) = duty { replies.append((now + rtt, id, probeID)) }
            }
            for reply in replies where reply.at <= now { engine.handle(.probeReplied(reply.id, probeID: reply.probe, at: now)) }
            replies.removeAll { $0.at <= now }
            now += ms
        }
        return engine
    }

    static func packet(_ marker: UInt8) -> [UInt8] { [UInt8](repeating: marker, count: wire - WireLayout.transportOverhead) }

    /// Drains what `queue` lets go at `now`, reporting each send; returns the releases.
    static func drain(_ queue: PacedSendQueue, engine: inout MultipathEngine<Int>, now: UInt64, counter: inout UInt64,
                      sequence: inout UInt32) -> [PacedRelease] {
        var released: [PacedRelease] = []
        while let release = queue.next(engine: &engine, now: now) {
            released.append(release)
            switch release {
            case .data(let uplink, let slot):
                counter += 1
                engine.handle(.packetSent(uplink, counter: counter, sequence: sequence, bytes: wire, at: now))
                sequence &+= 1
                queue.release(slot)
            case .resend(let uplink, let resent):
                counter += 1
                engine.handle(.packetSent(uplink, counter: counter, sequence: resent, bytes: wire, at: now))
            case .shed:
                break
            }
            if released.count > 10_000 { break }
        }
        return released
    }

    @Test("a burst leaves at the uplinks' modelled rate: a few packets at once, the rest as the pacer allows")
    func burstIsPaced() throws {
        var engine = try Self.readyEngine()
        let queue = PacedSendQueue(sharedCapacity: 512, slotSize: 1500)
        let start: UInt64 = 700 * Self.ms
        var admitted = 0
        for index in 0..<300 {
            let bytes = Self.packet(UInt8(truncatingIfNeeded: index))
            if bytes.withUnsafeBytes({ queue.admit($0, wireLength: Self.wire, engine: &engine, now: start) }) { admitted += 1 }
        }
        #expect(admitted == 300, "a 300-packet burst into an idle tunnel must be admitted (\(admitted))")
        var counter: UInt64 = 0, sequence: UInt32 = 0
        let first = Self.drain(queue, engine: &engine, now: start, counter: &counter, sequence: &sequence)
        // Two uplinks at the initial 10 Mbit/s each: the 20 ms allowance is ~18 packets per uplink.
        #expect(first.count >= 10 && first.count <= 80, "\(first.count) packets released at once, want about 36")
        #expect(queue.sharedCount == 300 - first.count)
        var now = start, wakes = 0, sent = first.count
        while let wake = queue.nextWake(engine: engine, uplinks: [UInt32(1), 2], now: now), wakes < 10_000 {
            #expect(wake > now || wake == now && queue.sharedCount == 0, "a wake-up must lie ahead of \(now): \(wake)")
            now = max(wake, now + 1)
            wakes += 1
            sent += Self.drain(queue, engine: &engine, now: now, counter: &counter, sequence: &sequence).count
        }
        #expect(sent == 300 && queue.isEmpty, "\(sent) of 300 sent")
        // 300 × 1400 bytes at 2 × 10 Mbit/s (× 1.25 while probing) take 134–168 ms, less the allowance sent at once;
        // unpaced they would all have left at `start`.
        let took = now - start
        #expect(took >= 80 * Self.ms && took <= 400 * Self.ms, "the burst took \(took / Self.ms) ms, want about 130")
        #expect(wakes >= 10, "only \(wakes) wake-ups: not paced")
    }

    @Test("a queued resend goes ahead of the shared queue, repairs ahead of failover resends")
    func resendsFirst() throws {
        var engine = try Self.readyEngine()
        let queue = PacedSendQueue(sharedCapacity: 64, slotSize: 1500)
        let now: UInt64 = 700 * Self.ms
        for index in 0..<10 {
            _ = Self.packet(UInt8(truncatingIfNeeded: index)).withUnsafeBytes { queue.admit($0, wireLength: Self.wire, engine: &engine, now: now) }
        }
        #expect(queue.queueResend(sequence: 900, wireLength: Self.wire, on: UplinkID(1), isRepair: false))
        #expect(queue.queueResend(sequence: 901, wireLength: Self.wire, on: UplinkID(1), isRepair: true))
        #expect(queue.waiting(900)?.uplink == UplinkID(1) && queue.waiting(900)?.bytesAhead == Self.wire,
                "the failover resend waits behind the repair")
        #expect(queue.waiting(901)?.bytesAhead == 0)
        #expect(queue.waiting(5) == nil, "a shared packet has no sequence yet")
        var counter: UInt64 = 0, sequence: UInt32 = 0
        let released = Self.drain(queue, engine: &engine, now: now, counter: &counter, sequence: &sequence)
        #expect(released.prefix(2) == [.resend(UplinkID(1), sequence: 901), .resend(UplinkID(1), sequence: 900)], "\(released)")
        #expect(released.dropFirst(2).allSatisfy { if case .data = $0 { true } else { false } })
    }

    @Test("a dead uplink's queued resends can be taken back, in order, repairs first; unknown uplinks' are dropped")
    func takeBack() throws {
        var engine = try Self.readyEngine()
        let queue = PacedSendQueue(sharedCapacity: 8, slotSize: 1500)
        queue.queueResend(sequence: 10, wireLength: 100, on: UplinkID(2), isRepair: false)
        queue.queueResend(sequence: 11, wireLength: 100, on: UplinkID(2), isRepair: false)
        queue.queueResend(sequence: 12, wireLength: 100, on: UplinkID(2), isRepair: true)
        #expect(queue.takeResend(of: UplinkID(2))?.sequence == 12)
        #expect(queue.takeResend(of: UplinkID(2))?.sequence == 10)
        #expect(queue.takeResend(of: UplinkID(2))?.sequence == 11)
        #expect(queue.takeResend(of: UplinkID(2)) == nil)
        queue.queueResend(sequence: 20, wireLength: 100, on: UplinkID(9), isRepair: true)
        #expect(queue.next(engine: &engine, now: 700 * Self.ms) == nil && queue.isEmpty,
                "a resend for an uplink the engine doesn't know is dropped")
    }

    @Test("memory is bounded: the shared queue refuses past its capacity; a lane past its own")
    func bounded() throws {
        var engine = try Self.readyEngine()
        let queue = PacedSendQueue(sharedCapacity: 16, slotSize: 1500)
        var admitted = 0
        for index in 0..<40 {
            if Self.packet(UInt8(truncatingIfNeeded: index)).withUnsafeBytes({ queue.admit($0, wireLength: Self.wire, engine: &engine, now: 700 * Self.ms) }) {
                admitted += 1
            }
        }
        #expect(admitted == 16 && queue.sharedCount == 16 && queue.overflowDrops == 24)
        var accepted = 0
        for sequence in 0..<UInt32(PacedSendQueue.resendCapacity + 5)
        where queue.queueResend(sequence: sequence, wireLength: 100, on: UplinkID(1), isRepair: true) { accepted += 1 }
        #expect(accepted == PacedSendQueue.resendCapacity)
    }

    @Test("the fixed ring wraps around and refuses when full")
    func ring() {
        var ring = FixedRing(capacity: 3)
        for round in 0..<5 {
            #expect(ring.push(UInt64(round * 10)) && ring.push(UInt64(round * 10 + 1)))
            #expect(ring.pop() == UInt64(round * 10))
            #expect(ring.first == UInt64(round * 10 + 1))
            #expect(ring.pop() == UInt64(round * 10 + 1) && ring.pop() == nil)
        }
        #expect(ring.push(1) && ring.push(2) && ring.push(3) && !ring.push(4) && ring.count == 3 && ring[2] == 3)
    }
}
