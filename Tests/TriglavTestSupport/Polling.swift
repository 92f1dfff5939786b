import Foundation

/// Calls `probe` until `isDone` accepts what it returned or `timeout` passes, `interval` apart; returns the last value,
/// for the caller to check and print. Bounded by the deadline, and done at the first value that satisfies: the way
/// tests wait for a daemon's state to settle without a fixed sleep.
public func pollUntil<Value>(timeout: TimeInterval, every interval: TimeInterval = 0.1, _ probe: () throws -> Value,
                             isDone: (Value) -> Bool) rethrows -> Value {
    let deadline = Date().addingTimeInterval(timeout)
    var value = try probe()
    while !isDone(value) && Date() < deadline {
        Thread.sleep(forTimeInterval: interval)
        value = try probe()
    }
    return value
}
