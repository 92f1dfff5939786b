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

    /// Pacing turns on the receivers' second request for a gap that reaches the reorder head late (what the simulator's
    /// paced deployment measures); turning pacing off takes it back, as it is off with immediate send.
    @Test func pacingAsksALateHeadGapAgainAndImmediateSendDoesNot() {
        var configuration = MultipathConfiguration()
        #expect(!configuration.asksLateHeadGapAgain)
        PacingSwitch.enable(in: &configuration)
        #expect(configuration.asksLateHeadGapAgain)
        PacingSwitch.disable(in: &configuration)
        #expect(!configuration.asksLateHeadGapAgain)
    }

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

    // MARK: Retransmissions of dropped segments (the DroppedSegmentLedger)

    /// An inner IPv4 TCP segment 10.0.0.1:`sourcePort` → 10.0.0.2:443 with `sequence` and `payload` bytes (ACK|PSH).
    static func tcp4(sequence: UInt32, payload: Int = 40, sourcePort: UInt16 = 50_000, flags: UInt8 = 0x18) -> [UInt8] {
        let total = 20 + 20 + payload
        var bytes: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0x40, 0, 64, 6, 0, 0,
                              10, 0, 0, 1, 10, 0, 0, 2]
        bytes += [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), 0x01, 0xbb]
        bytes += withUnsafeBytes(of: sequence.bigEndian) { Array($0) }
        bytes += [0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]
        return bytes + [UInt8](repeating: 0xab, count: payload)
    }

    /// An inner IPv6 TCP segment fd00::1:`sourcePort` → fd00::2:443 (`nextHeader` 6 unless testing extension headers).
    static func tcp6(sequence: UInt32, payload: Int = 40, sourcePort: UInt16 = 50_000, nextHeader: UInt8 = 6) -> [UInt8] {
        let length = 20 + payload
        var bytes: [UInt8] = [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xff), nextHeader, 64]
        bytes += [0xfd] + [UInt8](repeating: 0, count: 14) + [1]
        bytes += [0xfd] + [UInt8](repeating: 0, count: 14) + [2]
        bytes += [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), 0x01, 0xbb]
        bytes += withUnsafeBytes(of: sequence.bigEndian) { Array($0) }
        bytes += [0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]
        return bytes + [UInt8](repeating: 0xab, count: payload)
    }

    /// An inner IPv4 UDP datagram (no key): the filler that builds a backlog.
    static func udp4(_ marker: UInt8) -> [UInt8] {
        [0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
         0x30, 0x39, 0x00, 0x35, 0, 28, 0, 0] + [UInt8](repeating: marker, count: 20)
    }

    static func key(_ packet: [UInt8]) -> UInt64? { packet.withUnsafeBytes { PacketClassifier.droppedSegmentKey($0) } }

    static func admit(_ packet: [UInt8], to queue: PacedSendQueue, engine: inout MultipathEngine<Int>, now: UInt64) -> Bool {
        packet.withUnsafeBytes { queue.admit($0, wireLength: wire, engine: &engine, now: now) }
    }

    /// Admits UDP fillers at `now` until the engine's AQM refuses one (the backlog is past twice its hard limit);
    /// returns how many it took.
    static func fillUntilRefused(_ queue: PacedSendQueue, engine: inout MultipathEngine<Int>, now: UInt64) -> Int {
        var admitted = 0
        while admitted < 4000, admit(udp4(UInt8(truncatingIfNeeded: admitted)), to: queue, engine: &engine, now: now) {
            admitted += 1
        }
        return admitted
    }

    /// Calls `next` at `now` until the first `.data` (reported sent, not released) or nil; the releases and the bytes
    /// of that `.data` packet.
    static func untilData(_ queue: PacedSendQueue, engine: inout MultipathEngine<Int>, now: UInt64)
        -> (releases: [PacedRelease], packet: [UInt8]?) {
        var releases: [PacedRelease] = []
        while releases.count < 5000, let release = queue.next(engine: &engine, now: now) {
            releases.append(release)
            if case .data(let uplink, let slot) = release {
                let bytes = Array(queue.packet(slot))
                engine.handle(.packetSent(uplink, counter: UInt64(releases.count), sequence: 0, bytes: wire, at: now))
                queue.release(slot)
                return (releases, bytes)
            }
        }
        return (releases, nil)
    }

    /// A queue with a refused TCP segment `refused` (the backlog past twice the hard limit), then the best-used uplink
    /// down; returns the engine at `now` + 2 ms, within the failover recovery second.
    static func refusedThenFailover(_ queue: PacedSendQueue, refused segments: [[UInt8]], now: UInt64) throws
        -> MultipathEngine<Int> {
        var engine = try readyEngine()
        #expect(fillUntilRefused(queue, engine: &engine, now: now) > 100, "the backlog needs more than a few packets")
        for segment in segments {
            #expect(!admit(segment, to: queue, engine: &engine, now: now), "a segment behind a full backlog is refused")
        }
        engine.handle(.systemLinkDown(UplinkID(1), at: now + Self.ms))
        #expect(engine.isRecoveringFromFailover(now: now + 2 * Self.ms))
        return engine
    }

    @Test("after a failover a refused TCP segment's retransmission goes ahead of the queued data, and leaves first")
    func refusedRetransmissionAheadAfterFailover() throws {
        let queue = PacedSendQueue(sharedCapacity: 4096, slotSize: 128)
        let now: UInt64 = 700 * Self.ms
        let segment = Self.tcp4(sequence: 1_000_000)
        var engine = try Self.refusedThenFailover(queue, refused: [segment], now: now)
        #expect(queue.rememberedDrops == 1, "the refused segment is remembered")
        let queued = queue.sharedCount
        #expect(Self.admit(segment, to: queue, engine: &engine, now: now + 2 * Self.ms), "its retransmission is taken")
        #expect(queue.aheadCount == 1 && queue.sharedCount == queued + 1 && queue.retransmissionsAhead == 1)
        #expect(queue.rememberedDrops == 0, "a drop is answered once")
        let (releases, first) = Self.untilData(queue, engine: &engine, now: now + 2 * Self.ms)
        #expect(first == segment, "the retransmission must be the first packet sent, ahead of \(queued) queued; \(releases.count) releases")
        // Only the fillers behind it were shed to bring the queue under the hard limit (the protected one stays).
        #expect(releases.dropLast().allSatisfy { $0 == .shed })
    }

    @Test("a shed segment's retransmission is protected: the AQM sheds the first unprotected packet behind it instead")
    func shedRetransmissionIsNotShedAgain() throws {
        var engine = try Self.readyEngine()
        let queue = PacedSendQueue(sharedCapacity: 4096, slotSize: 128)
        var now: UInt64 = 700 * Self.ms
        let segment = Self.tcp4(sequence: 7_000)
        #expect(Self.admit(segment, to: queue, engine: &engine, now: now))
        #expect(Self.fillUntilRefused(queue, engine: &engine, now: now) > 100)
        #expect(queue.next(engine: &engine, now: now) == .shed, "past the hard limit the head is shed")
        #expect(queue.rememberedDrops == 1, "the shed segment is remembered")
        // Let the rest drain, then the retransmission comes back to an empty queue, before a new backlog.
        var counter: UInt64 = 0, sequence: UInt32 = 0, rounds = 0
        _ = Self.drain(queue, engine: &engine, now: now, counter: &counter, sequence: &sequence)
        while let wake = queue.nextWake(engine: engine, uplinks: [UInt32(1), 2], now: now), rounds < 20_000 {
            now = max(wake, now + 1)
            rounds += 1
            _ = Self.drain(queue, engine: &engine, now: now, counter: &counter, sequence: &sequence)
        }
        #expect(queue.isEmpty)
        #expect(!engine.isRecoveringFromFailover(now: now), "no failover: the retransmission joins the tail")
        #expect(Self.admit(segment, to: queue, engine: &engine, now: now))
        #expect(queue.protectedRetransmissions == 1 && queue.aheadCount == 0)
        let victim = Self.tcp4(sequence: 1, sourcePort: 50_001)
        #expect(Self.admit(victim, to: queue, engine: &engine, now: now))
        #expect(Self.fillUntilRefused(queue, engine: &engine, now: now) > 100)
        let shedBefore = queue.shedPackets
        let (releases, first) = Self.untilData(queue, engine: &engine, now: now)
        #expect(releases.first == .shed && queue.shedPackets > shedBefore, "the backlog is past the hard limit: \(releases.prefix(3))")
        #expect(first == segment, "the protected retransmission stays at the head and is the first sent")
        #expect(Self.key(victim).map { queue.remembers($0) } == true, "the unprotected segment behind it was shed and remembered")
    }

    @Test("only TCP segments with payload get a key: equal flow and sequence, equal key; others, none")
    func segmentKeys() throws {
        let segment = try #require(Self.key(Self.tcp4(sequence: 42)))
        #expect(Self.key(Self.tcp4(sequence: 42, payload: 1000)) == segment, "a retransmission may differ in length")
        #expect(Self.key(Self.tcp4(sequence: 43)) != segment)
        #expect(Self.key(Self.tcp4(sequence: 42, sourcePort: 50_001)) != segment)
        #expect(Self.key(Self.tcp4(sequence: 0)) != nil && Self.key(Self.tcp4(sequence: 0)) != 0)
        let six = try #require(Self.key(Self.tcp6(sequence: 42)))
        #expect(six != segment && Self.key(Self.tcp6(sequence: 43)) != six)
        #expect(Self.key(Self.tcp4(sequence: 42, payload: 0, flags: 0x10)) == nil, "a pure ACK")
        #expect(Self.key(Self.tcp4(sequence: 42, payload: 0, flags: 0x02)) == nil, "a bare SYN carries no payload")
        #expect(Self.key(Self.udp4(1)) == nil, "UDP")
        #expect(Self.key(Self.tcp6(sequence: 42, nextHeader: 0)) == nil, "IPv6 extension headers are not walked")
        var fragment = Self.tcp4(sequence: 42)
        fragment[6] = 0x20  // more fragments
        #expect(Self.key(fragment) == nil)
        var shortTotal = Self.tcp4(sequence: 42)
        shortTotal[3] = 40  // IP total length says no payload
        #expect(Self.key(shortTotal) == nil)
        for packet in [Self.tcp4(sequence: 42), Self.tcp6(sequence: 42)] {
            for length in 0..<packet.count - 40 {  // truncated: the IP length is larger than the bytes
                #expect(Self.key(Array(packet.prefix(length))) == nil, "\(length) bytes")
            }
        }
        var bad = Self.tcp4(sequence: 42)
        bad[0] = 0x44  // IHL 16 bytes
        #expect(Self.key(bad) == nil)
        bad[0] = 0x45; bad[32] = 0x40  // TCP data offset 16 bytes
        #expect(Self.key(bad) == nil)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {  // never traps on garbage
            let garbage = (0..<Int.random(in: 0..<80, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = Self.key(garbage)
        }
    }

    @Test("non-TCP, pure ACKs and malformed packets are not remembered: after a failover they are refused as before")
    func keylessPacketsBehaveAsBefore() throws {
        let queue = PacedSendQueue(sharedCapacity: 4096, slotSize: 128)
        let now: UInt64 = 700 * Self.ms
        var truncated = Self.tcp4(sequence: 5)
        truncated.removeLast(10)  // the IP total length claims 10 bytes more
        let keyless = [Self.udp4(0xee), Self.tcp4(sequence: 9, payload: 0, flags: 0x10), truncated, [0x45, 0, 0]]
        let segment = Self.tcp4(sequence: 77)
        var engine = try Self.refusedThenFailover(queue, refused: keyless + [segment], now: now)
        #expect(queue.rememberedDrops == 1, "only the TCP segment with payload is remembered")
        for packet in keyless {
            #expect(!Self.admit(packet, to: queue, engine: &engine, now: now + 2 * Self.ms), "\(packet.count) bytes: refused again")
        }
        #expect(queue.aheadCount == 0)
        #expect(Self.admit(segment, to: queue, engine: &engine, now: now + 2 * Self.ms) && queue.aheadCount == 1)
    }

    @Test("memory is bounded: the ledger forgets the oldest drops; a full FIFO ahead sends the rest to the tail, protected")
    func ledgerAndAheadBounded() throws {
        let now: UInt64 = 700 * Self.ms
        let segments = (0..<5).map { Self.tcp4(sequence: UInt32($0) * 1000) }
        let small = PacedSendQueue(sharedCapacity: 4096, slotSize: 128, ledgerCapacity: 4)
        var engine = try Self.refusedThenFailover(small, refused: segments, now: now)
        #expect(small.rememberedDrops == 4, "the ledger holds its capacity")
        #expect(!Self.admit(segments[0], to: small, engine: &engine, now: now + 2 * Self.ms), "the oldest was forgotten")
        #expect(Self.admit(segments[4], to: small, engine: &engine, now: now + 2 * Self.ms) && small.aheadCount == 1)

        let narrow = PacedSendQueue(sharedCapacity: 4096, slotSize: 128, aheadCapacity: 2)
        engine = try Self.refusedThenFailover(narrow, refused: Array(segments.prefix(3)), now: now)
        for segment in segments.prefix(3) {
            #expect(Self.admit(segment, to: narrow, engine: &engine, now: now + 2 * Self.ms))
        }
        #expect(narrow.aheadCount == 2 && narrow.retransmissionsAhead == 2 && narrow.protectedRetransmissions == 1)
        var sent: [[UInt8]] = []
        for _ in 0..<2 {
            if let packet = Self.untilData(narrow, engine: &engine, now: now + 2 * Self.ms).packet { sent.append(packet) }
        }
        #expect(sent == Array(segments.prefix(2)), "those ahead leave first, in their order")
    }

    // MARK: Failover resends superseded by a later repair

    /// Lets `queue` send until only waiting remains (the clock advanced to each wake-up, reporting every send);
    /// returns the resends, in order. Bounded in steps.
    static func sendAll(_ queue: PacedSendQueue, engine: inout MultipathEngine<Int>, from start: UInt64)
        -> [(uplink: UplinkID, sequence: UInt32)] {
        var resent: [(uplink: UplinkID, sequence: UInt32)] = []
        var now = start, counter: UInt64 = 0, sequence: UInt32 = 0, steps = 0
        repeat {
            let released = drain(queue, engine: &engine, now: now, counter: &counter, sequence: &sequence)
            for case .resend(let uplink, let resentSequence) in released { resent.append((uplink, resentSequence)) }
            guard let wake = queue.nextWake(engine: engine, uplinks: [UInt32(1), 2], now: now) else { break }
            now = max(wake, now + 1)
            steps += 1
        } while steps < 100_000
        return resent
    }

    /// A queue whose first lane is uplink 2's (so its repairs are looked at before uplink 1's failover resends), holding
    /// the repair `first`.
    static func queueWithRepairLaneFirst(repair first: UInt32) -> PacedSendQueue {
        let queue = PacedSendQueue(sharedCapacity: 8, slotSize: 1500)
        queue.queueResend(sequence: first, wireLength: wire, on: UplinkID(2), isRepair: true)
        return queue
    }

    @Test("a failover resend whose sequence went out as a repair (on another uplink) after it was queued is skipped and counted")
    func failoverSupersededByLaterRepair() throws {
        var engine = try Self.readyEngine()
        let now: UInt64 = 700 * Self.ms
        let queue = Self.queueWithRepairLaneFirst(repair: 7)
        for sequence: UInt32 in [100, 101, 102] {
            #expect(queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(1), isRepair: false))
        }
        #expect(queue.queueResend(sequence: 101, wireLength: Self.wire, on: UplinkID(2), isRepair: true),
                "queued before the failover resend is handed out, sent after it was queued")
        #expect(queue.waiting(102)?.bytesAhead == 2 * Self.wire, "before the repair went out 101 still waits ahead of 102")
        var counter: UInt64 = 0
        for expected: UInt32 in [7, 101] {
            let release = queue.next(engine: &engine, now: now)
            #expect(release == .resend(UplinkID(2), sequence: expected), "\(String(describing: release))")
            counter += 1
            engine.handle(.packetSent(UplinkID(2), counter: counter, sequence: expected, bytes: Self.wire, at: now))
        }
        #expect(queue.waiting(101) == nil, "a superseded failover resend no longer waits")
        #expect(queue.waiting(102)?.uplink == UplinkID(1) && queue.waiting(102)?.bytesAhead == Self.wire,
                "nor counts ahead of another: \(String(describing: queue.waiting(102)))")
        let rest = Self.sendAll(queue, engine: &engine, from: now)
        #expect(rest.map(\.sequence) == [100, 102] && rest.allSatisfy { $0.uplink == UplinkID(1) }, "\(rest)")
        #expect(queue.supersededFailoverResends == 1 && queue.isEmpty)
    }

    @Test("a repair that went out before the failover resend was queued doesn't supersede it; a later one does")
    func repairBeforeFailoverDoesNotSupersede() throws {
        var engine = try Self.readyEngine()
        let now: UInt64 = 700 * Self.ms
        let queue = Self.queueWithRepairLaneFirst(repair: 200)
        // The table exists once a failover resend was queued; one for another sequence, sent first.
        queue.queueResend(sequence: 150, wireLength: Self.wire, on: UplinkID(1), isRepair: false)
        let first = Self.sendAll(queue, engine: &engine, from: now)
        #expect(first.map(\.sequence) == [200, 150], "\(first)")
        for sequence: UInt32 in [200, 201] {
            queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(1), isRepair: false)
        }
        queue.queueResend(sequence: 201, wireLength: Self.wire, on: UplinkID(2), isRepair: true)
        let second = Self.sendAll(queue, engine: &engine, from: now + 200 * Self.ms)
        #expect(second.map(\.sequence) == [201, 200], "200's failover resend must still go, 201's not: \(second)")
        #expect(queue.supersededFailoverResends == 1)
    }

    @Test("different sequences sharing a slot of the repair table don't suppress each other")
    func collidingSequencesDoNotSuppress() throws {
        var engine = try Self.readyEngine()
        let now: UInt64 = 700 * Self.ms
        let slots = UInt32(SentRepairTable.defaultCapacity)
        let queue = Self.queueWithRepairLaneFirst(repair: 77)
        for sequence in [5, 5 + slots, 5 + 2 * slots] {
            queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(1), isRepair: false)
        }
        // The repair of 5 + 2·slots overwrites that of 5 + slots in the table: 5 + slots's failover resend is then sent
        // (a duplicate, not a loss); 5 + 2·slots's is skipped, 5's is not.
        for sequence in [5 + slots, 5 + 2 * slots] {
            queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(2), isRepair: true)
        }
        let resent = Self.sendAll(queue, engine: &engine, from: now)
        #expect(resent.map(\.sequence) == [77, 5 + slots, 5 + 2 * slots, 5, 5 + slots], "\(resent)")
        #expect(queue.supersededFailoverResends == 1 && queue.isEmpty)

        // A repair of a colliding sequence overwrites the slot: the older sequence's failover resend goes.
        let overwritten = Self.queueWithRepairLaneFirst(repair: 77)
        overwritten.queueResend(sequence: 9, wireLength: Self.wire, on: UplinkID(1), isRepair: false)
        overwritten.queueResend(sequence: 9 + slots, wireLength: Self.wire, on: UplinkID(1), isRepair: false)
        overwritten.queueResend(sequence: 9, wireLength: Self.wire, on: UplinkID(2), isRepair: true)
        overwritten.queueResend(sequence: 9 + slots, wireLength: Self.wire, on: UplinkID(2), isRepair: true)
        let after = Self.sendAll(overwritten, engine: &engine, from: now + 200 * Self.ms)
        #expect(after.map(\.sequence) == [77, 9, 9 + slots, 9], "\(after)")
        #expect(overwritten.supersededFailoverResends == 1)
    }

    @Test("sequences wrapping around UInt32: only the repaired ones are skipped, neighbours across the wrap are sent")
    func supersededAcrossWraparound() throws {
        var engine = try Self.readyEngine()
        let now: UInt64 = 700 * Self.ms
        let queue = Self.queueWithRepairLaneFirst(repair: 77)
        let failover: [UInt32] = [.max - 1, .max, 0, 1, UInt32(SentRepairTable.defaultCapacity - 1)]
        for sequence in failover { queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(1), isRepair: false) }
        for sequence: UInt32 in [.max, 0] { queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(2), isRepair: true) }
        let resent = Self.sendAll(queue, engine: &engine, from: now)
        #expect(resent.map(\.sequence) == [77, .max, 0, .max - 1, 1, UInt32(SentRepairTable.defaultCapacity - 1)], "\(resent)")
        #expect(queue.supersededFailoverResends == 2)
    }

    @Test("full lanes: a full failover lane wholly superseded is skipped, and its stamps stay in step when refilled")
    func fullLanesSuperseded() throws {
        var engine = try Self.readyEngine()
        let now: UInt64 = 700 * Self.ms
        let capacity = UInt32(PacedSendQueue.resendCapacity)
        // Repairs and failover resends in one lane: all the repairs go first.
        let queue = PacedSendQueue(sharedCapacity: 8, slotSize: 1500)
        var accepted = 0
        for sequence in 0...capacity where queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(1), isRepair: false) {
            accepted += 1
        }
        #expect(accepted == Int(capacity), "the failover lane refuses past its capacity")
        accepted = 0
        for sequence in 0...capacity where queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(1), isRepair: true) {
            accepted += 1
        }
        #expect(accepted == Int(capacity), "the repair lane too")
        let resent = Self.sendAll(queue, engine: &engine, from: now)
        #expect(resent.map(\.sequence) == Array(0..<capacity), "only the repairs go: \(resent.count) resends")
        #expect(queue.supersededFailoverResends == UInt64(capacity) && queue.isEmpty)
        // Refilled (later repairs of the same sequences were before these were queued): all go.
        for sequence in 0..<capacity {
            #expect(queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(1), isRepair: false))
        }
        let refilled = Self.sendAll(queue, engine: &engine, from: now + 2_000 * Self.ms)
        #expect(refilled.map(\.sequence) == Array(0..<capacity), "\(refilled.count) of \(capacity)")
        #expect(queue.supersededFailoverResends == UInt64(capacity))
    }

    @Test("a dead uplink's superseded failover resends are not taken back for another uplink")
    func takeBackSkipsSuperseded() throws {
        var engine = try Self.readyEngine()
        let now: UInt64 = 700 * Self.ms
        let queue = Self.queueWithRepairLaneFirst(repair: 99)
        queue.queueResend(sequence: 10, wireLength: 100, on: UplinkID(1), isRepair: false)
        queue.queueResend(sequence: 11, wireLength: 100, on: UplinkID(1), isRepair: false)
        queue.queueResend(sequence: 12, wireLength: 100, on: UplinkID(1), isRepair: false)
        queue.queueResend(sequence: 11, wireLength: 100, on: UplinkID(2), isRepair: true)
        #expect(queue.next(engine: &engine, now: now) == .resend(UplinkID(2), sequence: 99))
        #expect(queue.next(engine: &engine, now: now) == .resend(UplinkID(2), sequence: 11))
        #expect(queue.takeResend(of: UplinkID(1))?.sequence == 10)
        #expect(queue.takeResend(of: UplinkID(1))?.sequence == 12)
        #expect(queue.takeResend(of: UplinkID(1)) == nil && queue.supersededFailoverResends == 1)
    }

    @Test("lost repairs (one handed out on the dead uplink, one still waiting there) go ahead of the new uplink's repairs")
    func lostRepairsGoFirst() throws {
        var engine = try Self.readyEngine()
        let now: UInt64 = 700 * Self.ms
        let queue = PacedSendQueue(sharedCapacity: 8, slotSize: 1500)
        // Repairs 50 and 51 on uplink 1: 50 handed out, 51 still queued when uplink 1 is found dead.
        for sequence: UInt32 in [50, 51] { queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(1), isRepair: true) }
        #expect(queue.next(engine: &engine, now: now) == .resend(UplinkID(1), sequence: 50))
        engine.handle(.packetSent(UplinkID(1), counter: 1, sequence: 50, bytes: Self.wire, at: now))
        #expect(queue.lastRepairUplink(50) == UplinkID(1) && queue.lastRepairUplink(51) == nil)
        // Uplink 2 already holds repairs of younger holes.
        for sequence: UInt32 in [90, 91] { queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(2), isRepair: true) }
        // The failover: the dead uplink's packets in sequence order (50 a lost repair), then what waited in its lane.
        for sequence: UInt32 in [40, 50, 60] {
            #expect(queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(2), isRepair: false, lostRepair: sequence == 50))
        }
        while let (sequence, wireLength, wasRepair) = queue.takeResend(of: UplinkID(1)) {
            #expect(sequence == 51 && wasRepair)
            #expect(queue.queueResend(sequence: sequence, wireLength: wireLength, on: UplinkID(2), isRepair: false, lostRepair: wasRepair))
        }
        #expect(queue.lostRepairsAhead == 2)
        #expect(queue.waiting(90)?.bytesAhead == 2 * Self.wire, "the lost repairs wait ahead of the younger holes' repairs")
        let resent = Self.sendAll(queue, engine: &engine, from: now + Self.ms)
        #expect(resent.map(\.sequence) == [50, 51, 90, 91, 40, 60], "\(resent)")
        #expect(resent.allSatisfy { $0.uplink == UplinkID(2) } && queue.isEmpty)
        #expect(queue.lastRepairUplink(50) == UplinkID(2), "the last repair of 50 went out on uplink 2")
    }

    @Test("a resend is classified by its last copy: a repair lost with a dead uplink, a failover resend, a repair")
    func resendsAreClassifiedByTheirLastCopy() throws {
        var engine = try Self.readyEngine(uplinks: 3)
        let now: UInt64 = 700 * Self.ms
        let queue = PacedSendQueue(sharedCapacity: 8, slotSize: 1500)
        let store = RetransmitStore(capacity: 64)
        let bytes = Self.packet(1)
        // 10: first on uplink 3, repaired on uplink 1. 11: first on uplink 1, repaired on uplink 2. 12: first on
        // uplink 1, never repaired. 13: first on uplink 2.
        for (sequence, first) in [(UInt32(10), UInt32(3)), (11, 1), (12, 1), (13, 2)] {
            bytes.withUnsafeBytes { store.store(sequence: sequence, packet: $0, sentOn: UplinkID(first)) }
        }
        queue.queueResend(sequence: 10, wireLength: Self.wire, on: UplinkID(1), isRepair: true)
        queue.queueResend(sequence: 11, wireLength: Self.wire, on: UplinkID(2), isRepair: true)
        _ = Self.sendAll(queue, engine: &engine, from: now)
        let down: Set<UplinkID> = [UplinkID(1)]
        func kind(_ sequence: UInt32) -> PacedSendQueue.ResendKind { queue.classifyResend(sequence, store: store) { down.contains($0) } }
        #expect(kind(10).original == UplinkID(1) && !kind(10).isRepair && kind(10).lostRepair, "its repair went out on the dead uplink")
        #expect(kind(11).original == UplinkID(2) && kind(11).isRepair && !kind(11).lostRepair, "repaired elsewhere: a repair")
        #expect(kind(12).original == UplinkID(1) && !kind(12).isRepair && !kind(12).lostRepair, "a plain failover resend")
        #expect(kind(13).original == UplinkID(2) && kind(13).isRepair && !kind(13).lostRepair)
        // Still waiting in a lane: that lane's uplink, never a lost repair (taking it back from the lane decides).
        queue.queueResend(sequence: 12, wireLength: Self.wire, on: UplinkID(1), isRepair: true)
        #expect(kind(12).waiting?.uplink == UplinkID(1) && !kind(12).lostRepair)
    }

    @Test("past the lost-repair lane's capacity the rest wait with the failover backlog")
    func lostRepairLaneFull() throws {
        var engine = try Self.readyEngine()
        let now: UInt64 = 700 * Self.ms
        let queue = PacedSendQueue(sharedCapacity: 8, slotSize: 1500)
        let lost = UInt32(PacedSendQueue.lostRepairCapacity) + 2
        queue.queueResend(sequence: 1000, wireLength: Self.wire, on: UplinkID(2), isRepair: false)
        for sequence in 0..<lost {
            #expect(queue.queueResend(sequence: sequence, wireLength: Self.wire, on: UplinkID(2), isRepair: false, lostRepair: true))
        }
        #expect(queue.lostRepairsAhead == UInt64(PacedSendQueue.lostRepairCapacity))
        let resent = Self.sendAll(queue, engine: &engine, from: now)
        let capacity = UInt32(PacedSendQueue.lostRepairCapacity)
        #expect(resent.map(\.sequence) == Array(0..<capacity) + [1000] + Array(capacity..<lost), "\(resent)")
    }
}
