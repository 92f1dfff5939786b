internal import CNetlink
public import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Watches links, addresses and routes of one network namespace and delivers typed `NetlinkEvent`s.
///
/// Order of work (the usual race-free recipe): subscribe to RTNLGRP_LINK, IPV4/IPV6_IFADDR and
/// IPV4/IPV6_ROUTE first, then dump links, then addresses (after the link dump ended), then routes,
/// deliver that as `...Added` events followed by `.synchronized`, then apply the notifications that
/// queued up meanwhile and everything after. Stale or repeated notifications are absorbed by comparing
/// with the current state. If the kernel drops notifications (receive buffer overflow, ENOBUFS), the
/// monitor dumps again and delivers only the differences, then `.synchronized` again.
///
/// Threading: one dedicated OS thread per monitor blocks in poll(2) and calls the handler on it, in
/// order. The handler must not block for long. Lifetime: `start` once; `stop()` ends the thread (it
/// frees both netlink sockets) and no event is delivered after `stop()` returns, except one that was
/// already being delivered concurrently. A stopped monitor cannot be restarted.
public final class NetlinkMonitor: Sendable {
    private enum Phase: Sendable { case idle, running(stopFD: Int32), stopped }

    private let phase = Mutex<Phase>(.idle)
    /// Run once by `stop()`: finishes the stream handed out by `events()`.
    private let onStop = Mutex<(@Sendable () -> Void)?>(nil)
    private let stopped = Atomic<Bool>(false)
    private let namespacePath: String?
    private let logger: Logger

    /// Receive buffer for notifications; a burst (hundreds of interfaces changing) fits without overflow.
    static let defaultReceiveBufferBytes: Int32 = 4 << 20
    private let receiveBufferBytes: Int32

    /// A monitor of the calling process's network namespace, or of the one at `networkNamespacePath`.
    public convenience init(networkNamespacePath: String? = nil, logger: Logger = Logger(label: "triglav.netlink.monitor")) {
        self.init(networkNamespacePath: networkNamespacePath, receiveBufferBytes: Self.defaultReceiveBufferBytes, logger: logger)
    }

    /// `receiveBufferBytes` is small only in tests that provoke an overflow.
    init(networkNamespacePath: String?, receiveBufferBytes: Int32, logger: Logger) {
        self.namespacePath = networkNamespacePath
        self.receiveBufferBytes = receiveBufferBytes
        self.logger = logger
    }

    deinit { stop() }

    /// Subscribes and starts the monitor thread; `handler` then receives every event on that thread.
    /// Throws if the sockets cannot be opened or subscribed, or if the monitor was started before.
    public func start(_ handler: @escaping @Sendable (NetlinkEvent) -> Void) throws(NetlinkError) {
        try phase.withLock { (phase: inout Phase) throws(NetlinkError) in
            guard case .idle = phase else { throw .monitorMisuse(reason: "start() called twice or after stop()") }
            let sockets: MonitorSockets
            let bufferBytes = receiveBufferBytes
            if let namespacePath {
                sockets = try NetworkNamespace.run(in: namespacePath) { () throws(NetlinkError) in
                    try MonitorSockets.open(receiveBufferBytes: bufferBytes)
                }
            } else {
                sockets = try MonitorSockets.open(receiveBufferBytes: bufferBytes)
            }
            var pipeFDs: [Int32] = [0, 0]
            guard pipe(&pipeFDs) == 0 else {
                sockets.close()
                throw .failed(operation: "creating", subject: "monitor wake-up pipe", code: errno, message: String(cString: strerror(errno)))
            }
            _ = fcntl(pipeFDs[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(pipeFDs[1], F_SETFD, FD_CLOEXEC)
            phase = .running(stopFD: pipeFDs[1])
            let loop = MonitorLoop(sockets: sockets, wakeFD: pipeFDs[0], stopped: self.stoppedFlag(), logger: logger,
                                   handler: handler)
            DedicatedThread.start(name: "tg-nl-monitor") { loop.run() }
        }
    }

    /// Starts the monitor and returns its events as an async sequence. Ending the iteration (or
    /// cancelling the consuming task) stops the monitor; `stop()` (or releasing the monitor) ends the
    /// sequence.
    public func events() throws(NetlinkError) -> AsyncStream<NetlinkEvent> {
        let (stream, continuation) = AsyncStream<NetlinkEvent>.makeStream(bufferingPolicy: .unbounded)
        continuation.onTermination = { [weak self] _ in self?.stop() }
        onStop.withLock { $0 = { continuation.finish() } }
        do {
            try start { continuation.yield($0) }
        } catch {
            continuation.finish()
            throw error
        }
        return stream
    }

    /// Stops the monitor thread. Idempotent; safe to call from the handler.
    public func stop() {
        stopped.store(true, ordering: .sequentiallyConsistent)
        phase.withLock { phase in
            if case .running(let stopFD) = phase {
                var byte: UInt8 = 1
                _ = write(stopFD, &byte, 1)
                close(stopFD)  // the reader sees the byte, then EOF
            }
            phase = .stopped
        }
        onStop.withLock { hook in
            let finish = hook
            hook = nil
            return finish
        }?()
    }

    private func stoppedFlag() -> StopFlag { StopFlag(monitor: self) }

    /// Lets the loop read the stop flag without retaining the monitor (so deinit can stop it).
    struct StopFlag: Sendable {
        weak var monitor: NetlinkMonitor?
        var isSet: Bool { monitor?.stopped.load(ordering: .sequentiallyConsistent) ?? true }
    }
}

/// The event socket (subscribed, non-blocking, sequence checks off) and the dump socket.
struct MonitorSockets: @unchecked Sendable {
    // Ownership moves from the opener to the monitor thread, which alone uses and frees them.
    let events: OpaquePointer
    let dumps: OpaquePointer

    static let groups: [UInt32] = [RTNLGRP_LINK.rawValue, RTNLGRP_IPV4_IFADDR.rawValue, RTNLGRP_IPV6_IFADDR.rawValue,
                                   RTNLGRP_IPV4_ROUTE.rawValue, RTNLGRP_IPV6_ROUTE.rawValue]

    static func open(receiveBufferBytes: Int32) throws(NetlinkError) -> MonitorSockets {
        let events = try SocketHandle.connect().release().pointer
        let dumps: OpaquePointer
        do {
            dumps = try SocketHandle.connect().release().pointer
        } catch {
            nl_socket_free(events)
            throw error
        }
        let sockets = MonitorSockets(events: events, dumps: dumps)
        nl_socket_disable_seq_check(events)
        for group in groups {
            let rc = nl_socket_add_membership(events, Int32(group))
            if rc < 0 {
                sockets.close()
                throw Libnl.error(rc, operation: "subscribing to", subject: "rtnetlink group \(group)")
            }
        }
        _ = nl_socket_set_buffer_size(events, receiveBufferBytes, 0)
        let rc = nl_socket_set_nonblocking(events)
        if rc < 0 {
            sockets.close()
            throw Libnl.error(rc, operation: "configuring", subject: "monitor socket")
        }
        return sockets
    }

    func close() {
        nl_socket_free(events)
        nl_socket_free(dumps)
    }
}

/// Runs on the monitor thread and owns everything it touches.
private final class MonitorLoop: @unchecked Sendable {
    // Created by start(), then used only by the monitor thread.
    private let sockets: MonitorSockets
    private let wakeFD: Int32
    private let stopped: NetlinkMonitor.StopFlag
    private let logger: Logger
    private let handler: @Sendable (NetlinkEvent) -> Void
    private var tracker = NetlinkStateTracker()
    /// Notifications parsed from the datagrams of one drain, applied after the drain.
    fileprivate var pending: [KernelNotification] = []

    init(sockets: MonitorSockets, wakeFD: Int32, stopped: NetlinkMonitor.StopFlag, logger: Logger,
         handler: @escaping @Sendable (NetlinkEvent) -> Void) {
        self.sockets = sockets
        self.wakeFD = wakeFD
        self.stopped = stopped
        self.logger = logger
        self.handler = handler
    }

    func run() {
        defer {
            sockets.close()
            Glibc.close(wakeFD)
        }
        guard let callbacks = makeCallbacks() else {
            logger.error("netlink monitor: cannot allocate libnl callbacks; monitor not running")
            return
        }
        defer { nl_cb_put(callbacks) }
        var needsDump = true
        let eventFD = nl_socket_get_fd(sockets.events)
        while !stopped.isSet {
            if needsDump {
                if resynchronize() {
                    needsDump = false
                } else if waitForStop(milliseconds: 1000) {
                    return
                }
                continue
            }
            var fds = [pollfd(fd: eventFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("netlink monitor: poll failed (errno \(errno)); stopping")
                return
            }
            if fds[1].revents != 0 { return }
            if fds[0].revents != 0 { needsDump = !drain(callbacks) }
        }
    }

    /// Reads every queued datagram, then applies the notifications. Returns false after an overflow.
    private func drain(_ callbacks: OpaquePointer) -> Bool {
        var overflowed = false
        while true {
            let rc = withExtendedLifetime(self) { nl_recvmsgs_report(sockets.events, callbacks) }
            if rc > 0 { continue }
            if rc == 0 || -rc == NLE_AGAIN || -rc == NLE_INTR { break }
            if -rc == NLE_NOMEM || -rc == NLE_DUMP_INTR || -rc == NLE_MSG_OVERFLOW {
                logger.warning("netlink monitor: notifications were lost (\(Libnl.message(rc))); resynchronizing")
                overflowed = true
                continue  // empty the socket, the dump will bring the truth
            }
            logger.warning("netlink monitor: receive failed: \(Libnl.message(rc))")
            break
        }
        let notifications = pending
        pending.removeAll(keepingCapacity: true)
        if overflowed { return false }
        for notification in notifications {
            for event in tracker.apply(notification) { deliver(event) }
        }
        return true
    }

    /// Dumps links, then addresses, then routes on the dump socket and delivers the differences.
    private func resynchronize() -> Bool {
        do throws(NetlinkError) {
            let links = try Libnl.dumpLinks(sockets.dumps)
            let addresses = try Libnl.dumpAddresses(sockets.dumps)
            let routes = try Libnl.dumpRoutes(sockets.dumps)
            pending.removeAll(keepingCapacity: true)
            for event in tracker.resynchronize(links: links, addresses: addresses, routes: routes) { deliver(event) }
            deliver(.synchronized)
            logger.debug("netlink monitor: synchronized (\(links.count) links, \(addresses.count) addresses, \(routes.count) routes)")
            return true
        } catch {
            logger.warning("netlink monitor: dump failed: \(error); retrying in 1 s")
            return false
        }
    }

    private func waitForStop(milliseconds: Int32) -> Bool {
        var fd = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
        return poll(&fd, 1, milliseconds) > 0 || stopped.isSet
    }

    private func deliver(_ event: NetlinkEvent) {
        guard !stopped.isSet else { return }
        handler(event)
    }

    private func makeCallbacks() -> OpaquePointer? {
        // Clone the event socket's callbacks: they carry the disabled sequence check that notifications
        // (sequence number 0) need.
        guard let base = nl_socket_get_cb(sockets.events) else { return nil }
        defer { nl_cb_put(base) }
        guard let callbacks = nl_cb_clone(base) else { return nil }
        let context = Unmanaged.passUnretained(self).toOpaque()
        nl_cb_set(callbacks, NL_CB_VALID, NL_CB_CUSTOM, { message, context in
            guard let message, let context else { return Int32(NL_SKIP.rawValue) }
            _ = nl_msg_parse(message, { object, context in
                guard let object, let context else { return }
                let loop = Unmanaged<MonitorLoop>.fromOpaque(context).takeUnretainedValue()
                if let notification = MonitorLoop.notification(from: object) { loop.pending.append(notification) }
            }, context)
            return Int32(NL_OK.rawValue)
        }, context)
        return callbacks
    }

    /// Turns one parsed libnl object into a notification; nil for what the monitor ignores
    /// (AF_BRIDGE port messages, which are not link creation/deletion, and cloned routes).
    static func notification(from object: OpaquePointer) -> KernelNotification? {
        guard let typeName = nl_object_get_type(object) else { return nil }
        let type = String(cString: typeName)
        let messageType = nl_object_get_msgtype(object)
        switch type {
        case "route/link":
            guard rtnl_link_get_family(object) != AF_BRIDGE_VALUE, let link = Libnl.link(object) else { return nil }
            return messageType == Int32(RTM_DELLINK) ? .deleteLink(link) : .newLink(link)
        case "route/addr":
            guard let address = Libnl.address(object: object) else { return nil }
            return messageType == Int32(RTM_DELADDR) ? .deleteAddress(address) : .newAddress(address)
        case "route/route":
            guard rtnl_route_get_flags(object) & UInt32(RTM_F_CLONED) == 0, let route = Libnl.route(object) else { return nil }
            return messageType == Int32(RTM_DELROUTE) ? .deleteRoute(route) : .newRoute(route)
        default:
            return nil
        }
    }
}
