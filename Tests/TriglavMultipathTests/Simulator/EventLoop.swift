/// Discrete-event loop over a virtual clock (nanoseconds). Events at equal times run in insertion order,
/// so a run is a pure function of its inputs and seed.
final class EventLoop {
    private struct Entry {
        var time: UInt64
        var order: UInt64
        var action: () -> Void
    }
    private var heap: [Entry] = []
    private var insertions: UInt64 = 0
    private(set) var now: UInt64 = 0
    private(set) var processed = 0

    func at(_ time: UInt64, _ action: @escaping () -> Void) {
        let entry = Entry(time: max(time, now), order: insertions, action: action)
        insertions += 1
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if less(heap[child], heap[parent]) { heap.swapAt(child, parent); child = parent } else { break }
        }
    }

    func after(_ delay: UInt64, _ action: @escaping () -> Void) { at(now + delay, action) }

    private func less(_ a: Entry, _ b: Entry) -> Bool { a.time != b.time ? a.time < b.time : a.order < b.order }

    /// Runs events until the queue is empty or the next event is after `end`; leaves `now` at `end`.
    /// `maxEvents` bounds the run so a livelock fails the test instead of hanging it.
    func run(until end: UInt64, maxEvents: Int = 50_000_000) {
        while let first = heap.first, first.time <= end, processed < maxEvents {
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var parent = 0
                while true {
                    let left = 2 * parent + 1, right = left + 1
                    var smallest = parent
                    if left < heap.count && less(heap[left], heap[smallest]) { smallest = left }
                    if right < heap.count && less(heap[right], heap[smallest]) { smallest = right }
                    if smallest == parent { break }
                    heap.swapAt(parent, smallest)
                    parent = smallest
                }
            }
            now = first.time
            processed += 1
            first.action()
        }
        now = max(now, end)
    }
}
