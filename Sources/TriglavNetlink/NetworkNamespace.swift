internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif

/// Runs code on a fresh, short-lived thread inside another network namespace.
///
/// `setns(CLONE_NEWNET)` is per thread, and a socket keeps the namespace it was created in for its
/// whole life. So a netlink socket created by `run(in:)` keeps talking to that namespace when used
/// from any other thread, while the calling process (and every other thread) stays where it was.
/// The helper thread exits afterwards, so the namespace switch never leaks into a thread pool.
public enum NetworkNamespace {
    /// Path of a namespace created by `ip netns add NAME`.
    public static func path(named name: String) -> String { "/run/netns/\(name)" }

    /// Runs `body` on a new thread that first entered the network namespace at `path`, and returns its
    /// result. Blocks the caller until the thread finishes.
    public static func run<T: Sendable>(
        in path: String, _ body: @escaping @Sendable () throws(NetlinkError) -> T
    ) throws(NetlinkError) -> T {
        let outcome = DedicatedThread.runAndJoin { () -> Result<T, NetlinkError> in
            let rc = tg_netns_enter(path)
            if rc < 0 { return .failure(.namespaceUnavailable(path: path, errno: -rc)) }
            do throws(NetlinkError) { return .success(try body()) } catch { return .failure(error) }
        }
        return try outcome.get()
    }
}

/// Carries a joined thread's result back to the joiner (pthread_join orders the accesses).
private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
    let body: () -> T
    init(_ body: @escaping () -> T) { self.body = body }
}

/// Minimal pthread helpers: the netlink code needs real OS threads (namespace switching, a blocking
/// poll loop) that never run Swift concurrency jobs.
enum DedicatedThread {
    private final class Box: @unchecked Sendable {
        // Written by the thread before it exits, read by the joiner after pthread_join: the join is
        // the happens-before edge, so no lock is needed.
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts a detached thread running `body`.
    static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let threadName = String(name.prefix(15))
        let box = Unmanaged.passRetained(Box {
            _ = tg_thread_set_name(threadName)
            body()
        }).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed with \(rc) starting \(name)")
        pthread_detach(thread)
    }

    /// Runs `body` on a new thread and waits for it.
    static func runAndJoin<T>(_ body: @escaping () -> T) -> T {
        let resultBox = ResultBox(body)
        let box = Unmanaged.passRetained(Box { resultBox.value = resultBox.body() }).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed with \(rc)")
        pthread_join(thread, nil)
        guard let value = resultBox.value else { preconditionFailure("joined thread produced no value") }
        return value
    }
}
