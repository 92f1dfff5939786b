import TriglavCore

/// How eagerly an uplink is used, in the order commercial bonders offer.
public enum UplinkTier: String, Sendable, CaseIterable, Comparable {
    /// Carries traffic whenever it is healthy.
    case primary
    /// Joins when the primaries can't carry the load (or none is healthy).
    case secondary
    /// Used only when no primary or secondary link works.
    case backup
    /// Never carries anything, not even heartbeats.
    case never

    var rank: Int {
        switch self {
        case .primary: 0
        case .secondary: 1
        case .backup: 2
        case .never: 3
        }
    }

    public static func < (lhs: UplinkTier, rhs: UplinkTier) -> Bool { lhs.rank < rhs.rank }
}

/// The operator's wishes for one uplink. Changeable at runtime with `MultipathEngine.updatePolicy`.
public struct UplinkPolicy: Sendable, Equatable {
    public var tier: UplinkTier
    /// Metered links (LTE on a volume plan) stay out of aggregation unless the others can't carry the
    /// load; in `redundant` mode they only add copies when fewer than two unmetered links are usable.
    public var isMetered: Bool
    /// Bytes this uplink may send in total (the daemon resets the counter per billing period with
    /// `resetDataCap`). nil means unlimited. A link that reached its cap is used as if it were `never`.
    public var dataCapBytes: UInt64?
    /// Probe interval while the link is idle or down (nanoseconds); nil means the configuration's
    /// `heartbeatInterval`. A relaxed interval (metered links) trades idle blackhole detection time for
    /// traffic: an idle link is declared down after `idleLostHeartbeatsForDown` of these go unanswered. A link
    /// carrying data probes at `activeProbeInterval` and is watched by its data's feedback whatever this says.
    public var heartbeatInterval: UInt64?

    public init(tier: UplinkTier = .primary, isMetered: Bool = false, dataCapBytes: UInt64? = nil,
                heartbeatInterval: UInt64? = nil) {
        self.tier = tier
        self.isMetered = isMetered
        self.dataCapBytes = dataCapBytes
        self.heartbeatInterval = heartbeatInterval
    }

    /// The idle probe interval under `configuration`.
    func idleHeartbeat(_ configuration: MultipathConfiguration) -> UInt64 {
        heartbeatInterval ?? configuration.heartbeatInterval
    }

    /// Checks the per-uplink interval with the configuration's rules.
    func validate() throws(MultipathError) {
        guard let interval = heartbeatInterval else { return }
        guard interval > 0, interval <= MultipathConfiguration.longestDuration else {
            throw .invalidConfiguration(
                field: "UplinkPolicy.heartbeatInterval", value: interval.description,
                reason: "must be greater than zero and at most \(MultipathConfiguration.longestDuration / Nanoseconds.second) s (nanoseconds; nil: the configuration's)")
        }
    }
}

/// Health of one uplink.
///
/// `probing` → `ready` after a probe reply (fresh link) or `repliesToRecover` consecutive replies
/// (a link that was down, with a hold-down that doubles on each flap); `ready` ⇄ `degraded` on loss with
/// hysteresis (enter above `degradedLossPercent`, leave below `recoveredLossPercent` after
/// `degradedHoldTime`); any state → `down` when sends stay unconfirmed past the loss deadline, or when the
/// system reports the link down; `down` → `probing` on the first probe reply.
public enum UplinkState: String, Sendable, Equatable, CaseIterable {
    case probing
    case ready
    case degraded
    case down

    /// Whether the scheduler may put data on the link at all (probing links only as a last resort).
    public var carriesData: Bool { self == .ready || self == .degraded }
}
