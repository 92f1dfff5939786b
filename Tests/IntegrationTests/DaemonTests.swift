import Foundation
import Testing
import TriglavTestSupport

/// `triglavd` end to end in network namespaces (root only; CI runs them as root): server and client
/// daemons from configuration files, readiness on a NOTIFY_SOCKET, traffic through the tunnel, clean
/// shutdown on SIGTERM, reload on SIGHUP, and the org.triglav API on a private bus driven by busctl.
@Suite("triglavd in namespaces", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonTests {
    @Test("client and server daemons carry traffic; SIGTERM leaves no routes, rules or TUN")
    func clientAndServerEndToEnd() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        let routingBefore = try lab.clientRouting()
        let (server, serverNotify) = try lab.startServer()
        let serverReady = try serverNotify.waitFor("READY=1", timeout: 15)
        #expect(serverReady.contains("STATUS=Serving on 198.18.7.1:7443"), "\(serverReady)")
        #expect(try lab.exec(lab.server, "ip -o link show").contains("tgs0"))

        // A 1 s watchdog (as WatchdogSec=1 would set): pings must follow READY=1 at half that interval.
        let (client, clientNotify) = try lab.startClient(extraEnvironment: ["WATCHDOG_USEC": "1000000"])
        let clientReady = try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(clientReady.contains("STATUS=Connecting to lab"), "\(clientReady)")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))\nserver log:\n\(lab.log("server"))")
        try lab.exec(lab.client, "ping -c3 -i0.2 -W2 \(DaemonLab.serverTunnelAddress)")
        let readyIndex = try #require(clientNotify.messages.firstIndex(of: clientReady))
        try clientNotify.waitFor("WATCHDOG=1", after: readyIndex, timeout: 3)
        try lab.exec(lab.server, "ping -c3 -i0.2 -W2 \(DaemonLab.clientTunnelAddress)")
        // Both uplinks got sessions: the STATUS line says so within a few ticks.
        try clientNotify.waitFor(prefix: "STATUS=Connected to lab (198.18.7.1:7443): 2/2 uplinks established", timeout: 10)
        try serverNotify.waitFor(prefix: "STATUS=Serving on 198.18.7.1:7443: 1 of 1 clients connected", timeout: 10)
        // Full tunnel (the default) installed policy rules, which shutdown must take away again.
        #expect(try lab.exec(lab.client, "ip -4 rule show").split(separator: "\n").count > 3)

        lab.terminate(client)
        #expect(!client.isRunning)
        #expect(client.terminationStatus == 0, "client log:\n\(lab.log("client"))")
        #expect(try clientNotify.waitFor("STOPPING=1", timeout: 1).contains("STATUS=Stopping"))
        let routingAfter = try lab.clientRouting()
        #expect(routingAfter == routingBefore, "\(difference(routingBefore, routingAfter))")

        lab.terminate(server)
        #expect(server.terminationStatus == 0, "server log:\n\(lab.log("server"))")
        #expect(try serverNotify.waitFor("STOPPING=1", timeout: 1).isEmpty == false)
        #expect(try lab.exec(lab.server, "ip -o link show").contains("tgs0") == false)
    }

    @Test("an IPv6-only client (no tunnel_ipv4 in the server's entry): IPv6 carried both ways, IPv4 blocked, the bus shows only the IPv6 address")
    func ipv6OnlyClient() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        let serverConfig = "\(lab.directory)/server.toml"
        let text = try String(contentsOfFile: serverConfig, encoding: .utf8)
        let clientEntry = "tunnel_ipv4 = \"\(DaemonLab.clientTunnelAddress)\"\n"
        #expect(text.hasSuffix(clientEntry))
        try lab.write("server.toml", String(text.dropLast(clientEntry.count)) + "tunnel_ipv6 = \"fd78::2\"")
        try lab.startBus()
        let (_, serverNotify) = try lab.startServer(onBus: false)
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (client, clientNotify) = try lab.startClient()
        try clientNotify.waitFor("READY=1", timeout: 15)
        let pinged = pollUntil(timeout: 10, every: 0.2, { (try? lab.exec(lab.client, "ping -6 -c1 -W1 fd78::1")) != nil }, isDone: { $0 })
        #expect(pinged, "client log:\n\(lab.log("client"))\nserver log:\n\(lab.log("server"))")
        try lab.exec(lab.server, "ping -6 -c3 -i0.2 -W2 fd78::2")
        #expect(try !lab.exec(lab.client, "ip -4 address show dev tgc0").contains("inet "))
        // Full tunnel (the default): IPv4 is refused at once, not sent around the tunnel.
        let refused = (try? lab.exec(lab.client, "ping -c1 -W1 \(DaemonLab.serverTunnelAddress)")) == nil
        #expect(refused, "IPv4 went somewhere from an IPv6-only tunnel")
        // The bus follows the data plane on its next statistics tick.
        let status = pollUntil(timeout: 5, every: 0.2, {
            (try? lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' status")) ?? ""
        }, isDone: { $0.contains("State:     connected") })
        #expect(status.contains("tgc0 fd78::2/64"), "\(status)")
        #expect(!status.contains("10.78.0."), "\(status)")
        lab.terminate(client)
        #expect(client.terminationStatus == 0, "client log:\n\(lab.log("client"))")
    }

    @Test("kill -9 of the client daemon and a restart leave no duplicates; a server restart is survived")
    func crashRestartAndServerRestart() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        let routingBefore = try lab.clientRouting()
        let (server, serverNotify) = try lab.startServer()
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (first, firstNotify) = try lab.startClient()
        try firstNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10))
        kill(first.processIdentifier, SIGKILL)
        lab.waitForExit(first, timeout: 5)

        let (second, secondNotify) = try lab.startClient(logName: "client-2")
        try secondNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client-2"))")
        for family in ["-4", "-6"] {
            let rules = try lab.exec(lab.client, "ip \(family) rule show")
            let ours = rules.split(separator: "\n").filter { !$0.hasPrefix("0:") && !$0.hasPrefix("32766:") && !$0.hasPrefix("32767:") }
            // Full tunnel: suppress_prefixlength and not-fwmark, once each per family, and (IPv4, the server's family)
            // `to SERVER lookup main` for the reverse-path check (docs/DATAPLANE.md, "Reverse-path filtering").
            #expect(ours.count == (family == "-4" ? 3 : 2) && Set(ours).count == ours.count, "duplicate or missing rules (\(family)): \(rules)")
            // Two default routes per family in the tunnel table: via the TUN (IPv6 unreachable: the server assigns none)
            // and the kill switch's standing `unreachable default metric 4294967295`.
            let routes = try lab.exec(lab.client, "ip \(family) route show table all proto 116")
            #expect(routes.components(separatedBy: "default").count == 3, "tunnel routes (\(family)): \(routes)")
        }
        #expect(try lab.exec(lab.client, "ip -o link show").components(separatedBy: "tgc0").count == 2)

        // The server goes away and comes back: the client's tunnel recovers by itself.
        lab.terminate(server)
        let (_, again) = try lab.startDaemon(namespace: lab.server, "--config \(lab.directory)/server.toml", logName: "server-2")
        try again.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client-2"))")

        lab.terminate(second)
        #expect(second.terminationStatus == 0)
        let routingAfter = try lab.clientRouting()
        #expect(routingAfter == routingBefore, "\(difference(routingBefore, routingAfter))")
    }

    @Test("autoconnect in the config connects at start; veths found by include alone, whatever the host's udev says")
    func autoconnectWithoutPins() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        // No [uplinks.interface] pin: discovery must not take the host's udev entries (TRIGLAV_UPLINK=ignore
        // for the same interface index) for this namespace's veths.
        try lab.write("client-auto.toml", """
            private_key = "\(lab.directory)/client.key"
            autoconnect = "lab"
            [tunnel]
            interface = "tgc0"
            [uplinks]
            include = ["up*"]
            heartbeat_interval_ms = 200
            """)
        let (server, serverNotify) = try lab.startServer()
        _ = try serverNotify.waitFor("READY=1", timeout: 15)
        let (client, clientNotify) = try lab.startDaemon(
            namespace: lab.client, "--config \(lab.directory)/client-auto.toml --profile-dir \(lab.directory)/profiles",
            logName: "client")
        let clientReady = try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(clientReady.contains("STATUS=Connecting to lab"), "\(clientReady)")
        try clientNotify.waitFor(prefix: "STATUS=Connected to lab (198.18.7.1:7443): 2/2 uplinks established", timeout: 10)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        lab.terminate(client)
        #expect(client.terminationStatus == 0, "client log:\n\(lab.log("client"))")
        lab.terminate(server)
    }

    @Test("a bad --connect profile stops the daemon before READY, leaving nothing behind")
    func unknownProfileFailsBeforeReadiness() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        let routingBefore = try lab.clientRouting()
        let (client, notify) = try lab.startDaemon(
            namespace: lab.client, "--config \(lab.directory)/client.toml --profile-dir \(lab.directory)/profiles --connect nowhere",
            logName: "client")
        lab.waitForExit(client, timeout: 15)
        #expect(!client.isRunning)
        #expect(client.terminationStatus == 1)
        #expect(lab.log("client").contains("profile 'nowhere'"), "\(lab.log("client"))")
        #expect(!notify.messages.contains { $0.contains("READY=1") }, "\(notify.messages)")
        let routingAfter = try lab.clientRouting()
        #expect(routingAfter == routingBefore, "\(difference(routingBefore, routingAfter))")
    }

    @Test("org.triglav on a private bus: busctl connects, changes the scheduler, disconnects; SIGHUP reloads")
    func busDrivesTheClient() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try lab.startBus()
        let (server, serverNotify) = try lab.startServer()
        try serverNotify.waitFor("READY=1", timeout: 15)
        #expect(try lab.busctl("get-property org.triglav /org/triglav org.triglav.Server1 Enabled") == "b true\n")
        // `triglav status` of a server shows its role, not a client's "disconnected" with no uplinks.
        let serverStatus = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' status")
        #expect(serverStatus.contains("Role:      server") && !serverStatus.contains("State:"), "\(serverStatus)")
        #expect(serverStatus.contains("Server:    listening on 198.18.7.1:7443, 0 client(s) connected"), "\(serverStatus)")
        lab.terminate(server)  // the client needs the name org.triglav on this bus

        let (_, serverAgain) = try lab.startDaemon(namespace: lab.server, "--config \(lab.directory)/server.toml --no-bus",
                                                   logName: "server-2")
        try serverAgain.waitFor("READY=1", timeout: 15)
        let (client, notify) = try lab.startClient(connect: false)
        try notify.waitFor("READY=1", timeout: 15)
        let manager = "org.triglav /org/triglav org.triglav.Manager1"
        #expect(try lab.busctl("get-property \(manager) State") == "s \"disconnected\"\n")
        let uplinks = try lab.busctl("get-property \(manager) Uplinks")
        #expect(uplinks == "ao 2 \"/org/triglav/uplink/1\" \"/org/triglav/uplink/2\"\n", "\(uplinks)")
        #expect(try lab.busctl("get-property org.triglav /org/triglav/uplink/1 org.triglav.Uplink1 Interface") == "s \"up1\"\n")
        // Carrier and an address, but no tunnel to join yet.
        #expect(try lab.busctl("get-property org.triglav /org/triglav/uplink/1 org.triglav.Uplink1 State") == "s \"waiting\"\n")
        let table = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' uplinks")
        #expect(table.contains("waiting"), "\(table)")

        // Errors are the documented ones, and the daemon stays up.
        #expect(throws: LabError.self) { try lab.busctl("call \(manager) Disconnect") }
        do {
            try lab.busctl("call \(manager) Connect 'sa{sv}' nowhere 0")
            Issue.record("Connect to an unknown profile succeeded")
        } catch LabError.commandFailed(_, _, let output) {
            #expect(output.contains("profile 'nowhere'"), "\(output)")
        }

        // SIGHUP: the new scheduler shows on the bus, and RELOADING=1 / READY=1 on the notify socket.
        try lab.writeClientConfig(scheduler: "redundant")
        let mark = notify.messages.count
        kill(client.processIdentifier, SIGHUP)
        try notify.waitFor("RELOADING=1", after: mark, timeout: 10)
        try notify.waitFor("READY=1", after: mark, timeout: 10)
        #expect(try lab.busctl("get-property \(manager) Scheduler") == "s \"redundant\"\n")
        // Reload over the bus does the same; a broken file is an error and changes nothing.
        try lab.writeClientConfig(scheduler: "flow")
        try lab.busctl("call \(manager) Reload")
        #expect(try lab.busctl("get-property \(manager) Scheduler") == "s \"flow\"\n")
        try lab.write("client.toml", "scheduler = 1")
        do {
            try lab.busctl("call \(manager) Reload")
            Issue.record("Reload of a broken file succeeded")
        } catch LabError.commandFailed(_, _, let output) {
            #expect(output.contains("client.toml"), "\(output)")
        }
        #expect(try lab.busctl("get-property \(manager) Scheduler") == "s \"flow\"\n")
        try lab.writeClientConfig(scheduler: "redundant")

        try lab.busctl("call \(manager) Connect 'sa{sv}' lab 0")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        #expect(try lab.busctl("get-property \(manager) Profile") == "s \"lab\"\n")
        #expect(throws: LabError.self) { try lab.busctl("call \(manager) Connect 'sa{sv}' lab 0") }
        try lab.busctl("set-property \(manager) Scheduler s failover")
        #expect(try lab.busctl("get-property \(manager) Scheduler") == "s \"failover\"\n")
        #expect(try waitForProperty(lab, "org.triglav /org/triglav/uplink/1 org.triglav.Uplink1 State", "s \"active\"\n"))
        #expect(try waitForProperty(lab, "\(manager) State", "s \"connected\"\n"))

        try lab.busctl("call \(manager) Disconnect")
        #expect(try lab.busctl("get-property \(manager) State") == "s \"disconnected\"\n")
        #expect(try lab.exec(lab.client, "ip -o link show").contains("tgc0") == false)

        // The unprivileged CLI drives the same daemon.
        let cli = "\(DaemonLab.product("triglav")) --bus-address \(try #require(lab.busAddress))"
        try lab.sh("\(cli) connect lab")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        #expect(try waitForProperty(lab, "\(manager) State", "s \"connected\"\n"))
        let json = try lab.sh("\(cli) status --json")
        #expect(json.contains("\"connected\""), "\(json)")
        #expect(json.contains("\"up1\"") && json.contains("\"up2\""), "\(json)")
        try lab.sh("\(cli) disconnect")
        #expect(try lab.busctl("get-property \(manager) State") == "s \"disconnected\"\n")

        lab.terminate(client)
        #expect(client.terminationStatus == 0, "client log:\n\(lab.log("client"))")
    }

    /// The lines only one side has, for a readable failure message.
    private func difference(_ before: String, _ after: String) -> String {
        let old = Set(before.split(separator: "\n")), new = Set(after.split(separator: "\n"))
        return "gone: \(old.subtracting(new).sorted())\nnew: \(new.subtracting(old).sorted())"
    }

    private func waitForProperty(_ lab: DaemonLab, _ property: String, _ expected: String) throws -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if try lab.busctl("get-property \(property)") == expected { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return false
    }
}
