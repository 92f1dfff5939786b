import ArgumentParser
import TriglavLinkEmulator
#if canImport(Glibc)
import Glibc
#endif

/// `triglav-linkemu`: bridges two interfaces of the current network namespace, emulating a link
/// (rate, delay, jitter, loss, queue) in each direction. Parses flags, wires a LinkBridge, waits
/// for SIGINT/SIGTERM, prints counters.
@main
struct LinkEmu: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "triglav-linkemu",
        abstract: "Userspace link emulator: bridges two interfaces with AF_PACKET and shapes both directions.",
        discussion: """
            Every frame arriving on --a leaves on --b (and back), after random loss, a tail-drop queue in front \
            of a transmitter of --rate, and --delay ± --jitter. Flags apply to both directions; --ab-* and \
            --ba-* override one direction (ab = from A to B). Runs in the network namespace it is started in \
            (ip netns exec NS triglav-linkemu ...). Units as in tc: 30mbit, 20ms, 1%, 64kb (KiB) or 100p. \
            Rates count IP packets (frames without their Ethernet header).
            Turn segmentation offloads off on the peers (ethtool -K DEV tso off gso off gro off tx off), or \
            super-frames are dropped as oversize.
            """)

    @Option(help: "First interface.") var a: String
    @Option(help: "Second interface.") var b: String
    @Option(help: "Rate (e.g. 30mbit) or 'unlimited'.") var rate = "unlimited"
    @Option(help: "One-way delay (e.g. 20ms).") var delay = "0"
    @Option(help: "Jitter around the delay (e.g. 5ms); at most the delay.") var jitter = "0"
    @Option(help: "Jitter distribution: uniform, or normal (jitter = standard deviation).")
    var jitterDistribution = "uniform"
    @Option(help: "Random loss (e.g. 1%).") var loss = "0"
    @Option(help: "Queue limit before the transmitter: bytes (64kb) or packets (100p).") var queue = "1000p"
    @Flag(help: "Let jitter reorder packets (default: a packet never overtakes its predecessor).")
    var allowReordering = false
    @Option(help: "Seed of the loss/jitter generators (default: random, printed).") var seed: UInt64?
    @Option(help: "Packets held per direction at most (queue + propagation).")
    var packetsInFlight = BridgeConfiguration.defaultPacketsInFlight
    @Option(help: "Print counters every N seconds (0: only at exit).") var statsInterval = 0

    @Option(name: .customLong("ab-rate"), help: "Rate from A to B only.") var abRate: String?
    @Option(name: .customLong("ba-rate"), help: "Rate from B to A only.") var baRate: String?
    @Option(name: .customLong("ab-delay")) var abDelay: String?
    @Option(name: .customLong("ba-delay")) var baDelay: String?
    @Option(name: .customLong("ab-jitter")) var abJitter: String?
    @Option(name: .customLong("ba-jitter")) var baJitter: String?
    @Option(name: .customLong("ab-loss")) var abLoss: String?
    @Option(name: .customLong("ba-loss")) var baLoss: String?
    @Option(name: .customLong("ab-queue")) var abQueue: String?
    @Option(name: .customLong("ba-queue")) var baQueue: String?

    func profile(rate: String?, delay: String?, jitter: String?, loss: String?, queue: String?) throws -> LinkProfile {
        guard let distribution = LinkProfile.JitterDistribution(rawValue: jitterDistribution) else {
            throw ValidationError("unknown jitter distribution '\(jitterDistribution)': use uniform or normal")
        }
        return LinkProfile(
            rateBitsPerSecond: try LinkProfile.parseRate(rate ?? self.rate),
            delayNanoseconds: try LinkProfile.parseDuration(delay ?? self.delay),
            jitterNanoseconds: try LinkProfile.parseDuration(jitter ?? self.jitter),
            jitterDistribution: distribution,
            lossProbability: try LinkProfile.parseLoss(loss ?? self.loss),
            queueLimit: try LinkProfile.parseQueueLimit(queue ?? self.queue),
            allowsReordering: allowReordering)
    }

    func run() throws {
        let aToB = try profile(rate: abRate, delay: abDelay, jitter: abJitter, loss: abLoss, queue: abQueue)
        let bToA = try profile(rate: baRate, delay: baDelay, jitter: baJitter, loss: baLoss, queue: baQueue)
        let seed = self.seed ?? (MonotonicClock.now() ^ (UInt64(getpid()) << 32))
        let configuration = BridgeConfiguration(interfaceA: a, interfaceB: b, aToB: aToB, bToA: bToA, seed: seed,
                                                packetsInFlight: packetsInFlight)

        // Signals are taken synchronously by this thread only: block them before any thread starts.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let bridge = try LinkBridge(configuration: configuration)
        try bridge.start()
        log("ready: \(a) <-> \(b) seed \(seed) slot \(bridge.slotSize) B; \(a)->\(b): \(describe(aToB)); "
            + "\(b)->\(a): \(describe(bToA))")

        var warnedOversize = false
        var secondsSinceStats = 0
        while !bridge.isStopping {
            var timeout = timespec(tv_sec: 1, tv_nsec: 0)
            if sigtimedwait(&signals, nil, &timeout) > 0 { break }
            let counters = bridge.counters
            if !warnedOversize, counters.aToB.oversizeDroppedPackets + counters.bToA.oversizeDroppedPackets > 0 {
                warnedOversize = true
                let largest = max(counters.aToB.largestOversizeFrame, counters.bToA.largestOversizeFrame)
                log("warning: dropping frames of up to \(largest) B (larger than the MTU): turn off offloads on the "
                    + "peers of \(a) and \(b): ethtool -K DEV tso off gso off gro off tx off")
            }
            secondsSinceStats += 1
            if statsInterval > 0, secondsSinceStats >= statsInterval {
                secondsSinceStats = 0
                printCounters(bridge)
            }
        }
        bridge.stop()
        printCounters(bridge)
        if let failure = bridge.failure {
            log("stopped: \(failure)")
            throw ExitCode(1)
        }
    }

    private func describe(_ profile: LinkProfile) -> String {
        let rate = profile.rateBitsPerSecond.map { "\(Double($0) / 1e6) Mbit/s" } ?? "unlimited"
        let queue: String
        switch profile.queueLimit {
        case .bytes(let bytes): queue = "\(bytes) B"
        case .packets(let packets): queue = "\(packets) packets"
        }
        return "rate \(rate), delay \(Double(profile.delayNanoseconds) / 1e6) ms "
            + "± \(Double(profile.jitterNanoseconds) / 1e6) ms "
            + "(\(profile.jitterDistribution.rawValue)\(profile.allowsReordering ? ", reordering" : "")), "
            + "loss \(profile.lossProbability * 100)%, queue \(queue)"
    }

    private func printCounters(_ bridge: LinkBridge) {
        let counters = bridge.counters
        for (name, direction) in [("\(a)->\(b)", counters.aToB), ("\(b)->\(a)", counters.bToA)] {
            log("\(name): received \(direction.receivedPackets) sent \(direction.transmittedPackets) "
                + "(\(direction.transmittedBytes) B) lost \(direction.link.lostPackets) "
                + "queue-dropped \(direction.link.queueDroppedPackets) oversize \(direction.oversizeDroppedPackets) "
                + "send-errors \(direction.transmitErrors)")
        }
    }

    private func log(_ message: String) {
        var line = "triglav-linkemu: \(message)\n"
        // One write(2) per line, so lines of concurrent emulators sharing a log file don't interleave.
        line.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
    }
}
