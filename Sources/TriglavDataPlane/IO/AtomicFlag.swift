import Synchronization

/// A flag that flips from false to true exactly once, observable from any thread.
final class AtomicFlag: Sendable {
    private let value = Atomic<Bool>(false)

    init() {}

    /// Sets the flag; returns true only for the caller that set it first.
    func setOnce() -> Bool {
        value.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }

    var isSet: Bool { value.load(ordering: .acquiring) }
}
