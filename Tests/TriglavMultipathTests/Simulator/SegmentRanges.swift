/// A set of TCP segment numbers kept as sorted, disjoint, non-adjacent closed ranges: the receiver's
/// out-of-order queue and the sender's SACK scoreboard. Holes are few, so the ranges stay short.
struct SegmentRanges {
    private(set) var ranges: [(start: Int, end: Int)] = []

    var isEmpty: Bool { ranges.isEmpty }

    /// Index of the first range that ends at or after `segment - 1` (could merge with or hold it).
    private func firstCandidate(for segment: Int) -> Int {
        var low = 0, high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].end < segment - 1 { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The range holding `segment`, if any.
    func range(containing segment: Int) -> (start: Int, end: Int)? {
        let index = firstCandidate(for: segment + 1)
        guard index < ranges.count, ranges[index].start <= segment, ranges[index].end >= segment else { return nil }
        return ranges[index]
    }

    /// Adds `start...end`; calls `newMember` for every segment that wasn't in the set, in ascending order.
    mutating func insert(_ start: Int, _ end: Int, newMember: (Int) -> Void = { _ in }) {
        guard start <= end else { return }
        let first = firstCandidate(for: start)
        var index = first
        var cursor = start
        var mergedStart = start, mergedEnd = end
        while index < ranges.count, ranges[index].start <= end + 1 {
            let range = ranges[index]
            if range.start > cursor { for segment in cursor..<min(range.start, end + 1) { newMember(segment) } }
            cursor = max(cursor, range.end + 1)
            mergedStart = min(mergedStart, range.start)
            mergedEnd = max(mergedEnd, range.end)
            index += 1
        }
        if cursor <= end { for segment in cursor...end { newMember(segment) } }
        ranges.replaceSubrange(first..<index, with: CollectionOfOne((start: mergedStart, end: mergedEnd)))
    }

    /// Forgets every segment below `segment`.
    mutating func removeBelow(_ segment: Int) {
        var drop = 0
        while drop < ranges.count, ranges[drop].end < segment { drop += 1 }
        if drop > 0 { ranges.removeFirst(drop) }
        if let first = ranges.first, first.start < segment { ranges[0].start = segment }
    }

    /// Removes and returns the first range if it starts at `segment` (in-order delivery catching up).
    mutating func popRange(startingAt segment: Int) -> (start: Int, end: Int)? {
        guard let first = ranges.first, first.start == segment else { return nil }
        ranges.removeFirst()
        return first
    }
}

/// The SACK option of one ACK: up to three blocks (RFC 2018; Linux sends three alongside timestamps), the
/// first holding the segment that triggered the ACK, then the most recently reported others.
struct SackBlocks {
    private(set) var count = 0
    private var storage: ((Int, Int), (Int, Int), (Int, Int)) = ((0, 0), (0, 0), (0, 0))
    static let capacity = 3

    var isEmpty: Bool { count == 0 }

    subscript(index: Int) -> (start: Int, end: Int) {
        switch index {
        case 0: storage.0
        case 1: storage.1
        default: storage.2
        }
    }

    mutating func append(_ start: Int, _ end: Int) {
        guard count < Self.capacity else { return }
        switch count {
        case 0: storage.0 = (start, end)
        case 1: storage.1 = (start, end)
        default: storage.2 = (start, end)
        }
        count += 1
    }

    func contains(blockStartingAt start: Int) -> Bool {
        (0..<count).contains { self[$0].start == start }
    }
}
