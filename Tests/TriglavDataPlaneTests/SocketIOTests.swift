#if canImport(Glibc)
import Glibc
#endif
import Testing
import TriglavCore
@testable import TriglavDataPlane

/// The I/O layer over loopback (no privileges needed): batched UDP send/receive with addresses and the
/// local address from PKTINFO, and the epoll poller's wake-up.
@Suite("UDP batches and poller")
struct SocketIOTests {
    @Test("sendmmsg/recvmmsg move a batch intact, with peer and local addresses")
    func batchRoundTrip() throws {
        var listenerOptions = UDPSocket.Options()
        listenerOptions.localEndpoint = IPEndpoint(address: .v4(0x7f00_0001), port: 0)
        listenerOptions.packetInfo = true
        let receiver = try UDPSocket(family: .v4, options: listenerOptions, label: "receiver")
        let receiverEndpoint = try receiver.localEndpoint()
        let sender = try UDPSocket(family: .v4, options: UDPSocket.Options(), label: "sender")
        var destination = sockaddr_storage()
        let destinationLength = SocketAddress.write(receiverEndpoint, into: &destination)

        let outgoing = DatagramBatch(capacity: 16, slotSize: 256)
        for index in 0..<16 {
            let slot = outgoing.slot(index)
            for offset in 0..<(index + 1) { slot[offset] = UInt8(index) }
            withUnsafePointer(to: &destination) { address in
                outgoing.prepareSend(index, length: index + 1, address: address, addressLength: destinationLength, localAddress: nil)
            }
        }
        outgoing.count = 16
        #expect(sender.send(outgoing) == 16)

        let incoming = DatagramBatch(capacity: 32, slotSize: 256)
        var received = 0
        // Loopback delivery is normally immediate; under load the kernel may defer it, so poll against a deadline.
        let deadline = ContinuousClock.now + .seconds(10)
        while received < 16 && ContinuousClock.now < deadline {
            let count = try receiver.receive(into: incoming)
            if count == 0 { usleep(1_000) }
            for index in 0..<count {
                let datagram = incoming.received(index)
                let expected = received + index
                #expect(datagram.count == expected + 1)
                #expect(datagram.allSatisfy { $0 == UInt8(expected) })
                #expect(incoming.endpoint(index)?.address == IPAddress("127.0.0.1"))
                incoming.withLocalAddress(index) { local in
                    withUnsafePointer(to: local.pointee) { #expect(SocketAddress.read($0)?.address == IPAddress("127.0.0.1")) }
                }
            }
            received += count
        }
        #expect(received == 16)
        #expect(try receiver.receive(into: incoming) == 0)
    }

    @Test("socket addresses round-trip for IPv4 and IPv6")
    func socketAddressRoundTrip() throws {
        for text in ["192.0.2.7:7443", "[2001:db8::1]:9", "0.0.0.0:1"] {
            let endpoint = try IPEndpoint(text)
            var storage = sockaddr_storage()
            _ = SocketAddress.write(endpoint, into: &storage)
            #expect(withUnsafePointer(to: &storage) { SocketAddress.read($0) } == endpoint)
        }
    }

    @Test("binding to a missing interface names it")
    func missingInterface() throws {
        var options = UDPSocket.Options()
        options.device = try InterfaceName("tg-no-such0")
        #expect(throws: TriglavDataPlaneError.noSuchInterface("tg-no-such0")) {
            _ = try UDPSocket(family: .v4, options: options, label: "uplink")
        }
    }

    @Test("a poller wakes up on wake() and on a readable socket")
    func pollerWakes() throws {
        let poller = try Poller()
        var tokens: [UInt64] = []
        poller.wake()
        try poller.wait(timeoutMilliseconds: 1000) { tokens.append($0) }
        #expect(tokens == [Poller.wakeToken])
        tokens = []
        try poller.wait(timeoutMilliseconds: 10) { tokens.append($0) }
        #expect(tokens.isEmpty)

        var options = UDPSocket.Options()
        options.localEndpoint = IPEndpoint(address: .v4(0x7f00_0001), port: 0)
        let socket = try UDPSocket(family: .v4, options: options, label: "watched")
        try poller.add(fd: socket.descriptor.raw, token: 7)
        let sender = try UDPSocket(family: .v4, options: UDPSocket.Options(), label: "sender")
        var destination = sockaddr_storage()
        let length = SocketAddress.write(try socket.localEndpoint(), into: &destination)
        [UInt8(1)].withUnsafeBytes { bytes in
            withUnsafePointer(to: &destination) { sender.sendOne(bytes, to: $0, length: length) }
        }
        try poller.wait(timeoutMilliseconds: 1000) { tokens.append($0) }
        #expect(tokens == [7])
    }

    @Test("error messages say what failed and what to do")
    func errorMessages() {
        #expect(TriglavDataPlaneError.tunDevice(name: "tg0", errno: 1).description.contains("CAP_NET_ADMIN"))
        #expect(TriglavDataPlaneError.systemCall(operation: "bind uplink wlan0", errno: 98).description
            == "bind uplink wlan0 failed: EADDRINUSE (98)")
        #expect(TriglavDataPlaneError.noSuchInterface("wlan9").description.contains("wlan9"))
    }
}
