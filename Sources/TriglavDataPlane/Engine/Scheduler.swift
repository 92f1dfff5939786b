/// How the sender spreads packets over the usable uplinks. INTERIM: simple local policies behind one
/// entry point (`choose`), to be replaced by TriglavMultipath's quality-driven schedulers (issue 4) when
/// they land; the engine calls nothing else.
public enum SchedulerKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Per-packet round robin over all usable uplinks (aggregation; the receiver's reorder buffer
    /// restores the order).
    case aggregate
    /// One active uplink: the first usable one in the order they were added.
    case failover
    /// Each flow (inner 5-tuple) pinned to one uplink by rendezvous hashing; flows move only when
    /// their uplink stops being usable.
    case flow
    /// Every packet on every usable uplink; the receiver drops duplicates.
    case redundant

    public var description: String { rawValue }
}

/// Scheduler state owned by the sending pump (under the engine lock). Allocation-free per packet.
struct PacketScheduler {
    var kind: SchedulerKind
    private var cursor = 0

    init(kind: SchedulerKind) { self.kind = kind }

    /// Picks uplink slots for one packet among `usable` (slot indices, in add order). Calls `send` once per
    /// chosen slot (more than once only in `redundant` mode).
    mutating func choose(flowHash: UInt32, usable: UnsafeBufferPointer<Int>, uplinkIDs: UnsafeBufferPointer<UInt32>,
                         _ send: (Int) -> Void) {
        guard !usable.isEmpty else { return }
        switch kind {
        case .aggregate:
            cursor = cursor &+ 1
            send(usable[cursor % usable.count])
        case .failover:
            send(usable[0])
        case .flow:
            var best = usable[0]
            var bestScore: UInt32 = 0
            for (position, slot) in usable.enumerated() {
                let score = rendezvousScore(flowHash, uplinkIDs[position])
                if position == 0 || score > bestScore { best = slot; bestScore = score }
            }
            send(best)
        case .redundant:
            for slot in usable { send(slot) }
        }
    }

    private func rendezvousScore(_ flow: UInt32, _ uplink: UInt32) -> UInt32 {
        var x = flow ^ (uplink &* 0x9e37_79b9)
        x ^= x >> 16
        x = x &* 0x7feb_352d
        x ^= x >> 15
        x = x &* 0x846c_a68b
        x ^= x >> 16
        return x
    }
}
