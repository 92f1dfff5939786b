import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TriglavCore
import TriglavCrypto
import TriglavNetlink
@testable import TriglavDataPlane

/// The server's listener groups on loopback (no privileges needed): each listen endpoint is a SO_REUSEPORT group of
/// sockets with the options of any listener, and its BPF program sends all datagrams from one source address to one
/// socket of the group, whatever their source port; and (root only) the server TUN's queues, one per client address
/// (docs/DATAPLANE.md, "Isolation of clients flooding valid data").
@Suite("server isolation queues: listener groups steered by source address, TUN queues by destination")
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

    /// The server TUN's queue selection (root only: a TUN device in a namespace the test creates and deletes): with
    /// the steering program, a packet to tunnel address 10.77.0.N is read from queue N mod 4, whatever its flow.
    @Test("a multi-queue TUN steered by destination queues each packet by its destination address",
          .enabled(if: getuid() == 0, "needs root for a TUN in a namespace"))
    func tunSteersByDestination() throws {
        let namespace = "tg-iso-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
        try Self.run("/usr/sbin/ip netns add \(namespace)")
        defer { try? Self.run("/usr/sbin/ip netns delete \(namespace)") }
        let name = try InterfaceName("tgsq0")
        let tun = try NetworkNamespace.run(in: NetworkNamespace.path(named: namespace)) { () -> Result<TunDevice, TriglavDataPlaneError> in
            Result { () throws(TriglavDataPlaneError) in
                try TunDevice(name: name, mtu: 1400, queueCount: 4, steerByDestination: true)
            }
        }.get()
        defer { tun.close() }
        #expect(tun.queues.count == 4)
        #expect(tun.steersByDestination, "steering program refused: errno \(tun.steeringError)")
        try Self.run("/usr/sbin/ip -n \(namespace) address add 10.77.0.1/24 dev tgsq0")
        try Self.run("/usr/sbin/ip -n \(namespace) link set tgsq0 up")
        // Two UDP flows (different ports) to each of five clients' addresses.
        let destinations = 2...6
        for host in destinations {
            for port in [5001, 5002] {
                try Self.run("/usr/sbin/ip netns exec \(namespace) /bin/bash -c 'echo x > /dev/udp/10.77.0.\(host)/\(port)'")
            }
        }
        var seen: [Int: Set<Int>] = [:]
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 8)
        defer { buffer.deallocate() }
        for queue in 0..<tun.queues.count {
            while let length = try tun.read(into: buffer, queue: queue) {
                // IPv4 UDP to 10.77.0.x only (the kernel may queue IPv6 router solicitations too).
                guard length >= 20, buffer[0] >> 4 == 4, buffer[9] == 17, buffer[16] == 10, buffer[17] == 77 else { continue }
                seen[Int(buffer[19]), default: []].insert(queue)
            }
        }
        for host in destinations {
            #expect(seen[host] == [host % 4], "packets to 10.77.0.\(host) were read from queues \(seen[host] ?? [])")
        }
    }

    private static func run(_ command: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CommandFailure(description: "\(command) exited \(process.terminationStatus)") }
    }

    struct CommandFailure: Error, CustomStringConvertible {
        var description: String
    }
}
