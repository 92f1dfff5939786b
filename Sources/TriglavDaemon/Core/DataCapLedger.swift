#if canImport(Glibc)
import Glibc
#endif
import TriglavConfig

/// What each capped uplink (`[uplinks.interface.NAME] data_cap_mb`) has used in its current billing period,
/// across connections and daemon restarts, and the period that is. Usage counts both directions: what the
/// client sent on the uplink and what it received there (a metered SIM bills both).
///
/// Enforcement is in two layers. The daemon takes an uplink whose period usage reached its cap out of the
/// tunnel (the data plane sends an authenticated close on its session, so the server retires the path and
/// stops sending on it; no heartbeats follow) and keeps it out until the period changes. Between the
/// daemon's once-a-second checks the multipath engine bounds what the client sends: it gets the uplink's
/// send allowance (`UplinkPolicy.dataCapBytes`, counted from when the uplink joined) and puts no more data
/// on it once that is spent. The allowance is what the period leaves after everything counted so far,
/// downloads included, so a download shrinks it.
///
/// Bytes are the engine's: sealed data datagrams both ways (`dataCapTransmittedBytes`/`dataCapReceivedBytes`),
/// so the allowance and the count share a unit and an engine stopped at its allowance means a spent cap. Not
/// counted: UDP/IP headers, probes, feedback, keepalives and handshakes (a few percent on the wire).
///
/// Lifetime: owned by the client manager's state, so the count survives reconnects and reloads; a
/// `DataCapStore` carries it across daemon restarts.
struct DataCapLedger: Equatable {
    struct Entry: Equatable {
        /// The billing period counted (see `period(at:resetDay:)`).
        var period: Int
        /// Bytes sent plus received during `period` by attachments that have ended (and, after a restart,
        /// everything the previous run counted).
        var spent: UInt64 = 0
    }

    /// What the current attachment of an uplink had sent and received when its counting started (when it
    /// joined, or when a new period began while it was attached).
    struct Baseline: Equatable {
        var transmitted: UInt64 = 0
        var received: UInt64 = 0

        /// Bytes both ways since the baseline, given the attachment's counters now.
        func used(transmitted nowTransmitted: UInt64, received nowReceived: UInt64) -> UInt64 {
            let sent = nowTransmitted > transmitted ? nowTransmitted - transmitted : 0
            let got = nowReceived > received ? nowReceived - received : 0
            return DataCapLedger.sum(sent, got)
        }
    }

    private(set) var entries: [String: Entry] = [:]

    /// Byte counts add saturating: a wrapped sum would read as a small usage and lift the cap.
    static func sum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (total, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : total
    }

    init(entries: [String: Entry] = [:]) { self.entries = entries }

    /// The cap of `interface` in bytes (10^6 per MB) and its reset day, from the first matching pin.
    static func cap(of interface: String, in config: DaemonConfig) -> (bytes: UInt64, resetDay: Int)? {
        guard let pin = config.uplinks.pin(for: interface), let megabytes = pin.dataCapMegabytes, megabytes > 0 else { return nil }
        let (bytes, overflow) = UInt64(megabytes).multipliedReportingOverflow(by: 1_000_000)
        return (overflow ? .max : bytes, pin.dataCapResetDay)
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

    /// Bytes of the period counted for ended attachments (0 for an interface not seen this period).
    func spent(_ interface: String) -> UInt64 { entries[interface]?.spent ?? 0 }

    /// What the interface may still use in this period, after ended attachments and `live` bytes of the
    /// current one.
    func remaining(_ interface: String, cap: UInt64, live: UInt64 = 0) -> UInt64 {
        let used = Self.sum(spent(interface), live)
        return used >= cap ? 0 : cap - used
    }

    /// Adds bytes (both directions) an ended attachment used in `period`.
    mutating func spend(_ interface: String, bytes: UInt64, period: Int) {
        var entry = entries[interface] ?? Entry(period: period)
        entry.spent = Self.sum(entry.spent, bytes)
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
