import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TriglavTestSupport

/// Resend repair end to end: a real server and client (`triglav-dataplane-dev`) in network namespaces of their own,
/// two uplinks (up1 primary, up2 secondary, so both sides send their data on up1), and 10 % of what one side sends
/// out of up1 dropped by nftables. 300 pings cross up1 once each in the lossy direction. With
/// the default (requests on), the receiver's reorder buffer asks for each lost echo request and the sender resends
/// it: (nearly) no ping is lost. With `TRIGLAV_RESEND_REQUESTS=0` on both sides (each side also receives), about a
/// tenth are. Root only (CI runs the tests as root); everything lives in namespaces `tg-rr-<random>-*`, deleted
/// in `defer`, also on failure, with the processes in them.
@Suite("resend repair through tunnels in namespaces", .serialized, .enabled(if: getuid() == 0, "needs root for network namespaces"))
struct ResendRepairTunnelTests {
    static let pings = 300

    /// Which way the lossy traffic goes: the server's pings to the client cross up1 server → client (the client's
    /// reorder buffer asks, the server's pump answers); the client's pings to the server cross it the other way.
    enum Direction: String, Sendable, CustomTestStringConvertible {
        case download, upload
        var testDescription: String { rawValue }
    }

    @Test("loss on the uplink carrying the traffic is repaired by resends only when the receiver asks for them",
          arguments: [(true, Direction.download), (false, .download), (true, .upload)])
    func lossOnOneUplink(resendRequests: Bool, direction: Direction) throws {
        let lab = try ResendLab()
        defer { lab.tearDown() }
        // Requests are on by default; off, both sides must say so, or the sender asks for its own lost replies.
        let environment = resendRequests ? [:] : ["TRIGLAV_RESEND_REQUESTS": "0"]
        try lab.startServer(environment: environment)
        try lab.startClient(environment: environment)
        #expect(lab.waitForTunnel(timeout: 10), "no tunnel: \(lab.log("client"))")
        // The probes make up1 ready and tell the server up2 is secondary before the loss starts.
        Thread.sleep(forTimeInterval: 1.5)
        let (lossy, rule, pinger, target) = direction == .download
            ? (lab.server, "oifname dn1 udp sport 7443", lab.server, ResendLab.clientTunnelAddress)
            : (lab.client, "oifname up1 udp dport 7443", lab.client, ResendLab.serverTunnelAddress)
        try lab.exec(lossy, "nft add table inet tg_rr_loss")
        try lab.exec(lossy, "nft 'add chain inet tg_rr_loss output { type filter hook output priority 0; }'")
        try lab.exec(lossy, "nft add rule inet tg_rr_loss output \(rule) numgen random mod 100 '<' 10 counter drop")
        // ping exits 1 when any reply is missing: the summary line says how many.
        let output = try lab.exec(pinger, "ping -q -n -c \(Self.pings) -i 0.01 -W 2 \(target) || true", timeout: 30)
        let received = Int(output.components(separatedBy: " received").first?.components(separatedBy: " ").last ?? "") ?? -1
        let dropped = try lab.exec(lossy, "nft list table inet tg_rr_loss")
        let droppedPackets = Int(dropped.components(separatedBy: "packets ").dropFirst().first?.components(separatedBy: " ").first ?? "") ?? 0
        // The loss really hit the tunnel: at least half of the expected 10 % of the pings (plus probes) were dropped.
        #expect(droppedPackets >= Self.pings / 20, "nftables dropped only \(droppedPackets) datagrams: \(dropped)")
        let lost = Self.pings - received
        print("resend repair in namespaces, \(direction.rawValue), requests \(resendRequests ? "on" : "off"): \(lost) of \(Self.pings) "
            + "pings lost, \(droppedPackets) datagrams dropped on up1")
        let sender = direction == .download ? "server" : "client"
        if resendRequests {
            #expect(received >= 0 && lost <= 3, "with resend requests \(lost) of \(Self.pings) pings were lost:\n\(output)")
            #expect(lab.log(sender).contains("the peer asked for"), "the \(sender) logged no resend answers:\n\(lab.log(sender))")
        } else {
            #expect(lost >= 10, "without resend requests only \(lost) of \(Self.pings) pings were lost: the loss didn't reach the tunnel")
            #expect(!lab.log(sender).contains("resend repair"), "a receiver that doesn't ask still got resends")
        }
    }
}

/// Two namespaces (client, server) joined by two veth pairs (up1/dn1, up2/dn2); the server listens on 198.18.0.1
/// (its loopback), reachable over either uplink.
final class ResendLab: @unchecked Sendable {
    static let serverAddress = "198.18.0.1"
    static let serverTunnelAddress = "10.78.0.1"
    static let clientTunnelAddress = "10.78.0.2"

    let suffix = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
    var client: String { "tg-rr-\(suffix)-c" }
    var server: String { "tg-rr-\(suffix)-s" }
    let directory: URL
    private var processes: [Process] = []
    private var serverKey = ""
    private var serverPublicKey = ""
    private var clientKey = ""
    private var clientPublicKey = ""

    init() throws {
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("tg-rr-\(suffix)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        do {
            for namespace in [client, server] {
                try sh("ip netns add \(namespace)")
                try sh("ip -n \(namespace) link set lo up")
            }
            try sh("ip -n \(server) address add \(Self.serverAddress)/32 dev lo")
            for number in 1...2 {
                for command in NamespaceTopology.uplink(client: client, "up\(number)", server: server, "dn\(number)",
                                                        network: "10.202.\(number)", serverAddress: Self.serverAddress, metric: number) {
                    try sh(command)
                }
            }
            serverKey = directory.appendingPathComponent("server.key").path
            clientKey = directory.appendingPathComponent("client.key").path
            serverPublicKey = try sh("\(Self.driver) keygen --out \(serverKey)").trimmingCharacters(in: .whitespacesAndNewlines)
            clientPublicKey = try sh("\(Self.driver) keygen --out \(clientKey)").trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            tearDown()
            throw error
        }
    }

    static var driver: String { DataPlaneLab.driver }

    /// Kills every process started here, deletes the namespaces and the temporary directory.
    func tearDown() {
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for process in processes { process.waitUntilExit() }
        for command in [client, server].flatMap(NamespaceTopology.removal) { _ = try? sh(command) }
        try? FileManager.default.removeItem(at: directory)
    }

    func startServer(environment: [String: String]) throws {
        try spawn(namespace: server, "\(Self.driver) server --key \(serverKey) --tun tgrs0 --address \(Self.serverTunnelAddress)/24 "
                  + "--listen \(Self.serverAddress):7443 --client \(clientPublicKey)=\(Self.clientTunnelAddress)/24 --no-nat --verbose",
                  environment: environment, logName: "server")
        try waitForOutput("server", containing: "ready", timeout: 10)
    }

    func startClient(environment: [String: String], uplinks: String = "--uplink up1:primary --uplink up2:secondary") throws {
        try spawn(namespace: client, "\(Self.driver) client --key \(clientKey) --server-key \(serverPublicKey) "
                  + "--server \(Self.serverAddress):7443 --tun tgrc0 \(uplinks) --verbose",
                  environment: environment, logName: "client")
        try waitForOutput("client", containing: "ready", timeout: 10)
    }

    func waitForTunnel(timeout: TimeInterval) -> Bool {
        pollUntil(timeout: timeout, every: 0.2, { (try? exec(client, "ping -c1 -W1 \(Self.serverTunnelAddress)")) != nil },
                  isDone: { $0 })
    }

    private func spawn(namespace: String, _ command: String, environment: [String: String], logName: String) throws {
        let log = directory.appendingPathComponent("\(logName).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace, "/bin/sh", "-c", "exec " + command]
        var inherited = ProcessInfo.processInfo.environment
        for name in inherited.keys where name.hasPrefix("TRIGLAV_") { inherited[name] = nil }  // only what the test says
        inherited["STATE_DIRECTORY"] = directory.path  // the sysctl records stay in the lab
        process.environment = inherited.merging(environment) { $1 }
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes.append(process)
    }

    func log(_ name: String) -> String {
        (try? String(contentsOf: directory.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
    }

    private func waitForOutput(_ logName: String, containing text: String, timeout: TimeInterval) throws {
        if pollUntil(timeout: timeout, every: 0.05, { log(logName).contains(text) }, isDone: { $0 }) { return }
        throw LabError.timeout("'\(text)' in \(logName).log; it says:\n\(log(logName))")
    }

    @discardableResult
    func exec(_ namespace: String, _ command: String, timeout: Int = 60) throws -> String {
        try sh("ip netns exec \(namespace) /bin/sh -c \"\(command.replacingOccurrences(of: "\"", with: "\\\""))\"", timeout: timeout)
    }

    /// Runs a shell command, bounded by `timeout` seconds (`timeout(1)`), and returns its output; throws on failure.
    @discardableResult
    func sh(_ command: String, timeout: Int = 60) throws -> String {
        let (status, text) = try runShell(command, timeout: timeout)
        guard status == 0 else { throw LabError.commandFailed(command, status, text) }
        return text
    }
}
