import Foundation
import Testing
import TriglavTestSupport

/// A routing failure of the real triglavd, end to end (root only): the kernel refuses the client tunnel's
/// assigned IPv6 address (IPv6 disabled on the TUN), and the bus says so — Manager1.RoutingError carries the
/// reason and State is `degraded` although the uplinks have sessions; `triglav status` prints it; the daemon
/// logs the episode once at error level. When the kernel accepts it again, the retry clears both.
@Suite("triglavd routing failure on the bus", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonRoutingErrorTests {
    static let manager = "org.triglav /org/triglav org.triglav.Manager1"

    /// Polls a Manager1 property until `condition` holds (bounded); returns the last value.
    private func waitForProperty(_ lab: DaemonLab, _ name: String, timeout: TimeInterval,
                                 until condition: (String) -> Bool) throws -> String {
        try pollUntil(timeout: timeout, { try lab.busctl("get-property \(Self.manager) \(name)") }, isDone: condition)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("IPv6 refused on the TUN: RoutingError set, State degraded, shown by the CLI, logged once; cleared when it applies")
    func refusedAssignmentIsVisibleOnTheBus() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        // The client gets an IPv6 address too, which the kernel will refuse while IPv6 is off on its TUN.
        var serverConfig = try String(contentsOfFile: "\(lab.directory)/server.toml", encoding: .utf8)
        serverConfig += "tunnel_ipv6 = \"fd78::2\"\n"
        try lab.write("server.toml", serverConfig)
        try lab.startBus()
        let (_, clientNotify) = try lab.startClient()
        try clientNotify.waitFor("READY=1", timeout: 15)
        // The TUN exists once the connect started; turn IPv6 off on it before the server answers.
        let deadline = Date().addingTimeInterval(10)
        while (try? lab.exec(lab.client, "ip link show tgc0")) == nil, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        try lab.exec(lab.client, "sysctl -qw net.ipv6.conf.tgc0.disable_ipv6=1")
        #expect(try lab.busctl("get-property \(Self.manager) RoutingError") == "s \"\"\n")
        _ = try lab.startServer(onBus: false)

        let error = try waitForProperty(lab, "RoutingError", timeout: 15) { $0 != "s \"\"\n" }
        #expect(error.hasPrefix("s \"") && error != "s \"\"", "RoutingError stayed empty; client log:\n\(lab.log("client").suffix(3000))")
        let state = try waitForProperty(lab, "State", timeout: 15) { $0 == "s \"degraded\"\n" }
        #expect(state == "s \"degraded\"", "\(state)")
        let cli = DaemonLab.product("triglav")
        let status = try lab.sh("\(cli) --bus-address \(lab.busAddress ?? "") status")
        #expect(status.contains("Routing:") && status.contains("FAILED"), "\(status)")
        // The data plane retries (1 s, 2 s, …): the episode stays one error line of the daemon.
        Thread.sleep(forTimeInterval: 3.5)
        let errorLines = lab.log("client").split(separator: "\n").filter { $0.contains("could not be applied") }
        #expect(errorLines.count == 1, "\(errorLines)")

        // The kernel accepts IPv6 again: the next retry applies the assignment and the bus clears.
        try lab.exec(lab.client, "sysctl -qw net.ipv6.conf.tgc0.disable_ipv6=0")
        let cleared = try waitForProperty(lab, "RoutingError", timeout: 20) { $0 == "s \"\"\n" }
        #expect(cleared == "s \"\"", "client log:\n\(lab.log("client").suffix(3000))")
        #expect(try waitForProperty(lab, "State", timeout: 15) { $0 == "s \"connected\"\n" } == "s \"connected\"")
        #expect(lab.log("client").contains("routing failure is over"))
        #expect(!(try lab.sh("\(cli) --bus-address \(lab.busAddress ?? "") status")).contains("Routing:"))
        #expect(lab.waitForTunnel(timeout: 10))
    }
}
