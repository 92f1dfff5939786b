import Foundation
import Testing
import TriglavTestSupport

/// `[routing]` table, rule_priority and exclude reaching the kernel, crash cleanup across a changed
/// configuration, and Manager1.Connect's full-tunnel option (root only; own namespaces and bus).
@Suite("triglavd policy routing", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonRoutingTests {
    static let manager = "org.triglav /org/triglav org.triglav.Manager1"

    private func writeConfig(_ lab: DaemonLab, table: Int, priority: Int, exclude: [String]) throws {
        try lab.write("client-routing.toml", """
            private_key = "\(lab.directory)/client.key"
            log_level = "debug"
            [tunnel]
            interface = "tgc0"
            [uplinks]
            include = ["up*"]
            heartbeat_interval_ms = 200
            [uplinks.interface."up*"]
            tier = "primary"
            [routing]
            table = \(table)
            rule_priority = \(priority)
            exclude = [\(exclude.map { "\"\($0)\"" }.joined(separator: ", "))]
            """)
    }

    private func rules(_ lab: DaemonLab) throws -> String {
        try lab.exec(lab.client, "ip -4 rule show") + (try lab.exec(lab.client, "ip -6 rule show"))
    }

    /// The rules once all of `lines` are among them: the policy is installed off the packet path, after the
    /// address (so the tunnel may already answer pings), and a new assignment installs it again (removing
    /// first), so one snapshot may catch it half done.
    private func rules(_ lab: DaemonLab, containing lines: String...) throws -> String {
        try pollUntil(timeout: 15, { try rules(lab) }, isDone: { current in lines.allSatisfy(current.contains) })
    }

    @Test("table/priority/exclude are installed; kill -9 leftovers go even after the config changed; Connect full-tunnel b")
    func configuredPolicyRouting() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        // A default route in main: excluded prefixes are looked up there (as with wg-quick, a prefix main
        // has no route for would fall through to the tunnel).
        try lab.exec(lab.client, "ip route add default via 10.202.1.1 dev up1")
        let routingBefore = try lab.clientRouting()
        let (_, serverNotify) = try lab.startServer()
        try serverNotify.waitFor("READY=1", timeout: 15)

        try writeConfig(lab, table: 1234, priority: 5000, exclude: ["192.0.2.0/24", "2001:db8::/32"])
        let arguments = "--config \(lab.directory)/client-routing.toml --profile-dir \(lab.directory)/profiles"
        let (first, firstNotify) = try lab.startDaemon(namespace: lab.client, arguments + " --connect lab", logName: "client")
        try firstNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        var installed = try rules(lab, containing: "5000:\tfrom all to 192.0.2.0/24 lookup main", "5000:\tfrom all to 2001:db8::/32",
                                  "5001:\tfrom all lookup main suppress_prefixlength 0", "5002:\tnot from all fwmark 0x7443 lookup 1234")
        #expect(installed.contains("5000:\tfrom all to 192.0.2.0/24 lookup main"), "\(installed)")
        #expect(installed.contains("5000:\tfrom all to 2001:db8::/32 lookup main"), "\(installed)")
        #expect(installed.contains("5001:\tfrom all lookup main suppress_prefixlength 0"), "\(installed)")
        #expect(installed.contains("5002:\tnot from all fwmark 0x7443 lookup 1234"), "\(installed)")
        #expect(!installed.contains("29799:"), "\(installed)")
        #expect(try lab.exec(lab.client, "ip route show table 1234").contains("default dev tgc0"))
        #expect(try lab.exec(lab.client, "ip route get 192.0.2.7").contains("dev up1"))
        #expect(try lab.exec(lab.client, "ip route get 203.0.113.7").contains("dev tgc0"))

        // A crash leaves everything behind; the next start uses other numbers and must still remove it all.
        kill(first.processIdentifier, SIGKILL)
        lab.waitForExit(first, timeout: 5)
        #expect(try rules(lab).contains("5002:"))
        try writeConfig(lab, table: 4321, priority: 6000, exclude: ["198.51.100.0/24"])
        try lab.startBus()
        let (second, secondNotify) = try lab.startDaemon(namespace: lab.client, arguments, logName: "client-2")
        try secondNotify.waitFor("READY=1", timeout: 15)
        installed = try rules(lab)
        #expect(!installed.contains("5000:") && !installed.contains("5001:") && !installed.contains("5002:"), "\(installed)")
        #expect(try lab.exec(lab.client, "ip route show table 1234").isEmpty)

        try lab.busctl("call \(Self.manager) Connect 'sa{sv}' lab 1 full-tunnel b true")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client-2"))")
        installed = try rules(lab, containing: "6000:\tfrom all to 198.51.100.0/24 lookup main", "6002:\tnot from all fwmark 0x7443 lookup 4321")
        #expect(installed.contains("6000:\tfrom all to 198.51.100.0/24 lookup main"), "\(installed)")
        #expect(installed.contains("6002:\tnot from all fwmark 0x7443 lookup 4321"), "\(installed)")
        #expect(try lab.exec(lab.client, "ip route get 198.51.100.9").contains("dev up1"))
        try lab.busctl("call \(Self.manager) Disconnect")

        // Split tunnel by option (from the CLI): no routes configured, so only the tunnel subnet goes through it.
        try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' connect lab --full-tunnel no")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client-2"))")
        installed = try rules(lab)
        #expect(!installed.contains("6002:") && !installed.contains("6001:"), "\(installed)")
        #expect(try lab.exec(lab.client, "ip route get 203.0.113.7").contains("dev up1"))
        try lab.busctl("call \(Self.manager) Disconnect")
        do {
            try lab.busctl("call \(Self.manager) Connect 'sa{sv}' lab 1 full-tunnel s no")
            Issue.record("Connect with full-tunnel of type s succeeded")
        } catch LabError.commandFailed(_, _, let output) {
            #expect(output.contains("full-tunnel must be of type b"), "\(output)")
        }

        try lab.busctl("call \(Self.manager) Connect 'sa{sv}' lab 0")
        #expect(lab.waitForTunnel(timeout: 10))
        #expect(try rules(lab, containing: "6002:").contains("6002:"))
        lab.terminate(second)
        #expect(!second.isRunning, "did not exit within 10 s of SIGTERM")
        if !second.isRunning { #expect(second.terminationStatus == 0, "client log:\n\(lab.log("client-2"))") }
        let routingAfter = try lab.clientRouting()
        #expect(routingAfter == routingBefore)
    }
}
