import TriglavMultipath

/// The client's uplink policy, carried in the (authenticated, multipath-defined) flags byte of every control
/// frame it sends on that uplink, because the server schedules the download direction and must honour the
/// same tiers: bit 7 = policy present, bits 0–1 = tier (0 primary, 1 secondary, 2 backup, 3 never),
/// bit 2 = metered, bits 3–6 = the client's idle heartbeat interval on that uplink as a class k (1…15:
/// 100 ms × 2^(k−1), rounded down from the client's interval; 0: not said). The server probes each uplink at the
/// longer of that and its own heartbeat (`serverPolicy`), so a metered uplink's relaxed heartbeat holds both ways. The data cap stays on the client.
/// Zero means "no policy" (an older peer). Peers that predate the heartbeat bits ignore them and send 0 there,
/// so old and new peers interoperate: the server then keeps its own heartbeat.
enum UplinkPolicyFlags {
    static let present: UInt8 = 0x80
    static let metered: UInt8 = 0x04
    static let heartbeatShift: UInt8 = 3
    static let heartbeatMask: UInt8 = 0x78
    /// Class 1's interval; class k means `heartbeatUnit << (k - 1)`.
    static let heartbeatUnit: UInt64 = 100 * Nanoseconds.millisecond
    static let largestHeartbeatClass: UInt8 = 15
    /// What a server schedules a client uplink with before the client's first control frame on it says its policy: the
    /// least preferred there is (metered backup), so an uplink the client holds back never carries downloads at connect.
    static let unannounced = UplinkPolicy(tier: .backup, isMetered: true)

    static func encode(_ policy: UplinkPolicy, heartbeatInterval: UInt64? = nil) -> UInt8 {
        let tier: UInt8 = switch policy.tier {
        case .primary: 0
        case .secondary: 1
        case .backup: 2
        case .never: 3
        }
        let heartbeat = heartbeatInterval.map { heartbeatClass(of: $0) << heartbeatShift } ?? 0
        return present | tier | (policy.isMetered ? metered : 0) | heartbeat
    }

    /// The policy in `flags`, nil when the sender sent none.
    static func decode(_ flags: UInt8) -> UplinkPolicy? {
        guard flags & present != 0 else { return nil }
        let tier: UplinkTier = switch flags & 0x03 {
        case 0: .primary
        case 1: .secondary
        case 2: .backup
        default: .never
        }
        return UplinkPolicy(tier: tier, isMetered: flags & metered != 0)
    }

    /// What a server applies to the client uplink whose control frames carry `flags` (nil: no policy, an older peer):
    /// the client's tier and metered setting, and an idle heartbeat no shorter than the client's on that uplink nor
    /// than the server's own (`ownHeartbeat`; nil in the policy when the server's own is the longer one).
    static func serverPolicy(from flags: UInt8, ownHeartbeat: UInt64) -> UplinkPolicy? {
        guard var policy = decode(flags) else { return nil }
        if let asked = heartbeatInterval(in: flags), asked > ownHeartbeat { policy.heartbeatInterval = asked }
        return policy
    }

    /// The policy a server gives a client uplink on a control frame carrying `flags`, when the uplink's session last
    /// applied `applied` (nil: no control frame yet, the uplink is `unannounced`); nil to leave the policy as it is.
    /// An older client says nothing in its first control frame: its uplinks are primaries, as before tiers existed.
    /// A frame without a policy after one that had it changes nothing.
    static func serverUpdate(flags: UInt8, applied: UInt8?, ownHeartbeat: UInt64) -> UplinkPolicy? {
        guard flags != applied else { return nil }
        if let policy = serverPolicy(from: flags, ownHeartbeat: ownHeartbeat) { return policy }
        return applied == nil ? UplinkPolicy() : nil
    }

    /// The idle heartbeat interval the sender asked for (nanoseconds), nil when it said nothing.
    static func heartbeatInterval(in flags: UInt8) -> UInt64? {
        guard flags & present != 0 else { return nil }
        let heartbeatClass = (flags & heartbeatMask) >> heartbeatShift
        guard heartbeatClass > 0 else { return nil }
        return heartbeatUnit << UInt64(heartbeatClass - 1)
    }

    /// The largest class whose interval is at most `interval` (1 for anything up to 200 ms, so the peer never
    /// probes less often than the sender does).
    static func heartbeatClass(of interval: UInt64) -> UInt8 {
        var heartbeatClass: UInt8 = 1
        while heartbeatClass < largestHeartbeatClass, heartbeatUnit << UInt64(heartbeatClass) <= interval { heartbeatClass += 1 }
        return heartbeatClass
    }
}

/// The client's scheduler, carried in the (authenticated, multipath-defined) tunnel flags byte of every frame it
/// sends (inner header byte 2, docs/PROTOCOL.md §2.6), because the server schedules the download direction and must
/// use the scheduler the client chose for its tunnel (`[multipath] scheduler`, `Manager1.SetScheduler`): bit 7 =
/// scheduler present, bits 0–2 = mode (0 aggregate, 1 redundant, 2 failover, 3 flow, 4 lowest-latency), bits 3–6 =
/// `redundant` copies (0: one per usable uplink; 1–15 copies; 16, the uplink limit, is sent as 0, which means the
/// same). Every frame carries it, so a runtime switch reaches the server with the next packet or probe.
/// Zero means "not said" (an older client, which sends that byte as reserved zero): the server keeps its own
/// scheduler for that tunnel. An unknown mode (a newer client) is ignored the same way.
enum SchedulerFlags {
    static let present: UInt8 = 0x80
    static let modeMask: UInt8 = 0x07
    static let copiesShift: UInt8 = 3
    static let copiesMask: UInt8 = 0x78
    /// The largest copy count with its own code; larger counts reach every uplink anyway (`MultipathLimits.maxUplinks`).
    static let largestEncodedCopies = 15

    static func encode(_ mode: SchedulerMode, redundantCopies: Int?) -> UInt8 {
        let code: UInt8 = switch mode {
        case .aggregate: 0
        case .redundant: 1
        case .failover: 2
        case .flow: 3
        case .lowestLatency: 4
        }
        let copies: UInt8 = redundantCopies.map { (1...largestEncodedCopies).contains($0) ? UInt8($0) : 0 } ?? 0
        return present | code | copies << copiesShift
    }

    /// The scheduler in `flags`, nil when the sender said nothing (or named a mode this side doesn't know).
    static func decode(_ flags: UInt8) -> (mode: SchedulerMode, redundantCopies: Int?)? {
        guard flags & present != 0 else { return nil }
        let mode: SchedulerMode
        switch flags & modeMask {
        case 0: mode = .aggregate
        case 1: mode = .redundant
        case 2: mode = .failover
        case 3: mode = .flow
        case 4: mode = .lowestLatency
        default: return nil
        }
        let copies = Int((flags & copiesMask) >> copiesShift)
        return (mode, copies == 0 ? nil : copies)
    }
}
