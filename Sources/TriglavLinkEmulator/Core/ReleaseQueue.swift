/// The packets waiting for their release time, as a fixed-capacity binary min-heap of
/// (release time, arrival sequence, slot). Ties leave in arrival order. All storage is allocated
/// once in `init`; `push` and `popDue` never allocate. Owned by one thread.
public struct ReleaseQueue: ~Copyable {
    public struct Entry: Equatable, Sendable {
        public var releaseTime: UInt64
        public var sequence: UInt64
        public var slot: Int32
    }

    private let storage: UnsafeMutablePointer<Entry>
    public let capacity: Int
    public private(set) var count = 0
    private var nextSequence: UInt64 = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "a release queue needs room for at least one packet")
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
    }

    deinit { storage.deallocate() }

    public var isEmpty: Bool { count == 0 }
    public var isFull: Bool { count == capacity }

    /// Release time of the earliest packet, if any.
    public var nextReleaseTime: UInt64? { count > 0 ? storage[0].releaseTime : nil }

    /// Adds a packet. Returns false (and changes nothing) when the queue is full.
    public mutating func push(slot: Int32, releaseTime: UInt64) -> Bool {
        guard count < capacity else { return false }
        var index = count
        let entry = Entry(releaseTime: releaseTime, sequence: nextSequence, slot: slot)
        nextSequence &+= 1
        count += 1
        while index > 0 {
            let parent = (index - 1) / 2
            guard Self.precedes(entry, storage[parent]) else { break }
            storage[index] = storage[parent]
            index = parent
        }
        storage[index] = entry
        return true
    }

    /// Removes and returns the earliest packet if its release time is at or before `now`.
    public mutating func popDue(now: UInt64) -> Entry? {
        guard count > 0, storage[0].releaseTime <= now else { return nil }
        let top = storage[0]
        count -= 1
        if count > 0 {
            let last = storage[count]
            var index = 0
            while true {
                let left = 2 * index + 1
                guard left < count else { break }
                let right = left + 1
                let child = right < count && Self.precedes(storage[right], storage[left]) ? right : left
                guard Self.precedes(storage[child], last) else { break }
                storage[index] = storage[child]
                index = child
            }
            storage[index] = last
        }
        return top
    }

    private static func precedes(_ lhs: Entry, _ rhs: Entry) -> Bool {
        lhs.releaseTime != rhs.releaseTime ? lhs.releaseTime < rhs.releaseTime : lhs.sequence < rhs.sequence
    }
}
