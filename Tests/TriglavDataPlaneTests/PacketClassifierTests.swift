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
}
