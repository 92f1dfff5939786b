import Foundation
import Testing

/// The offloads of the data plane with the real tunnel in namespaces (root only; CI runs them as root): the TUN hands
/// over TCP super-packets that the tunnel cuts into packets itself (IFF_VNET_HDR with TSO, `OffloadedRead`), and runs of
/// equal datagrams leave as UDP GSO messages (`DatagramBatch.markSegmentationRuns`) and arrive as UDP GRO runs the
/// receiver splits (`DatagramBatch.forEachReceivedDatagram`). Bulk TCP both ways, IPv4 and IPv6 inside, over three
/// uplinks, must arrive intact and must actually have used all of them (docs/DATAPLANE.md, "Offloads").
@Suite("offloads in namespaces", .serialized, .enabled(if: DataPlaneLab.isRoot, "needs root for network namespaces"))
struct OffloadTunnelTests {
    /// Receives one TCP connection on argv[1]:9000 into the file argv[2].
    static let receiver = """
        import socket, sys
        family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
        listener = socket.socket(family)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((sys.argv[1], 9000))
        listener.listen(1)
        print("listening", flush=True)
        connection, _ = listener.accept()
        with open(sys.argv[2], "wb") as output:
            while True:
                chunk = connection.recv(1 << 16)
                if not chunk:
                    break
                output.write(chunk)
        print("done", flush=True)
        """

    /// Sends the file argv[2] to argv[1]:9000.
    static let sender = """
        import socket, sys
        family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
        connection = socket.create_connection((sys.argv[1], 9000), timeout=60)
        with open(sys.argv[2], "rb") as data:
            connection.sendfile(data)
        connection.close()
        """

    @Test("bulk TCP up and down, IPv4 and IPv6 inside, arrives intact, read from the TUN as super-packets, sent with UDP GSO, received with UDP GRO")
    func bulkTransfersUseTheOffloadsAndArriveIntact() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        let file = lab.directory.appendingPathComponent("payload.bin").path
        try lab.sh("head -c 12000000 /dev/urandom > \(file)")
        let expected = try lab.sh("sha256sum < \(file)")
        let receiverScript = lab.directory.appendingPathComponent("receive.py").path
        let senderScript = lab.directory.appendingPathComponent("send.py").path
        try Self.receiver.write(toFile: receiverScript, atomically: true, encoding: .utf8)
        try Self.sender.write(toFile: senderScript, atomically: true, encoding: .utf8)
        _ = try lab.startServer(ipv6: true, extraArguments: "--stats-interval 0.3")
        _ = try lab.startClient(extraArguments: "--stats-interval 0.3")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")

        for (family, serverAddress, clientAddress) in [("IPv4", DataPlaneLab.serverTunnelAddress, DataPlaneLab.clientTunnelAddress),
                                                       ("IPv6", DataPlaneLab.serverTunnelIPv6Address, "fd77::2")] {
            for upload in [true, false] {
                let (sending, receiving) = upload ? ("client", "server") : ("server", "client")
                let (from, to, address) = upload ? (lab.client, lab.server, serverAddress) : (lab.server, lab.client, clientAddress)
                let direction = "\(family) \(upload ? "upload" : "download")"
                let before = Self.counters(lab.log(sending))
                let receivedBefore = Self.counters(lab.log(receiving))
                let output = lab.directory.appendingPathComponent("received-\(family)-\(upload).bin").path
                let name = "receiver-\(family)-\(upload)"
                let receiver = try lab.spawn(namespace: to, "/usr/bin/python3 \(receiverScript) \(address) \(output)", logName: name)
                try lab.waitForOutput(name, containing: "listening", timeout: 10)
                try lab.exec(from, "/usr/bin/python3 \(senderScript) \(address) \(file)", timeout: 90)
                lab.waitForExit(receiver, timeout: 30)
                #expect(try lab.sh("sha256sum < \(output)") == expected, "\(direction): the data changed on the way")
                Thread.sleep(forTimeInterval: 0.7) // a statistics line after the transfer
                let after = Self.counters(lab.log(sending))
                #expect(after.superPackets > before.superPackets,
                        "\(direction): the \(sending) read no TCP super-packet from its TUN (\(before) → \(after))")
                #expect(after.segments - before.segments > 2 * (after.superPackets - before.superPackets),
                        "\(direction): super-packets of one or two segments only (\(before) → \(after))")
                #expect(after.segmentedDatagrams > before.segmentedDatagrams,
                        "\(direction): the \(sending) sent no UDP GSO message (\(before) → \(after))")
                #expect(after.malformed == 0, "\(direction): the \(sending) dropped TUN reads it couldn't cut")
                let received = (before: receivedBefore, after: Self.counters(lab.log(receiving)))
                #expect(received.after.joinedSegments - received.before.joinedSegments
                        > 2 * (received.after.writtenSuperPackets - received.before.writtenSuperPackets)
                        && received.after.writtenSuperPackets > received.before.writtenSuperPackets,
                        "\(direction): the \(receiving) wrote no super-packets to its TUN (\(received))")
                #expect(received.after.malformed == 0)
                #expect(received.after.coalescedDatagrams > received.before.coalescedDatagrams,
                        "\(direction): the \(receiving) received no UDP GRO run (\(received))")
            }
        }
    }

    /// The last statistics line's offload counters: the TUN's super-packets read, their segments and malformed reads,
    /// the super-packets written and the segments joined into them, and the datagrams sent in UDP GSO messages (every
    /// uplink's on a client).
    static func counters(_ log: String) -> Counters {
        guard let line = log.split(separator: "\n").last(where: { $0.contains("TunOffloadCounters(") }) else { return Counters() }
        let text = String(line)
        let pattern = /TunOffloadCounters\(superPackets: (\d+), segments: (\d+), malformed: (\d+), writtenSuperPackets: (\d+), joinedSegments: (\d+)\)/
        guard let offload = text.matches(of: pattern).last else { return Counters() }
        return Counters(superPackets: Int(offload.output.1) ?? 0, segments: Int(offload.output.2) ?? 0,
                        malformed: Int(offload.output.3) ?? 0, writtenSuperPackets: Int(offload.output.4) ?? 0,
                        joinedSegments: Int(offload.output.5) ?? 0,
                        segmentedDatagrams: text.matches(of: /segmentedDatagrams: (\d+)/).compactMap { Int($0.output.1) }.reduce(0, +),
                        coalescedDatagrams: text.matches(of: /coalescedDatagrams: (\d+)/).compactMap { Int($0.output.1) }.reduce(0, +))
    }

    struct Counters: CustomStringConvertible {
        var superPackets = 0, segments = 0, malformed = 0, writtenSuperPackets = 0, joinedSegments = 0, segmentedDatagrams = 0
        var coalescedDatagrams = 0
        var description: String {
            "read \(superPackets) super-packets of \(segments), malformed \(malformed), wrote \(writtenSuperPackets) of "
                + "\(joinedSegments), GSO datagrams \(segmentedDatagrams), GRO datagrams \(coalescedDatagrams)"
        }
    }
}
