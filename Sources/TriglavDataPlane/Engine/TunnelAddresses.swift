import TriglavCore

/// What the server gives a client's tunnel: its inner addresses. Carried in the handshake response.
public struct TunnelAddresses: Hashable, Sendable, CustomStringConvertible {
    /// The client's IPv4 address and the tunnel subnet's prefix length, e.g. 10.77.0.2/24, or nil for an IPv6-only
    /// tunnel (full-tunnel then blocks IPv4, as it blocks IPv6 when the server offers none).
    public var ipv4: IPPrefix?
    /// The client's IPv6 address, or nil when the server offers none (full-tunnel then blocks IPv6).
    public var ipv6: IPPrefix?

    /// nil when both are nil: a tunnel needs at least one address.
    public init?(ipv4: IPPrefix?, ipv6: IPPrefix?) {
        guard ipv4 != nil || ipv6 != nil else { return nil }
        self.ipv4 = ipv4
        self.ipv6 = ipv6
    }

    public init(ipv4: IPPrefix, ipv6: IPPrefix? = nil) {
        self.ipv4 = ipv4
        self.ipv6 = ipv6
    }

    public init(ipv6: IPPrefix) {
        self.ipv4 = nil
        self.ipv6 = ipv6
    }

    /// Both addresses, IPv4 first.
    public var all: [IPPrefix] { [ipv4, ipv6].compactMap { $0 } }

    public var description: String { all.map(\.description).joined(separator: ", ") }
}

/// Monotonic time in nanoseconds; the engine's only clock, so tests of logic can inject their own.
typealias Nanoseconds = UInt64

extension Nanoseconds {
    static let millisecond: UInt64 = 1_000_000
    static let second: UInt64 = 1_000_000_000
}

#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC now, in nanoseconds.
func monotonicNow() -> Nanoseconds {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
}

extension Duration {
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch (the handshake's signed timestamp needs it).
func wallClockNow() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
}

/// A clock that never goes backwards. Two pump threads read the monotonic clock before taking the lock,
/// so their readings can reach the lock out of order; the multipath engine needs non-decreasing time.
struct EngineClock {
    private(set) var now: UInt64 = 0

    mutating func advance(to reading: UInt64) -> UInt64 {
        now = max(now, reading)
        return now
    }
}
