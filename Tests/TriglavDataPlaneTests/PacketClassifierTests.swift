import Testing
import TriglavCore
@testable import TriglavDataPlane

@Suite("PacketClassifier")
struct ClassifierTests {
    /// A minimal IPv4/TCP header: 10.0.0.1:1000 -> 10.0.0.2:80.
    func ipv4TCP(sourcePort: UInt16 = 1000) -> [UInt8] {
        var packet = [UInt8](repeating: 0, count: 40)
        packet[0] = 0x45
        packet[9] = 6
        packet[12...15] = [10, 0, 0, 1]
        packet[16...19] = [10, 0, 0, 2]
        packet[20] = UInt8(sourcePort >> 8)
        packet[21] = UInt8(sourcePort & 0xff)
        packet[23] = 80
        return packet
    }

    @Test("IPv4 addresses")
    func ipv4() {
        let packet = ipv4TCP()
        packet.withUnsafeBytes { raw in
            #expect(PacketClassifier.version(raw) == 4)
            #expect(PacketClassifier.ipv4Destination(raw) == 0x0a00_0002)
            #expect(PacketClassifier.ipv4Source(raw) == 0x0a00_0001)
            #expect(PacketClassifier.ipv6Destination(raw) == nil)
        }
    }

    @Test("IPv6 addresses; short or garbage packets classify to nothing without trapping")
    func ipv6AndGarbage() throws {
        var packet = [UInt8](repeating: 0, count: 40)
        packet[0] = 0x60
        packet[24] = 0xfd
        packet[39] = 2
        packet.withUnsafeBytes { raw in
            #expect(PacketClassifier.version(raw) == 6)
            #expect(PacketClassifier.ipv6Destination(raw) == IPAddress("fd00::2"))
        }
        for length in 0..<41 {
            let garbage = [UInt8](repeating: 0x4f, count: length)
            garbage.withUnsafeBytes { raw in
                _ = PacketClassifier.version(raw)
                _ = PacketClassifier.ipv4Destination(raw)
                _ = PacketClassifier.ipv6Source(raw)
            }
        }
    }

    /// IPv4/TCP from 10.0.0.1 to 10.0.0.2 with `flags` and `payload` bytes after a 20-byte TCP header.
    func tcp4(flags: UInt8, payload: Int = 0) -> [UInt8] {
        var packet = [UInt8](repeating: 0, count: 40 + payload)
        packet[0] = 0x45
        packet[2] = UInt8((40 + payload) >> 8)
        packet[3] = UInt8((40 + payload) & 0xff)
        packet[9] = 6
        packet[32] = 0x50
        packet[33] = flags
        return packet
    }

    @Test("pure TCP ACKs are recognised; data, SYN, FIN, RST, UDP and fragments are not")
    func pureAcks() {
        #expect(tcp4(flags: 0x10).withUnsafeBytes { PacketClassifier.isPureTCPAck($0) })
        #expect(!tcp4(flags: 0x18, payload: 100).withUnsafeBytes { PacketClassifier.isPureTCPAck($0) })
        #expect(!tcp4(flags: 0x12).withUnsafeBytes { PacketClassifier.isPureTCPAck($0) })
        #expect(!tcp4(flags: 0x11).withUnsafeBytes { PacketClassifier.isPureTCPAck($0) })
        #expect(!tcp4(flags: 0x14).withUnsafeBytes { PacketClassifier.isPureTCPAck($0) })
        var udp = tcp4(flags: 0x10)
        udp[9] = 17
        #expect(!udp.withUnsafeBytes { PacketClassifier.isPureTCPAck($0) })
        var fragment = tcp4(flags: 0x10)
        fragment[6] = 0x20
        #expect(!fragment.withUnsafeBytes { PacketClassifier.isPureTCPAck($0) })
        var v6 = [UInt8](repeating: 0, count: 60)
        v6[0] = 0x60
        v6[5] = 20
        v6[6] = 6
        v6[52] = 0x50
        v6[53] = 0x10
        #expect(v6.withUnsafeBytes { PacketClassifier.isPureTCPAck($0) })
        for length in 0..<60 {
            _ = [UInt8](repeating: 0x45, count: length).withUnsafeBytes { PacketClassifier.isPureTCPAck($0) }
        }
    }
}
