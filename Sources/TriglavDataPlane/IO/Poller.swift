internal import CTriglavShims

/// An epoll instance with an eventfd waker. One thread calls `wait`; any thread may `add`, `remove` or `wake`.
/// Result arrays are preallocated, so a wait allocates nothing. Owns both fds; closes them on deinit.
final class Poller: @unchecked Sendable {
    /// Token `wait` reports when `wake()` was called.
    static let wakeToken: UInt64 = .max
    static let maxEvents = 64

    private let epoll: OwnedDescriptor
    private let waker: OwnedDescriptor
    private let tokens = UnsafeMutablePointer<UInt64>.allocate(capacity: Poller.maxEvents)
    private let events = UnsafeMutablePointer<UInt32>.allocate(capacity: Poller.maxEvents)

    init() throws(TriglavDataPlaneError) {
        epoll = OwnedDescriptor(try Syscall.shim("epoll_create1") { tg_epoll_create() })
        waker = OwnedDescriptor(try Syscall.shim("eventfd") { tg_eventfd_create() })
        try add(fd: waker.raw, token: Poller.wakeToken)
    }

    deinit {
        tokens.deallocate()
        events.deallocate()
    }

    /// Watches `fd` for readability (level-triggered).
    func add(fd: Int32, token: UInt64) throws(TriglavDataPlaneError) {
        try Syscall.shim("epoll_ctl add fd \(fd)") { tg_epoll_add(epoll.raw, fd, tg_epollin(), token) }
    }

    /// Stops watching `fd`. Ignores fds the kernel already dropped (closed elsewhere).
    func remove(fd: Int32) {
        _ = tg_epoll_del(epoll.raw, fd)
    }

    /// Makes the waiting thread return with `wakeToken`.
    func wake() {
        _ = tg_eventfd_signal(waker.raw)
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever) and calls `body` for each ready token. A wake-up is
    /// drained here and reported once.
    func wait(timeoutMilliseconds: Int32, _ body: (UInt64) -> Void) throws(TriglavDataPlaneError) {
        let count = try Syscall.shim("epoll_wait") {
            tg_epoll_wait(epoll.raw, tokens, events, Int32(Poller.maxEvents), timeoutMilliseconds)
        }
        for index in 0..<Int(count) {
            if tokens[index] == Poller.wakeToken { _ = tg_eventfd_drain(waker.raw) }
            body(tokens[index])
        }
    }

    /// `wait` with a nanosecond timeout (nil: forever), for the server's pacer (`epoll_pwait2`; whole milliseconds,
    /// rounded up, on a kernel before 5.11).
    func wait(timeoutNanoseconds: UInt64?, _ body: (UInt64) -> Void) throws(TriglavDataPlaneError) {
        let timeout = timeoutNanoseconds.map { Int64(min($0, 100 * Nanoseconds.second)) } ?? -1
        let count = try Syscall.shim("epoll_pwait2") {
            tg_epoll_wait_ns(epoll.raw, tokens, events, Int32(Poller.maxEvents), timeout)
        }
        for index in 0..<Int(count) {
            if tokens[index] == Poller.wakeToken { _ = tg_eventfd_drain(waker.raw) }
            body(tokens[index])
        }
    }
}
