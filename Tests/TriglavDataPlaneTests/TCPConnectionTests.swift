#if canImport(Glibc)
import Glibc
#endif
import Testing
import TriglavCore
@testable import TriglavDataPlane

/// The TCP fallback framing over a real loopback connection.
@Suite("TCP fallback framing")
struct TCPConnectionTests {
    func connectedPair() throws -> (TCPConnection, TCPConnection) {
        // Port from a throwaway UDP socket on loopback: free for TCP too in practice; retry a few times.
        for _ in 0..<10 {
            var options = UDPSocket.Options()
            options.localEndpoint = IPEndpoint(address: .v4(0x7f00_0001), port: 0)
            let probe = try UDPSocket(family: .v4, options: options, label: "port probe")
            let endpoint = try probe.localEndpoint()
            probe.close()
            guard let listener = try? TCPListener(endpoint: endpoint, label: "listener") else { continue }
            let client = try TCPConnection.connect(to: endpoint, device: nil, mark: 0, label: "client")
            for _ in 0..<200 {
                if let (server, _) = listener.accept() {
                    for _ in 0..<200 where client.connectProgress(now: monotonicNow()) == .inProgress { usleepMilliseconds(5) }
                    return (client, server)
                }
                usleepMilliseconds(5)
            }
        }
        throw TriglavDataPlaneError.invalidState("no loopback TCP connection")
    }

    func receiveAll(_ connection: TCPConnection, expected: Int) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        for _ in 0..<400 where frames.count < expected {
            _ = connection.readFrames { frames.append(Array($0)) }
            if frames.count < expected { usleepMilliseconds(5) }
        }
        return frames
    }

    @Test("frames of every size arrive whole and in order, however the stream splits them")
    func framesRoundTrip() throws {
        let (client, server) = try connectedPair()
        let sizes = [1, 2, 3, 100, 1400, 2048] + Array(repeating: 700, count: 200)
        for (index, size) in sizes.enumerated() {
            let frame = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: size)
            #expect(frame.withUnsafeBytes { client.send($0) })
        }
        for _ in 0..<100 { client.flush() }
        let received = receiveAll(server, expected: sizes.count)
        #expect(received.count == sizes.count)
        for (index, frame) in received.enumerated() {
            #expect(frame.count == sizes[index])
            #expect(frame.allSatisfy { $0 == UInt8(truncatingIfNeeded: index) })
        }
    }

    @Test("oversized and empty datagrams are refused; a bad length closes the connection")
    func invalidFrames() throws {
        let (client, server) = try connectedPair()
        #expect([UInt8](repeating: 1, count: 2049).withUnsafeBytes { client.send($0) } == false)
        #expect([UInt8]().withUnsafeBytes { client.send($0) } == false)
        // A raw zero-length header: the receiver must give up on the stream.
        let garbage: [UInt8] = [0, 0, 1, 2]
        _ = garbage.withUnsafeBytes { write(client.descriptor.raw, $0.baseAddress, $0.count) }
        var alive = true
        for _ in 0..<200 where alive {
            alive = server.readFrames { _ in }
            if alive { usleepMilliseconds(5) }
        }
        #expect(alive == false)
        #expect(server.isClosed)
    }
}

func usleepMilliseconds(_ milliseconds: UInt32) {
    usleep(milliseconds * 1000)
}

/// The server's fallback table size follows the descriptor limit (docs/DATAPLANE.md, "TCP fallback").
@Suite("TCP fallback limits")
struct TCPFallbackLimitTests {
    @Test("min(1024, RLIMIT_NOFILE - 64), never below the per-source limit")
    func connectionLimit() {
        #expect(TCPFallbackLimits.connectionLimit(descriptorLimit: 1024) == 960)  // systemd's default soft limit
        #expect(TCPFallbackLimits.connectionLimit(descriptorLimit: 1088) == 1024)
        #expect(TCPFallbackLimits.connectionLimit(descriptorLimit: 524_288) == 1024)
        #expect(TCPFallbackLimits.connectionLimit(descriptorLimit: Int(Int32.max)) == 1024)
        #expect(TCPFallbackLimits.connectionLimit(descriptorLimit: 100) == 36)
        #expect(TCPFallbackLimits.connectionLimit(descriptorLimit: 64) == TCPFallbackLimits.maxConnectionsPerSource)
        #expect(TCPFallbackLimits.connectionLimit(descriptorLimit: -1) == TCPFallbackLimits.maxConnectionsPerSource)
    }

    @Test("an unauthenticated connection has seconds, not minutes; a source can't take the whole table")
    func limitsAreSane() {
        #expect(TCPFallbackLimits.handshakeDeadline >= 2 * Nanoseconds.second && TCPFallbackLimits.handshakeDeadline <= 10 * Nanoseconds.second)
        #expect(TCPFallbackLimits.maxConnectionsPerSource * 8 <= TCPFallbackLimits.maxConnections)
    }
}
