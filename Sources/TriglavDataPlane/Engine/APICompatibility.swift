import TriglavMultipath

// Names the daemon (TriglavDaemon) already uses from the first version of this façade. They stay valid so
// the daemon builds unchanged; new code should use the names they alias.

/// The scheduler of a tunnel, by its configuration/D-Bus name; maps 1:1 to TriglavMultipath's
/// `SchedulerMode` (kept separate so callers needn't import TriglavMultipath).
public enum SchedulerKind: String, Sendable, CaseIterable, CustomStringConvertible {
    case aggregate
    case redundant
    case failover
    case flow
    case lowestLatency = "lowest-latency"

    public init(_ mode: SchedulerMode) {
        switch mode {
        case .aggregate: self = .aggregate
        case .redundant: self = .redundant
        case .failover: self = .failover
        case .flow: self = .flow
        case .lowestLatency: self = .lowestLatency
        }
    }

    public var mode: SchedulerMode {
        switch self {
        case .aggregate: .aggregate
        case .redundant: .redundant
        case .failover: .failover
        case .flow: .flow
        case .lowestLatency: .lowestLatency
        }
    }

    public var description: String { rawValue }
}
/// A client tunnel's inner addresses (`TunnelAddresses`).
public typealias TunnelAssignment = TunnelAddresses
/// One client uplink's snapshot (`UplinkStatus`).
public typealias UplinkStatistics = UplinkStatus

extension ClientTunnelConfiguration {
    /// The scheduler the tunnel starts with (`multipath.scheduler`).
    public var scheduler: SchedulerKind {
        get { SchedulerKind(multipath.scheduler) }
        set { multipath.scheduler = newValue.mode }
    }

    /// Interval of idle liveness/quality probes per uplink (`multipath.heartbeatInterval`).
    public var probeInterval: Duration {
        get { .nanoseconds(Int64(clamping: multipath.heartbeatInterval)) }
        set { multipath.heartbeatInterval = max(1, newValue.nanoseconds) }
    }

    /// Longest time the receiver holds a packet waiting for an earlier one (`multipath.maxReorderHold`).
    public var reorderHold: Duration {
        get { .nanoseconds(Int64(clamping: multipath.maxReorderHold)) }
        set { multipath.maxReorderHold = max(multipath.minReorderWait, newValue.nanoseconds) }
    }

    /// Sender-side pacing of the upload direction (`[multipath] pacing`; docs/DATAPLANE.md, "Sender-side pacing").
    public var pacing: Bool {
        get { multipath.pacingQueueAllowance != nil }
        set { newValue ? PacingSwitch.enable(in: &multipath) : PacingSwitch.disable(in: &multipath) }
    }
}

extension ServerTunnelConfiguration {
    /// Sender-side pacing of every client's download direction (`[multipath] pacing`).
    public var pacing: Bool {
        get { multipath.pacingQueueAllowance != nil }
        set { newValue ? PacingSwitch.enable(in: &multipath) : PacingSwitch.disable(in: &multipath) }
    }
}

extension ClientTunnelStatistics {
    /// The addresses the server assigned (`addresses`).
    public var assignment: TunnelAddresses? { addresses }
}

extension ServerTunnelStatistics.Client {
    /// The client's tunnel addresses (`addresses`).
    public var assignment: TunnelAddresses { addresses }
}

extension UplinkStatus {
    /// Smoothed round-trip time from the multipath engine's probes, nil before the first reply.
    public var smoothedRTT: Duration? {
        guard let rtt = path?.smoothedRTT, rtt > 0 else { return nil }
        return .nanoseconds(Int64(clamping: rtt))
    }
}

extension ClientTunnel {
    /// Switches the scheduler by name (see `setScheduler(_: SchedulerMode)`).
    public func setScheduler(_ kind: SchedulerKind) {
        setScheduler(kind.mode)
    }
}
