import Testing
import TriglavCore
import TriglavMultipath
@testable import TriglavDataPlane

/// The paced AQM marks ECN-capable inner packets Congestion Experienced where it would drop others
/// (`PacketClassifier.markCongestionExperienced`, `PacedSendQueue.admit`; docs/DATAPLANE.md, "ECN").
@Suite struct ECNMarkingTests {
    /// The IPv4 header checksum computed from scratch over the first 20 bytes (0 when it verifies).
    static func headerChecksumResidue(_ packet: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        for index in stride(from: 0, to: 20, by: 2) { sum += UInt32(packet[index]) << 8 | UInt32(packet[index + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    /// An IPv4 UDP datagram with `tos` and a valid header checksum.
    static func udp4(tos: UInt8, marker: UInt8 = 0) -> [UInt8] {
        var packet = PacedSendQueueTests.udp4(marker)
        packet[1] = tos
        packet[10] = 0
        packet[11] = 0
        let checksum = headerChecksumResidue(packet)
        packet[10] = UInt8(checksum >> 8)
        packet[11] = UInt8(checksum & 0xff)
        return packet
    }

    static func mark(_ packet: inout [UInt8]) -> Bool {
        packet.withUnsafeMutableBytes { PacketClassifier.markCongestionExperienced($0) }
    }

    static func codepoint(_ packet: [UInt8]) -> PacketClassifier.ECNCodepoint? {
        packet.withUnsafeBytes { PacketClassifier.ecnCodepoint($0) }
    }

    @Test("IPv4: ECT(0) and ECT(1) become CE, DSCP kept, the header checksum still verifies")
    func ipv4MarkKeepsTheChecksumValid() {
        for tos: UInt8 in [0x02, 0x01, 0xb8 | 0x02, 0xfe, 0xfd] {
            var packet = Self.udp4(tos: tos)
            #expect(Self.headerChecksumResidue(packet) == 0)
            #expect(Self.mark(&packet), "tos \(tos)")
            #expect(packet[1] == tos | 0x03)
            #expect(Self.codepoint(packet) == .congestionExperienced)
            #expect(Self.headerChecksumResidue(packet) == 0, "tos \(tos): checksum after the mark")
            #expect(Array(packet[2...]) == Array(Self.udp4(tos: tos | 0x03)[2...]), "nothing else changed")
        }
    }

    @Test("Not-ECT and already-CE packets are left alone")
    func notCapableIsUntouched() {
        for tos: UInt8 in [0x00, 0xb8, 0x03, 0xff] {
            let original = Self.udp4(tos: tos)
            var packet = original
            #expect(!Self.mark(&packet))
            #expect(packet == original)
            #expect(!packet.withUnsafeBytes { PacketClassifier.isECNCapable($0) })
        }
    }

    @Test("IPv6: the traffic class's two low bits become CE; version, DSCP and flow label kept")
    func ipv6Mark() {
        var packet = PacedSendQueueTests.tcp6(sequence: 7)
        // Traffic class 0xb9 (DSCP 46, ECT(1)), flow label 0xabcde.
        packet[0] = 0x60 | 0x0b
        packet[1] = 0x90 | 0x0a
        packet[2] = 0xbc
        packet[3] = 0xde
        #expect(Self.codepoint(packet) == .ect1)
        var marked = packet
        #expect(Self.mark(&marked))
        #expect(Self.codepoint(marked) == .congestionExperienced)
        #expect(marked[0] == packet[0] && marked[1] == 0xba && Array(marked[2...]) == Array(packet[2...]))
    }

    @Test("short, empty and non-IP packets: no codepoint, no mark, no trap")
    func malformedPackets() {
        let samples: [[UInt8]] = [[], [0x45], [0x45, 0x02] + [UInt8](repeating: 0, count: 17),
                                  [0x60, 0x01] + [UInt8](repeating: 0, count: 37), [0x25, 0x02] + [UInt8](repeating: 0, count: 40)]
        for original in samples {
            var packet = original
            #expect(Self.codepoint(packet) == nil, "\(packet.count) bytes")
            #expect(!Self.mark(&packet))
            #expect(packet == original)
        }
    }

    /// Admits one packet a millisecond, without draining, until the AQM's first congestion signal (a mark or a drop);
    /// returns the queue, the engine and how many were admitted before it.
    static func untilCongestionSignal(tos: UInt8) throws -> (PacedSendQueue, MultipathEngine<Int>, admitted: Int, lastAdmitted: Bool) {
        let queue = PacedSendQueue(sharedCapacity: 4096)
        var engine = try PacedSendQueueTests.readyEngine()
        let start = 600 * PacedSendQueueTests.ms
        for index in 0..<3000 {
            let packet = udp4(tos: tos, marker: UInt8(truncatingIfNeeded: index))
            let admitted = PacedSendQueueTests.admit(packet, to: queue, engine: &engine,
                                                     now: start + UInt64(index) * PacedSendQueueTests.ms)
            if !admitted || engine.congestionMarks > 0 { return (queue, engine, index, admitted) }
        }
        Issue.record("no congestion signal in 3000 packets")
        return (queue, engine, 3000, true)
    }

    @Test("a persistent queue: an ECT packet is queued marked CE where a Not-ECT one is refused, once per episode")
    func queueMarksInsteadOfDropping() throws {
        let (marking, markingEngine, markedAt, markedAdmitted) = try Self.untilCongestionSignal(tos: 0x02)
        #expect(markedAdmitted, "the marked packet is queued")
        #expect(markingEngine.congestionMarks == 1 && markingEngine.ingressDrops == 0)
        let (_, droppingEngine, droppedAt, droppedAdmitted) = try Self.untilCongestionSignal(tos: 0x00)
        #expect(!droppedAdmitted)
        #expect(droppingEngine.ingressDrops == 1 && droppingEngine.congestionMarks == 0)
        #expect(markedAt == droppedAt, "the same AQM decision, another signal")

        // Exactly the signalled packet carries CE, with a valid header checksum; the others are as admitted.
        var engine = markingEngine
        var marked: [[UInt8]] = []
        var count = 0
        let later = 600 * PacedSendQueueTests.ms + UInt64(markedAt + 1) * PacedSendQueueTests.ms
        for step in 0..<20_000 where count <= markedAt {
            let now = later + UInt64(step) * 100 * Nanoseconds.microsecond
            while let release = marking.next(engine: &engine, now: now) {
                guard case .data(let uplink, let slot) = release else { continue }
                let packet = Array(marking.packet(slot))
                if packet[1] & 0x03 == 0x03 { marked.append(packet) }
                count += 1
                engine.handle(.packetSent(uplink, counter: UInt64(count), sequence: UInt32(count), bytes: PacedSendQueueTests.wire, at: now))
                marking.release(slot)
            }
        }
        #expect(count == markedAt + 1, "every admitted packet left")
        #expect(marked.count == 1)
        #expect(marked.first.map { $0[20 + 8] } == UInt8(truncatingIfNeeded: markedAt), "the signalled one")
        #expect(marked.first.map(Self.headerChecksumResidue) == 0)
    }
}

/// The tunnel's ECN encapsulation and decapsulation (RFC 6040 normal mode; docs/DATAPLANE.md, "ECN").
@Suite struct ECNTunnelingTests {
    typealias Codepoint = PacketClassifier.ECNCodepoint

    static func decapsulate(outer: Codepoint, inner: Codepoint, dscp: UInt8 = 0xb8) -> (PacketClassifier.ECNDecapsulation, [UInt8]) {
        var packet = ECNMarkingTests.udp4(tos: dscp | inner.rawValue)
        let result = packet.withUnsafeMutableBytes { PacketClassifier.decapsulateECN(outer: outer.rawValue, into: $0) }
        return (result, packet)
    }

    @Test("RFC 6040 Figure 4: every combination of outer and inner codepoint, the IPv4 checksum kept valid")
    func decapsulationTable() {
        // Rows: inner; columns: outer Not-ECT, ECT(0), ECT(1), CE. nil: drop.
        let table: [(Codepoint, [Codepoint?])] = [
            (.notECT, [.notECT, .notECT, .notECT, nil]),
            (.ect0, [.ect0, .ect0, .ect1, .congestionExperienced]),
            (.ect1, [.ect1, .ect1, .ect1, .congestionExperienced]),
            (.congestionExperienced, [.congestionExperienced, .congestionExperienced, .congestionExperienced, .congestionExperienced]),
        ]
        let outers: [Codepoint] = [.notECT, .ect0, .ect1, .congestionExperienced]
        for (inner, expected) in table {
            for (outer, result) in zip(outers, expected) {
                let (verdict, packet) = Self.decapsulate(outer: outer, inner: inner)
                if let result {
                    #expect(verdict != .drop, "outer \(outer), inner \(inner)")
                    #expect(ECNMarkingTests.codepoint(packet) == result, "outer \(outer), inner \(inner)")
                    #expect(packet[1] & 0xfc == 0xb8, "DSCP kept")
                    #expect(ECNMarkingTests.headerChecksumResidue(packet) == 0, "outer \(outer), inner \(inner): checksum")
                } else {
                    #expect(verdict == .drop, "outer \(outer), inner \(inner)")
                }
            }
        }
        #expect(Self.decapsulate(outer: .congestionExperienced, inner: .ect0).0 == .congestionExperienced)
        #expect(Self.decapsulate(outer: .ect1, inner: .ect0).0 == .ect1)
        #expect(Self.decapsulate(outer: .congestionExperienced, inner: .congestionExperienced).0 == .unchanged)
    }

    @Test("IPv6 inner packets: outer CE marks the traffic class; short and non-IP packets are left alone")
    func ipv6AndMalformed() {
        var packet = PacedSendQueueTests.tcp6(sequence: 7)
        packet[1] = 0x20  // ECT(0)
        let verdict = packet.withUnsafeMutableBytes { PacketClassifier.decapsulateECN(outer: 3, into: $0) }
        #expect(verdict == .congestionExperienced && ECNMarkingTests.codepoint(packet) == .congestionExperienced)
        for original: [UInt8] in [[], [0x45, 0x02], [0x25, 0x02] + [UInt8](repeating: 0, count: 40)] {
            var copy = original
            let verdict = copy.withUnsafeMutableBytes { PacketClassifier.decapsulateECN(outer: 3, into: $0) }
            #expect(verdict == .unchanged)
            #expect(copy == original)
        }
    }

    @Test("encapsulation copies the inner codepoint (normal mode); Not-ECT for anything that isn't IP")
    func encapsulation() {
        for inner: Codepoint in [.notECT, .ect0, .ect1, .congestionExperienced] {
            #expect(ECNMarkingTests.udp4(tos: 0xb8 | inner.rawValue).withUnsafeBytes { PacketClassifier.outerECN(for: $0) } == inner.rawValue)
        }
        #expect([UInt8]([0x45]).withUnsafeBytes { PacketClassifier.outerECN(for: $0) } == 0)
    }

    @Test("the counters: CE copied inward and drops counted, the dropped packet reported for release")
    func counters() throws {
        let pool = PacketPool(capacity: 4)
        var counters = ECNDecapsulationCounters()
        let ect = try #require(ECNMarkingTests.udp4(tos: 0x02).withUnsafeBytes { pool.store($0) })
        let marked = counters.decapsulate(outer: 3, slot: ect, pool: pool)
        #expect(marked)
        #expect(ECNMarkingTests.codepoint(Array(pool.packet(ect))) == .congestionExperienced)
        let notECT = try #require(ECNMarkingTests.udp4(tos: 0x00).withUnsafeBytes { pool.store($0) })
        let keptUnderCE = counters.decapsulate(outer: 3, slot: notECT, pool: pool)
        let keptNotECT = counters.decapsulate(outer: 0, slot: notECT, pool: pool)
        #expect(!keptUnderCE && keptNotECT)
        #expect(counters == ECNDecapsulationCounters(congestionExperienced: 1, dropped: 1))
    }
}
