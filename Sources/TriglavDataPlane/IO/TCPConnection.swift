#if canImport(Glibc)
import Glibc
#endif
internal import CTriglavShims
import TriglavCore

/// The TCP fallback transport: the same datagrams as over UDP, each sent as a frame of a 2-byte big-endian
/// length followed by the datagram. Used by uplinks whose UDP handshakes keep failing (UDP blocked).
enum TCPFraming {
    static let headerLength = 2
    /// Largest datagram a frame may carry (the UDP path never sends more than an MTU).
    static let maxFrameLength = TunnelMTU.largestDatagram
}

/// Limits of the server's TCP fallback connections (docs/DATAPLANE.md, "TCP fallback"). Accepting a connection
/// costs nothing to the peer, so without them one host could hold every slot with idle connections and lock
/// every client's fallback out.
enum TCPFallbackLimits {
    /// Fallback connections the server holds at most (they are few: UDP-blocked client uplinks); bounds the fds.
    static let maxConnections = 1024
    /// Connections from one source address at most: room for several clients with many uplinks behind one NAT.
    /// A source at its limit loses its oldest unauthenticated connection to a new one, or the new one is refused.
    static let maxConnectionsPerSource = 32
    /// How long a connection may take to authenticate (an accepted handshake or an authentic transport frame)
    /// before it is closed. A client sends its initiation right after connecting and retries every second;
    /// a cookie round under load adds one retry.
    static let handshakeDeadline = 5 * Nanoseconds.second
    /// Descriptors kept free for everything else of the process (sockets, TUN, epoll, netlink, D-Bus, logs): the
    /// table holds at most RLIMIT_NOFILE minus this, so it fills (and evicts) before `accept` runs out of fds.
    /// Under systemd's default soft limit of 1024 that is 960 connections.
    static let reservedDescriptors = 64

    /// The table's size for the process's current descriptor limit.
    static func connectionLimit(descriptorLimit: Int) -> Int {
        min(maxConnections, max(maxConnectionsPerSource, descriptorLimit - reservedDescriptors))
    }
}

/// Timeouts of the client's TCP fallback connections (docs/DATAPLANE.md, "TCP fallback"). Without them a
/// blackholed SYN keeps an uplink waiting for the kernel's SYN retries (`tcp_syn_retries` 6: about 127 s) and a
/// connection whose peer vanished lives until `tcp_retries2` gives up (about 15 minutes), the uplink useless
/// meanwhile and never trying UDP again.
enum TCPFallbackTimeouts {
    /// How long the client's connect may take before the attempt counts as failed (the uplink then tries UDP
    /// again, `ClientTunnel.udpAttemptsBeforeTCP` times, and TCP after that). The kernel sends SYNs at 0, 1 and
    /// 3 s (initial RTO 1 s, RFC 6298, doubling): 4 s lets three SYNs through and answers to the last on paths up
    /// to 1 s RTT; a path that loses three SYNs in a row gets another try within one UDP round (about 3 s).
    static let connect = 4 * Nanoseconds.second
    /// TCP_USER_TIMEOUT of the client's fallback connections: sent data unacknowledged for this long aborts the
    /// connection (ETIMEDOUT), the uplink drops it and starts over with UDP. Longer than `uplinkTimeout` (3 s),
    /// after which the client handshakes again over the same connection: an outage of a few seconds (a
    /// handover) keeps the connection; in 10 s the kernel retransmits about five times even at the 200 ms
    /// minimum RTO. An idle uplink still sends probes and, after 3 s of silence, handshakes, so a vanished
    /// peer is noticed within about 13 s.
    static let userTimeoutMilliseconds: UInt32 = 10_000
}

/// One non-blocking TCP connection carrying framed datagrams. Owns its fd (closed on `close()`/deinit).
///
/// Threading: `readFrames` is called by one thread only (the network pump); `send` and `flush` only with the
/// owning tunnel's lock held, so the output queue needs no lock of its own. A full output queue drops
/// frames like a full UDP socket buffer would: the inner TCP recovers, and the tunnel never blocks.
final class TCPConnection: @unchecked Sendable {
    static let inputCapacity = 64 * 1024
    static let maxPendingOutput = 256 * 1024

    let descriptor: OwnedDescriptor
    let label: String
    private let input: UnsafeMutableRawPointer
    private var inputCount = 0
    private var output: [UInt8] = []
    private var outputOffset = 0
    /// Frames dropped because the output queue was full.
    private(set) var droppedFrames = 0
    private(set) var isClosed = false
    /// Why the connection finished (an errno of `read`/`write`, e.g. ETIMEDOUT after TCP_USER_TIMEOUT); 0: the
    /// peer closed it, or it was closed here.
    private(set) var closeError: Int32 = 0

    // Client bookkeeping (`ClientNetworkPump`, under the tunnel's lock): the non-blocking connect's progress.
    /// When `connect(to:…)` started the connection.
    private(set) var connectStartedAt: Nanoseconds = 0
    /// Whether the connect completed (checked by `connectProgress(now:)`); a server's connections always have.
    private(set) var isConnected = true

    // Server bookkeeping (`ServerNetworkPump`, under the server's state lock): who the peer is, and whether and when
    // it last proved to be a client, which decides when the connection is closed (`TCPFallbackLimits`).
    /// The peer's address (without port), for the per-source limit.
    var peerAddress: IPAddress?
    /// When the connection was accepted.
    var acceptedAt: Nanoseconds = 0
    /// When the connection last carried an accepted handshake or an authentic transport frame; nil: never.
    var lastAuthenticated: Nanoseconds?

    init(descriptor: OwnedDescriptor, label: String) {
        self.descriptor = descriptor
        self.label = label
        input = .allocate(byteCount: Self.inputCapacity, alignment: 16)
        output.reserveCapacity(Self.maxPendingOutput)
    }

    deinit { input.deallocate() }

    /// Starts a non-blocking connection to `endpoint`, bound to `device` and marked like the UDP uplinks, with
    /// TCP_NODELAY (frames are whole datagrams; Nagle would hold handshakes and probes back) and TCP_USER_TIMEOUT
    /// (`TCPFallbackTimeouts.userTimeoutMilliseconds`, inherited by the established connection). Never blocks:
    /// `connectProgress(now:)` tells when it completed, failed or took longer than `TCPFallbackTimeouts.connect`.
    static func connect(to endpoint: IPEndpoint, device: InterfaceName?, mark: UInt32, label: String,
                        now: Nanoseconds = 0) throws(TriglavDataPlaneError) -> TCPConnection {
        let family = endpoint.address.isIPv4 ? AF_INET : AF_INET6
        let fd = try Syscall.libc("socket(TCP) for \(label)") {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let descriptor = OwnedDescriptor(fd)
        if let device {
            try Syscall.shim("bind \(label) to device \(device)") { tg_socket_bind_to_device(fd, device.rawValue) }
        }
        if mark != 0 { try Syscall.shim("SO_MARK on \(label)") { tg_socket_set_mark(fd, mark) } }
        try Syscall.shim("TCP_NODELAY on \(label)") { tg_tcp_set_nodelay(fd) }
        try Syscall.shim("TCP_USER_TIMEOUT on \(label)") {
            tg_tcp_set_user_timeout(fd, TCPFallbackTimeouts.userTimeoutMilliseconds)
        }
        var storage = sockaddr_storage()
        let length = SocketAddress.write(endpoint, into: &storage)
        var result: Int32
        repeat {
            result = withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
            }
        } while result < 0 && errno == EINTR
        if result < 0 && errno != EINPROGRESS {
            throw .systemCall(operation: "connect \(label) to \(endpoint)", errno: errno)
        }
        let connection = TCPConnection(descriptor: descriptor, label: label)
        connection.connectStartedAt = now
        connection.isConnected = result == 0
        return connection
    }

    /// Progress of the client's non-blocking connect.
    enum ConnectProgress: Equatable {
        case connected
        case inProgress
        /// The kernel gave up (the errno, e.g. ECONNREFUSED, EHOSTUNREACH).
        case failed(errno: Int32)
        /// Not connected `TCPFallbackTimeouts.connect` after it started (SYNs unanswered: a blackholed port).
        case timedOut
    }

    /// Checks the connect without blocking (SO_ERROR, then whether the socket has a peer); `.connected` from then
    /// on once it has. A failed or timed-out connection is finished (`isClosed`); the caller closes it.
    func connectProgress(now: Nanoseconds) -> ConnectProgress {
        if isConnected { return .connected }
        if isClosed { return .failed(errno: closeError) }
        let pending = tg_socket_pending_error(descriptor.raw)
        if pending != 0 {
            isClosed = true
            closeError = pending > 0 ? pending : -pending
            return .failed(errno: closeError)
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let hasPeer = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(descriptor.raw, $0, &length) }
        } == 0
        if hasPeer {
            isConnected = true
            return .connected
        }
        if now &- connectStartedAt >= TCPFallbackTimeouts.connect {
            isClosed = true
            closeError = ETIMEDOUT
            return .timedOut
        }
        return .inProgress
    }

    /// Reads what is available and calls `body` with each complete frame's datagram (a mutable view into the
    /// input buffer, valid during the call). Returns false when the connection is finished: the peer closed
    /// it, an error occurred, or a frame announced an impossible length.
    func readFrames(_ body: (UnsafeMutableRawBufferPointer) -> Void) -> Bool {
        guard !isClosed else { return false }
        var rounds = 0
        while rounds < 16 {
            rounds += 1
            let count = Glibc.read(descriptor.raw, input + inputCount, Self.inputCapacity - inputCount)
            if count == 0 { isClosed = true; return false }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { return true }
                closeError = errno
                isClosed = true
                return false
            }
            inputCount += count
            var offset = 0
            while inputCount - offset >= TCPFraming.headerLength {
                let length = Int(input.load(fromByteOffset: offset, as: UInt8.self)) << 8
                    | Int(input.load(fromByteOffset: offset + 1, as: UInt8.self))
                guard length > 0, length <= TCPFraming.maxFrameLength else { isClosed = true; return false }
                guard inputCount - offset >= TCPFraming.headerLength + length else { break }
                body(UnsafeMutableRawBufferPointer(start: input + offset + TCPFraming.headerLength, count: length))
                offset += TCPFraming.headerLength + length
            }
            if offset > 0 {
                // Keep the partial frame at the start of the buffer.
                (input + 0).copyMemory(from: input + offset, byteCount: inputCount - offset)
                inputCount -= offset
            }
        }
        return true
    }

    /// Queues one datagram as a frame and writes as much as the socket takes. Returns false when dropped.
    @discardableResult
    func send(_ datagram: UnsafeRawBufferPointer) -> Bool {
        guard !isClosed, datagram.count > 0, datagram.count <= TCPFraming.maxFrameLength else { return false }
        flush()
        guard output.count - outputOffset + TCPFraming.headerLength + datagram.count <= Self.maxPendingOutput else {
            droppedFrames += 1
            return false
        }
        output.append(UInt8(datagram.count >> 8))
        output.append(UInt8(datagram.count & 0xff))
        output.append(contentsOf: datagram)
        flush()
        return true
    }

    /// Writes queued output (call when the socket may have drained).
    func flush() {
        while outputOffset < output.count {
            // send(MSG_NOSIGNAL), not write: on a connection the peer reset (or a connect that failed) write raises
            // SIGPIPE, whose default action ended the whole daemon without a word (seen in the moved-server test).
            let written = output.withUnsafeBytes { bytes in
                Glibc.send(descriptor.raw, bytes.baseAddress! + outputOffset, bytes.count - outputOffset, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                outputOffset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                if written < 0 && errno != EAGAIN && errno != ENOTCONN { closeError = errno; isClosed = true }
                break
            }
        }
        if outputOffset == output.count {
            output.removeAll(keepingCapacity: true)
            outputOffset = 0
        } else if outputOffset > Self.maxPendingOutput / 2 {
            output.removeFirst(outputOffset)
            outputOffset = 0
        }
    }

    func close() {
        isClosed = true
        descriptor.close()
    }
}

/// A listening TCP socket for fallback clients. Owns its fd.
final class TCPListener: @unchecked Sendable {
    let descriptor: OwnedDescriptor
    let label: String

    init(endpoint: IPEndpoint, label: String) throws(TriglavDataPlaneError) {
        self.label = label
        let family = endpoint.address.isIPv4 ? AF_INET : AF_INET6
        let fd = try Syscall.libc("socket(TCP) for \(label)") {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        descriptor = OwnedDescriptor(fd)
        try Syscall.shim("SO_REUSEADDR on \(label)") { tg_socket_set_reuseaddr(fd) }
        if family == AF_INET6 { try Syscall.shim("IPV6_V6ONLY on \(label)") { tg_socket_set_v6only(fd, 1) } }
        try Syscall.libc("bind \(label) to \(endpoint)") { SocketBinding.bind(fd, to: endpoint) }
        try Syscall.libc("listen on \(label)") { listen(fd, 128) }
        let reserve = tg_open_spare_descriptor()
        if reserve >= 0 { spare = OwnedDescriptor(reserve) }
    }

    /// Accepts one pending connection (non-blocking); nil when none is waiting or accepting failed
    /// (`lastAcceptOutOfDescriptors` tells whether for lack of file descriptors).
    func accept() -> (TCPConnection, IPEndpoint?)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = tg_accept(descriptor.raw, &storage, &length)
        guard fd >= 0 else {
            lastAcceptOutOfDescriptors = fd == -EMFILE || fd == -ENFILE
            return nil
        }
        lastAcceptOutOfDescriptors = false
        _ = tg_tcp_set_nodelay(fd)
        let endpoint = withUnsafePointer(to: &storage) { SocketAddress.read($0) }
        return (TCPConnection(descriptor: OwnedDescriptor(fd), label: "fallback \(endpoint.map(\.description) ?? "?")"), endpoint)
    }

    /// Whether the last `accept()` failed because the process (EMFILE) or the system (ENFILE) is out of descriptors.
    /// The connection then stays in the listen queue, which stays readable: the caller must make room (close a
    /// connection) or `refusePending()`, or epoll wakes it again at once, forever.
    private(set) var lastAcceptOutOfDescriptors = false

    /// A descriptor on /dev/null held in reserve for `refusePending()`.
    private var spare: OwnedDescriptor?

    /// Out of descriptors: gives up the spare descriptor for a moment to accept one pending connection and close
    /// it at once, so the listen queue drains. Returns whether a connection was refused.
    func refusePending() -> Bool {
        spare?.close()
        spare = nil
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = tg_accept(descriptor.raw, &storage, &length)
        if fd >= 0 { _ = Glibc.close(fd) }
        let reserve = tg_open_spare_descriptor()
        if reserve >= 0 { spare = OwnedDescriptor(reserve) }
        return fd >= 0
    }
}
