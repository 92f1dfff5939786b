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

    /// Reads frames until `expected` arrived or 10 s passed, flushing `sender` meanwhile (what its socket buffer
    /// didn't take stays queued in user space until a flush).
    func receiveAll(_ connection: TCPConnection, expected: Int, flushing sender: TCPConnection? = nil) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while frames.count < expected && ContinuousClock.now < deadline {
            sender?.flush()
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
        let received = receiveAll(server, expected: sizes.count, flushing: client)
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

/// The client's fallback connect (docs/DATAPLANE.md, "TCP fallback"): socket options and how a connect ends. The
/// 4 s deadline against blackholed SYNs needs a blackhole: `DataPlaneTCPFallbackTimeoutTests` (namespaces).
@Suite("TCP fallback connect")
struct TCPFallbackConnectTests {
    /// An integer TCP-level option of the socket (Linux numbers: TCP_NODELAY 1, TCP_USER_TIMEOUT 18).
    func tcpOption(_ connection: TCPConnection, _ option: Int32) -> Int32 {
        var value: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(connection.descriptor.raw, Int32(IPPROTO_TCP), option, &value, &length) == 0 else { return -1 }
        return value
    }

    /// A loopback port nobody listens on (from a throwaway UDP socket; nothing listens on TCP there in practice).
    /// A loopback TCP port nothing listens on: one the kernel just gave a TCP socket (bound, never listening),
    /// closed again. A UDP port says nothing about TCP.
    func unusedLoopbackEndpoint() throws -> IPEndpoint {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { _ = close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try #require(bound, "binding a TCP probe socket on loopback failed: errno \(errno)")
        return IPEndpoint(address: .v4(0x7f00_0001), port: UInt16(bigEndian: address.sin_port))
    }

    @Test("a client connection has TCP_NODELAY and a 10 s TCP_USER_TIMEOUT (not ~15 minutes of retransmissions)")
    func socketOptions() throws {
        let client = try TCPConnection.connect(to: try unusedLoopbackEndpoint(), device: nil, mark: 0, label: "client")
        defer { client.close() }
        #expect(tcpOption(client, 1) == 1)
        #expect(tcpOption(client, 18) == Int32(TCPFallbackTimeouts.userTimeoutMilliseconds))
        #expect(TCPFallbackTimeouts.userTimeoutMilliseconds == 10_000)
    }

    @Test("a refused connect is reported as failed with its errno, and the connection is finished")
    func refusedConnectFails() throws {
        let client = try TCPConnection.connect(to: try unusedLoopbackEndpoint(), device: nil, mark: 0, label: "client",
                                               now: monotonicNow())
        var progress = client.connectProgress(now: monotonicNow())
        for _ in 0..<200 where progress == .inProgress {
            usleepMilliseconds(5)
            progress = client.connectProgress(now: monotonicNow())
        }
        #expect(progress == .failed(errno: ECONNREFUSED))
        #expect(client.isClosed && !client.isConnected)
        client.close()
    }

    @Test("a connect still in progress at its deadline times out; before it, it is in progress; a completed one stays connected")
    func deadline() throws {
        // A listener with a full accept queue (backlog 0, never accepting) drops further SYNs: a loopback blackhole.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { Glibc.close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address -> Int32 in
                guard bind(listener, address, length) == 0, listen(listener, 0) == 0 else { return -1 }
                return getsockname(listener, address, &length)
            }
        }
        #expect(bound == 0)
        let endpoint = IPEndpoint(address: .v4(0x7f00_0001), port: UInt16(bigEndian: address.sin_port))
        var connections: [TCPConnection] = []
        defer { for connection in connections { connection.close() } }
        var blackholed: TCPConnection?
        for _ in 0..<8 where blackholed == nil {
            let started = monotonicNow()
            let connection = try TCPConnection.connect(to: endpoint, device: nil, mark: 0, label: "client", now: started)
            connections.append(connection)
            usleepMilliseconds(200)
            if connection.connectProgress(now: monotonicNow()) == .inProgress { blackholed = connection }
        }
        guard let blackholed else {
            Issue.record("every connect completed; no SYN was dropped")
            return
        }
        let started = blackholed.connectStartedAt
        #expect(blackholed.connectProgress(now: started &+ TCPFallbackTimeouts.connect &- 1) == .inProgress)
        #expect(blackholed.connectProgress(now: started &+ TCPFallbackTimeouts.connect) == .timedOut)
        #expect(blackholed.isClosed && blackholed.closeError == ETIMEDOUT)
        #expect(TCPFallbackTimeouts.connect == 4 * Nanoseconds.second)
        // Connected: however late it is checked, it stays connected.
        let (client, _) = try TCPConnectionTests().connectedPair()
        #expect(client.connectProgress(now: client.connectStartedAt &+ 100 * Nanoseconds.second) == .connected)
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
