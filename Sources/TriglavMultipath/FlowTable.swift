import TriglavCore

/// `flow` mode's memory of which uplink each recent flow was put on, so a flow keeps its uplink while that
/// uplink is usable, whatever uplinks come back or are added meanwhile (rendezvous hashing alone would move
/// flows onto them, and reorder those flows).
///
/// Invariants: fixed capacity, allocated in `init`; nothing per packet. Set-associative: a key's hash picks a
/// set of `ways` entries, and a new key replaces the least recently used entry of its set (an empty one
/// first). A flow evicted while still alive is pinned again by the caller, by rendezvous hashing, which
/// gives it the same uplink unless the set of usable uplinks changed since.
struct FlowTable {
    static let ways = 8
    private var keys: [UInt64]
    private var uplinkIDs: [UplinkID]
    /// When each entry was last used, on `useClock`; 0: empty.
    private var lastUse: [UInt64]
    private var useClock: UInt64 = 0
    private let setMask: Int

    /// - Parameter capacity: entries; a power of two, at least `ways`.
    init(capacity: Int) {
        precondition(capacity >= Self.ways && capacity & (capacity - 1) == 0, "flow table capacity \(capacity)")
        keys = Array(repeating: 0, count: capacity)
        uplinkIDs = Array(repeating: UplinkID(0), count: capacity)
        lastUse = Array(repeating: 0, count: capacity)
        setMask = capacity / Self.ways - 1
    }

    var capacity: Int { keys.count }
    var count: Int { lastUse.reduce(0) { $0 + ($1 == 0 ? 0 : 1) } }

    @inline(__always) private func setStart(_ key: FlowKey) -> Int {
        (Int(truncatingIfNeeded: mix64(key.rawValue ^ 0x9e37_79b9_7f4a_7c15) >> 17) & setMask) * Self.ways
    }

    /// The uplink `key` is pinned to, if remembered (and marks it used).
    mutating func uplink(for key: FlowKey) -> UplinkID? {
        let start = setStart(key)
        for entry in start..<(start + Self.ways) where lastUse[entry] != 0 && keys[entry] == key.rawValue {
            useClock &+= 1
            lastUse[entry] = useClock
            return uplinkIDs[entry]
        }
        return nil
    }

    /// Pins `key` to `id`, replacing its entry, else an empty one, else the least recently used of its set.
    mutating func pin(_ key: FlowKey, to id: UplinkID) {
        let start = setStart(key)
        var victim = start
        for entry in start..<(start + Self.ways) {
            if lastUse[entry] != 0 && keys[entry] == key.rawValue { victim = entry; break }
            if lastUse[entry] < lastUse[victim] { victim = entry }
        }
        useClock &+= 1
        keys[victim] = key.rawValue
        uplinkIDs[victim] = id
        lastUse[victim] = useClock
    }
}
