import ArgumentParser
import Dispatch
import Foundation
import Logging
import TriglavCore
import TriglavCrypto
import TriglavDataPlane
import TriglavMultipath

/// Development driver for the data plane: runs a client or server tunnel from flags, before triglavd
/// wires the engine up. Used by the namespace integration tests and the benchmark script.
@main
struct DataPlaneDev: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "triglav-dataplane-dev",
        abstract: "Run a Triglav client or server tunnel from command-line flags (development and tests).",
        version: VERSION,
        subcommands: [Keygen.self, Server.self, Client.self, LoadGen.self]
    )
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a new identity key file and print its public key.")
    @Option(help: "Key file to create (mode 0600).") var out: String

    func run() throws {
        let key = IdentityKey.generate()
        try KeyFile.write(key, to: out, force: false)
        print(key.publicKey.base64)
    }
}

struct Server: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a server tunnel until SIGINT/SIGTERM.")
    @Option(help: "Identity key file.") var key: String
    @Option(help: "UDP endpoint to listen on (repeatable).") var listen: [String] = ["0.0.0.0:\(DEFAULT_PORT)"]
    @Option(help: "TUN device name.") var tun = "triglav0"
    @Option(help: "Server tunnel address with prefix (repeatable), e.g. 10.77.0.1/24.") var address: [String]
    @Option(help: "Authorized client: PUBLICKEY=IPV4/LEN[,IPV6/LEN] (repeatable).") var client: [String] = []
    @Flag(help: "Don't masquerade tunnel traffic leaving other interfaces.") var noNat = false
    @Option(help: "Masquerade only out of this interface (default: every interface but the TUN).") var outboundInterface: String?
    @Option(help: "Milliseconds between the server's idle probes on each client uplink (clients may ask for longer).")
    var heartbeatMs: Int = 100
    @Option(help: "Seconds of silence after which a client session, or its TCP fallback connection, is forgotten.")
    var sessionTimeoutS: Int = 120
    @Option(help: "Seconds between statistics lines on stderr (0: never).") var statsInterval: Double = 0
    @Flag(help: "Debug logging.") var verbose = false

    func run() throws {
        bootstrapLogging(verbose: verbose)
        var clients: [IdentityPublicKey: TunnelAddresses] = [:]
        for entry in client {
            guard let equals = entry.lastIndex(of: "=") else { throw ValidationError("--client expects KEY=ADDRESSES, got '\(entry)'") }
            let key = try IdentityPublicKey(base64: String(entry[..<equals]))
            let prefixes = try entry[entry.index(after: equals)...].split(separator: ",").map { try IPPrefix(String($0)) }
            guard let addresses = TunnelAddresses(ipv4: prefixes.first { $0.address.isIPv4 }, ipv6: prefixes.first { !$0.address.isIPv4 }) else {
                throw ValidationError("client \(key) needs an IPv4 or IPv6 address")
            }
            clients[key] = addresses
        }
        var configuration = ServerTunnelConfiguration(
            identity: try KeyFile.load(path: key), tunnelInterface: try InterfaceName(tun),
            tunnelAddresses: try address.map { try IPPrefix($0) }, clients: clients)
        configuration.listen = try listen.map { try IPEndpoint($0) }
        configuration.masquerade = !noNat
        configuration.outboundInterface = try outboundInterface.map { try InterfaceName($0) }
        guard heartbeatMs > 0 else { throw ValidationError("--heartbeat-ms must be positive, got \(heartbeatMs)") }
        configuration.heartbeatInterval = .milliseconds(heartbeatMs)
        guard sessionTimeoutS > 0 else { throw ValidationError("--session-timeout-s must be positive, got \(sessionTimeoutS)") }
        configuration.sessionTimeout = .seconds(sessionTimeoutS)
        let server = try ServerTunnel(configuration: configuration)
        try server.start()
        FileHandle.standardOutput.write(Data("listening on \(try server.listeningEndpoints().map(\.description).joined(separator: " "))\n".utf8))
        waitForSignal(statsInterval: statsInterval) { "\(server.statistics())" }
        server.stop()
    }
}

struct Client: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a client tunnel until SIGINT/SIGTERM.")
    @Option(help: "Identity key file.") var key: String
    @Option(help: "The server's public key.") var serverKey: String
    @Option(help: "Server endpoint, e.g. 198.18.0.1:7443.") var server: String
    @Option(help: "TUN device name.") var tun = "triglav0"
    @Option(help: "Uplink interface (repeatable): NAME[:TIER[:metered]], TIER one of primary, secondary, backup, never.")
    var uplink: [String]
    @Flag(help: "Route everything through the tunnel (wg-quick style).") var fullTunnel = false
    @Option(help: "Route only this prefix through the tunnel (repeatable).") var split: [String] = []
    @Option(help: "Never route this prefix through the tunnel: look it up in the main table first (repeatable).")
    var exclude: [String] = []
    @Option(help: "Scheduler: \(SchedulerMode.allCases.map(\.rawValue).joined(separator: ", ")).") var scheduler = "aggregate"
    @Option(help: "Firewall mark and routing table number.") var mark: UInt32 = RoutingConstants.defaultFirewallMark
    @Option(help: "Milliseconds between idle probes (heartbeats) on each uplink.") var heartbeatMs: Int = 100
    @Option(help: "Milliseconds between idle probes on each metered uplink (the longer of this and --heartbeat-ms), as triglavd's [uplinks] metered_heartbeat_interval_ms.")
    var meteredHeartbeatMs: Int = 3200
    @Option(help: "Seconds of silence on an uplink before a NAT keepalive is sent.") var keepaliveS: Double = 25
    @Option(help: "Largest TUN MTU; the device follows the smallest uplink MTU minus the overhead below it (default: 1432 to an IPv4 server, 1412 to IPv6).")
    var mtu: Int?
    @Option(help: "Seconds an uplink stays on its TCP fallback before trying UDP again.") var udpRetryS: Double = 120
    @Option(help: "Seconds between statistics lines on stderr (0: never).") var statsInterval: Double = 0
    @Flag(help: "Debug logging.") var verbose = false

    func run() throws {
        bootstrapLogging(verbose: verbose)
        guard let schedulerMode = SchedulerMode(rawValue: scheduler) else { throw ValidationError("unknown scheduler '\(scheduler)'") }
        var configuration = ClientTunnelConfiguration(
            identity: try KeyFile.load(path: key), serverKey: try IdentityPublicKey(base64: serverKey),
            server: try IPEndpoint(server), tunnelInterface: try InterfaceName(tun))
        configuration.multipath.scheduler = schedulerMode
        configuration.firewallMark = mark
        guard heartbeatMs > 0, meteredHeartbeatMs > 0 else {
            throw ValidationError("--heartbeat-ms and --metered-heartbeat-ms must be positive, got \(heartbeatMs) and \(meteredHeartbeatMs)")
        }
        configuration.probeInterval = .milliseconds(heartbeatMs)
        configuration.keepaliveInterval = .milliseconds(Int64(keepaliveS * 1000))
        if let mtu {
            guard (1280...1500).contains(mtu) else { throw ValidationError("--mtu must be 1280 to 1500, got \(mtu)") }
            configuration.mtu = mtu
        }
        guard udpRetryS > 0 else { throw ValidationError("--udp-retry-s must be positive, got \(udpRetryS)") }
        configuration.udpRetryInterval = .milliseconds(Int64(udpRetryS * 1000))
        if fullTunnel {
            configuration.routing = .fullTunnel
        } else if !split.isEmpty {
            configuration.routing = .split(try split.map { try IPPrefix($0) })
        }
        configuration.policyRouting.exclude = try exclude.map { try IPPrefix($0) }
        let client = try ClientTunnel(configuration: configuration)
        try client.start()
        for entry in uplink {
            let parts = entry.split(separator: ":").map(String.init)
            guard let name = parts.first else { throw ValidationError("empty --uplink") }
            var policy = UplinkPolicy()
            if parts.count > 1 {
                guard let tier = UplinkTier(rawValue: parts[1]) else { throw ValidationError("unknown tier '\(parts[1])' in --uplink \(entry)") }
                policy.tier = tier
            }
            if parts.count > 2 {
                guard parts[2] == "metered" else { throw ValidationError("expected 'metered' after the tier in --uplink \(entry)") }
                policy.isMetered = true
                if meteredHeartbeatMs > heartbeatMs { policy.heartbeatInterval = UInt64(meteredHeartbeatMs) * 1_000_000 }
            }
            try client.addUplink(interface: try InterfaceName(name), policy: policy)
        }
        waitForSignal(statsInterval: statsInterval) { "\(client.statistics())" }
        client.stop()
    }
}

/// Blocks until SIGINT or SIGTERM, printing `statistics()` every `statsInterval` seconds.
func waitForSignal(statsInterval: Double, statistics: @escaping @Sendable () -> String) {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let done = DispatchSemaphore(value: 0)
    let queue = DispatchQueue(label: "signals")
    let sources = [SIGINT, SIGTERM].map { number in
        let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
        source.setEventHandler { done.signal() }
        source.resume()
        return source
    }
    var timer: (any DispatchSourceTimer)?
    if statsInterval > 0 {
        let source = DispatchSource.makeTimerSource(queue: queue)
        source.schedule(deadline: .now() + statsInterval, repeating: statsInterval)
        source.setEventHandler { FileHandle.standardError.write(Data((statistics() + "\n").utf8)) }
        source.resume()
        timer = source
    }
    FileHandle.standardOutput.write(Data("ready\n".utf8))
    done.wait()
    timer?.cancel()
    for source in sources { source.cancel() }
}

func bootstrapLogging(verbose: Bool) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = verbose ? .debug : .info
        return handler
    }
}
