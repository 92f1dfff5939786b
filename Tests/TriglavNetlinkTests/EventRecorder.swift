import Foundation
import Synchronization
import TriglavNetlink

/// Collects monitor events from the monitor thread and lets a test wait (bounded) for a condition.
final class EventRecorder: Sendable {
    private let storage = Mutex<[NetlinkEvent]>([])

    func record(_ event: NetlinkEvent) { storage.withLock { $0.append(event) } }

    var events: [NetlinkEvent] { storage.withLock { $0 } }

    /// Polls every 5 ms until `condition` holds or `timeout` passes; returns whether it held.
    func wait(timeout: Duration = .seconds(15), _ condition: ([NetlinkEvent]) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(events) { return true }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return condition(events)
    }
}
