import Testing
import TriglavCore
@testable import TriglavDataPlane

@Suite("PacketClassifier and scheduler")
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

    @Test("IPv4 addresses and flow hash")
    func ipv4() {
        let packet = ipv4TCP()
        packet.withUnsafeBytes { raw in
            #expect(PacketClassifier.version(raw) == 4)
            #expect(PacketClassifier.ipv4Destination(raw) == 0x0a00_0002)
            #expect(PacketClassifier.ipv4Source(raw) == 0x0a00_0001)
            #expect(PacketClassifier.ipv6Destination(raw) == nil)
        }
        let hashA = packet.withUnsafeBytes { PacketClassifier.flowHash($0) }
        let hashB = ipv4TCP(sourcePort: 1001).withUnsafeBytes { PacketClassifier.flowHash($0) }
        #expect(hashA != hashB)
        #expect(hashA == packet.withUnsafeBytes { PacketClassifier.flowHash($0) })
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
                _ = PacketClassifier.flowHash(raw)
                _ = PacketClassifier.ipv4Destination(raw)
                _ = PacketClassifier.ipv6Source(raw)
            }
        }
    }

    func choices(_ kind: SchedulerKind, flows: [UInt32], usable: [Int]) -> [[Int]] {
        var scheduler = PacketScheduler(kind: kind)
        let ids = usable.map { UInt32($0 + 1) }
        return flows.map { flow in
            var chosen: [Int] = []
            usable.withUnsafeBufferPointer { slots in
                ids.withUnsafeBufferPointer { scheduler.choose(flowHash: flow, usable: slots, uplinkIDs: $0) { chosen.append($0) } }
            }
            return chosen
        }
    }

    @Test("aggregate spreads evenly, failover sticks to the first, redundant uses all")
    func schedulers() {
        let aggregate = choices(.aggregate, flows: Array(repeating: 1, count: 300), usable: [0, 2, 5]).flatMap { $0 }
        #expect([0, 2, 5].allSatisfy { slot in aggregate.filter { $0 == slot }.count == 100 })
        #expect(choices(.failover, flows: [1, 2, 3], usable: [3, 1]) == [[3], [3], [3]])
        #expect(choices(.redundant, flows: [1], usable: [0, 1, 2]) == [[0, 1, 2]])
        #expect(choices(.aggregate, flows: [1], usable: []) == [[]])
    }

    @Test("flow pins each flow; removing an uplink moves only its flows")
    func flowPinning() {
        let flows = (0..<300).map { UInt32($0) &* 2_654_435_761 }
        let all = choices(.flow, flows: flows, usable: [0, 1, 2]).map { $0[0] }
        #expect(all == choices(.flow, flows: flows, usable: [0, 1, 2]).map { $0[0] })
        #expect(Set(all) == [0, 1, 2])
        let withoutOne = choices(.flow, flows: flows, usable: [0, 2]).map { $0[0] }
        for (before, after) in zip(all, withoutOne) where before != 1 { #expect(before == after) }
    }
}
