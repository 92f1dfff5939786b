#if canImport(Glibc)
import Glibc
#endif
import Dispatch
public import Logging
import Synchronization
public import TriglavConfig
import TriglavCore
import TriglavDataPlane
import TriglavMultipath
import struct TriglavProtocol.DNSOffer

/// The client role's tunnel manager: turns Connect/Disconnect/Reload, AddUplink/RemoveUplink, property
/// writes and discovery events into calls on one `ClientTunnelDriving`, and reports every change as a
/// `ClientManagerEvent`.
///
/// States (`ConnectionState`): disconnected → (Connect) connecting → connected/degraded (from uplink
/// sessions, re-derived on every `refresh()`) → (Disconnect) disconnecting → disconnected. Connect in
/// any state but disconnected is `alreadyConnected`; Disconnect while disconnected is `notConnected`.
///
/// Server names (`host:port` endpoints, `ServerNameSchedule`): Connect fails with `unresolvable` when the name doesn't
/// resolve, but the start-time `autoconnect` waits instead (phase `resolving`, shown as connecting without a tunnel) and
/// retries with backoff from `refresh()`. A connected tunnel none of whose uplinks reaches the server for a while resolves
/// the name again and, when it leads elsewhere now, rebuilds the tunnel towards the new address. Resolving blocks, so it
/// runs on a private serial queue, never under a lock nor on the caller of `refresh()` (the daemon's watchdog tick).
///
/// Uplinks: one record per interface, numbered once (the N of `/org/triglav/uplink/N`, never reused).
/// Auto records live as long as discovery reports the interface; manual ones until RemoveUplink. While
/// a connection is up, the tunnel carries exactly the records that are enabled, not tier `never`, present
/// (manual, or discovered) and within their data cap (`DataCapLedger`), whatever their tier: every such uplink
/// keeps a session, and the multipath engine's tier rules decide what carries data (secondaries when the
/// primaries can't carry the load, backups only when nothing better works), as commercial bonders do. So a
/// failing primary is replaced within the engine's failover bound, not after a session timeout and a handshake.
/// Idle secondaries and backups are probed at the relaxed (metered) heartbeat, on both ends.
///
/// Thread safety: every method may be called from any thread. Lifecycle operations (connect, disconnect,
/// reload, shutdown) are serialized by one lock; state reads and uplink changes take a second, short one.
/// Neither is held while calling out to discovery, and events are delivered on a private serial queue,
/// so observers may call back into the manager.
public final class ClientManager: Sendable {
    private let tunnels: any ClientTunnelFactory
    private let resolver: any EndpointResolving
    private let profiles: any ProfileStore
    private let configSource: any DaemonConfigSource
    private let logger: Logger
    /// Wall-clock seconds (UTC), for the data caps' billing periods.
    private let clock: @Sendable () -> Int64
    /// Monotonic time, for the server name's retries and re-resolution (`ServerNameSchedule`); tests pass a virtual one.
    private let uptime: @Sendable () -> Duration
    /// Runs the blocking name resolutions of retries and re-resolution, one at a time.
    private let resolutions = DispatchQueue(label: "triglav.client-manager.resolutions")
    /// Where the data caps' period usage survives restarts; nil keeps it in memory only.
    private let dataCapStore: DataCapStore?
    /// Where a profile's `[dns]` goes while connected.
    private let linkDNS: any LinkDNSConfiguring
    /// A periodic check of the link's DNS (`refresh`) is queued and not yet run.
    private let dnsCheckQueued = Atomic<Bool>(false)
    private let lifecycle = Mutex<Void>(())
    private let state: Mutex<State>
    private let events = DispatchQueue(label: "triglav.client-manager.events")

    public init(config: DaemonConfig, configSource: any DaemonConfigSource, profiles: any ProfileStore,
                tunnels: any ClientTunnelFactory, resolver: any EndpointResolving = SystemEndpointResolver(),
                logger: Logger = Logger(label: "triglav.daemon.client"),
                clock: @escaping @Sendable () -> Int64 = { Int64(time(nil)) }, dataCapStore: DataCapStore? = nil,
                uptime: (@Sendable () -> Duration)? = nil, linkDNS: any LinkDNSConfiguring = ResolvedLinkDNS()) {
        self.linkDNS = linkDNS
        linkDNS.use(config.dnsResolver)
        self.tunnels = tunnels
        self.clock = clock
        let origin = ContinuousClock.now
        self.uptime = uptime ?? { ContinuousClock.now - origin }
        self.dataCapStore = dataCapStore
        self.resolver = resolver
        self.profiles = profiles
        self.configSource = configSource
        self.logger = logger
        var initial = State(config: config)
        initial.dataCaps = DataCapLedger(entries: dataCapStore?.load() ?? [:])
        state = Mutex(initial)
    }

    // MARK: Observation

    /// Sets the observer of changes (replacing any previous one). It is called on a private serial queue,
    /// in order; the first call brings the current manager status.
    public func observe(_ observer: @escaping @Sendable (ClientManagerEvent) -> Void) {
        state.withLock { state in
            state.observer = observer
            let status = state.status()
            let uplinks = state.uplinkStatuses()
            events.async {
                observer(.managerChanged(status))
                for uplink in uplinks { observer(.uplinkAdded(uplink)) }
            }
        }
    }

    /// Waits until every event published so far has been delivered (tests, shutdown).
    public func drainEvents() { events.sync {} }

    /// Waits until the name resolutions started so far have finished and been applied (tests).
    func drainResolutions() { resolutions.sync {} }

    // MARK: Reading

    public var status: ClientManagerStatus { state.withLock { $0.status() } }

    public var uplinks: [UplinkSnapshot] { state.withLock { $0.uplinkStatuses() } }

    public func uplink(number: Int) throws(TriglavDaemonError) -> UplinkSnapshot {
        let found = state.withLock { state in state.uplinkStatuses().first { $0.number == number } }
        guard let found else { throw .notFound("uplink \(number)") }
        return found
    }

    /// The configuration in force (the latest successfully reloaded one).
    public var config: DaemonConfig { state.withLock { $0.config } }

    /// The connection's latest tunnel statistics (taken by `refresh()`, not now); nil without a connection.
    public var tunnelStatistics: ClientTunnelSnapshot? {
        state.withLock { state in
            guard case .active(let connection) = state.phase else { return nil }
            return connection.statistics
        }
    }

    /// Every capped uplink's cap and its usage in the current period (ended attachments plus the live one).
    public var dataCapUsage: [String: (cap: UInt64, used: UInt64)] {
        state.withLock { state in
            let live: Connection? = if case .active(let connection) = state.phase { connection } else { nil }
            var usage: [String: (cap: UInt64, used: UInt64)] = [:]
            for interface in state.records.keys {
                guard let cap = DataCapLedger.cap(of: interface, in: state.config) else { continue }
                usage[interface] = (cap.bytes, DataCapLedger.sum(state.dataCaps.spent(interface),
                                                                 state.liveDataCapUsage(interface, live)))
            }
            return usage
        }
    }

    /// One line for `systemctl status` (sd_notify STATUS=).
    public var statusLine: String { state.withLock { $0.statusLine() } }

    // MARK: Lifecycle

    /// Connects to the server of profile `name`: loads the profile, builds and starts the tunnel, and puts
    /// the current uplinks into it. Returns once the tunnel exists (state connecting); sessions follow.
    /// A server name that doesn't resolve fails it (`unresolvable`): the user asked now, and is told now.
    public func connect(profile name: String, options: ConnectionOptions = ConnectionOptions()) throws(TriglavDaemonError) {
        try connect(profile: name, options: options, waitingForTheName: false)
    }

    /// The start-time connection (`--connect`, `autoconnect`): as `connect`, except that a server name that doesn't
    /// resolve yet (at boot the network may not be up) doesn't fail it. The connection then waits for the name (state
    /// connecting, no tunnel yet), retried with backoff (`ServerNameSchedule`) until it resolves or Disconnect.
    public func autoconnect(profile name: String) throws(TriglavDaemonError) {
        try connect(profile: name, options: ConnectionOptions(), waitingForTheName: true)
    }

    private func connect(profile name: String, options: ConnectionOptions, waitingForTheName: Bool) throws(TriglavDaemonError) {
        let profileName: ProfileName
        do { profileName = try ProfileName(name) } catch {
            throw .invalidArgument(what: "profile name '\(name)'", reason: "use 1 to 64 letters, digits, ., _ or -, starting with a letter or digit")
        }
        try lifecycle.withLock { _ throws(TriglavDaemonError) in
            let config = try state.withLock { state throws(TriglavDaemonError) -> DaemonConfig in
                switch state.phase {
                case .disconnected:
                    state.phase = .starting(profileName)
                    publish(&state)
                    return state.config
                case .starting(let profile):
                    throw .alreadyConnected(profile: profile.rawValue)
                case .resolving(let pending):
                    throw .alreadyConnected(profile: pending.profile.rawValue)
                case .active(let connection), .disconnecting(let connection):
                    throw .alreadyConnected(profile: connection.plan.profile.rawValue)
                }
            }
            var endpoint: RemoteEndpoint?
            do throws(TriglavDaemonError) {
                let override = state.withLock { $0.schedulerOverride }
                let settings = try connectionSettings(config: config, profile: profileName, options: options, schedulerOverride: override)
                endpoint = settings.endpoint
                let plan = makePlan(config: config, profile: profileName, settings: settings, server: try resolve(settings.endpoint))
                activate(try startTunnel(plan), plan: plan, options: options, now: uptime())
                logger.info("connecting to \(plan.profile) (\(plan.server))",
                            metadata: ["profile": "\(plan.profile)", "server": "\(plan.server)"])
            } catch {
                if waitingForTheName, case .unresolvable = error, let endpoint {
                    let delay = ServerNameSchedule.retryDelay(afterFailures: 1)
                    let now = uptime()
                    state.withLock { state in
                        state.phase = .resolving(PendingConnection(
                            generation: state.takeGeneration(), profile: profileName, options: options, endpoint: endpoint,
                            failures: 1, lastFailure: error.resolverReason, nextAttempt: now + delay))
                        publish(&state)
                    }
                    logger.warning("connecting to \(profileName) waits for its server name: \(error); retrying in \(delay)",
                                   metadata: ["profile": "\(profileName)", "server": "\(endpoint)"])
                    return
                }
                state.withLock { state in
                    state.phase = .disconnected
                    publish(&state)
                }
                logger.error("connect to \(profileName) failed: \(error)", metadata: ["profile": "\(profileName)"])
                throw error
            }
        }
    }

    /// Tears the connection down: the tunnel removes its routes, rules and TUN device.
    public func disconnect() throws(TriglavDaemonError) {
        try lifecycle.withLock { _ throws(TriglavDaemonError) in
            guard try teardown() else { throw .notConnected(operation: "disconnect") }
        }
    }

    /// Disconnects if connected (daemon shutdown); never fails.
    public func shutdown() {
        lifecycle.withLock { _ in _ = try? teardown() }
        saveDataCaps(force: true)
        drainEvents()
    }

    /// Writes the data caps' period usage to the store (see `DataCapStore` for when it actually writes).
    private func saveDataCaps(force: Bool) {
        guard let dataCapStore else { return }
        let usage = state.withLock { $0.dataCapUsage() }
        dataCapStore.save(usage, now: clock(), force: force)
    }

    /// Reloads the daemon configuration (and the connected profile). Scheduler-only changes apply in place;
    /// any other change to the connection rebuilds the tunnel. On a load error nothing changes. Returns the
    /// configuration now in force, so the caller can update discovery's policy.
    @discardableResult
    public func reload() throws(TriglavDaemonError) -> DaemonConfig {
        try lifecycle.withLock { _ throws(TriglavDaemonError) -> DaemonConfig in
            var resolverChanged = false
            let config = try configSource.load()
            let now = uptime()
            linkDNS.use(config.dnsResolver)
            let current = state.withLock { state -> Connection? in
                resolverChanged = state.config.dnsResolver != config.dnsResolver
                state.config = config
                if case .resolving(var pending) = state.phase {
                    pending.nextAttempt = min(pending.nextAttempt, now)  // the profile may name another server now
                    state.phase = .resolving(pending)
                }
                publish(&state)
                if case .active(let connection) = state.phase { return connection }
                return nil
            }
            // Another resolver: the link's DNS moves to it now, before anything below can fail (the old one's is taken
            // back by `apply`).
            if resolverChanged && current?.wantedDNS != nil { syncDNS() }
            guard let current else {
                logger.info("configuration reloaded")
                return config
            }
            let override = state.withLock { $0.schedulerOverride }
            let settings = try connectionSettings(config: config, profile: current.plan.profile, options: current.options,
                                                  schedulerOverride: override)
            let server: IPEndpoint
            do throws(TriglavDaemonError) { server = try resolve(settings.endpoint) } catch {
                // The same name that doesn't resolve right now: keep its address rather than fail the whole reload.
                guard settings.endpoint == current.plan.configuredEndpoint else { throw error }
                logger.warning("reload: \(error); keeping the server's address \(current.plan.server)")
                server = current.plan.server
            }
            let plan = makePlan(config: config, profile: current.plan.profile, settings: settings, server: server)
            var inPlace = current.plan
            inPlace.scheduler = plan.scheduler
            inPlace.dns = plan.dns
            inPlace.acceptsServerDNS = plan.acceptsServerDNS
            if plan == current.plan {
                logger.info("configuration reloaded; connection unchanged")
            } else if plan == inPlace {
                if plan.scheduler != current.plan.scheduler { current.tunnel.setScheduler(plan.scheduler) }
                let dnsChanged = state.withLock { state -> Bool in
                    state.updateConnection { $0.plan = plan }
                    publish(&state)
                    return state.connection.map { $0.wantedDNS != $0.appliedDNS } ?? false
                }
                if dnsChanged { syncDNS() }
                let dns = state.withLock { $0.connection?.wantedDNS?.summary } ?? "left to the system"
                logger.info("configuration reloaded; scheduler \(plan.scheduler), DNS \(dns)")
            } else {
                logger.notice("configuration reloaded; connection settings changed, rebuilding the tunnel")
                _ = try teardown()
                try startAndActivate(plan, options: current.options, now: uptime())
            }
            return config
        }
    }

    /// Polls the tunnel's statistics, re-derives the connection and uplink states, applies tier changes
    /// and publishes what changed. The daemon calls it once a second, which also rate-limits counters.
    public func refresh() {
        defer { saveDataCaps(force: false) }
        let now = uptime()
        var dnsSync: UInt64?
        var dnsCheck: UInt64?
        let due = state.withLock { state -> NameResolution? in
            var due: NameResolution?
            if case .resolving(var pending) = state.phase, !pending.isAttempting, now >= pending.nextAttempt {
                pending.isAttempting = true
                state.phase = .resolving(pending)
                due = .pendingConnection(generation: pending.generation)
            }
            guard case .active(var connection) = state.phase else {
                // Without a connection too, so a capped-out uplink shows usable again once its period is over.
                // (With one, `reconcile` does it, setting the baselines of attached uplinks.)
                _ = state.enterDataCapPeriods(now: clock())
                publish(&state)
                return due
            }
            let previousFailure = state.refreshStatistics(&connection, now: clock())?.routingFailure
            reportRoutingFailure(from: previousFailure, to: connection.statistics?.routingFailure, connection)
            if case .hostname = connection.plan.configuredEndpoint,
               connection.serverNameWatch.observe(reachable: connection.reachesServer, now: now) {
                due = .connectedServer(generation: connection.generation)
            }
            // Converted (its domains parsed) only when the server's offer changed, not on every tick.
            let offer = connection.statistics?.dnsOffer
            if offer != connection.receivedDNSOffer {
                connection.receivedDNSOffer = offer
                connection.offeredDNS = offer.flatMap { LinkDNS(offer: $0, fullTunnel: connection.plan.routing == .fullTunnel) }
            }
            // A new offer, or the assignment (its families decide which servers the tunnel reaches).
            if connection.wantedDNS != connection.appliedDNS { dnsSync = connection.generation }
            if let retryAt = connection.dnsRetryAt, now >= retryAt {
                connection.dnsRetryAt = nil
                dnsSync = connection.generation
            }
            // Applied: checked once a second, since another program may write over it (a DHCP client's resolv.conf).
            if dnsSync == nil && connection.appliedDNS != nil && connection.dnsFailure.isEmpty { dnsCheck = connection.generation }
            state.phase = .active(connection)
            reconcile(&state)
            publish(&state)
            return due
        }
        if let due { resolutions.async { [weak self] in self?.resolve(due) } }
        if let dnsSync { resolutions.async { [weak self] in self?.syncDNS(generation: dnsSync) } }
        // One check waiting at a time: the queue may be busy for seconds with a name resolution.
        if let dnsCheck, dnsCheckQueued.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            resolutions.async { [weak self] in
                self?.dnsCheckQueued.store(false, ordering: .relaxed)
                self?.syncDNS(generation: dnsCheck)
            }
        }
    }

    /// How long after a failed hand-over to the resolver it is tried again (systemd-resolved started later, or was
    /// restarted), while the connection lasts.
    static let dnsRetryInterval: Duration = .seconds(10)

    /// `syncDNS` for the connection of `generation` (on the resolutions queue: it blocks on D-Bus), after a failure,
    /// when the server's offer changed what the link should have, or when another program wrote over it.
    private func syncDNS(generation: UInt64) {
        lifecycle.withLock { _ in
            guard let connection = state.withLock({ state -> Connection? in
                guard case .active(let connection) = state.phase, connection.generation == generation else { return nil }
                return connection
            }) else { return }
            if !connection.dnsFailure.isEmpty || connection.wantedDNS != connection.appliedDNS {
                syncDNS()
            } else if connection.appliedDNS != nil && !linkDNS.isInPlace(connection.plan.tunnelInterface) {
                logger.warning("DNS on \(connection.plan.tunnelInterface) was overwritten by another program; applying it again",
                               metadata: ["profile": "\(connection.plan.profile)"])
                syncDNS()
            }
        }
    }

    /// Logs a routing failure episode once at error level when it starts (the data plane keeps retrying, and
    /// the bus shows it as Manager1.RoutingError until it ends), and once at notice level when it ends.
    private func reportRoutingFailure(from previous: String?, to current: String?, _ connection: Connection) {
        let metadata: Logger.Metadata = ["profile": "\(connection.plan.profile)", "tunnel": "\(connection.plan.tunnelInterface)"]
        switch (previous, current) {
        case (nil, let failure?):
            logger.error("""
                the tunnel's addresses or routes could not be applied, so its traffic is blocked (retrying until they \
                apply): \(failure)
                """, metadata: metadata)
        case (_?, nil):
            logger.notice("the tunnel's addresses and routes are applied; the routing failure is over", metadata: metadata)
        default:
            break
        }
    }

    // MARK: Scheduler

    /// Sets the scheduler (Manager1.Scheduler): applied at once when connected, kept for later connections.
    public func setScheduler(_ name: String) throws(TriglavDaemonError) {
        guard let kind = TriglavConfig.SchedulerKind(rawValue: name) else {
            throw .invalidArgument(what: "scheduler '\(name)'",
                                   reason: "use one of \(TriglavConfig.SchedulerKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let dataPlaneKind = Self.dataPlaneScheduler(kind)
        state.withLock { state in
            state.schedulerOverride = kind
            if case .active(let connection) = state.phase {
                connection.tunnel.setScheduler(dataPlaneKind)
                state.updateConnection { $0.plan.scheduler = dataPlaneKind }
            }
            publish(&state)
        }
    }

    // MARK: Uplinks

    /// Adds `interface` as a manual uplink (or makes an automatically found one manual) and returns its
    /// number. A manual uplink whose interface is missing waits for it.
    @discardableResult
    public func addUplink(interface: String, options: UplinkOverrides = UplinkOverrides()) throws(TriglavDaemonError) -> Int {
        do { _ = try InterfaceName(interface) } catch {
            throw .invalidArgument(what: "interface name '\(interface)'", reason: "\(error)")
        }
        let tunnelInterface = state.withLock { $0.config.tunnel.interface.rawValue }
        guard interface != tunnelInterface else {
            throw .invalidArgument(what: "interface '\(interface)'", reason: "it is the tunnel itself")
        }
        return try state.withLock { state throws(TriglavDaemonError) -> Int in
            if var record = state.records[interface] {
                guard record.origin == .auto else {
                    throw .invalidArgument(what: "interface '\(interface)'", reason: "it is already uplink \(record.number)")
                }
                record.origin = .manual
                record.apply(options)
                state.records[interface] = record
                reconcile(&state)
                publish(&state)
                return record.number
            }
            var record = UplinkRecord(number: state.nextUplinkNumber, interface: interface, origin: .manual)
            state.nextUplinkNumber += 1
            record.apply(options)
            state.records[interface] = record
            reconcile(&state)
            publish(&state)
            logger.info("manual uplink \(interface) added", metadata: ["interface": "\(interface)"])
            return record.number
        }
    }

    /// Removes manual uplink `number`. If discovery also reports its interface it becomes an automatic
    /// uplink again (with the discovered tier and metered flag); automatic uplinks can't be removed
    /// (disable them, or exclude them in the configuration).
    public func removeUplink(number: Int) throws(TriglavDaemonError) {
        try state.withLock { state throws(TriglavDaemonError) in
            guard var record = state.records.values.first(where: { $0.number == number }) else {
                throw .notFound("uplink \(number)")
            }
            guard record.origin == .manual else {
                throw .invalidArgument(what: "uplink \(number) (\(record.interface))",
                                       reason: "it was found automatically; set Enabled=false or exclude it in triglavd.toml")
            }
            if record.discovered != nil {
                record.origin = .auto
                record.overrides = UplinkOverrides()
                state.records[record.interface] = record
            } else {
                state.records[record.interface] = nil
            }
            reconcile(&state)
            publish(&state)
        }
    }

    /// Writes Uplink1.Tier / Metered / Enabled / Transport (the non-nil fields of `options`); a new transport re-adds
    /// the uplink at the next reconcile (below, a new session).
    public func updateUplink(number: Int, _ options: UplinkOverrides) throws(TriglavDaemonError) {
        try state.withLock { state throws(TriglavDaemonError) in
            guard var record = state.records.values.first(where: { $0.number == number }) else {
                throw .notFound("uplink \(number)")
            }
            record.apply(options)
            state.records[record.interface] = record
            reconcile(&state)
            publish(&state)
        }
    }

    /// Applies one discovery event (called on discovery's thread).
    public func handleDiscovery(_ event: DiscoveryEvent) {
        state.withLock { state in
            let name: String? = switch event {
            case .added(let uplink), .changed(let uplink), .removed(let uplink): uplink.name
            case .synchronized: nil
            }
            let wasReported = name.map { state.records[$0]?.discovered != nil } ?? false
            switch event {
            case .added(let uplink), .changed(let uplink):
                // A renamed interface keeps its index: retire the record under the old name first.
                if let renamed = state.records.values.first(where: {
                    $0.discovered?.interfaceIndex == uplink.interfaceIndex && $0.interface != uplink.name
                }) {
                    state.forget(renamed.interface)
                }
                if var record = state.records[uplink.name] {
                    record.discovered = uplink
                    state.records[uplink.name] = record
                } else {
                    var record = UplinkRecord(number: state.nextUplinkNumber, interface: uplink.name, origin: .auto)
                    state.nextUplinkNumber += 1
                    record.discovered = uplink
                    state.records[uplink.name] = record
                }
            case .removed(let uplink):
                state.forget(uplink.name)
            case .synchronized:
                return
            }
            if let name, wasReported != (state.records[name]?.discovered != nil) { followSystemLink(name, &state) }
            if let name, !wasReported, state.records[name]?.discovered != nil, case .resolving(var pending) = state.phase {
                // A network just came up: the name may resolve now, so don't sit out the backoff.
                pending.nextAttempt = min(pending.nextAttempt, uptime())
                state.phase = .resolving(pending)
            }
            reconcile(&state)
            publish(&state)
        }
    }

    /// Tells the engine at once when discovery stops reporting an attached manual uplink's link as usable (carrier
    /// lost, interface gone: `systemLinkDown`) or reports it again (`systemLinkUp`), so its traffic moves without
    /// waiting for blackhole detection. (Automatic uplinks leave the tunnel then, which is just as quick.)
    private func followSystemLink(_ interface: String, _ state: inout State) {
        guard case .active(var connection) = state.phase, connection.attached.contains(interface),
              let record = state.records[interface], record.origin == .manual, let name = try? InterfaceName(interface) else { return }
        let isDown = record.discovered == nil
        if isDown != connection.linksDown.contains(interface) {
            do {
                try connection.tunnel.setSystemLink(interface: name, isUp: !isDown)
                if isDown { connection.linksDown.insert(interface) } else { connection.linksDown.remove(interface) }
                logger.info("uplink \(interface): link \(isDown ? "down, out of service until it is back" : "back, probing it")",
                            metadata: ["interface": "\(interface)"])
            } catch {
                logger.debug("uplink \(interface): reporting its link state: \(error)")
            }
        }
        state.phase = .active(connection)
    }

    // MARK: Internals

    /// The profile's settings with the file's and Connect's overrides (no resolution yet).
    private func connectionSettings(config: DaemonConfig, profile name: ProfileName, options: ConnectionOptions,
                                    schedulerOverride: TriglavConfig.SchedulerKind?) throws(TriglavDaemonError) -> ConnectionSettings {
        guard config.role == .client else { throw .wrongRole(operation: "connect", role: config.role.rawValue) }
        let profile = try profiles.profile(named: name)
        var settings = ConnectionSettings(daemon: config, profile: profile)
        if let scheduler = options.scheduler ?? schedulerOverride { settings.multipath.scheduler = scheduler }
        if let fullTunnel = options.fullTunnel { settings.routing.fullTunnel = fullTunnel }
        if let server = options.server { settings.endpoint = server }
        return settings
    }

    /// The server's address: `endpoint`'s own, or what its name resolves to. Any resolver failure is `unresolvable`.
    private func resolve(_ endpoint: RemoteEndpoint) throws(TriglavDaemonError) -> IPEndpoint {
        do { return try resolver.resolve(endpoint) } catch {
            if case .unresolvable = error { throw error }
            throw .unresolvable(endpoint: "\(endpoint)", reason: error.description)
        }
    }

    private func makePlan(config: DaemonConfig, profile name: ProfileName, settings: ConnectionSettings,
                          server: IPEndpoint) -> ClientTunnelPlan {
        let routing: ClientRouting = settings.routing.fullTunnel ? .fullTunnel
            : settings.routing.routes.isEmpty ? .none : .split(settings.routing.routes)
        return ClientTunnelPlan(
            profile: name, configuredEndpoint: settings.endpoint, server: server,
            serverKey: settings.serverPublicKey, privateKeyPath: config.privateKeyPath,
            tunnelInterface: config.tunnel.interface, mtu: config.tunnel.mtu, routing: routing,
            scheduler: Self.dataPlaneScheduler(settings.multipath.scheduler),
            firewallMark: settings.routing.firewallMark, routingTable: settings.routing.table,
            rulePriority: settings.routing.rulePriority, exclude: settings.routing.exclude,
            keepaliveInterval: config.uplinks.natKeepalive ?? Self.keepaliveDisabled,
            probeInterval: config.uplinks.heartbeatInterval, reorderHold: settings.multipath.reorderMaxHold,
            redundantCopies: settings.multipath.redundantCopies, udpRetryInterval: config.uplinks.udpRetryInterval,
            resendRequests: settings.multipath.resendRequests, pacing: settings.multipath.pacing,
            dns: LinkDNS(settings.dns, fullTunnel: settings.routing.fullTunnel),
            acceptsServerDNS: settings.dns.servers.isEmpty && settings.dns.acceptsServerOffer)
    }

    /// `nat_keepalive_s = 0`: the data plane always has an interval, so make it one that never fires.
    static let keepaliveDisabled: Duration = .seconds(86_400)

    /// A duration in whole microseconds (Uplink1.RttUsec/JitterUsec); negative durations count as 0.
    static func microseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        return UInt64(seconds) * 1_000_000 + UInt64(attoseconds / 1_000_000_000_000)
    }

    /// Config name → data plane scheduler. Exhaustive on purpose: a scheduler added to the config
    /// without a data plane counterpart must fail to compile, not fail at Connect.
    static func dataPlaneScheduler(_ kind: TriglavConfig.SchedulerKind) -> TriglavDataPlane.SchedulerKind {
        switch kind {
        case .aggregate: .aggregate
        case .redundant: .redundant
        case .failover: .failover
        case .flow: .flow
        case .lowestLatency: .lowestLatency
        }
    }

    /// Rebuilds from `.starting`: the tunnel for `plan` goes active, or on failure the manager is disconnected and the
    /// error is rethrown (a reload, a resolved pending name and a moved server all end this way).
    private func startAndActivate(_ plan: ClientTunnelPlan, options: ConnectionOptions,
                                  now: Duration) throws(TriglavDaemonError) {
        state.withLock { state in
            state.phase = .starting(plan.profile)
            publish(&state)
        }
        do throws(TriglavDaemonError) {
            activate(try startTunnel(plan), plan: plan, options: options, now: now)
        } catch {
            state.withLock { state in
                state.phase = .disconnected
                publish(&state)
            }
            throw error
        }
    }

    /// A started tunnel becomes the connection: its uplinks join, then its DNS goes to the resolver.
    private func activate(_ tunnel: any ClientTunnelDriving, plan: ClientTunnelPlan, options: ConnectionOptions, now: Duration) {
        state.withLock { state in
            state.activate(plan: plan, options: options, tunnel: tunnel, now: now)
            reconcile(&state)
            publish(&state)
        }
        syncDNS()
    }

    private func startTunnel(_ plan: ClientTunnelPlan) throws(TriglavDaemonError) -> any ClientTunnelDriving {
        let tunnel = try tunnels.makeTunnel(plan)
        do { try tunnel.start() } catch {
            throw .failed(operation: "starting the tunnel \(plan.tunnelInterface)", reason: error.description)
        }
        return tunnel
    }

    /// Brings the tunnel link's DNS in line with what the active connection wants (`Connection.wantedDNS`: the
    /// profile's `[dns]`, else the server's offer): hands it to the resolver, or takes it back when nothing is wanted any
    /// more. With the lifecycle lock held, not the state lock: it blocks on D-Bus. A failure leaves the tunnel up, is
    /// shown as `DNSError` and is tried again every `dnsRetryInterval` (logged as a warning when the reason is new).
    private func syncDNS() {
        guard let connection = state.withLock({ state -> Connection? in
            guard case .active(let connection) = state.phase else { return nil }
            return connection
        }) else { return }
        let plan = connection.plan
        let wanted = connection.wantedDNS
        let leftOut = connection.unreachableDNSNote
        if !leftOut.isEmpty && wanted != connection.appliedDNS {
            logger.warning("DNS of profile \(plan.profile): \(leftOut)", metadata: ["profile": "\(plan.profile)"])
        }
        var failure = ""
        var resolver = ""
        if let wanted {
            do throws(TriglavDaemonError) {
                try linkDNS.apply(wanted, to: plan.tunnelInterface)
                resolver = linkDNS.resolver(for: plan.tunnelInterface)
                let via = resolver.isEmpty ? "" : " via \(resolver)"
                logger.info("DNS on \(plan.tunnelInterface) (\(connection.dnsSource))\(via): \(wanted.summary)")
            } catch {
                failure = error.description
            }
        } else {
            revertDNS(connection)
        }
        let retryAt = failure.isEmpty ? nil : uptime() + Self.dnsRetryInterval
        state.withLock { state in
            state.updateConnection {
                $0.appliedDNS = wanted
                $0.dnsFailure = failure
                $0.dnsRetryAt = retryAt
                $0.dnsResolver = resolver
            }
            publish(&state)
        }
        if !failure.isEmpty && failure != connection.dnsFailure {
            logger.warning("DNS of profile \(plan.profile) not applied (retrying every \(Self.dnsRetryInterval)): \(failure)",
                           metadata: ["profile": "\(plan.profile)"])
        }
    }

    /// Takes the connection's DNS back from the resolver. Also after a failed hand-over (part of it may have been
    /// taken); failing then is expected (resolved still not there) and logged at debug level only.
    private func revertDNS(_ connection: Connection) {
        let plan = connection.plan
        guard connection.appliedDNS != nil else { return }
        do throws(TriglavDaemonError) { try linkDNS.revert(plan.tunnelInterface) } catch {
            if !connection.dnsFailure.isEmpty {
                logger.debug("DNS on \(plan.tunnelInterface) not reverted (it wasn't applied either): \(error)")
            } else {
                logger.warning("DNS on \(plan.tunnelInterface) not reverted: \(error)")
            }
        }
    }

    /// Stops the active connection (with the lifecycle lock held). Returns false when there was none.
    private func teardown() throws(TriglavDaemonError) -> Bool {
        let (connection, waiting) = state.withLock { state -> (Connection?, PendingConnection?) in
            switch state.phase {
            case .active(let connection):
                state.phase = .disconnecting(connection)
                publish(&state)
                return (connection, nil)
            case .resolving(let pending):
                // No tunnel yet: nothing to tear down. A resolution under way finds the phase changed and is dropped.
                state.phase = .disconnected
                publish(&state)
                return (nil, pending)
            case .disconnected, .starting, .disconnecting:
                return (nil, nil)
            }
        }
        if let waiting {
            logger.info("stopped waiting for the server name of \(waiting.profile)", metadata: ["profile": "\(waiting.profile)"])
            return true
        }
        guard let connection else { return false }
        // What the capped uplinks sent counts against their period (a stopped tunnel reports no uplinks).
        let final = connection.tunnel.snapshot()
        let now = clock()
        state.withLock { state in
            var ended = connection
            ended.statistics = final
            for interface in ended.attached { state.recordDataCapSpending(interface, of: ended, now: now) }
        }
        saveDataCaps(force: true)
        // While the link still exists (resolved would drop its DNS with the device anyway).
        revertDNS(connection)
        // Outside the state lock: stopping joins the pump threads, and readers must not wait for that.
        connection.tunnel.stop()
        state.withLock { state in
            state.phase = .disconnected
            publish(&state)
        }
        logger.info("disconnected from \(connection.plan.profile)", metadata: ["profile": "\(connection.plan.profile)"])
        return true
    }

    /// Brings the tunnel's uplinks in line with the records (see the type's comment) and re-derives the
    /// connection state. Failures to add (e.g. the tunnel's uplink limit) are retried on the next call.
    private func reconcile(_ state: inout State) {
        guard case .active(var connection) = state.phase else { return }
        // Before any allowance is computed, also for an interface that comes back after its period ended.
        state.startDataCapPeriods(&connection, now: clock())
        let wanted = state.wantedInterfaces(connection)
        // An uplink whose transport changed (a reload's pin) needs a new session: it leaves and joins again below.
        let retransported = connection.attached.intersection(wanted).filter {
            state.transport($0, connection) != connection.appliedTransports[$0]
        }
        let leaving = connection.attached.subtracting(wanted).union(retransported)
        // A capped uplink leaving (its interface went away, say) counts up to now, not up to the last snapshot:
        // the usage since then would otherwise be lost to the ledger.
        if leaving.contains(where: { DataCapLedger.cap(of: $0, in: state.config) != nil }) {
            state.refreshStatistics(&connection, now: clock())
        }
        for interface in leaving.sorted() {
            if state.isDataCapSpent(interface, connection), let cap = DataCapLedger.cap(of: interface, in: state.config) {
                logger.notice("""
                    uplink \(interface) used its data cap of \(cap.bytes / 1_000_000) MB (sent and received) for this \
                    period; it stays out of the tunnel until day \(cap.resetDay) of the month (UTC)
                    """, metadata: ["interface": "\(interface)"])
            }
            if let name = try? InterfaceName(interface) {
                do { try connection.tunnel.removeUplink(interface: name) } catch {
                    logger.debug("removing uplink \(interface): \(error)")
                }
            }
            state.recordDataCapSpending(interface, of: connection, now: clock())
            connection.retire(interface)
            connection.attached.remove(interface)
            connection.appliedPolicies[interface] = nil
            connection.appliedTransports[interface] = nil
            connection.capBaselines[interface] = nil
            connection.linksDown.remove(interface)
            logger.info("uplink \(interface) left the tunnel", metadata: ["interface": "\(interface)"])
        }
        for interface in connection.attached.intersection(wanted).sorted() {
            guard let policy = state.multipathPolicy(interface, connection),
                  policy != connection.appliedPolicies[interface], let name = try? InterfaceName(interface) else { continue }
            do {
                try connection.tunnel.setUplinkPolicy(interface: name, policy: policy)
                connection.appliedPolicies[interface] = policy
            } catch {
                logger.warning("uplink \(interface): applying tier/metered failed: \(error)", metadata: ["interface": "\(interface)"])
            }
        }
        for interface in wanted.subtracting(connection.attached).sorted() {
            let policy = state.multipathPolicy(interface, connection) ?? UplinkPolicy()
            let transport = state.transport(interface, connection)
            do {
                try connection.tunnel.addUplink(interface: try InterfaceName(interface), policy: policy, transport: transport)
                connection.attached.insert(interface)
                connection.appliedPolicies[interface] = policy
                connection.appliedTransports[interface] = transport
                let over = transport == .tcp ? " (TCP only)" : ""
                logger.info("uplink \(interface) joined the tunnel\(over)", metadata: ["interface": "\(interface)"])
            } catch {
                logger.warning("uplink \(interface) can't join the tunnel yet: \(error)", metadata: ["interface": "\(interface)"])
            }
        }
        connection.deriveState()
        state.phase = .active(connection)
    }

    /// Runs one name resolution `refresh()` found due (on the resolution queue): resolves outside every lock, then
    /// applies the outcome under the lifecycle lock if the phase it was for is still current (a Disconnect, reload
    /// or new tunnel meanwhile drops it).
    private func resolve(_ due: NameResolution) {
        switch due {
        case .pendingConnection(let generation): retryPendingConnection(generation)
        case .connectedServer(let generation): resolveConnectedServer(generation)
        }
    }

    /// The start-time connection waiting for its server name: one attempt. Resolved, the tunnel starts as Connect's
    /// would; still unresolvable, the next attempt waits longer; any other failure (the profile went away) ends it.
    private func retryPendingConnection(_ generation: UInt64) {
        let read = state.withLock { state -> (PendingConnection, DaemonConfig, TriglavConfig.SchedulerKind?)? in
            guard case .resolving(let pending) = state.phase, pending.generation == generation else { return nil }
            return (pending, state.config, state.schedulerOverride)
        }
        guard let (pending, config, override) = read else { return }
        let outcome = Result { () throws(TriglavDaemonError) -> (ConnectionSettings, IPEndpoint) in
            let settings = try connectionSettings(config: config, profile: pending.profile, options: pending.options,
                                                  schedulerOverride: override)
            return (settings, try resolve(settings.endpoint))
        }
        let metadata: Logger.Metadata = ["profile": "\(pending.profile)"]
        lifecycle.withLock { _ in
            let now = uptime()
            let current = state.withLock { state -> PendingConnection? in
                guard case .resolving(let current) = state.phase, current.generation == generation else { return nil }
                return current
            }
            guard var current else { return }
            switch outcome {
            case .failure(let error):
                if case .unresolvable = error {
                    current.failures += 1
                    let delay = ServerNameSchedule.retryDelay(afterFailures: current.failures)
                    let changed = current.lastFailure != error.resolverReason
                    current.lastFailure = error.resolverReason
                    current.nextAttempt = now + delay
                    current.isAttempting = false
                    state.withLock { state in
                        state.phase = .resolving(current)
                        publish(&state)
                    }
                    logger.log(level: changed ? .warning : .debug,
                               "still waiting for the server name of \(pending.profile) (attempt \(current.failures)): \(error); retrying in \(delay)",
                               metadata: metadata)
                } else {
                    state.withLock { state in
                        state.phase = .disconnected
                        publish(&state)
                    }
                    logger.error("connect to \(pending.profile) failed: \(error)", metadata: metadata)
                }
            case .success(let (settings, server)):
                let plan = makePlan(config: config, profile: pending.profile, settings: settings, server: server)
                do throws(TriglavDaemonError) {
                    try startAndActivate(plan, options: pending.options, now: now)
                    logger.notice("""
                        the server name \(settings.endpoint) resolved to \(server) after \(current.failures) failed \
                        attempt\(current.failures == 1 ? "" : "s"); connecting to \(plan.profile)
                        """, metadata: metadata)
                } catch {
                    logger.error("connect to \(pending.profile) failed: \(error)", metadata: metadata)
                }
            }
        }
    }

    /// A connected tunnel none of whose uplinks reaches the server: resolves its name again and, when it leads to
    /// another address now, rebuilds the tunnel towards that one (a short outage of a tunnel that carried nothing).
    private func resolveConnectedServer(_ generation: UInt64) {
        let endpoint = state.withLock { state -> RemoteEndpoint? in
            guard case .active(let connection) = state.phase, connection.generation == generation else { return nil }
            return connection.plan.configuredEndpoint
        }
        guard let endpoint else { return }
        let outcome = Result { () throws(TriglavDaemonError) -> IPEndpoint in try resolve(endpoint) }
        lifecycle.withLock { _ in
            let now = uptime()
            let current = state.withLock { state -> Connection? in
                guard case .active(var connection) = state.phase, connection.generation == generation else { return nil }
                connection.serverNameWatch.finishResolving(at: now)
                state.phase = .active(connection)
                return connection
            }
            guard let current else { return }
            let metadata: Logger.Metadata = ["profile": "\(current.plan.profile)", "server": "\(endpoint)"]
            switch outcome {
            case .failure(let error):
                logger.warning("no uplink reaches the server of \(current.plan.profile), and resolving its name again failed: \(error)",
                               metadata: metadata)
            case .success(let server) where server == current.plan.server:
                logger.info("no uplink reaches the server of \(current.plan.profile); its name still resolves to \(server)",
                            metadata: metadata)
            case .success(let server):
                logger.notice("""
                    no uplink reaches the server of \(current.plan.profile) at \(current.plan.server), and \(endpoint) now \
                    resolves to \(server): rebuilding the tunnel towards it
                    """, metadata: metadata)
                var plan = current.plan
                plan.server = server
                _ = try? teardown()
                do throws(TriglavDaemonError) {
                    try startAndActivate(plan, options: current.options, now: now)
                } catch {
                    logger.error("reconnecting to \(plan.profile) at \(server) failed: \(error)", metadata: metadata)
                }
            }
        }
    }

    /// Enqueues events for whatever differs from what observers saw last.
    private func publish(_ state: inout State) {
        let status = state.status()
        let uplinks = state.uplinkStatuses()
        var pending: [ClientManagerEvent] = []
        if status != state.published {
            pending.append(.managerChanged(status))
        }
        let current = Dictionary(uniqueKeysWithValues: uplinks.map { ($0.number, $0) })
        for (number, old) in state.publishedUplinks.sorted(by: { $0.key < $1.key }) where current[number] == nil {
            pending.append(.uplinkRemoved(number: number, interface: old.interface))
        }
        for uplink in uplinks {
            if let old = state.publishedUplinks[uplink.number] {
                if old != uplink { pending.append(.uplinkChanged(uplink)) }
            } else {
                pending.append(.uplinkAdded(uplink))
            }
        }
        state.published = status
        state.publishedUplinks = current
        guard !pending.isEmpty, let observer = state.observer else { return }
        let batch = pending
        events.async { for event in batch { observer(event) } }
    }
}

// MARK: - State

extension ClientManager {
    enum Phase {
        case disconnected
        /// Connect (or a reload's rebuild) is creating the tunnel.
        case starting(ProfileName)
        /// The start-time connection waits for its server name to resolve; no tunnel yet (bus: connecting).
        case resolving(PendingConnection)
        case active(Connection)
        case disconnecting(Connection)
    }

    /// A name resolution `refresh()` found due, for the phase with this generation.
    enum NameResolution {
        case pendingConnection(generation: UInt64)
        case connectedServer(generation: UInt64)
    }

    /// The start-time connection while its server name doesn't resolve (`autoconnect`).
    struct PendingConnection {
        /// Tells this wait from a later one (a resolution finishing after Disconnect and a new wait is dropped).
        let generation: UInt64
        let profile: ProfileName
        let options: ConnectionOptions
        /// The endpoint as written (Manager1.Server).
        var endpoint: RemoteEndpoint
        /// Attempts that failed so far (the first at connect).
        var failures: Int
        /// The resolver's reason for the last attempt's failure, for the status line.
        var lastFailure: String
        /// When `refresh()` starts the next attempt (monotonic).
        var nextAttempt: Duration
        /// An attempt is on the resolution queue.
        var isAttempting = false
    }

    struct Connection {
        /// Tells this tunnel from a later one (a re-resolution finishing after a rebuild is dropped).
        let generation: UInt64
        var plan: ClientTunnelPlan
        let options: ConnectionOptions
        let tunnel: any ClientTunnelDriving
        /// When a host-name endpoint is resolved again (`ServerNameSchedule`).
        var serverNameWatch: ServerNameWatch
        /// Interfaces currently added to the tunnel.
        var attached: Set<String> = []
        /// The multipath policy each attached interface was last given, so only changes are sent.
        var appliedPolicies: [String: UplinkPolicy] = [:]
        /// The transport each attached interface was added with (a change re-adds it).
        var appliedTransports: [String: UplinkTransportMode] = [:]
        /// Attached (manual) uplinks whose link the engine was told is down (`followSystemLink`).
        var linksDown: Set<String> = []
        var state: ConnectionState = .connecting
        var statistics: ClientTunnelSnapshot?
        /// Per capped interface: what it had sent and received in this tunnel when its billing period started
        /// (0 when it joined during the period). Its engine allowance is the sent part plus what the period
        /// leaves.
        var capBaselines: [String: DataCapLedger.Baseline] = [:]
        /// Counters of uplinks that left the tunnel, so the totals never go backwards.
        var retiredTransmitted: UInt64 = 0
        var retiredReceived: UInt64 = 0
        /// The server's DNS offer as the link would get it; used when the profile has no `[dns] servers` of its own
        /// and doesn't decline it (`ClientTunnelPlan.acceptsServerDNS`).
        var offeredDNS: LinkDNS?
        /// The server's offer `offeredDNS` was made from.
        var receivedDNSOffer: DNSOffer?
        /// What was last handed to the resolver (even if it failed: part of it may have been taken); nil: nothing.
        var appliedDNS: LinkDNS?
        /// Why `wantedDNS` isn't in the system resolver; "" when applied or when there is none.
        var dnsFailure = ""
        /// The resolver that took `appliedDNS` (Manager1.DNSResolver); "" after a failure or with nothing applied.
        var dnsResolver = ""
        /// When to hand it over again after a failure (`refresh()`); nil while applied, or while a retry is under way.
        var dnsRetryAt: Duration?

        /// The profile's `[dns]`, else the server's offer.
        var configuredDNS: LinkDNS? { plan.dns ?? (plan.acceptsServerDNS ? offeredDNS : nil) }

        /// `configuredDNS` without the servers the tunnel can't reach (`LinkDNS.reachable`).
        private var reachableDNS: (dns: LinkDNS?, unreachable: [IPAddress]) {
            configuredDNS.map { $0.reachable(with: statistics?.assignment, routing: plan.routing) } ?? (nil, [])
        }

        /// What the tunnel's link should have in the resolver.
        var wantedDNS: LinkDNS? { reachableDNS.dns }

        /// Which configured servers are left out and why; "" when none is.
        var unreachableDNSNote: String {
            let unreachable = reachableDNS.unreachable
            guard let first = unreachable.first else { return "" }
            let family = first.isIPv4 ? "IPv4" : "IPv6"
            let servers = unreachable.map(\.description).joined(separator: ", ")
            return "\(servers) left out: the server assigned this tunnel no \(family) address, and \(family) to "
                + "\(unreachable.count == 1 ? "it" : "them") goes into the tunnel, where it is blocked "
                + "(give the client a tunnel_\(family.lowercased()) on the server, or list other servers)"
        }

        /// Why the link lacks its DNS: the resolver's refusal, or every configured server left out (some left out are
        /// only logged); "" when neither.
        var dnsError: String { dnsFailure.isEmpty && wantedDNS == nil ? unreachableDNSNote : dnsFailure }

        /// Where `wantedDNS` comes from (Manager1.DNSSource).
        var dnsSource: DNSSource {
            if plan.dns != nil { return .profile }
            return plan.acceptsServerDNS && offeredDNS != nil ? .server : .none
        }

        func uplinkStatistics(_ interface: String) -> ClientTunnelSnapshot.Uplink? {
            statistics?.uplinks.first { $0.interface == interface }
        }

        func isEstablished(_ interface: String) -> Bool {
            attached.contains(interface) && uplinkStatistics(interface)?.state == .established
        }

        /// Whether the server answers: true when an attached uplink has a session whose path isn't down, false when
        /// none has but some try (handshaking, or a session whose probes go unanswered), nil when none tries (no
        /// uplink, or none with a socket): a local outage, which a new address wouldn't cure.
        var reachesServer: Bool? {
            var trying = false
            for uplink in statistics?.uplinks ?? [] where attached.contains(uplink.interface) && !linksDown.contains(uplink.interface) {
                switch uplink.state {
                // Only a path the engine counts as carrying data has heard from the server lately; a session key
                // outlives the server ("established"), and a path the engine re-probes or hasn't placed yet proves
                // nothing — counting those restarted the 30 s wait at every probe.
                case .established where uplink.pathState?.carriesData == true: return true
                case .established, .handshaking: trying = true
                case .waiting: break
                }
            }
            return trying ? false : nil
        }

        mutating func retire(_ interface: String) {
            guard let statistics = uplinkStatistics(interface) else { return }
            retiredTransmitted &+= statistics.transmittedBytes
            retiredReceived &+= statistics.receivedBytes
            self.statistics?.uplinks.removeAll { $0.interface == interface }
        }

        /// connecting until an uplink has a session; connected when every attached uplink has one and the
        /// tunnel's routing is applied; degraded otherwise (a routing failure blocks the traffic of a tunnel whose
        /// sessions are all up, so it must not look connected).
        mutating func deriveState() {
            let established = attached.filter(isEstablished).count
            if established == 0 {
                state = .connecting
            } else if established == attached.count && statistics?.routingFailure == nil {
                state = .connected
            } else {
                state = .degraded
            }
        }

        var transmittedBytes: UInt64 {
            (statistics?.uplinks ?? []).reduce(retiredTransmitted) { $0 &+ $1.transmittedBytes }
        }

        var receivedBytes: UInt64 {
            (statistics?.uplinks ?? []).reduce(retiredReceived) { $0 &+ $1.receivedBytes }
        }
    }

    struct UplinkRecord {
        let number: Int
        let interface: String
        var origin: UplinkProvenance
        /// What discovery last said about the interface; nil while it doesn't qualify (manual records only).
        var discovered: DiscoveredUplink?
        /// Values set through AddUplink or property writes; they win over discovery's.
        var overrides = UplinkOverrides()

        init(number: Int, interface: String, origin: UplinkProvenance) {
            self.number = number
            self.interface = interface
            self.origin = origin
        }

        mutating func apply(_ options: UplinkOverrides) {
            if let tier = options.tier { overrides.tier = tier }
            if let metered = options.isMetered { overrides.isMetered = metered }
            if let enabled = options.isEnabled { overrides.isEnabled = enabled }
            if let transport = options.transport { overrides.transport = transport }
        }

        var tier: TriglavMultipath.UplinkTier { overrides.tier ?? discovered?.tier ?? .primary }
        var isMetered: Bool { overrides.isMetered ?? discovered?.isMetered ?? false }
        /// What the data plane's multipath engine is told about this uplink.
        var multipathPolicy: UplinkPolicy { UplinkPolicy(tier: tier, isMetered: isMetered) }
        var isEnabled: Bool { overrides.isEnabled ?? true }
        /// May carry traffic at all (tiers aside from `never` decide when).
        var isEligible: Bool { isEnabled && tier != .never && (origin == .manual || discovered != nil) }
    }

    struct State {
        var config: DaemonConfig
        var phase: Phase = .disconnected
        var records: [String: UplinkRecord] = [:]
        var nextUplinkNumber = 1
        var schedulerOverride: TriglavConfig.SchedulerKind?
        var dataCaps = DataCapLedger()
        var observer: (@Sendable (ClientManagerEvent) -> Void)?
        var published: ClientManagerStatus?
        var publishedUplinks: [Int: UplinkSnapshot] = [:]
        /// The next connection's or wait's generation.
        var nextGeneration: UInt64 = 1

        init(config: DaemonConfig) { self.config = config }

        mutating func takeGeneration() -> UInt64 {
            defer { nextGeneration += 1 }
            return nextGeneration
        }

        /// Makes a started tunnel the connection (uplinks join with the next `reconcile`).
        mutating func activate(plan: ClientTunnelPlan, options: ConnectionOptions, tunnel: any ClientTunnelDriving, now: Duration) {
            phase = .active(Connection(generation: takeGeneration(), plan: plan, options: options, tunnel: tunnel,
                                       serverNameWatch: ServerNameWatch(resolvedAt: now)))
        }

        /// What the engine is told about `interface`: tier, metered, (capped) how many bytes it may send, and its idle
        /// heartbeat when that isn't the tunnel's (metered uplinks, per-interface settings; the data plane announces it
        /// to the server, which follows it on that path). The send allowance is what it had sent at its baseline plus
        /// what the period leaves after everything used so far, this attachment's downloads included.
        /// How `interface` reaches the server: AddUplink's option for it, else Connect's, else its pin's, else UDP (with
        /// the TCP fallback).
        func transport(_ interface: String, _ connection: Connection) -> UplinkTransportMode {
            if let chosen = records[interface]?.overrides.transport ?? connection.options.transport { return chosen }
            switch config.uplinks.pin(for: interface)?.transport {
            case .tcp: return .tcp
            case .udp, nil: return .udp
            }
        }

        func multipathPolicy(_ interface: String, _ connection: Connection) -> UplinkPolicy? {
            guard var policy = records[interface]?.multipathPolicy else { return nil }
            // A secondary or backup waits for a better tier to fail (or fill up): idle, it is watched as sparingly as a
            // metered uplink. Once it carries data the engine probes it at the active interval like any other.
            let relaxed = policy.isMetered || policy.tier == .secondary || policy.tier == .backup
            let heartbeat = config.uplinks.heartbeatInterval(forMetered: relaxed, pin: config.uplinks.pin(for: interface))
            policy.heartbeatInterval = heartbeat == config.uplinks.heartbeatInterval ? nil : heartbeat.nanoseconds
            if let cap = DataCapLedger.cap(of: interface, in: config) {
                let baseline = connection.capBaselines[interface] ?? DataCapLedger.Baseline()
                let received = connection.uplinkStatistics(interface).map {
                    baseline.used(transmitted: baseline.transmitted, received: $0.dataCapReceivedBytes)
                } ?? 0
                policy.dataCapBytes = DataCapLedger.sum(baseline.transmitted, dataCaps.remaining(interface, cap: cap.bytes, live: received))
            }
            return policy
        }

        /// Bytes (both ways) `interface` has used in `connection` since its baseline; 0 when not attached.
        func liveDataCapUsage(_ interface: String, _ connection: Connection?) -> UInt64 {
            guard let connection, connection.attached.contains(interface),
                  let statistics = connection.uplinkStatistics(interface) else { return 0 }
            let baseline = connection.capBaselines[interface] ?? DataCapLedger.Baseline()
            return baseline.used(transmitted: statistics.dataCapTransmittedBytes, received: statistics.dataCapReceivedBytes)
        }

        /// Whether capped `interface` has used its whole cap this period (ended attachments plus the live one).
        func isDataCapSpent(_ interface: String, _ connection: Connection?) -> Bool {
            guard let cap = DataCapLedger.cap(of: interface, in: config) else { return false }
            return dataCaps.remaining(interface, cap: cap.bytes, live: liveDataCapUsage(interface, connection)) == 0
        }

        /// Moves every capped interface to the period of `now`; returns those for which that started a new
        /// one (their count restarts).
        mutating func enterDataCapPeriods(now: Int64) -> Set<String> {
            var started: Set<String> = []
            for interface in records.keys {
                guard let cap = DataCapLedger.cap(of: interface, in: config) else { continue }
                if dataCaps.enter(interface, period: DataCapLedger.period(at: now, resetDay: cap.resetDay)) {
                    started.insert(interface)
                }
            }
            return started
        }

        /// Starts a new billing period for every capped interface whose period changed: its count restarts,
        /// and an attached one gets a full cap above what it has sent and received so far.
        mutating func startDataCapPeriods(_ connection: inout Connection, now: Int64) {
            for interface in enterDataCapPeriods(now: now) where connection.attached.contains(interface) {
                let statistics = connection.uplinkStatistics(interface)
                connection.capBaselines[interface] = DataCapLedger.Baseline(transmitted: statistics?.dataCapTransmittedBytes ?? 0,
                                                                            received: statistics?.dataCapReceivedBytes ?? 0)
            }
        }

        /// Takes a fresh snapshot of the tunnel's statistics, folding restarted data-cap counters into the ledger;
        /// returns the snapshot it replaced.
        @discardableResult
        mutating func refreshStatistics(_ connection: inout Connection, now: Int64) -> ClientTunnelSnapshot? {
            let previous = connection.statistics
            connection.statistics = connection.tunnel.snapshot()
            foldRestartedDataCapCounters(&connection, previous: previous, now: now)
            return previous
        }

        /// Keeps the ledger monotonic when an attached capped uplink's counters went backwards (the data plane
        /// re-created what counts them): what the old counters had used is spent, and counting restarts from zero.
        private mutating func foldRestartedDataCapCounters(_ connection: inout Connection, previous: ClientTunnelSnapshot?, now: Int64) {
            for interface in connection.attached where DataCapLedger.cap(of: interface, in: config) != nil {
                guard let old = previous?.uplinks.first(where: { $0.interface == interface }),
                      let new = connection.uplinkStatistics(interface),
                      new.dataCapTransmittedBytes < old.dataCapTransmittedBytes
                        || new.dataCapReceivedBytes < old.dataCapReceivedBytes else { continue }
                var before = connection
                before.statistics = previous
                recordDataCapSpending(interface, of: before, now: now)
                connection.capBaselines[interface] = DataCapLedger.Baseline()
            }
        }

        /// Counts what `interface` sent and received in `connection` during the current period (it is leaving it).
        mutating func recordDataCapSpending(_ interface: String, of connection: Connection, now: Int64) {
            guard let cap = DataCapLedger.cap(of: interface, in: config) else { return }
            let used = liveDataCapUsage(interface, connection)
            dataCaps.spend(interface, bytes: used, period: DataCapLedger.period(at: now, resetDay: cap.resetDay))
        }

        /// The period usage to persist: each capped interface's ended attachments plus its live one. Only an active
        /// connection has live usage: `teardown` spends a disconnecting one's before it saves.
        func dataCapUsage() -> [String: DataCapLedger.Entry] {
            var usage: [String: DataCapLedger.Entry] = [:]
            let live: Connection? = if case .active(let connection) = phase { connection } else { nil }
            for (interface, entry) in dataCaps.entries where DataCapLedger.cap(of: interface, in: config) != nil {
                usage[interface] = DataCapLedger.Entry(period: entry.period,
                                                      spent: DataCapLedger.sum(entry.spent, liveDataCapUsage(interface, live)))
            }
            return usage
        }

        mutating func updateConnection(_ body: (inout Connection) -> Void) {
            guard case .active(var connection) = phase else { return }
            body(&connection)
            phase = .active(connection)
        }

        /// Drops a record whose interface discovery no longer reports; a manual one stays and waits.
        mutating func forget(_ interface: String) {
            guard var record = records[interface] else { return }
            if record.origin == .manual {
                record.discovered = nil
                records[interface] = record
            } else {
                records[interface] = nil
            }
        }

        /// Every eligible uplink within its data cap, of every tier but `never` (which `isEligible` excludes): the
        /// engine holds secondaries and backups back while better tiers work, so they are ready the moment one fails.
        func wantedInterfaces(_ connection: Connection) -> Set<String> {
            Set(records.values.filter { $0.isEligible && !isDataCapSpent($0.interface, connection) }.map(\.interface))
        }

        /// Whether an attached, established `record` is held back by its tier: a better tier has a working path and
        /// nothing arrives on this one (a secondary the primaries spill onto, or a backup that took over, has traffic).
        func isHeldBackByTier(_ record: UplinkRecord, _ connection: Connection) -> Bool {
            guard let rank = Self.tierRank(record.tier), rank > 0,
                  connection.uplinkStatistics(record.interface)?.receiveRateBitsPerSecond == 0 else { return false }
            return records.values.contains { better in
                guard let betterRank = Self.tierRank(better.tier), betterRank < rank, connection.isEstablished(better.interface)
                else { return false }
                let path = connection.uplinkStatistics(better.interface)?.pathState
                return path == .ready || path == .degraded || path == nil  // nil: not reported, counts as working
            }
        }

        /// primary 0, secondary 1, backup 2; nil for `never`.
        static func tierRank(_ tier: TriglavMultipath.UplinkTier) -> Int? {
            switch tier {
            case .primary: 0
            case .secondary: 1
            case .backup: 2
            case .never: nil
            }
        }

        var connection: Connection? {
            switch phase {
            case .active(let connection), .disconnecting(let connection): connection
            case .disconnected, .starting, .resolving: nil
            }
        }

        var connectionState: ConnectionState {
            switch phase {
            case .disconnected: .disconnected
            case .starting, .resolving: .connecting
            case .active(let connection): connection.state
            case .disconnecting: .disconnecting
            }
        }

        var scheduler: TriglavConfig.SchedulerKind {
            if let connection, let kind = TriglavConfig.SchedulerKind(rawValue: connection.plan.scheduler.rawValue) { return kind }
            return schedulerOverride ?? config.multipath.scheduler
        }

        func status() -> ClientManagerStatus {
            let connection = self.connection
            var profile = ""
            var server = connection.map { "\($0.plan.configuredEndpoint)" } ?? ""
            var stateReason = ""
            switch phase {
            case .starting(let name): profile = name.rawValue
            case .resolving(let pending):
                profile = pending.profile.rawValue
                server = "\(pending.endpoint)"
                stateReason = "waiting for the server name (\(pending.lastFailure)), "
                    + "\(pending.failures) failed attempt\(pending.failures == 1 ? "" : "s"), retrying"
            case .active(let connection), .disconnecting(let connection): profile = connection.plan.profile.rawValue
            case .disconnected: break
            }
            let assignment = connection?.statistics?.assignment
            return ClientManagerStatus(
                state: connectionState, profile: profile, server: server,
                tunnelInterface: connection.map { $0.plan.tunnelInterface.rawValue } ?? "",
                tunnelAddresses: assignment.map { [$0.ipv4, $0.ipv6].compactMap { $0?.description } } ?? [],
                scheduler: scheduler, transmittedBytes: connection?.transmittedBytes ?? 0,
                receivedBytes: connection?.receivedBytes ?? 0, uplinks: records.values.map(\.number).sorted(),
                routingError: connection?.statistics?.routingFailure ?? "", stateReason: stateReason,
                dnsServers: connection?.wantedDNS?.servers.map(\.description) ?? [],
                dnsDomains: connection?.wantedDNS?.domains.map(\.description) ?? [],
                dnsError: connection?.dnsError ?? "", dnsSource: connection?.dnsSource.rawValue ?? "",
                dnsResolver: connection?.dnsResolver ?? "", tunnelMTU: connection?.statistics?.tunnelMTU ?? 0)
        }

        func uplinkStatuses() -> [UplinkSnapshot] {
            let connection = self.connection
            return records.values.sorted { $0.number < $1.number }.map { record in
                let statistics = connection?.uplinkStatistics(record.interface)
                var state = UplinkActivity.inactive
                let attached = connection?.attached.contains(record.interface) ?? false
                if !attached, isDataCapSpent(record.interface, connection) {
                    state = .inactive  // its period's cap is used up: out until the reset
                } else if connection == nil, record.isEligible, record.discovered != nil {
                    state = .idle
                } else if let connection, !connection.attached.contains(record.interface), record.isEligible,
                   record.origin == .manual || record.discovered != nil {
                    state = .standby
                } else if let connection, connection.linksDown.contains(record.interface) {
                    state = .waiting  // its link is down: out of service, waiting for it
                } else if let connection, connection.attached.contains(record.interface) {
                    switch statistics?.state {
                    case .established:
                        switch statistics?.pathState {
                        case .probing, .down: state = .measuring
                        case .degraded: state = .lossy
                        case .ready, nil: state = isHeldBackByTier(record, connection) ? .standby : .established
                        }
                    case .waiting: state = .waiting
                    case .handshaking: state = .connecting
                    case nil: state = record.origin == .manual && record.discovered == nil ? .waiting : .connecting
                    }
                }
                let rtt = statistics?.smoothedRTT.map(ClientManager.microseconds) ?? 0
                var snapshot = UplinkSnapshot(
                    number: record.number, interface: record.interface, kind: record.discovered?.kind ?? .other,
                    origin: record.origin, state: state, tier: record.tier, isMetered: record.isMetered,
                    isEnabled: record.isEnabled, rttMicroseconds: rtt, jitterMicroseconds: statistics?.jitter.map(ClientManager.microseconds) ?? 0,
                    lossRatio: statistics?.lossRatio ?? 0, capacityBitsPerSecond: statistics?.capacityBitsPerSecond ?? 0,
                    transmittedBytes: statistics?.transmittedBytes ?? 0, receivedBytes: statistics?.receivedBytes ?? 0,
                    localAddress: record.discovered?.localAddresses.first.map(\.description) ?? "",
                    transport: statistics?.transport ?? "udp", hasRouteToServer: statistics?.routeToServer != false,
                    receiveRateBitsPerSecond: statistics?.receiveRateBitsPerSecond ?? 0)
                snapshot.pathMTU = UInt32(clamping: statistics?.pathMTU ?? 0)
                snapshot.hasPathMTUBlackhole = statistics?.pathMTUBlackhole ?? false
                snapshot.gsoDatagrams = statistics?.segmentedDatagrams ?? 0
                snapshot.groDatagrams = statistics?.coalescedDatagrams ?? 0
                if let seen = statistics?.publicEndpoint {
                    snapshot.publicEndpoint = seen.description
                    snapshot.isBehindNAT = UplinkSnapshot.isTranslated(seen, local: statistics?.localEndpoint,
                                                                       interfaceAddresses: record.discovered?.localAddresses ?? [])
                }
                return snapshot
            }
        }

        func statusLine() -> String {
            let status = status()
            let all = records.values.filter(\.isEligible).count
            switch status.state {
            case .disconnected:
                return "Disconnected; \(all) usable uplink\(all == 1 ? "" : "s")"
            case .connecting:
                if !status.stateReason.isEmpty {
                    return "Connecting to \(status.profile) (\(status.server)): \(status.stateReason)"
                }
                return "Connecting to \(status.profile)\(status.server.isEmpty ? "" : " (\(status.server))")"
                    + "; \(connection?.attached.count ?? 0) uplinks handshaking"
            case .connected, .degraded:
                let established = connection.map { $0.attached.filter($0.isEstablished).count } ?? 0
                let attached = connection?.attached.count ?? 0
                let word = status.state == .connected ? "Connected" : "Degraded"
                return "\(word) to \(status.profile) (\(status.server)): \(established)/\(attached) uplinks established, "
                    + "\(status.tunnelInterface) \(status.tunnelAddresses.joined(separator: " "))"
                    + (status.routingError.isEmpty ? "" : "; routing failed (retrying): \(status.routingError)")
            case .disconnecting:
                return "Disconnecting from \(status.profile)"
            }
        }
    }
}

extension TriglavDaemonError {
    /// What the resolver said about a name that doesn't resolve (the whole description for any other error).
    var resolverReason: String {
        if case .unresolvable(_, let reason) = self { return reason }
        return description
    }
}
