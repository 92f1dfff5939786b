import TriglavCore

/// A snapshot of one uplink for D-Bus properties and `triglav status`. Times in nanoseconds.
public struct UplinkStatistics: Sendable, Equatable {
    public var id: UplinkID
    public var policy: UplinkPolicy
    public var state: UplinkState
    /// When the uplink entered `state` (engine clock).
    public var stateSince: UInt64
    /// Jacobson/Karels smoothed RTT and variance from probes; 0 before the first reply.
    public var smoothedRTT: UInt64
    public var rttVariance: UInt64
    /// Minimum RTT over the last 10 s (propagation delay estimate).
    public var minimumRTT: UInt64
    /// Mean deviation between consecutive RTT samples.
    public var jitter: UInt64
    /// RTT expected one SRTT from now (trend-adjusted); what the scheduler uses.
    public var predictedRTT: UInt64
    /// Loss over the last 2 s of probes and data feedback, percent; nil while too few samples.
    public var lossPercent: Double?
    /// Windowed-max delivery rate (bits/s); the configured initial capacity until measured.
    public var capacityBitsPerSecond: UInt64
    /// Receiver-measured one-way delay of this uplink minus that of the fastest uplink (from probe
    /// timestamps, so clock offsets cancel); nil until probes arrived on it.
    public var relativeOneWayDelay: UInt64?
    public var txPackets: UInt64
    public var txBytes: UInt64
    public var rxPackets: UInt64
    public var rxBytes: UInt64
}
