/// Packetization-layer path MTU discovery for one uplink (the idea of RFC 8899, simplified): finds a hop on the way to
/// the peer that drops datagrams above some size without saying so (no ICMP "fragmentation needed" / "packet too big"
/// reaches the sender: a PMTU blackhole), which the kernel's path MTU can't know about.
///
/// Sans-IO: the owner feeds the kernel's path MTU for the uplink as the upper bound, the clock, the peer's
/// acknowledgements and whether the path delivered anything since the last probe went out; it sends the probes `poll`
/// returns, padded to their size. Sizes are whole transport datagrams (the UDP payload).
///
/// One search: confirm the base size (what a 1280-byte IP packet carries, the least every IPv6 path must), and a peer
/// that never acknowledges it doesn't speak probes (an older version) or the path is down: no verdict. Then probe the
/// upper bound: acknowledged, there is no blackhole (the usual case: two probes in all). A size lost `attempts` times
/// while the path delivered other packets doesn't pass: a binary search between the largest acknowledged and the
/// smallest lost size follows, down to `granularity`. The result holds until the next search, which starts after
/// `researchInterval` (the path may have changed either way), at once when the upper bound changes, and when the owner
/// says the path may have changed (`searchAgain`).
public struct PathMTUSearch: Sendable, Equatable {
    public struct Configuration: Sendable, Equatable {
        /// The first size confirmed; the search never concludes below it.
        public var baseSize: Int
        /// The search stops when the largest acknowledged and smallest lost size are this close.
        public var granularity = 8
        /// How long a probe may stay unacknowledged before it counts as lost (if the path delivered other packets).
        public var probeTimeout: UInt64 = 1_000_000_000
        /// Losses of one size that make it a size that doesn't pass.
        public var attempts = 3
        /// When a finished search (or one the peer didn't answer) is repeated.
        public var researchInterval: UInt64 = 600_000_000_000

        public init(baseSize: Int) {
            self.baseSize = baseSize
        }

        /// The base for a peer reached over IPv4 or IPv6: a 1280-byte IP packet minus the outer IP and UDP headers.
        public static func forServer(ipv6: Bool) -> Configuration {
            Configuration(baseSize: 1280 - (ipv6 ? 40 : 20) - 8)
        }
    }

    public enum Phase: Sendable, Equatable {
        /// No upper bound known yet, or the upper bound leaves nothing above the base to search.
        case idle
        /// Confirming that the peer answers a base-size probe.
        case confirmingBase
        case searching
        /// Done until `researchInterval` passes or the upper bound changes.
        case complete
        /// The base-size probe went unanswered: no verdict until the next search.
        case unanswered
    }

    struct Outstanding: Sendable, Equatable {
        var id: UInt32
        var size: Int
        var sentAt: UInt64
    }

    public let configuration: Configuration
    public private(set) var phase = Phase.idle
    /// The kernel's limit for the path (its path MTU minus the outer headers).
    public private(set) var upperBound: Int?
    /// The largest datagram the path carries, when the last finished search found a size below `upperBound` that
    /// doesn't pass; nil when it found none (or none finished). Kept while the next search runs.
    public private(set) var blackholeLimit: Int?
    /// This search's largest acknowledged and smallest lost size.
    public private(set) var confirmed: Int?
    public private(set) var lost: Int?
    var outstanding: Outstanding?
    /// Losses of the outstanding probe's size so far.
    var losses = 0
    var nextID: UInt32 = 1
    /// Acknowledgements of probes from before this id belong to an earlier search.
    var searchFirstID: UInt32 = 1
    var restartAt: UInt64?

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// The kernel's current path MTU minus the outer headers; nil when unknown. A change starts a new search.
    public mutating func setUpperBound(_ size: Int?, now: UInt64) {
        guard size != upperBound else { return }
        upperBound = size
        if let limit = blackholeLimit, let size, limit >= size { blackholeLimit = nil }  // the kernel's bound is lower now
        restart(now: now)
    }

    /// Starts a new search now (the path may have changed: another address, a new session), keeping the last result
    /// until the new one is in. Nothing while no upper bound is known.
    public mutating func searchAgain(now: UInt64) {
        guard upperBound != nil else { return }
        restart(now: now)
    }

    /// When the probe awaiting its acknowledgement went out.
    public var probeSentAt: UInt64? { outstanding?.sentAt }

    /// The probe to send now, if any. `deliveredSinceProbe`: whether the path delivered any packet after the
    /// outstanding probe was sent (a loss counts only then: a silent path says nothing about sizes).
    public mutating func poll(now: UInt64, deliveredSinceProbe: Bool) -> PathProbe? {
        if let restartAt, now >= restartAt, outstanding == nil, phase == .complete || phase == .unanswered {
            restart(now: now)
        }
        guard phase == .confirmingBase || phase == .searching else { return nil }
        if let outstanding {
            guard now &- outstanding.sentAt >= configuration.probeTimeout else { return nil }
            if deliveredSinceProbe { losses += 1 }
            self.outstanding = nil
            if losses >= configuration.attempts {
                sizeFailed(outstanding.size, now: now)
                guard phase == .confirmingBase || phase == .searching else { return nil }
            }
        }
        guard let size = candidate() else {
            finish(now: now)
            return nil
        }
        let id = nextID
        nextID &+= 1
        outstanding = Outstanding(id: id, size: size, sentAt: now)
        return PathProbe(id: id, size: UInt16(clamping: size))
    }

    /// The peer acknowledged a probe: its size passes. Acknowledgements of earlier searches, of sizes above the
    /// upper bound and of unknown ids are ignored.
    public mutating func acknowledge(_ ack: PathProbe, now: UInt64) {
        guard phase == .confirmingBase || phase == .searching, ack.id >= searchFirstID, ack.id < nextID,
              let upperBound, Int(ack.size) <= upperBound else { return }
        let size = Int(ack.size)
        confirmed = max(confirmed ?? 0, size)
        if let outstanding, size >= outstanding.size {
            self.outstanding = nil
            losses = 0
        }
        if phase == .confirmingBase, size >= configuration.baseSize { phase = .searching }
        if phase == .searching, candidate() == nil { finish(now: now) }
    }

    private mutating func restart(now: UInt64) {
        outstanding = nil
        losses = 0
        confirmed = nil
        lost = nil
        searchFirstID = nextID
        restartAt = nil
        if let upperBound, upperBound > configuration.baseSize {
            phase = .confirmingBase
        } else {
            phase = .idle
            blackholeLimit = nil
        }
    }

    /// The next size to probe; nil when the search has its answer.
    private func candidate() -> Int? {
        guard let upperBound else { return nil }
        guard phase == .searching, let confirmed else { return configuration.baseSize }
        guard let lost else { return confirmed >= upperBound ? nil : upperBound }
        guard lost - confirmed > configuration.granularity else { return nil }
        let middle = confirmed + (lost - confirmed) / 2
        return max(confirmed + 1, middle - middle % configuration.granularity)
    }

    private mutating func sizeFailed(_ size: Int, now: UInt64) {
        losses = 0
        if phase == .confirmingBase {
            phase = .unanswered
            restartAt = now &+ configuration.researchInterval
            return
        }
        lost = min(lost ?? size, size)
    }

    private mutating func finish(now: UInt64) {
        phase = .complete
        outstanding = nil
        restartAt = now &+ configuration.researchInterval
        if let lost, let confirmed, let upperBound, lost <= upperBound {
            blackholeLimit = confirmed
        } else {
            blackholeLimit = nil
        }
    }
}
