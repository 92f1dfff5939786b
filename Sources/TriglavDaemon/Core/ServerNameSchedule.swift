/// When the client manager resolves a profile's server *name* again (an endpoint written as `host:port`), as plain
/// arithmetic on monotonic times (`Duration` since an arbitrary origin), so tests drive it with a virtual clock.
///
/// Two situations, never at once:
/// - A start-time connection (`autoconnect`, `--connect`) whose name doesn't resolve yet, typically at boot before the
///   network is up (the unit doesn't wait for network-online): retried after `retryDelay(afterFailures:)`, which
///   doubles from `firstRetryDelay` up to `longestRetryDelay` and stays there, without a limit on attempts.
/// - A connected tunnel where no attached uplink reaches the server although some try (sessions timed out, handshakes
///   unanswered): after `unreachableBeforeResolvingAgain` the name is resolved again, then at most every
///   `longestRetryDelay` while that lasts; a new address rebuilds the tunnel towards it (the server moved).
enum ServerNameSchedule {
    /// The first retry of a name that didn't resolve.
    static let firstRetryDelay: Duration = .seconds(1)
    /// The retry interval's bound (doubling stops here), and the least time between re-resolutions of a connected tunnel.
    static let longestRetryDelay: Duration = .seconds(30)
    /// How long no uplink may reach the server (while some try) before its name is resolved again. Longer than a
    /// network switch's usual outage, so a working server's tunnel is never rebuilt for a short loss.
    static let unreachableBeforeResolvingAgain: Duration = .seconds(30)

    /// The wait before the next attempt after `failures` (≥ 1) failed ones: 1 s, 2 s, 4 s, … then 30 s each.
    static func retryDelay(afterFailures failures: Int) -> Duration {
        let doublings = min(max(failures, 1) - 1, 5)
        return min(firstRetryDelay * (1 << doublings), longestRetryDelay)
    }
}

/// A connected tunnel's watch for a server whose name now leads elsewhere: when its uplinks stopped reaching the
/// server, and when the name was last resolved. Owned by the connection it watches (reset with a new tunnel).
struct ServerNameWatch: Equatable {
    /// Since when no attached uplink reaches the server while some try; nil while one does, or none tries.
    private(set) var unreachableSince: Duration?
    /// When the name was last resolved (the connection's start counts).
    private(set) var lastResolved: Duration
    /// A re-resolution is on the resolution queue; no other starts meanwhile.
    private(set) var isResolving = false

    init(resolvedAt now: Duration) { lastResolved = now }

    /// Takes the tunnel's latest view: `reachable` true when some uplink has a working session, false when none has
    /// but some are handshaking, nil when there is nothing to judge by (no uplink with a socket). Returns true when the
    /// name is due to be resolved again, and then counts the resolution as started.
    mutating func observe(reachable: Bool?, now: Duration) -> Bool {
        switch reachable {
        case true?, nil:
            unreachableSince = nil
            return false
        case false?:
            let since = unreachableSince ?? now
            unreachableSince = since
            guard !isResolving, now - since >= ServerNameSchedule.unreachableBeforeResolvingAgain,
                  now - lastResolved >= ServerNameSchedule.longestRetryDelay else { return false }
            isResolving = true
            return true
        }
    }

    /// The resolution started by `observe` finished (whatever it found).
    mutating func finishResolving(at now: Duration) {
        isResolving = false
        lastResolved = now
    }
}
