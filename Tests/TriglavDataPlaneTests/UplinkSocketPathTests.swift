import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import TriglavCore
import TriglavNetlink
@testable import TriglavDataPlane

/// Uplink sockets on loopback (no privileges needed): they refuse to fragment, send from the source address
/// their owner sets (IP_PKTINFO per datagram, control and batch paths), and report a source that stopped being
/// local; plus the choice of that source and the TUN MTU floor (docs/DATAPLANE.md, "Sockets", "TUN MTU").
@Suite("uplink sockets: fragmentation, source address, path MTU")
struct UplinkSocketPathTests {
    private static func receiver(_ address: IPAddress) throws -> (UDPSocket, sockaddr_storage, socklen_t) {
        var options = UDPSocket.Options()
        options.localEndpoint = IPEndpoint(address: address, port: 0)
        let socket = try UDPSocket(family: SocketFamily(of: address), options: options, label: "receiver")
        var storage = sockaddr_storage()
        let length = SocketAddress.write(try socket.localEndpoint(), into: &storage)
        return (socket, storage, length)
    }

    /// Peers of the datagrams waiting on `socket` (bounded wait).
    private static func receivedFrom(_ socket: UDPSocket, expecting count: Int) throws -> [IPEndpoint] {
        let batch = DatagramBatch(capacity: 8, slotSize: 2048)
        var peers: [IPEndpoint] = []
        for _ in 0..<200 where peers.count < count {
            let received = try socket.receive(into: batch)
            for index in 0..<received { if let peer = batch.endpoint(index) { peers.append(peer) } }
            if received == 0 { usleep(1000) }
        }
        return peers
    }

    @Test("IPv4 and IPv6 sockets are set to IP_PMTUDISC_DO / IPV6_PMTUDISC_DO")
    func refuseFragmentationMode() throws {
        for family in [SocketFamily.v4, .v6] {
            let socket = try UDPSocket(family: family, options: UDPSocket.Options(), label: "uplink")
            defer { socket.close() }
            #expect(try socket.mtuDiscoveryMode() == UDPSocket.refusesFragmentation, "\(family)")
        }
        #expect(UDPSocket.refusesFragmentation == 2)
    }

    @Test("a datagram above the path MTU is refused with EMSGSIZE, not fragmented (IPv6, MTU 1280 on the socket)")
    func oversizedDatagramIsRefused() throws {
        let (receiver, address, length) = try Self.receiver(IPAddress.v6(high: 0, low: 1))
        defer { receiver.close() }
        let sender = try UDPSocket(family: .v6, options: UDPSocket.Options(), label: "uplink")
        defer { sender.close() }
        // IPV6_MTU lowers the socket's path MTU to 1280 (loopback's is 65536). With the kernel's default
        // (IPV6_PMTUDISC_WANT) a larger datagram would be fragmented and arrive.
        var mtu: Int32 = 1280
        #expect(setsockopt(sender.descriptor.raw, Int32(IPPROTO_IPV6), IPV6_MTU, &mtu, socklen_t(MemoryLayout<Int32>.size)) == 0)
        let fits = [UInt8](repeating: 7, count: 1280 - 48)
        let tooLarge = [UInt8](repeating: 7, count: 1280 - 48 + 1)
        withUnsafePointer(to: address) { pointer in
            fits.withUnsafeBytes { sender.sendOne($0, to: pointer, length: length) }
            #expect(sender.sendErrors == 0)
            tooLarge.withUnsafeBytes { sender.sendOne($0, to: pointer, length: length) }
        }
        #expect(sender.sendErrors == 1)
        #expect(sender.lastSendError == EMSGSIZE)
        #expect(try Self.receivedFrom(receiver, expecting: 2).count == 1)
    }

    @Test("control and batch sends leave from the source set on the socket, and follow it when it changes")
    func sendsFromTheSetSource() throws {
        let (receiver, address, length) = try Self.receiver(IPAddress.v4(0x7f00_0001))
        defer { receiver.close() }
        let sender = try UDPSocket(family: .v4, options: UDPSocket.Options(), label: "uplink")
        defer { sender.close() }
        let payload = [UInt8](repeating: 1, count: 32)
        let batch = DatagramBatch(capacity: 2, slotSize: 256)
        func sendBoth() {
            withUnsafePointer(to: address) { pointer in
                payload.withUnsafeBytes { sender.sendOne($0, to: pointer, length: length) }
                sender.withSource { source in
                    batch.prepareSend(0, length: 32, address: pointer, addressLength: length, localAddress: source)
                }
            }
            batch.count = 1
            sender.send(batch)
        }
        for source in ["127.0.0.2", "127.0.0.3"] {
            sender.setSource(IPAddress(source))
            #expect(sender.sourceAddress == IPAddress(source))
            sendBoth()
            let peers = try Self.receivedFrom(receiver, expecting: 2)
            #expect(peers.map(\.address) == [IPAddress(source), IPAddress(source)], "source \(source)")
        }
        // Without a source the kernel picks loopback's own.
        sender.setSource(nil)
        #expect(sender.sourceAddress == nil)
        sendBoth()
        #expect(try Self.receivedFrom(receiver, expecting: 2).map(\.address) == [IPAddress("127.0.0.1"), IPAddress("127.0.0.1")])
        // A source of the other family is not applied.
        sender.setSource(IPAddress.v6(high: 0, low: 1))
        #expect(sender.sourceAddress == nil)
    }

    @Test("a send from an address that isn't local any more asks the owner to look it up again, once until it does")
    func staleSourceIsReported() throws {
        let (receiver, address, length) = try Self.receiver(IPAddress.v4(0x7f00_0001))
        defer { receiver.close() }
        let requests = Atomic<Int>(0)
        var options = UDPSocket.Options()
        options.sourceRejected = { requests.add(1, ordering: .relaxed) }
        let sender = try UDPSocket(family: .v4, options: options, label: "uplink")
        defer { sender.close() }
        let payload = [UInt8](repeating: 1, count: 32)
        func send() {
            withUnsafePointer(to: address) { pointer in payload.withUnsafeBytes { sender.sendOne($0, to: pointer, length: length) } }
        }
        // 192.0.2.1 (TEST-NET-1) is on no interface: the kernel refuses it as a source.
        sender.setSource(IPAddress("192.0.2.1"))
        send()
        send()
        #expect(sender.sendErrors == 2)
        #expect(UDPSocket.staleSourceErrors.contains(sender.lastSendError), "errno \(sender.lastSendError)")
        #expect(requests.load(ordering: .relaxed) == 1)
        // The owner's refresh (setSource) re-arms the report.
        sender.setSource(IPAddress("192.0.2.1"))
        send()
        #expect(requests.load(ordering: .relaxed) == 2)
        sender.setSource(IPAddress("127.0.0.1"))
        send()
        #expect(requests.load(ordering: .relaxed) == 2)
        #expect(try Self.receivedFrom(receiver, expecting: 1).count == 1)
    }

    @Test("the path MTU of a connected probe socket is the route's (loopback: its link MTU, at most 65535)")
    func pathMTUOfConnectedSocket() throws {
        let (receiver, _, _) = try Self.receiver(IPAddress.v4(0x7f00_0001))
        defer { receiver.close() }
        let server = try receiver.localEndpoint()
        let loopback = try InterfaceName("lo")
        let linkMTU = try #require(Int((try String(contentsOfFile: "/sys/class/net/lo/mtu", encoding: .utf8))
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        let expected = min(linkMTU, 65535)
        #expect(UplinkPaths.pathMTU(interface: loopback, source: IPAddress("127.0.0.1"), server: server, mark: 0) == expected)
        #expect(UplinkPaths.pathMTU(interface: loopback, source: nil, server: server, mark: 0) == expected)
        // A source that isn't local can't be bound: no path.
        #expect(UplinkPaths.pathMTU(interface: loopback, source: IPAddress("192.0.2.1"), server: server, mark: 0) == nil)
        // Loopback's 127.0.0.1 has host scope, never an uplink's source; the path is still measured.
        let paths = UplinkPaths.lookUp([loopback, try InterfaceName("tg-no-such0")], server: server, mark: 0)
        #expect(paths[loopback] == UplinkPath(isOperational: true, source: nil, pathMTU: expected))
        #expect(paths.count == 1)
    }

    @Test("the source is the interface's usable primary address: global before link scope, primary before secondary")
    func primaryAddressChoice() throws {
        func info(_ text: String, scope: UInt8 = Scope.universe, flags: AddressFlags = []) throws -> AddressInfo {
            AddressInfo(interfaceIndex: 3, local: try IPPrefix(text), scope: scope, flags: flags)
        }
        #expect(UplinkPaths.primaryAddress(among: []) == nil)
        #expect(UplinkPaths.primaryAddress(among: [try info("10.0.0.7/24", flags: .secondary), try info("10.0.0.2/24")])
                == IPAddress("10.0.0.2"))
        #expect(UplinkPaths.primaryAddress(among: [try info("169.254.1.1/16", scope: Scope.link), try info("10.0.0.2/24")])
                == IPAddress("10.0.0.2"))
        #expect(UplinkPaths.primaryAddress(among: [try info("169.254.1.1/16", scope: Scope.link)]) == IPAddress("169.254.1.1"))
        #expect(UplinkPaths.primaryAddress(among: [try info("10.0.0.2/24", flags: .secondary)]) == IPAddress("10.0.0.2"))
        // IPv6: not tentative, DAD-failed or deprecated, never link-local; a temporary address (same bit as
        // IPv4's secondary) is fine.
        #expect(UplinkPaths.primaryAddress(among: [
            try info("fe80::1/64", scope: Scope.link), try info("2001:db8::5/64", flags: .tentative),
            try info("2001:db8::6/64", flags: .deprecated), try info("2001:db8::7/64", flags: .dadFailed),
        ]) == nil)
        #expect(UplinkPaths.primaryAddress(among: [try info("fe80::1/64", scope: Scope.link), try info("2001:db8::9/64", flags: .secondary)])
                == IPAddress("2001:db8::9"))
    }

    @Test("TUN MTU: smallest path minus overhead; floor 1280 with IPv6 inside, 576 without")
    func tunnelMTUFloor() {
        #expect(TunnelMTU.forUplinks(linkMTUs: [1500, 1400], overhead: 68, maximum: 1432) == 1332)
        #expect(TunnelMTU.forUplinks(linkMTUs: [1300], overhead: 68, maximum: 1432) == TunnelMTU.ipv6Floor)
        #expect(TunnelMTU.forUplinks(linkMTUs: [1300], overhead: 68, maximum: 1432, minimum: TunnelMTU.ipv4Floor) == 1232)
        #expect(TunnelMTU.forUplinks(linkMTUs: [600], overhead: 68, maximum: 1432, minimum: TunnelMTU.ipv4Floor) == 576)
        #expect(TunnelMTU.forUplinks(linkMTUs: [], overhead: 68, maximum: 1432, minimum: TunnelMTU.ipv4Floor) == 1432)
        // 1348 = 1280 + 68: the smallest IPv4 path that carries IPv6 inside without refusals.
        #expect(TunnelMTU.forUplinks(linkMTUs: [1348], overhead: 68, maximum: 1432) == 1280)
    }
}
