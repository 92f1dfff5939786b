#if canImport(Glibc)
import Glibc
#endif
import Dispatch
public import Logging
import Synchronization
public import TriglavConfig
import TriglavControlAPI
import TriglavCore
import TriglavCrypto
import TriglavMetrics
import TriglavNetlink
import TriglavSystemd

/// What the daemon is composed of; `live` for the real system, fakes in tests.
public struct DaemonEnvironment: Sendable {
    public var clientTunnels: any ClientTunnelFactory
    public var serverTunnels: any ServerTunnelFactory
    public var resolver: any EndpointResolving
    public var makeUplinkSource: @Sendable (DiscoveryPolicy) -> any UplinkSource
    public var notifier: any ServiceNotifier
    /// Exports the org.triglav API for the daemon and owns the bus name; nil runs without a bus.
    public var startBus: (@Sendable (any TunnelController) throws(TriglavDaemonError) -> any DaemonBus)?
    /// Longest wait for discovery's initial dump before carrying on without it.
    public var synchronizationTimeout: Duration
    /// Where the client keeps its data caps' period usage across restarts; nil keeps it in memory only.
    public var dataCapStore: DataCapStore?
    /// Where the tunnel's DNS goes while connected: systemd-resolved on the system bus (also with `--no-bus`, which
    /// only leaves out the org.triglav API), else /etc/resolv.conf (`live`); tests pass a fake.
    public var linkDNS: any LinkDNSConfiguring = ResolvedLinkDNS()

    public init(clientTunnels: any ClientTunnelFactory, serverTunnels: any ServerTunnelFactory,
                resolver: any EndpointResolving, makeUplinkSource: @escaping @Sendable (DiscoveryPolicy) -> any UplinkSource,
                notifier: any ServiceNotifier,
                startBus: (@Sendable (any TunnelController) throws(TriglavDaemonError) -> any DaemonBus)? = nil,
                synchronizationTimeout: Duration = .seconds(10)) {
        self.clientTunnels = clientTunnels
        self.serverTunnels = serverTunnels
        self.resolver = resolver
        self.makeUplinkSource = makeUplinkSource
        self.notifier = notifier
        self.startBus = startBus
        self.synchronizationTimeout = synchronizationTimeout
    }

    /// The real system. `busAddress` nil runs without D-Bus (`--no-bus`).
    public static func live(logger: Logger, busAddress: String?) -> DaemonEnvironment {
        var environment = DaemonEnvironment(
            clientTunnels: LiveClientTunnelFactory(logger: Logger(label: "triglav.dataplane.client")),
            serverTunnels: LiveServerTunnelFactory(logger: Logger(label: "triglav.dataplane.server")),
            resolver: SystemEndpointResolver(),
            makeUplinkSource: { policy in UplinkDiscoveryService(policy: policy, logger: Logger(label: "triglav.discovery")) },
            notifier: SystemdServiceNotifier(logger: logger))
        let stateDirectory = DataCapStore.stateDirectory(environment: getenv("STATE_DIRECTORY").map { String(cString: $0) })
        environment.dataCapStore = DataCapStore(directory: stateDirectory)
        let dnsLogger = Logger(label: "triglav.dns")
        environment.linkDNS = SystemLinkDNS(
            resolved: ResolvedLinkDNS(busAddress: busAddress ?? ResolvedLinkDNS.systemBusAddress),
            resolvconf: ResolvconfLinkDNS(stateDirectory: stateDirectory, logger: dnsLogger),
            file: ResolvConfLinkDNS(stateDirectory: stateDirectory, logger: dnsLogger))
        if let busAddress {
            environment.startBus = { (controller: any TunnelController) throws(TriglavDaemonError) -> any DaemonBus in
                try LiveDaemonBus(address: busAddress, controller: controller, logger: Logger(label: "triglav.bus"))
            }
        }
        return environment
    }
}

/// The composition root of `triglavd`: builds the role's manager, feeds discovery into it, tells the
/// service manager how things stand, and turns signals into reload and shutdown.
///
/// Lifetime: `start()` once; then `tick()` every second and `reload()` on SIGHUP (`run()` does both until
/// SIGTERM/SIGINT); `shutdown()` once, which removes the tunnel's routes, rules, NAT and TUN device.
/// Readiness (READY=1) is sent at the end of `start()`: the initial netlink dump has been applied (client)
/// and the tunnel or listeners are up.
public final class Daemon: Sendable {
    /// Interval of `tick()`: statistics polling, state derivation, STATUS= updates, counter signals.
    public static let tickInterval: Duration = .seconds(1)

    public let role: Role
    public let client: ClientManager?
    public let server: ServerManager?
    /// The server's public key (base64) for Server1.PublicKey; nil in the client role or without a key.
    let serverPublicKey: String?
    private let environment: DaemonEnvironment
    private let connectProfile: String?
    private let logger: Logger
    private let mutable = Mutex<Mutable>(Mutable())
    /// What the metrics endpoint shows, refreshed every tick; apart from `mutable` so a scrape never waits for
    /// the control queue's work.
    private let metricsSnapshot = Mutex<DaemonMetricsSnapshot?>(nil)
    /// CLOCK_REALTIME when the daemon was made, in seconds (`process_start_time_seconds`).
    private let startTime: Double = {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }()
    /// `[metrics] listen` at start (a reload hands its own value to `applyMetricsListen`).
    private let metricsListen: IPEndpoint?
    /// Serializes moving the metrics endpoint (reloads may come from SIGHUP and Manager1.Reload at once).
    private let metricsSwitch = Mutex(())
    /// CLOCK_MONOTONIC of the last tick, in nanoseconds: the watchdog's proof that the loop makes progress.
    private let lastTick = Atomic<UInt64>(0)

    private struct Mutable {
        var uplinkSource: (any UplinkSource)?
        var bus: (any DaemonBus)?
        var metrics: MetricsServer?
        var watchdog: WatchdogPinger?
        var lastStatusLine = ""
        var started = false
        var stopped = false
    }

    /// `connectProfile` (from `--connect`), else the config's `autoconnect`, is connected at start,
    /// before READY=1.
    public init(config: DaemonConfig, configSource: any DaemonConfigSource, profiles: any ProfileStore,
                environment: DaemonEnvironment, connectProfile: String? = nil,
                logger: Logger = Logger(label: "triglav.daemon")) {
        role = config.role
        self.environment = environment
        self.connectProfile = Self.startupProfile(commandLine: connectProfile, config: config)
        self.logger = logger
        metricsListen = config.metricsListen
        switch config.role {
        case .client:
            client = ClientManager(config: config, configSource: configSource, profiles: profiles,
                                   tunnels: environment.clientTunnels, resolver: environment.resolver,
                                   logger: Logger(label: "triglav.daemon.client"), dataCapStore: environment.dataCapStore,
                                   linkDNS: environment.linkDNS)
            server = nil
            serverPublicKey = nil
        case .server:
            client = nil
            if case .usable(let key) = ConfigLoader.checkPrivateKey(of: config, file: "") { serverPublicKey = key.base64 } else {
                serverPublicKey = nil
            }
            server = ServerManager(config: config, configSource: configSource, tunnels: environment.serverTunnels,
                                   logger: Logger(label: "triglav.daemon.server"))
        }
    }

    /// The profile to connect to at start: the command line's (`--connect`) wins over the file's
    /// `autoconnect`; the server role never connects.
    static func startupProfile(commandLine: String?, config: DaemonConfig) -> String? {
        guard config.role == .client else { return nil }
        return commandLine ?? config.autoconnect?.rawValue
    }

    // MARK: Lifecycle

    /// Brings the role up and sends READY=1. On failure everything started so far is torn down again.
    public func start() throws(TriglavDaemonError) {
        environment.notifier.notify([.status("Starting (\(role.rawValue) role)")])
        do {
            // The endpoint first: an address that can't be bound fails the start before anything touched the system.
            try startMetrics()
            if let client { try startClient(client) }
            if let server { try server.start() }
            try startBus()
            if let client, let connectProfile { try client.autoconnect(profile: connectProfile) }
        } catch {
            shutdown(reason: "start failed")
            throw error
        }
        markProgress()
        let line = statusLine
        mutable.withLock { $0.lastStatusLine = line; $0.started = true }
        environment.notifier.notify([.ready, .status(line)])
        logger.info("triglavd \(VERSION) ready (\(role.rawValue)): \(line)")
        let watchdog = WatchdogPinger.forConfiguredWatchdog { [weak self] in self?.isMakingProgress ?? false }
        watchdog?.start()
        mutable.withLock { $0.watchdog = watchdog }
    }

    private func startClient(_ client: ClientManager) throws(TriglavDaemonError) {
        let config = client.config
        // A crashed run's rules would otherwise stay until the next Connect (which removes them too), and its
        // /etc/resolv.conf until someone noticed.
        do throws(TriglavDaemonError) { try environment.clientTunnels.removeLeftovers(config.routing) } catch {
            logger.warning("\(error)")
        }
        environment.linkDNS.restoreLeftovers()
        let source = environment.makeUplinkSource(DiscoveryPolicy(uplinks: config.uplinks, tunnelInterface: config.tunnel.interface))
        mutable.withLock { $0.uplinkSource = source }
        let synchronized = DispatchSemaphore(value: 0)
        do {
            try source.start { event in
                client.handleDiscovery(event)
                if case .synchronized = event { synchronized.signal() }
            }
        } catch {
            throw .failed(operation: "watching network interfaces (netlink)", reason: error.description)
        }
        if synchronized.wait(timeout: .now() + .nanoseconds(Int(environment.synchronizationTimeout.nanoseconds))) == .timedOut {
            logger.warning("the initial interface dump did not finish within \(environment.synchronizationTimeout); carrying on")
        }
    }

    /// Opens the metrics endpoint when `[metrics] listen` is set. A bind failure fails the start: the user asked
    /// for the endpoint, and a daemon running without it would hide that (docs/METRICS.md).
    private func startMetrics() throws(TriglavDaemonError) {
        guard let metricsListen else { return }
        refreshMetrics()
        let server = try openMetricsServer(metricsListen)
        mutable.withLock { $0.metrics = server }
    }

    private func openMetricsServer(_ endpoint: IPEndpoint) throws(TriglavDaemonError) -> MetricsServer {
        let server = try MetricsServer(endpoint: endpoint, logger: Logger(label: "triglav.metrics")) { [weak self] in
            self?.renderMetrics()
        }
        server.start()
        logger.info("serving Prometheus metrics on http://\(server.endpoint)\(MetricsServer.path)")
        return server
    }

    /// Where the metrics endpoint listens (its port resolved); nil without one.
    public var metricsEndpoint: IPEndpoint? { mutable.withLock { $0.metrics?.endpoint } }

    /// Copies the figures the metrics endpoint shows (on the tick, so scrapes only read the copy).
    private func refreshMetrics() {
        var snapshot = DaemonMetricsSnapshot(role: role, version: VERSION)
        snapshot.startTime = startTime
        if let client {
            snapshot.manager = client.status
            snapshot.uplinks = client.uplinks
            snapshot.tunnel = client.tunnelStatistics
            snapshot.dataCaps = client.dataCapUsage.mapValues { DaemonMetricsSnapshot.DataCapFigures(cap: $0.cap, used: $0.used) }
        }
        if let server {
            snapshot.server = server.status
            snapshot.clients = server.clients
            snapshot.serverCounters = server.tunnelCounters
        }
        metricsSnapshot.withLock { $0 = snapshot }
    }

    /// The Prometheus exposition of the latest snapshot; nil (a 500) if the families don't render, which is a bug.
    func renderMetrics() -> String? {
        guard let snapshot = metricsSnapshot.withLock({ $0 }) else { return nil }
        do {
            return try PrometheusText.render(DaemonMetrics.families(snapshot))
        } catch {
            logger.error("the metrics could not be rendered (a bug; please report it): \(error)")
            return nil
        }
    }

    /// After a reload: a changed `[metrics] listen` opens the new endpoint before closing the old one; if the new
    /// address can't be bound, the old endpoint stays and the error is logged (the daemon runs on).
    private func applyMetricsListen(_ wanted: IPEndpoint?) {
        metricsSwitch.withLock { _ in
            let (current, stopped) = mutable.withLock { ($0.metrics, $0.stopped) }
            guard !stopped else { return }
            guard let wanted else {
                if let current {
                    mutable.withLock { $0.metrics = nil }
                    current.stop()
                    logger.info("metrics endpoint on \(current.endpoint) closed ([metrics] listen removed)")
                }
                return
            }
            // Port 0 (tests) means any port: the endpoint that has one stays.
            if let current, current.endpoint == wanted || (wanted.port == 0 && current.endpoint.address == wanted.address) { return }
            refreshMetrics()
            let server: MetricsServer
            do { server = try openMetricsServer(wanted) } catch {
                logger.error("reload: \(error); \(current.map { "still serving metrics on \($0.endpoint)" } ?? "no metrics endpoint")")
                return
            }
            // A shutdown that came in meanwhile has taken (and stopped) the old one; this one goes too.
            let installed = mutable.withLock { state in
                guard !state.stopped else { return false }
                state.metrics = server
                return true
            }
            if installed { current?.stop() } else { server.stop() }
        }
    }

    /// Exports the API and takes the bus name (objects first, so a client seeing the name finds them all),
    /// then keeps the bus in step with every change the managers report.
    private func startBus() throws(TriglavDaemonError) {
        guard let startBus = environment.startBus else { return }
        let bus = try startBus(self)
        mutable.withLock { $0.bus = bus }
        client?.observe { [weak self] _ in self?.publishToBus() }
        server?.observe { [weak self] _ in self?.publishToBus() }
        logger.info("owning \(TriglavBus.name) on the bus")
    }

    /// Sends the current status to the bus adaptor, which signals only what changed.
    func publishToBus() {
        guard let bus = mutable.withLock({ $0.bus }) else { return }
        bus.publish(controlStatus())
    }

    /// SIGHUP: reloads the configuration and applies it. A bad file changes nothing and is reported in
    /// the log and STATUS=.
    public func reloadFromSignal() {
        do { try reloadConfiguration() } catch {
            logger.error("reload failed, keeping the previous configuration: \(error)")
        }
    }

    /// SIGHUP and Manager1.Reload: RELOADING=1, reload (the client also updates discovery's policy), READY=1.
    public func reloadConfiguration() throws(TriglavDaemonError) {
        environment.notifier.notify([.reloading, .status("Reloading configuration")])
        do {
            if let client {
                let config = try client.reload()
                let source = mutable.withLock { $0.uplinkSource }
                source?.updatePolicy(DiscoveryPolicy(uplinks: config.uplinks, tunnelInterface: config.tunnel.interface))
                applyMetricsListen(config.metricsListen)
            }
            if let server { applyMetricsListen(try server.reload().metricsListen) }
        } catch {
            environment.notifier.notify([.ready, .status("Reload failed: \(error); \(statusLine)")])
            throw error
        }
        let line = statusLine
        mutable.withLock { $0.lastStatusLine = line }
        environment.notifier.notify([.ready, .status(line)])
        logger.info("configuration reloaded: \(line)")
    }

    /// Once a second: refresh statistics and states; send STATUS= when the summary line changed.
    public func tick() {
        client?.refresh()
        server?.refresh()
        markProgress()
        let line = statusLine
        let changed = mutable.withLock { state in
            guard !state.stopped, state.lastStatusLine != line else { return false }
            state.lastStatusLine = line
            return true
        }
        if changed { environment.notifier.notify([.status(line)]) }
        publishToBus()
        if mutable.withLock({ $0.metrics != nil }) { refreshMetrics() }
    }

    /// Clean shutdown: STOPPING=1, stop discovery, disconnect (routes, rules, TUN) or stop the server
    /// (NAT, TUN, listeners). Idempotent.
    public func shutdown(reason: String = "shutting down") {
        let (source, watchdog, bus, metrics, alreadyStopped) = mutable.withLock { state in
            defer { state.stopped = true; state.uplinkSource = nil; state.watchdog = nil; state.bus = nil; state.metrics = nil }
            return (state.uplinkSource, state.watchdog, state.bus, state.metrics, state.stopped)
        }
        guard !alreadyStopped else { return }
        environment.notifier.notify([.stopping, .status("Stopping: \(reason)")])
        logger.info("stopping: \(reason)")
        watchdog?.stop()
        source?.stop()
        client?.shutdown()
        server?.stop()
        metrics?.stop()
        // Last, so the bus shows the way down; closing releases the name.
        if let bus {
            bus.publish(controlStatus())
            bus.close()
        }
    }

    /// Starts (see `start()`), then runs until SIGTERM or SIGINT: ticks every second, reloads on SIGHUP,
    /// and shuts down. The signal handlers are in place before the start, so a SIGTERM during a slow
    /// start (waiting for the interface dump, connecting) still ends in a clean shutdown right after it.
    public func run() throws(TriglavDaemonError) {
        let control = DispatchQueue(label: "triglav.daemon.control")
        let terminate = DispatchSemaphore(value: 0)
        var sources: [any DispatchSourceSignal] = []
        // A pipe or socket whose reader is gone (a tool that exited before reading its input: nft, resolvconf) must
        // fail that one write with EPIPE, not end the daemon.
        signal(SIGPIPE, SIG_IGN)
        for number in [SIGTERM, SIGINT, SIGHUP] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: control)
            source.setEventHandler { [weak self] in
                guard let self else { return }
                if number != SIGHUP {
                    terminate.signal()
                } else if mutable.withLock({ $0.started && !$0.stopped }) {
                    logger.info("SIGHUP: reloading")
                    reloadFromSignal()
                } else {
                    logger.notice("SIGHUP ignored: the daemon is not running yet")
                }
            }
            source.resume()
            sources.append(source)
        }
        defer { for source in sources { source.cancel() } }
        try start()
        let timer = DispatchSource.makeTimerSource(queue: control)
        let interval = DispatchTimeInterval.nanoseconds(Int(Self.tickInterval.nanoseconds))
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [weak self] in self?.tick() }
        timer.resume()
        terminate.wait()
        timer.cancel()
        control.sync {}
        shutdown(reason: "signal")
    }

    // MARK: Status

    public var statusLine: String {
        client?.statusLine ?? server?.statusLine ?? ""
    }

    private func markProgress() { lastTick.store(Self.monotonicNanoseconds(), ordering: .relaxed) }

    /// Whether the tick loop ran recently enough for the watchdog to vouch for it.
    private var isMakingProgress: Bool {
        let last = lastTick.load(ordering: .relaxed)
        return Self.monotonicNanoseconds() &- last < 3 * Self.tickInterval.nanoseconds + 1_000_000_000
    }

    static func monotonicNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }
}

extension Duration {
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
    }
}
