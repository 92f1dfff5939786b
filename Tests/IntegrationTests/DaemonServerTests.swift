import Foundation
import Testing
import TriglavTestSupport

/// The server role's org.triglav.Server1 / Client1 objects with a real client daemon behind them (root only):
/// per-client byte counters and RTT measured by the data plane, and Server1.DisconnectClient.
@Suite("triglavd server role on the bus", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonServerTests {
    static let server = "org.triglav /org/triglav org.triglav.Server1"

    @Test("Client1 TxBytes/RxBytes/RttUsec grow with traffic; DisconnectClient drops the client, which comes back as a new object")
    func countersAndDisconnectClient() async throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try lab.startBus()
        let (server, serverNotify) = try lab.startServer()
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (client, clientNotify) = try lab.startClient(onBus: false)
        try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        #expect(try waitFor(lab, "get-property \(Self.server) Clients", equals: "ao 1 \"/org/triglav/client/1\"\n"))
        let first = "org.triglav /org/triglav/client/1 org.triglav.Client1"

        // 20 echo requests of 1028 IP bytes each way: at least that much in both directions, on the next ticks.
        try lab.exec(lab.client, "ping -c20 -i0.05 -s1000 -W2 \(DaemonLab.serverTunnelAddress)")
        #expect(try waitUntil(lab, "get-property \(first) RxBytes") { $0 >= 20 * 1028 })
        #expect(try waitUntil(lab, "get-property \(first) TxBytes") { $0 >= 20 * 1028 })
        #expect(try waitUntil(lab, "get-property \(first) RttUsec") { $0 > 0 && $0 < 1_000_000 })
        let serverTx = try number(lab.busctl("get-property \(Self.server) TxBytes"))
        #expect(serverTx >= 20 * 1028)
        let status = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' status")
        #expect(status.contains("Traffic:") && !status.contains("tx 0 B"), "\(status)")
        // Server1.Counters: one answered handshake per uplink at least, nothing addressed to an unknown client.
        let counters = try lab.busctl("get-property \(Self.server) Counters")
        #expect(DaemonLab.namedCount(counters, "handshakes") ?? 0 >= 2, "\(counters)")
        #expect(DaemonLab.namedCount(counters, "refused_uplinks") == 0, "\(counters)")

        let monitor = try BackgroundProcess(["busctl", "--address=\(try #require(lab.busAddress))", "monitor", "org.triglav"],
                                            outputPrefix: lab.directory + "/monitor")
        defer { monitor.stop() }
        #expect(await monitor.waitForErrorOutput("Monitoring bus message stream."))
        try lab.busctl("call \(Self.server) DisconnectClient o /org/triglav/client/1")
        #expect(await monitor.waitForOutput("InterfacesRemoved", timeout: .seconds(15)))
        #expect(monitor.output.contains("\"/org/triglav/client/1\""), "\(monitor.output.suffix(2000))")
        #expect(lab.log("server").contains("disconnected by request"), "\(lab.log("server"))")

        // Still authorized: told with a close, the client handshakes again at once and gets a new object.
        #expect(try waitFor(lab, "get-property \(Self.server) Clients", equals: "ao 1 \"/org/triglav/client/2\"\n"),
                "server log:\n\(lab.log("server"))")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        // The totals keep the departed tunnel's bytes; the old object is gone for good.
        #expect(try number(lab.busctl("get-property \(Self.server) TxBytes")) >= serverTx)
        do {
            try lab.busctl("call \(Self.server) DisconnectClient o /org/triglav/client/1")
            Issue.record("DisconnectClient of a departed client succeeded")
        } catch LabError.commandFailed(_, _, let output) {
            #expect(output.contains("no client 1"), "\(output)")
        }

        lab.terminate(client)
        lab.terminate(server)
        #expect(!server.isRunning, "did not exit within 10 s of SIGTERM")
        if !server.isRunning { #expect(server.terminationStatus == 0, "server log:\n\(lab.log("server"))") }
    }

    /// The number in busctl's "t 1234" / "u 5" answer.
    private func number(_ answer: String) throws -> UInt64 {
        try #require(answer.split(separator: " ").last.flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) },
                     "not a number: \(answer)")
    }

    private func waitUntil(_ lab: DaemonLab, _ query: String, _ condition: (UInt64) -> Bool) throws -> Bool {
        let last = try pollUntil(timeout: 10, every: 0.2, { try number(lab.busctl(query)) }, isDone: condition)
        if condition(last) { return true }
        Issue.record("\(query): last value \(last)")
        return false
    }

    private func waitFor(_ lab: DaemonLab, _ query: String, equals expected: String) throws -> Bool {
        let last = try pollUntil(timeout: 10, every: 0.2, { try lab.busctl(query) }, isDone: { $0 == expected })
        if last == expected { return true }
        Issue.record("\(query): last answer \(last)")
        return false
    }
}
