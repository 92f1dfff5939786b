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

    /// Prepares `lengths.count` datagrams in `batch`, datagram `index` filled with its index, for `destinations`
    /// (cycled per entry of `to`) with ECN `ecn[index]`.
    static func prepare(_ batch: DatagramBatch, lengths: [Int], to destinations: [Int], addresses: inout [sockaddr_storage],
                        addressLength: socklen_t, ecn: [UInt8]) {
        for (index, length) in lengths.enumerated() {
            let slot = batch.slot(index)
            for offset in 0..<length { slot[offset] = UInt8(truncatingIfNeeded: index) }
            withUnsafePointer(to: &addresses[destinations[index]]) { address in
                batch.prepareSend(index, length: length, address: address, addressLength: addressLength, localAddress: nil,
                                  ecn: ecn[index])
            }
        }
        batch.count = lengths.count
    }

    @Test("runs for UDP GSO: same peer and ECN, equal lengths but a shorter last, bounded in count and bytes")
    func segmentationRunsAreMarkedWhereTheyMayBe() throws {
        var addresses = [sockaddr_storage(), sockaddr_storage()]
        let length = SocketAddress.write(try IPEndpoint("192.0.2.1:7443"), into: &addresses[0])
        _ = SocketAddress.write(try IPEndpoint("192.0.2.2:7443"), into: &addresses[1])
        let batch = DatagramBatch(capacity: 64, slotSize: 2048)
        // 0-3: a run with a shorter last; 4: alone (another peer); 5-6: a run; 7: alone (ECN differs);
        // 8-9: equal, then 10 longer than 8 ends the run 8-9; 10-11 a run.
        let lengths = [1200, 1200, 1200, 300, 1200, 1200, 1200, 1200, 900, 900, 1000, 1000]
        let destinations = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        let ecn: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]
        Self.prepare(batch, lengths: lengths, to: destinations, addresses: &addresses, addressLength: length, ecn: ecn)
        #expect(batch.markSegmentationRuns() == 4)
        #expect((0..<12).filter { batch.isSegmentationRun($0) } == [0, 5, 8, 10])
        #expect(batch.segmentedDatagrams(in: 0..<12) == 4 + 2 + 2 + 2)
        // Bounded: 60 equal datagrams of 1200 bytes make runs of at most 54 (65 000 bytes), 20 at most with a limit.
        Self.prepare(batch, lengths: Array(repeating: 1200, count: 60), to: Array(repeating: 0, count: 60),
                     addresses: &addresses, addressLength: length, ecn: Array(repeating: 0, count: 60))
        #expect(batch.markSegmentationRuns() == 2)
        #expect(batch.segmentedDatagrams(in: 0..<54) == 54)
        #expect(batch.markSegmentationRuns(maximumSegments: 20) == 3)
        #expect((0..<60).filter { batch.isSegmentationRun($0) } == [0, 20, 40])
        batch.clearSegmentationRuns(from: 20)
        #expect((0..<60).filter { batch.isSegmentationRun($0) } == [0])
    }

    /// Without `UDP_GRO` the receiving kernel cuts each GSO message into its datagrams; with it a message arrives as one
    /// run (loopback never cuts it), which `forEachReceivedDatagram` splits into the same datagrams.
    @Test("a batch sent with UDP GSO arrives as the same datagrams, in order, with and without UDP_GRO",
          arguments: [true, false], [true, false])
    func segmentedBatchArrivesIntact(segmentation: Bool, coalescing: Bool) throws {
        var listenerOptions = UDPSocket.Options()
        listenerOptions.localEndpoint = IPEndpoint(address: .v4(0x7f00_0001), port: 0)
        listenerOptions.coalescesReceives = coalescing
        let receiver = try UDPSocket(family: .v4, options: listenerOptions, label: "receiver")
        #expect(receiver.coalescesReceives == coalescing, "the kernel takes UDP_GRO")
        let sender = try UDPSocket(family: .v4, options: UDPSocket.Options(), label: "sender")
        sender.segmentationOffload = segmentation
        var addresses = [sockaddr_storage()]
        let length = SocketAddress.write(try receiver.localEndpoint(), into: &addresses[0])
        let batch = DatagramBatch(capacity: 64, slotSize: 2048)
        // Runs: 30 × 1400 with a shorter last, 20 × 600 with a shorter last, then 1400 alone.
        let lengths = Array(repeating: 1400, count: 30) + [77] + Array(repeating: 600, count: 20) + [1, 1400]
        Self.prepare(batch, lengths: lengths, to: Array(repeating: 0, count: lengths.count), addresses: &addresses,
                     addressLength: length, ecn: Array(repeating: 0, count: lengths.count))
        #expect(sender.send(batch) == lengths.count)
        #expect(sender.segmentationOffload == segmentation, "loopback takes UDP GSO")
        #expect(sender.segmentedDatagrams == (segmentation ? 31 + 21 : 0))
        #expect(sender.sendErrors == 0)
        let incoming = DatagramBatch(capacity: 64, slotSize: coalescing ? DatagramBatch.coalescingSlotSize : 2048)
        var received: [[UInt8]] = []
        var slots = 0
        var coalesced: UInt64 = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while received.count < lengths.count && ContinuousClock.now < deadline {
            let count = try receiver.receive(into: incoming)
            if count == 0 { usleep(1_000) }
            slots += count
            coalesced += incoming.coalescedDatagrams(count: count)
            for index in 0..<count { incoming.forEachReceivedDatagram(index) { received.append(Array($0)) } }
        }
        #expect(received.map(\.count) == lengths)
        #expect(received.enumerated().allSatisfy { index, datagram in datagram.allSatisfy { $0 == UInt8(index) } })
        // Whole runs: one slot per GSO message (three), 52 datagrams in the two runs; otherwise a slot per datagram.
        let whole = segmentation && coalescing
        #expect(slots == (whole ? 3 : lengths.count))
        #expect(coalesced == (whole ? 31 + 21 : 0))
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
