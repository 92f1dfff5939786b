internal import CTriglavShims

/// CLOCK_MONOTONIC in nanoseconds: the `now` the emulator core is driven with.
public enum MonotonicClock {
    public static func now() -> UInt64 { tg_packet_monotonic_ns() }
}
