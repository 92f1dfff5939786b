#if canImport(Glibc)
import Glibc
#endif
import TriglavConfig

/// What each capped uplink (`[uplinks.interface.NAME] data_cap_mb`) has sent in its current billing period,
/// across connections, and the period that is.
///
/// The multipath engine enforces a cap as "bytes this uplink may send from when it was added" (a capped-out
/// link is used as if its tier were `never`). The daemon turns the monthly cap into that number each time it
/// adds the uplink to a tunnel: the cap minus what earlier tunnels of this period already sent on the
/// interface. When a period starts while the uplink is attached, its allowance is raised by a full cap
/// above what it has sent so far, so no engine reset is needed.
///
/// Lifetime: owned by the client manager's state, so the count survives reconnects and reloads but not a
/// daemon restart (it isn't persisted: after a restart the period counts from zero).
struct DataCapLedger {
    struct Entry {
        /// The billing period counted (see `period(at:resetDay:)`).
        var period: Int
        /// Bytes sent during `period` by tunnels (or attachments) that have ended.
        var spent: UInt64 = 0
    }

    private(set) var entries: [String: Entry] = [:]

    /// The cap of `interface` in bytes (10^6 per MB) and its reset day, from the first matching pin.
    static func cap(of interface: String, in config: DaemonConfig) -> (bytes: UInt64, resetDay: Int)? {
        guard let pin = config.uplinks.pin(for: interface), let megabytes = pin.dataCapMegabytes, megabytes > 0 else { return nil }
        return (UInt64(megabytes) &* 1_000_000, pin.dataCapResetDay)
    }

    /// Months since 1970 (UTC) of the period containing `time`: a period runs from `resetDay` of one month
    /// to the day before `resetDay` of the next.
    static func period(at time: Int64, resetDay: Int) -> Int {
        var seconds = time_t(time)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let months = Int(parts.tm_year - 70) * 12 + Int(parts.tm_mon)
        return Int(parts.tm_mday) >= resetDay ? months : months - 1
    }

    /// What the interface may still send in this period, counting only ended attachments.
    func remaining(_ interface: String, cap: UInt64) -> UInt64 {
        let spent = entries[interface]?.spent ?? 0
        return spent >= cap ? 0 : cap - spent
    }

    /// Adds bytes an ended attachment sent in the current period.
    mutating func spend(_ interface: String, bytes: UInt64, period: Int) {
        var entry = entries[interface] ?? Entry(period: period)
        entry.spent &+= bytes
        entries[interface] = entry
    }

    /// Moves the interface to `period`; true when that started a new one (the count restarts).
    mutating func enter(_ interface: String, period: Int) -> Bool {
        guard let entry = entries[interface] else {
            entries[interface] = Entry(period: period)
            return false
        }
        guard entry.period != period else { return false }
        entries[interface] = Entry(period: period)
        return true
    }
}
