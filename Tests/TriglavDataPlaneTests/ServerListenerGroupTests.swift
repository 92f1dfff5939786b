import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TriglavCore
import TriglavCrypto
@testable import TriglavDataPlane

/// The server's listener groups on loopback (no privileges needed): each listen endpoint is a SO_REUSEPORT group of
/// sockets with the options of any listener, and its BPF program sends all datagrams from one source address to one
/// socket of the group, whatever their source port (docs/DATAPLANE.md, "Isolation of clients flooding valid data").
@Suite("server listener groups: options and steering by source address")
struct ServerListenerGroupTests {
    static let groupSize = 4

    private static func listeners() throws -> [UDPSocket] {
        var configuration = ServerTunnelConfiguration(
            identity: IdentityKey.generate(), tunnelInterface: try InterfaceName("tgsgrp0"), tunnelAddresses: [], clients: [:])
        configuration.listen = [IPEndpoint(address: .v4(0x7f00_0001), port: 0)]
        configuration.listenerGroupSize = groupSize
        return try ServerTunnel.openListeners(configuration: configuration)
    }

    /// The group's socket the steering program picks for IPv4 source `address` (host order): the program's hash.
    private static func expectedSocket(_ address: UInt32) -> Int {
        Int(((address &* 0x9E37_79B1) >> 16) % UInt32(groupSize))
    }

    @Test("every socket of a group shares the endpoint, refuses fragmentation and reports each datagram's local address")
    func groupSocketsHaveListenerOptions() throws {
        let sockets = try Self.listeners()
        defer { for socket in sockets { socket.close() } }
        #expect(sockets.count == Self.groupSize)
        let endpoints = try sockets.map { try $0.localEndpoint() }
        #expect(Set(endpoints.map(\.description)).count == 1, "\(endpoints)")
        #expect(endpoints.first?.port != 0)
        for socket in sockets { #expect(try socket.mtuDiscoveryMode() == UDPSocket.refusesFragmentation) }
    }

    @Test("datagrams from one source address land in one socket whatever their source port; sources spread by the hash")
    func steeringBySourceAddress() throws {
        let sockets = try Self.listeners()
        defer { for socket in sockets { socket.close() } }
        let port = try sockets[0].localEndpoint().port
        var target = sockaddr_storage()
        let targetLength = SocketAddress.write(IPEndpoint(address: .v4(0x7f00_0001), port: port), into: &target)
        // Four source addresses on loopback, three source ports each, two datagrams per port.
        let sources: [UInt32] = [0x7f00_0002, 0x7f00_0003, 0x7f00_0004, 0x7f00_0005]
        var senders: [UDPSocket] = []
        defer { for sender in senders { sender.close() } }
        for source in sources {
            for _ in 0..<3 {
                var options = UDPSocket.Options()
                options.localEndpoint = IPEndpoint(address: .v4(source), port: 0)
                let sender = try UDPSocket(family: .v4, options: options, label: "sender")
                senders.append(sender)
                let payload = [UInt8](repeating: 4, count: 64)
                for _ in 0..<2 {
                    withUnsafePointer(to: &target) { pointer in payload.withUnsafeBytes { sender.sendOne($0, to: pointer, length: targetLength) } }
                }
            }
        }
        // Which socket each source's datagrams reached, and whether every datagram carried its local address.
        var landed: [UInt32: Set<Int>] = [:]
        var received = 0
        var withLocalAddress = 0
        let batch = DatagramBatch(capacity: 32, slotSize: 2048)
        for _ in 0..<200 where received < sources.count * 6 {
            var any = false
            for (index, socket) in sockets.enumerated() {
                let count = try socket.receive(into: batch)
                for slot in 0..<count {
                    any = true
                    received += 1
                    if case .v4(let address)? = batch.endpoint(slot)?.address { landed[address, default: []].insert(index) }
                    if batch.withLocalAddress(slot, { $0.pointee.ss_family }) == sa_family_t(AF_INET) { withLocalAddress += 1 }
                }
            }
            if !any { usleep(1000) }
        }
        #expect(received == sources.count * 6)
        #expect(withLocalAddress == received, "IP_PKTINFO on every socket of the group")
        for source in sources {
            #expect(landed[source] == [Self.expectedSocket(source)], "source \(String(source, radix: 16)): \(landed[source] ?? [])")
        }
        #expect(Set(sources.map(Self.expectedSocket)).count > 1, "the test's sources should spread over the group")
    }
}
