import Foundation
import Testing
import TriglavTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Namespace lab for `triglavd` itself: a client namespace with two veth uplinks (up1, up2) to a server
/// namespace, keys, a server and a client configuration, a profile "lab", a NOTIFY_SOCKET per daemon and,
/// on request, a private D-Bus bus. Namespaces are tg-dm-<random>-{c,s}; `tearDown()` (from `defer`)
/// kills what the lab started and deletes namespaces and files, also when a test fails. Waits are bounded.
final class DaemonLab: @unchecked Sendable {
    static let serverTunnelAddress = "10.78.0.1"
    static let clientTunnelAddress = "10.78.0.2"

    let suffix = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
    var client: String { "tg-dm-\(suffix)-c" }
    var server: String { "tg-dm-\(suffix)-s" }
    let directory: String
    private var processes: [Process] = []
    private var listeners: [NotifyListener] = []
    private var busPID: pid_t?
    private(set) var busAddress: String?

    init() throws {
        directory = NSTemporaryDirectory() + "tg-dm-\(suffix)"
        try FileManager.default.createDirectory(atPath: directory + "/profiles", withIntermediateDirectories: true)
        do {
            try build()
        } catch {
            tearDown()
            throw error
        }
    }

    /// An executable built next to the test bundle (.build/<config>/).
    static func product(_ name: String) -> String {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = url.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            url = url.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug/" + name
    }

    static var triglavd: String { product("triglavd") }
    static var isRoot: Bool { getuid() == 0 }

    private func build() throws {
        for namespace in [client, server] {
            try sh("ip netns add \(namespace)")
            try sh("ip -n \(namespace) link set lo up")
            // No duplicate address detection, so link-local addresses (and their routes) are final at once
            // and before/after snapshots of the routing compare equal.
            try exec(namespace, "sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0")
        }
        try sh("ip -n \(server) address add 198.18.7.1/32 dev lo")
        for number in 1...2 {
            for command in NamespaceTopology.uplink(client: client, "up\(number)", server: server, "dn\(number)",
                                                    network: "10.202.\(number)", serverAddress: "198.18.7.1", metric: number) {
                try sh(command)
            }
        }
        let serverKey = try sh("\(Self.product("triglav")) keygen \(directory)/server.key").trimmingCharacters(in: .whitespacesAndNewlines)
        let clientKey = try sh("\(Self.product("triglav")) keygen \(directory)/client.key").trimmingCharacters(in: .whitespacesAndNewlines)
        try write("server.toml", """
            role = "server"
            private_key = "\(directory)/server.key"
            [tunnel]
            interface = "tgs0"
            [server]
            listen = ["198.18.7.1:7443"]
            tunnel_ipv4 = "\(Self.serverTunnelAddress)/24"
            tunnel_ipv6 = "fd78::1/64"
            [server.nat]
            enabled = false
            [[server.clients]]
            name = "laptop"
            public_key = "\(clientKey)"
            tunnel_ipv4 = "\(Self.clientTunnelAddress)"
            """)
        try writeClientConfig(scheduler: "aggregate")
        try write("profiles/lab.toml", """
            [server]
            endpoint = "198.18.7.1:7443"
            public_key = "\(serverKey)"
            """)
    }

    /// The client's triglavd.toml. The uplinks are veths (virtual), so the config names them: `include`
    /// admits them and the pin makes discovery take them whatever the host's udev database says about
    /// the same interface index in another namespace.
    func writeClientConfig(scheduler: String) throws {
        try write("client.toml", """
            private_key = "\(directory)/client.key"
            log_level = "debug"
            [tunnel]
            interface = "tgc0"
            [multipath]
            scheduler = "\(scheduler)"
            [uplinks]
            include = ["up*"]
            heartbeat_interval_ms = 200
            [uplinks.interface."up*"]
            tier = "primary"
            """)
    }

    func write(_ name: String, _ text: String) throws {
        try (text + "\n").write(toFile: "\(directory)/\(name)", atomically: true, encoding: .utf8)
    }

    /// Rewrites one of the lab's files (`server.toml`, `client.toml`, `profiles/lab.toml`) with `change`.
    func edit(_ name: String, _ change: (String) -> String) throws {
        try write(name, change(try String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8)))
    }

    /// The stand-in for systemd-resolved (the bus fixture's `--fake-resolved`) in the client namespace on the lab's
    /// bus, writing the calls it gets to `callLog`; returns once it owns its name.
    @discardableResult
    func startFakeResolved(callLog: String, logName: String = "resolved") throws -> Process {
        let process = try spawn(namespace: client, "\(Self.product("triglav-bus-fixture")) --address \(busAddress ?? "") "
                                + "--fake-resolved \(callLog)", logName: logName)
        _ = try pollUntil(timeout: 10, { self.log(logName) }, isDone: { $0.contains("READY") })
        return process
    }

    func tearDown() {
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for process in processes { waitForExit(process, timeout: 5) }
        for command in [client, server].flatMap(NamespaceTopology.removal) { _ = try? sh(command) }
        if let busPID { kill(busPID, SIGKILL) }
        for listener in listeners { listener.close() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Daemons

    /// Starts `triglavd ARGUMENTS` in `namespace` with its own NOTIFY_SOCKET (and the lab's bus, if any).
    /// `onBus: false` starts it with `--no-bus` even when the lab has a bus (only one daemon can own org.triglav).
    /// `privileges: .unitOnly` runs it as the packaged unit does: CAP_NET_ADMIN alone, no new privileges.
    func startDaemon(namespace: String, _ arguments: String, logName: String, onBus: Bool = true,
                     extraEnvironment: [String: String] = [:], privileges: Privileges = .root,
                     resolvConf: ResolvConf = .writable) throws -> (Process, NotifyListener) {
        let listener = try NotifyListener(path: "\(directory)/\(logName).notify")
        listeners.append(listener)
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = listener.path
        environment.removeValue(forKey: "DBUS_SYSTEM_BUS_ADDRESS")
        // The lab's own state directory (data caps, the sysctl records): nothing of a test reaches /var/lib/triglav,
        // and daemons of tests running at the same time don't share records.
        environment["STATE_DIRECTORY"] = directory
        if let busAddress, onBus { environment["DBUS_SYSTEM_BUS_ADDRESS"] = busAddress }
        environment.merge(extraEnvironment) { _, new in new }
        let busFlag = busAddress == nil || !onBus ? " --no-bus" : ""
        let process = try spawn(namespace: namespace, "\(privileges.launcher)\(Self.triglavd) \(arguments)\(busFlag)",
                                logName: logName, environment: environment,
                                setup: try resolvConfMount(namespace, resolvConf) + privileges.setup)
        return (process, listener)
    }

    /// How a daemon sees /etc/resolv.conf: the namespace's file of the lab (`resolvConfPath`), bind-mounted over it in
    /// the daemon's own mount namespace (`ip netns exec` makes one), so that no daemon of a test can write the
    /// machine's file when systemd-resolved is absent.
    enum ResolvConf {
        case writable
        /// Read-only, as a machine where the file can't be written: no resolver at all without systemd-resolved.
        case readOnly
        /// Writable in a read-only /etc, as the packaged unit has it (`ProtectSystem=strict`,
        /// `ReadWritePaths=-/etc/resolv.conf`): no temporary file beside it, no rename over it.
        case writableInReadOnlyEtc
        /// Managed by Debian's resolvconf, unpacked in `unpacked` (`make test-deps`): overlays on /etc, /run and /usr in
        /// the daemon's mount namespace hold its program and scripts, /etc/resolv.conf is its symlink to
        /// /run/resolvconf/resolv.conf, and the lab's file is the LAN's record (`eth0.dhclient`).
        case resolvconf(unpacked: String)
    }

    static let labResolvConf = "# the lab's resolv.conf\nnameserver 192.0.2.53\noptions edns0\n"

    func resolvConfPath(_ namespace: String) -> String { "\(directory)/\(namespace).resolv.conf" }

    private func resolvConfMount(_ namespace: String, _ mode: ResolvConf) throws -> String {
        let path = resolvConfPath(namespace)
        if !FileManager.default.fileExists(atPath: path) {
            try Self.labResolvConf.write(toFile: path, atomically: false, encoding: .utf8)
        }
        switch mode {
        case .writable: return "mount --bind \(path) /etc/resolv.conf && "
        case .readOnly: return "mount --bind \(path) /etc/resolv.conf && mount -o remount,bind,ro /etc/resolv.conf && "
        case .writableInReadOnlyEtc:
            return "mount --bind /etc /etc && mount -o remount,bind,ro /etc && mount --bind \(path) /etc/resolv.conf && "
        case .resolvconf(let unpacked):
            let overlays = "\(directory)/\(namespace).overlays"
            var setup = ""
            for tree in ["etc", "run", "usr"] {
                for part in ["upper", "work"] {
                    try FileManager.default.createDirectory(atPath: "\(overlays)/\(tree)-\(part)", withIntermediateDirectories: true)
                }
                setup += "mount -t overlay overlay -o lowerdir=/\(tree),upperdir=\(overlays)/\(tree)-upper,workdir=\(overlays)/\(tree)-work "
                    + "/\(tree) && "
            }
            return setup + "cp -r \(unpacked)/etc/resolvconf /etc/ && cp \(unpacked)/sbin/resolvconf /usr/sbin/resolvconf && "
                + "mkdir -p /usr/lib/resolvconf /run/resolvconf/interface && cp \(unpacked)/lib/resolvconf/* /usr/lib/resolvconf/ && "
                + "touch /run/resolvconf/enable-updates && cp \(path) /run/resolvconf/interface/eth0.dhclient && "
                + "rm -f /etc/resolv.conf && ln -s ../run/resolvconf/resolv.conf /etc/resolv.conf && resolvconf -u && "
        }
    }

    enum Privileges {
        case root
        /// What systemd/triglavd.service grants: CapabilityBoundingSet= and AmbientCapabilities=CAP_NET_ADMIN,
        /// NoNewPrivileges=yes (as packaging/tests/check-installed-package.sh runs the installed daemon).
        case unitOnly

        /// The unit's `UMask=0077` too: what the daemon (and the tools it runs) create is private unless made otherwise.
        var setup: String { self == .unitOnly ? "umask 077 && " : "" }

        var launcher: String {
            switch self {
            case .root: ""
            case .unitOnly: "setpriv --bounding-set=-all,+net_admin --inh-caps=-all,+net_admin --ambient-caps=-all,+net_admin --no-new-privs "
            }
        }
    }

    func startServer(onBus: Bool = true) throws -> (Process, NotifyListener) {
        try startDaemon(namespace: server, "--config \(directory)/server.toml", logName: "server", onBus: onBus)
    }

    func startClient(config: String = "client.toml", connect: Bool = true, logName: String = "client", onBus: Bool = true,
                     extraEnvironment: [String: String] = [:], privileges: Privileges = .root,
                     resolvConf: ResolvConf = .writable) throws -> (Process, NotifyListener) {
        try startDaemon(namespace: client, "--config \(directory)/\(config) --profile-dir \(directory)/profiles"
                        + (connect ? " --connect lab" : ""), logName: logName, onBus: onBus, extraEnvironment: extraEnvironment,
                        privileges: privileges, resolvConf: resolvConf)
    }

    /// `setup`: shell commands run in the namespace before `command` is exec'd (each ending in `&& `).
    func spawn(namespace: String, _ command: String, logName: String, environment: [String: String]? = nil,
               setup: String = "") throws -> Process {
        let log = "\(directory)/\(logName).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace, "/bin/sh", "-c", setup + "exec " + command]
        process.standardOutput = handle
        process.standardError = handle
        if let environment { process.environment = environment }
        try process.run()
        processes.append(process)
        return process
    }

    func log(_ name: String) -> String {
        (try? String(contentsOfFile: "\(directory)/\(name).log", encoding: .utf8)) ?? ""
    }

    func waitForExit(_ process: Process, timeout: TimeInterval) {
        _ = pollUntil(timeout: timeout, every: 0.05, { process.isRunning }, isDone: { !$0 })
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    func terminate(_ process: Process, timeout: TimeInterval = 10) {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        waitForExit(process, timeout: timeout)
    }

    /// Pings the server's tunnel address from the client until it answers (bounded).
    func waitForTunnel(timeout: TimeInterval) -> Bool {
        pollUntil(timeout: timeout, every: 0.2, { (try? exec(client, "ping -c1 -W1 \(Self.serverTunnelAddress)")) != nil },
                  isDone: { $0 })
    }

    /// Links, addresses, rules and routes of the client namespace (all tables), for before/after comparisons.
    func clientRouting() throws -> String {
        try ["ip -o link show", "ip -o address show", "ip -4 rule show", "ip -6 rule show",
             "ip -4 route show table all", "ip -6 route show table all"].map { command in
            try exec(client, command).split(separator: "\n").map { line in
                // Link counters and ids differ between runs; keep what describes the configuration.
                String(line.replacingOccurrences(of: #"\s+(valid_lft|preferred_lft)\s+\S+|\s+tentative"#, with: "",
                                                 options: .regularExpression))
            }.sorted().joined(separator: "\n")
        }.joined(separator: "\n---\n")
    }

    // MARK: D-Bus

    /// Starts a private dbus-daemon (permissive policy) whose address the daemons get as
    /// DBUS_SYSTEM_BUS_ADDRESS. A path socket, so processes in other network namespaces reach it.
    func startBus() throws {
        try write("bus.conf", """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>system</type>
              <listen>unix:path=\(directory)/bus</listen>
              <pidfile>\(directory)/bus.pid</pidfile>
              <auth>EXTERNAL</auth>
              \(PrivateBus.permissivePolicy)
            </busconfig>
            """)
        // In the foreground (tracked like the daemons, killed by tearDown); ready once the socket exists.
        let bus = Process()
        bus.executableURL = URL(fileURLWithPath: "/usr/bin/dbus-daemon")
        bus.arguments = ["--config-file=\(directory)/bus.conf", "--nofork"]
        bus.standardInput = FileHandle.nullDevice
        bus.standardOutput = FileHandle.nullDevice
        bus.standardError = FileHandle.nullDevice
        try bus.run()
        processes.append(bus)
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: "\(directory)/bus.pid") && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let pidText = try String(contentsOfFile: "\(directory)/bus.pid", encoding: .utf8)
        busPID = pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines))
        busAddress = "unix:path=\(directory)/bus"
    }

    /// Runs `busctl --address=BUS ARGUMENTS` (throws on failure, with its output).
    @discardableResult
    func busctl(_ arguments: String) throws -> String {
        guard let busAddress else { throw LabError.timeout("no bus started") }
        return try sh("busctl --address=\(busAddress) \(arguments)", timeout: 20)
    }

    /// The count of `name` in an `a(st)` answer of busctl (Manager1/Server1.Counters: `a(st) 2 "read_packets" 12 …`).
    static func namedCount(_ answer: String, _ name: String) -> UInt64? {
        let tokens = answer.split(whereSeparator: \.isWhitespace)
        guard let index = tokens.firstIndex(of: "\"\(name)\""[...]), index + 1 < tokens.count else { return nil }
        return UInt64(tokens[index + 1])
    }

    /// A property of the client's Uplink1 object for `interface` (the lab's two uplinks), as busctl prints it.
    func uplinkProperty(_ interface: String, _ property: String) throws -> String? {
        guard let path = try uplinkPath(interface) else { return nil }
        return try busctl("get-property org.triglav \(path) org.triglav.Uplink1 \(property)")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The object path of `interface`'s Uplink1 (the lab's two uplinks), nil (recorded as an issue) when there is none.
    func uplinkPath(_ interface: String) throws -> String? {
        for number in 1...2 {
            let path = "/org/triglav/uplink/\(number)"
            if try busctl("get-property org.triglav \(path) org.triglav.Uplink1 Interface") == "s \"\(interface)\"\n" { return path }
        }
        Issue.record("no uplink object for \(interface)")
        return nil
    }

    // MARK: Shell

    @discardableResult
    func exec(_ namespace: String, _ command: String, timeout: Int = 60) throws -> String {
        try sh("ip netns exec \(namespace) \(command)", timeout: timeout)
    }

    @discardableResult
    func sh(_ command: String, timeout: Int = 60) throws -> String {
        let (status, text) = try runShell(command, timeout: timeout)
        guard status == 0 else { throw LabError.commandFailed(command, status, text) }
        return text
    }
}

/// The service-manager side of sd_notify(3): a unix datagram socket collecting what the daemon sends.
final class NotifyListener: @unchecked Sendable {
    let path: String
    private let descriptor: Int32
    private let lock = NSLock()
    private var received: [String] = []

    init(path: String) throws {
        self.path = path
        unlink(path)
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw LabError.commandFailed("socket(AF_UNIX)", errno, "") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8.prefix(raw.count - 1)) + [0])
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw LabError.commandFailed("bind \(path)", errno, "") }
    }

    /// Every message so far (each a newline-separated list of assignments), reading what is pending.
    var messages: [String] {
        drain()
        lock.lock()
        defer { lock.unlock() }
        return received
    }

    /// Waits until a message containing `assignment` (e.g. "READY=1") arrives; returns it.
    @discardableResult
    func waitFor(_ assignment: String, after count: Int = 0, timeout: TimeInterval) throws -> String {
        try waitFor(prefix: assignment, exact: true, after: count, timeout: timeout)
    }

    /// Waits until a message has an assignment starting with `prefix` (e.g. "STATUS=Connected"); returns it.
    @discardableResult
    func waitFor(prefix: String, exact: Bool = false, after count: Int = 0, timeout: TimeInterval) throws -> String {
        let assignment = prefix
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = messages.dropFirst(count).first(where: {
                $0.split(separator: "\n").contains { exact ? $0 == prefix : $0.hasPrefix(prefix) }
            }) {
                return found
            }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, 100)
        }
        throw LabError.timeout("\(assignment) on \(path); got \(messages)")
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count > 0 else { return }
            lock.lock()
            received.append(String(decoding: buffer[0..<count], as: UTF8.self))
            lock.unlock()
        }
    }

    func close() {
        Glibc.close(descriptor)
        unlink(path)
    }
}
