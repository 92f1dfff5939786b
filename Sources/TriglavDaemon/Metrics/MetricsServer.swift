#if canImport(Glibc)
import Glibc
#endif
public import Logging
import Synchronization
public import TriglavCore
import TriglavDataPlane
import TriglavMetrics

/// The Prometheus scrape endpoint (`[metrics] listen`): HTTP/1.1 on one TCP address, served by its own thread
/// with a poll(2) loop over non-blocking sockets, so a slow or silent client holds one connection slot and
/// nothing else. It never touches the data plane, the managers or the bus: `exposition` renders the snapshot the
/// daemon's tick left (`Daemon.renderMetrics`).
///
/// Limits (`Limits`, docs/METRICS.md): `maximumConnections` at once (one more is answered 503 and closed); each
/// connection has `exchangeTimeout` from accept to the last byte of the response, then is closed; a request
/// head is at most `ScrapeHTTP.maximumHeadBytes`; one request per connection (`Connection: close`).
///
/// Lifetime: `init` binds and listens (a bind failure is a `TriglavDaemonError` naming the address and what to
/// do); `start()` starts the thread; `stop()` ends it, closing every socket (also on deinit).
public final class MetricsServer: Sendable {
    /// How much one endpoint serves at once, and for how long.
    public struct Limits: Sendable {
        /// Connections served at once; one more gets a 503 and is closed.
        public var maximumConnections = 16
        /// From accept to the last byte of the response; then the connection is closed, finished or not.
        public var exchangeTimeout: Duration = .seconds(5)

        public init() {}
    }

    static let listenBacklog: Int32 = 32
    /// Reads of 4 KiB discarded after the response, before closing.
    static let drainReadsAtClose = 4
    static let path = "/metrics"

    /// The address as bound (the port resolved when the configuration asked for port 0, as tests do).
    public let endpoint: IPEndpoint
    private let listener: Int32
    /// A pipe whose write end `stop()` closes to end the loop (the read end then polls readable).
    private let wakeup: Int32
    private let wakeupWriter: Int32
    private let exposition: @Sendable () -> String?
    private let limits: Limits
    private let logger: Logger
    private let thread = Mutex<pthread_t?>(nil)
    private let closed = Mutex(false)

    public init(endpoint requested: IPEndpoint, limits: Limits = Limits(), logger: Logger,
                exposition: @escaping @Sendable () -> String?) throws(TriglavDaemonError) {
        self.logger = logger
        self.limits = limits
        self.exposition = exposition
        let operation = "serving metrics on \(requested) ([metrics] listen)"
        let family = requested.address.isIPv4 ? AF_INET : AF_INET6
        let socketType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(family, socketType, 0)
        guard fd >= 0 else { throw .failed(operation: operation, reason: "socket: \(Self.errorText(errno))") }
        var one: Int32 = 1
        // A restarted daemon binds again at once although connections of the previous run are in TIME_WAIT.
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET6 {
            // "[::]:9743" means IPv6 only, whatever net.ipv6.bindv6only says; list "0.0.0.0:…" for IPv4.
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let bound = SocketBinding.bind(fd, to: requested)
        if bound != 0 {
            let code = errno
            close(fd)
            throw .failed(operation: operation, reason: Self.bindFailure(requested, code))
        }
        guard listen(fd, Self.listenBacklog) == 0 else {
            let code = errno
            close(fd)
            throw .failed(operation: operation, reason: "listen: \(Self.errorText(code))")
        }
        var pair: [Int32] = [-1, -1]
        guard pipe(&pair) == 0 else {
            let code = errno
            close(fd)
            throw .failed(operation: operation, reason: "pipe: \(Self.errorText(code))")
        }
        for end in pair { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        listener = fd
        wakeup = pair[0]
        wakeupWriter = pair[1]
        endpoint = SocketBinding.localEndpoint(of: fd) ?? requested
    }

    /// Why binding `endpoint` failed, and what to do about it.
    static func bindFailure(_ endpoint: IPEndpoint, _ code: Int32) -> String {
        switch code {
        case EADDRINUSE:
            "\(endpoint) is already in use (another triglavd or exporter listens there); choose another port in "
                + "[metrics] listen, or stop what holds it (ss -ltnp 'sport = :\(endpoint.port)')"
        case EADDRNOTAVAIL:
            "\(endpoint.address) is not an address of this machine; use 127.0.0.1 or [::1], or an address `ip address` shows"
        case EACCES:
            "port \(endpoint.port) is privileged (below 1024) and triglavd has no CAP_NET_BIND_SERVICE; use a port "
                + "from 1024 up, e.g. 9743"
        default:
            "bind: \(errorText(code))"
        }
    }

    /// Checks, without keeping anything, that `endpoint`'s address belongs to this machine (binding it with
    /// port 0); nil when it does, else why not (for `triglavd --check-config`). The port itself isn't tried: a
    /// running daemon holds it.
    public static func checkAddress(_ endpoint: IPEndpoint) -> String? {
        let probe = IPEndpoint(address: endpoint.address, port: 0)
        do {
            let server = try MetricsServer(endpoint: probe, logger: Logger(label: "triglav.metrics.check")) { nil }
            server.stop()
            return nil
        } catch {
            if case .failed(_, let reason) = error { return reason }
            return error.description
        }
    }

    public func start() {
        thread.withLock { thread in
            guard thread == nil, !closed.withLock({ $0 }) else { return }
            let box = Unmanaged.passRetained(LoopBox { [self] in runLoop() }).toOpaque()
            var handle = pthread_t()
            let rc = pthread_create(&handle, nil, { raw in
                guard let raw else { return nil }
                Unmanaged<LoopBox>.fromOpaque(raw).takeRetainedValue().body()
                return nil
            }, box)
            guard rc == 0 else {
                Unmanaged<LoopBox>.fromOpaque(box).release()
                logger.error("the metrics endpoint on \(endpoint) could not start its thread (pthread_create: \(rc)); not serving")
                return
            }
            thread = handle
        }
    }

    /// Ends the thread (waiting for it) and closes the listener and every connection. Idempotent.
    public func stop() {
        let alreadyClosed = closed.withLock { closed in
            defer { closed = true }
            return closed
        }
        guard !alreadyClosed else { return }
        close(wakeupWriter)
        if let handle = thread.withLock({ $0 }) { pthread_join(handle, nil) }
        close(listener)
        close(wakeup)
    }

    deinit { stop() }

    // MARK: The loop

    private final class LoopBox {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// One client connection: the request head read so far, then the response being written.
    private struct Connection {
        let fd: Int32
        /// CLOCK_MONOTONIC nanoseconds after which the connection is closed, whatever its state.
        let deadline: UInt64
        var request: [UInt8] = []
        var response: [UInt8]?
        var written = 0
    }

    private func runLoop() {
        var connections: [Connection] = []
        var descriptors: [pollfd] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        defer { for connection in connections { close(connection.fd) } }
        while true {
            descriptors.removeAll(keepingCapacity: true)
            descriptors.append(pollfd(fd: wakeup, events: Int16(POLLIN), revents: 0))
            descriptors.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
            for connection in connections {
                descriptors.append(pollfd(fd: connection.fd, events: Int16(connection.response == nil ? POLLIN : POLLOUT), revents: 0))
            }
            let now = Daemon.monotonicNanoseconds()
            let nearest = connections.map(\.deadline).min()
            let timeout = nearest.map { Int32(clamping: ($0 > now ? $0 - now : 0) / 1_000_000 + 1) } ?? -1
            let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("the metrics endpoint on \(endpoint) stops: poll: \(Self.errorText(errno))")
                return
            }
            if descriptors[0].revents != 0 { return }
            // Connections first (the indices match `descriptors` from 2 on), then new ones.
            var kept: [Connection] = []
            kept.reserveCapacity(connections.count + 1)
            let after = Daemon.monotonicNanoseconds()
            for (index, var connection) in connections.enumerated() {
                let events = descriptors[index + 2].revents
                var open = after < connection.deadline
                if open, events != 0 { open = service(&connection, events: events, chunk: &chunk) }
                if open { kept.append(connection) } else { close(connection.fd) }
            }
            connections = kept
            if descriptors[1].revents & Int16(POLLIN) != 0 { acceptConnections(&connections, now: after) }
        }
    }

    /// Accepts what is pending; past `maximumConnections` a new connection gets a 503 (best effort) and is closed.
    private func acceptConnections(_ connections: inout [Connection], now: UInt64) {
        while true {
            // Swift's Glibc module has no accept4; the flags follow at once. (A child the daemon spawns in between
            // would inherit this connection until it execs: harmless.)
            let fd = accept(listener, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EAGAIN, EWOULDBLOCK: return
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    logger.warning("the metrics endpoint on \(endpoint) can't accept a connection: \(Self.errorText(errno))")
                    return
                default:
                    logger.debug("metrics accept: \(Self.errorText(errno))")
                    return
                }
            }
            guard connections.count < limits.maximumConnections else {
                let busy = ScrapeHTTP.Response(status: 503, reason: "Service Unavailable",
                                               headers: [("Retry-After", "1")], body: Array("too many connections\n".utf8)).bytes
                _ = busy.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
                close(fd)
                logger.debug("metrics endpoint: \(limits.maximumConnections) connections open; refused one with 503")
                continue
            }
            connections.append(Connection(fd: fd, deadline: now &+ limits.exchangeTimeout.nanoseconds))
        }
    }

    /// Reads or writes what the connection is ready for; false when it is finished or broken (close it).
    private func service(_ connection: inout Connection, events: Int16, chunk: inout [UInt8]) -> Bool {
        if connection.response == nil {
            if events & Int16(POLLIN | POLLHUP | POLLERR) == 0 { return true }
            let room = min(chunk.count, ScrapeHTTP.maximumHeadBytes + 1 - connection.request.count)
            let count = chunk.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, max(room, 1), 0) }
            if count < 0 { return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK }
            if count == 0 { return false }  // closed before a whole request head: nothing to answer
            let newBytesAt = connection.request.count
            connection.request.append(contentsOf: chunk[0..<count])
            let verdict = ScrapeHTTP.parse(connection.request, newBytesAt: newBytesAt)
            guard let response = ScrapeHTTP.response(to: verdict, path: Self.path, exposition: exposition) else { return true }
            if case .request = verdict {} else {
                logger.debug("metrics endpoint: answered \(response.status) to a request that was not a scrape (\(verdict))")
            }
            connection.response = response.bytes
            // Usually the whole response fits the socket buffer: write now rather than after another poll.
        }
        guard let response = connection.response else { return true }
        while connection.written < response.count {
            let count = response.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return send(connection.fd, base + connection.written, raw.count - connection.written,
                            Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if count < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK
            }
            connection.written += count
        }
        // All written: stop sending, and read what the client already sent beyond the head (a few KiB at most,
        // so a client that keeps sending can't hold the loop here), so that closing doesn't reset the connection
        // before the client has read the response.
        shutdown(connection.fd, Int32(SHUT_WR))
        for _ in 0..<Self.drainReadsAtClose {
            guard chunk.withUnsafeMutableBytes({ recv(connection.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 else { break }
        }
        return false
    }

    // MARK: Socket addresses



    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }
}
