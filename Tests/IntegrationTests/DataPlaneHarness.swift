import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Namespace lab for the data-plane integration tests: a client namespace with three veth uplinks to a
/// server namespace (server address 198.18.0.1 on its loopback, one /24 per uplink), and an "internet"
/// namespace behind the server (172.31.0.2). Everything lives in namespaces named tg-dp-<random>-*,
/// deleted by `tearDown()` (called from `defer`, so also when a test fails). Processes started through
/// the lab are killed there too. Every wait is bounded.
final class DataPlaneLab: @unchecked Sendable {
    static let serverAddress = "198.18.0.1"
    static let internetAddress = "172.31.0.2"
    /// The internet host's IPv6 address (reached through the tunnel only when the server assigns the client IPv6).
    static let internetIPv6Address = "2001:db8:31::2"
    static let serverTunnelIPv6Address = "fd77::1"
    static let serverTunnelAddress = "10.77.0.1"
    static let clientTunnelAddress = "10.77.0.2"
    static let uplinks = ["up1", "up2", "up3"]

    let suffix = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
    var client: String { "tg-dp-\(suffix)-c" }
    var server: String { "tg-dp-\(suffix)-s" }
    var internet: String { "tg-dp-\(suffix)-i" }
    let directory: URL
    private var processes: [Process] = []
    /// Namespaces `addClientHost` created, deleted with the others.
    private var extraNamespaces: [String] = []
    private(set) var serverKeyFile = ""
    private(set) var serverPublicKey = ""
    private(set) var clientKeyFile = ""
    private(set) var clientPublicKey = ""

    init() throws {
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("tg-dp-\(suffix)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        do {
            try build()
        } catch {
            tearDown()
            throw error
        }
    }

    /// The driver executable, next to the test bundle in .build/<config>/.
    static var driver: String {
        if let path = ProcessInfo.processInfo.environment["TRIGLAV_DATAPLANE_DEV"] { return path }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("triglav-dataplane-dev").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug/triglav-dataplane-dev"
    }

    private func build() throws {
        for namespace in [client, server, internet] {
            try sh("ip netns add \(namespace)")
            try sh("ip -n \(namespace) link set lo up")
        }
        try sh("ip -n \(server) address add \(Self.serverAddress)/32 dev lo")
        for (index, uplink) in Self.uplinks.enumerated() {
            let number = index + 1
            for command in NamespaceTopology.uplink(client: client, uplink, server: server, "dn\(number)",
                                                    network: "10.201.\(number)", serverAddress: Self.serverAddress, metric: number) {
                try sh(command)
            }
        }
        // IPv6 on the first uplink with a default route, so an IPv6 leak would have somewhere to go.
        try sh("ip -n \(client) -6 address add 2001:db8:1::2/64 dev up1 nodad")
        try sh("ip -n \(server) -6 address add 2001:db8:1::1/64 dev dn1 nodad")
        try sh("ip -n \(client) -6 route add default via 2001:db8:1::1 dev up1")
        // The internet host behind the server.
        try sh("ip link add wan0 netns \(server) type veth peer name eth0 netns \(internet)")
        try sh("ip -n \(server) address add 172.31.0.1/24 dev wan0")
        try sh("ip -n \(internet) address add \(Self.internetAddress)/24 dev eth0")
        try sh("ip -n \(server) -6 address add 2001:db8:31::1/64 dev wan0 nodad")
        try sh("ip -n \(internet) -6 address add \(Self.internetIPv6Address)/64 dev eth0 nodad")
        try sh("ip -n \(server) link set wan0 up")
        try sh("ip -n \(internet) link set eth0 up")
        // Keys.
        serverKeyFile = directory.appendingPathComponent("server.key").path
        clientKeyFile = directory.appendingPathComponent("client.key").path
        serverPublicKey = try sh("\(Self.driver) keygen --out \(serverKeyFile)").trimmingCharacters(in: .whitespacesAndNewlines)
        clientPublicKey = try sh("\(Self.driver) keygen --out \(clientKeyFile)").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Kills every process started through the lab, deletes the namespaces and the temporary directory.
    func tearDown() {
        for process in processes where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
        for process in processes { waitForExit(process, timeout: 5) }
        for command in ([client, server, internet] + extraNamespaces).flatMap(NamespaceTopology.removal) { _ = try? sh(command) }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Another client host, namespace tg-dp-<suffix>-<name>, with one uplink `up1` (10.201.<number>.2/24) to the
    /// server's `dn<number>` (10.201.<number>.1/24) and a route to the server's address through it. `number` must be
    /// above the lab's own uplinks (4 and up). Returns the namespace's name; `tearDown()` deletes it.
    func addClientHost(_ name: String, number: Int) throws -> String {
        let namespace = "tg-dp-\(suffix)-\(name)"
        try sh("ip netns add \(namespace)")
        extraNamespaces.append(namespace)
        try sh("ip -n \(namespace) link set lo up")
        for command in NamespaceTopology.uplink(client: namespace, "up1", server: server, "dn\(number)",
                                                network: "10.201.\(number)", serverAddress: Self.serverAddress) {
            try sh(command)
        }
        return namespace
    }

    /// A host the client routes for (a LAN behind it), namespace tg-dp-<suffix>-<name>: `lan0` 192.168.77.2/24 with a
    /// default route via the client's `lan1` (192.168.77.1), forwarding on in the client, and its traffic into the
    /// tunnel masqueraded to the client's tunnel address (the server accepts no other source). `tearDown()` deletes it.
    func addHostBehindClient(_ name: String) throws -> String {
        let namespace = "tg-dp-\(suffix)-\(name)"
        try sh("ip netns add \(namespace)")
        extraNamespaces.append(namespace)
        for command in [
            "ip -n \(namespace) link set lo up",
            "ip link add lan1 netns \(client) type veth peer name lan0 netns \(namespace)",
            "ip -n \(client) address add 192.168.77.1/24 dev lan1", "ip -n \(client) link set lan1 up",
            "ip -n \(namespace) address add 192.168.77.2/24 dev lan0", "ip -n \(namespace) link set lan0 up",
            "ip -n \(namespace) route add default via 192.168.77.1",
            "ip netns exec \(client) sysctl -qw net.ipv4.ip_forward=1",
            "ip netns exec \(client) nft 'add table ip tglan; add chain ip tglan post { type nat hook postrouting priority srcnat; }; "
                + "add rule ip tglan post oifname tgc0 masquerade'",
        ] { try sh(command) }
        return namespace
    }

    /// A new identity key file in the lab's directory; returns (file, public key).
    func makeKey(_ name: String) throws -> (file: String, publicKey: String) {
        let file = directory.appendingPathComponent("\(name).key").path
        return (file, try sh("\(Self.driver) keygen --out \(file)").trimmingCharacters(in: .whitespacesAndNewlines))
    }

    // MARK: Tunnel processes

    /// Starts the server; with `ipv6` it has fd77::1/64 on its TUN too and gives each client fd77::N/64 besides 10.77.0.N.
    /// `ipv6`: the server has an IPv6 pool and assigns each client an IPv6 address too; `ipv6Only`: the clients get
    /// only that (an IPv6-only tunnel; the server keeps its IPv4 address).
    func startServer(extraClients: [String] = [], ipv6: Bool = false, ipv6Only: Bool = false, logName: String = "server",
                     extraArguments: String = "") throws -> Process {
        let ipv6 = ipv6 || ipv6Only
        let clients = ([clientPublicKey] + extraClients).enumerated().map { index, key in
            let v4 = ipv6Only ? [] : ["10.77.0.\(index + 2)/24"]
            return "--client \(key)=" + (v4 + (ipv6 ? ["fd77::\(index + 2)/64"] : [])).joined(separator: ",")
        }.joined(separator: " ")
        let addresses = "--address \(Self.serverTunnelAddress)/24" + (ipv6 ? " --address \(Self.serverTunnelIPv6Address)/64" : "")
        let process = try spawn(namespace: server, "\(Self.driver) server --key \(serverKeyFile) --tun tgs0 "
            + "\(addresses) \(clients) \(extraArguments) --verbose", logName: logName)
        try waitForOutput(logName, containing: "ready", timeout: 10)
        return process
    }

    /// Starts a client in the client namespace (or in `namespace`, e.g. one of `addClientHost`).
    func startClient(keyFile: String? = nil, fullTunnel: Bool = false, uplinks: [String] = DataPlaneLab.uplinks,
                     namespace: String? = nil, logName: String = "client", extraArguments: String = "") throws -> Process {
        let uplinkFlags = uplinks.map { "--uplink \($0)" }.joined(separator: " ")
        let process = try spawn(namespace: namespace ?? client, "\(Self.driver) client --key \(keyFile ?? clientKeyFile) "
            + "--server-key \(serverPublicKey) --server \(Self.serverAddress):7443 --tun tgc0 \(uplinkFlags) "
            + (fullTunnel ? "--full-tunnel " : "") + "\(extraArguments) --verbose", logName: logName)
        try waitForOutput(logName, containing: "ready", timeout: 10)
        return process
    }

    /// Waits until the client's TUN (the one in `namespace`, else the client namespace's) has the tunnel address and
    /// a ping through it succeeds (`ipv6`: to the server's IPv6 tunnel address, for an IPv6-only tunnel).
    func waitForTunnel(timeout: TimeInterval, namespace: String? = nil, ipv6: Bool = false) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        let ping = ipv6 ? "ping -6 -c1 -W1 \(Self.serverTunnelIPv6Address)" : "ping -c1 -W1 \(Self.serverTunnelAddress)"
        while Date() < deadline {
            if (try? sh("ip netns exec \(namespace ?? client) \(ping)")) != nil { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return false
    }

    /// Drops every UDP datagram the client sends to the server's port (table `inet tg_dp_block` in the client
    /// namespace; `nft delete table inet tg_dp_block` lifts it): a network that forces the TCP fallback.
    func blockClientUDP() throws {
        try exec(client, "nft add table inet tg_dp_block")
        try exec(client, "nft 'add chain inet tg_dp_block output { type filter hook output priority 0; }'")
        try exec(client, "nft add rule inet tg_dp_block output udp dport 7443 drop")
    }

    /// Starts `tcpdump <options> -i UPLINK '<filter>'` in the client namespace on every uplink (logs
    /// tcpdump-UPLINK) and returns once each is listening, so nothing sent afterwards is missed.
    func captureOnUplinks(options: String = "", filter: String) throws -> [(String, Process)] {
        var captures: [(String, Process)] = []
        for uplink in Self.uplinks {
            let process = try spawn(namespace: client, "tcpdump -n -l \(options) -i \(uplink) '\(filter)'",
                                    logName: "tcpdump-\(uplink)")
            captures.append((uplink, process))
        }
        for (uplink, _) in captures { try waitForOutput("tcpdump-\(uplink)", containing: "listening on", timeout: 10) }
        return captures
    }

    // MARK: Processes

    /// Starts `command` in `namespace` in the background with output in <logName>.log.
    func spawn(namespace: String, _ command: String, logName: String) throws -> Process {
        let log = directory.appendingPathComponent("\(logName).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace, "/bin/sh", "-c", "exec " + command]
        // The lab's own state directory (the sysctl records): nothing of a test reaches /var/lib/triglav.
        process.environment = ProcessInfo.processInfo.environment.merging(["STATE_DIRECTORY": directory.path]) { $1 }
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes.append(process)
        return process
    }

    func log(_ name: String) -> String {
        (try? String(contentsOf: directory.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
    }

    func waitForOutput(_ logName: String, containing text: String, timeout: TimeInterval) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log(logName).contains(text) { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw LabError.timeout("'\(text)' in \(logName).log; it says:\n\(log(logName))")
    }

    func waitForExit(_ process: Process, timeout: TimeInterval) {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
    }

    /// Stops a tunnel process cleanly (SIGTERM) and waits for it.
    func terminate(_ process: Process, timeout: TimeInterval = 10) {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        waitForExit(process, timeout: timeout)
        if process.isRunning { kill(process.processIdentifier, SIGKILL); waitForExit(process, timeout: 5) }
    }

    /// Kills the tunnel process itself (not the `ip netns exec` wrapper, which exec'd into it) with SIGKILL.
    func crash(_ process: Process) {
        kill(process.processIdentifier, SIGKILL)
        waitForExit(process, timeout: 5)
    }

    /// Runs a shell command (bounded by `timeout` seconds) and returns its output; throws on failure.
    @discardableResult
    func sh(_ command: String, timeout: Int = 60) throws -> String {
        try DataPlaneLab.run(command, timeout: timeout)
    }

    /// Polls the client's TUN MTU until it is `expected` (at most 5 s); returns the last value seen.
    func tunnelMTU(becomes expected: Int) -> Int? {
        let deadline = Date().addingTimeInterval(5)
        var seen: Int?
        while Date() < deadline {
            seen = (try? exec(client, "cat /sys/class/net/tgc0/mtu")).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if seen == expected { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return seen
    }

    /// Up to two tunnel datagrams on the server's dn1 matching `filter` (tcpdump syntax), captured while the client
    /// pings the server's tunnel address twice.
    func captureOnServerWhileClientPings(_ filter: String) throws -> String {
        try exec(server, "timeout 3 tcpdump -n -c 2 -i dn1 '\(filter)' 2>/dev/null "
                 + "& sleep 0.5; ip netns exec \(client) ping -c2 -i0.2 -W2 \(Self.serverTunnelAddress) >/dev/null; wait", timeout: 20)
    }

    /// Runs `command` inside `namespace`.
    @discardableResult
    func exec(_ namespace: String, _ command: String, timeout: Int = 60) throws -> String {
        try sh("ip netns exec \(namespace) \(command)", timeout: timeout)
    }

    @discardableResult
    static func run(_ command: String, timeout: Int = 60) throws -> String {
        let (status, text) = try runShell(command, timeout: timeout)
        guard status == 0 else { throw LabError.commandFailed(command, status, text) }
        return text
    }

    static var isRoot: Bool { getuid() == 0 }
}

enum LabError: Error, CustomStringConvertible {
    case commandFailed(String, Int32, String)
    case timeout(String)

    var description: String {
        switch self {
        case .commandFailed(let command, let status, let output): "'\(command)' exited \(status): \(output)"
        case .timeout(let what): "timed out waiting for \(what)"
        }
    }
}
