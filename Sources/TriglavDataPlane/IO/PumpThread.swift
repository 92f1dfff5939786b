import Foundation

/// A dedicated OS thread running one event loop (`iteration` is called until `stop()`), so the packet path
/// is synchronous code with no `await` per packet. `stop()` asks the loop to end and waits for it.
final class PumpThread: @unchecked Sendable {
    private let stopping = AtomicFlag()
    private let finished = DispatchSemaphore(value: 0)
    private let thread: Thread
    private let wake: @Sendable () -> Void

    /// Starts the thread at once. `iteration` must return within a bounded time (it waits on epoll with a
    /// timeout) and is told whether a stop was requested; `wake` interrupts its wait.
    init(name: String, wake: @escaping @Sendable () -> Void, iteration: @escaping @Sendable () -> Void) {
        self.wake = wake
        let stopping = self.stopping
        let finished = self.finished
        thread = Thread {
            while !stopping.isSet { iteration() }
            finished.signal()
        }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Requests the stop and waits until the loop has returned (at most one iteration).
    func stop() {
        guard stopping.setOnce() else { return }
        wake()
        finished.wait()
    }
}
