import Foundation
import Testing
import TriglavTestSupport

extension DaemonServerTests {
    /// Client1.State, Paths and PathDetails on the server come from its engine's view of the client's paths: `connected` with
    /// both uplinks, `degraded` while one is dead, `connected` again once it is back (its rejoin replaces the dead
    /// session, so the server doesn't keep a dead path until the session times out).
    @Test("Client1.State follows the client's paths: connected, degraded with an uplink down, connected when it is back")
    func clientStateFollowsPaths() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try lab.startBus()
        let (_, serverNotify) = try lab.startServer()
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (_, clientNotify) = try lab.startClient(onBus: false)
        try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        try clientNotify.waitFor(prefix: "STATUS=Connected to lab (198.18.7.1:7443): 2/2 uplinks established", timeout: 10)
        let client = "org.triglav /org/triglav/client/1 org.triglav.Client1"
        #expect(try poll(lab, "get-property \(client) State", "s \"connected\"\n", seconds: 10))
        #expect(try poll(lab, "get-property \(client) Paths", "u 2\n", seconds: 10))
        // Each path with where its packets come from and its state (PathDetails; `triglav status` has a table of them).
        let both = try pollUntil(timeout: 10, every: 0.2, { try lab.busctl("get-property \(client) PathDetails") }, isDone: {
            $0.hasPrefix("a(usssttdtt) 2 ") && $0.contains("\"10.202.1.2:") && $0.contains("\"10.202.2.2:")
                && $0.components(separatedBy: "\"udp\" \"ready\"").count == 3
        })
        #expect(both.contains("\"10.202.1.2:") && both.contains("\"10.202.2.2:") && both.components(separatedBy: "\"ready\"").count == 3,
                "PathDetails: \(both)")
        let status = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' status")
        #expect(status.contains("TRANSPORT") && status.contains("10.202.1.2:") && status.contains("10.202.2.2:"), "\(status)")

        try lab.exec(lab.client, "ip link set up2 down")
        #expect(try poll(lab, "get-property \(client) State", "s \"degraded\"\n", seconds: 10),
                "server log:\n\(lab.log("server").suffix(3000))")
        #expect(try poll(lab, "get-property \(client) Paths", "u 1\n", seconds: 5))
        // PathDetails is rate-limited (≤ 1/s), Paths is not: it may follow a moment later.
        let oneDown = try pollUntil(timeout: 5, every: 0.2, { try lab.busctl("get-property \(client) PathDetails") },
                                    isDone: { $0.contains("\"down\"") })
        #expect(oneDown.hasPrefix("a(usssttdtt) 2 ") && oneDown.contains("\"down\"") && oneDown.contains("\"ready\""), "PathDetails: \(oneDown)")

        try lab.exec(lab.client, "ip link set up2 up")
        // Taking the link down flushed its route to the server; put it back as the lab made it.
        try lab.exec(lab.client, "ip route replace 198.18.7.1/32 via 10.202.2.1 dev up2 metric 2")
        #expect(try poll(lab, "get-property \(client) State", "s \"connected\"\n", seconds: 20),
                "client log:\n\(lab.log("client").suffix(3000))")
        #expect(try poll(lab, "get-property \(client) Paths", "u 2\n", seconds: 5))
    }

    /// Polls a busctl query until it answers `expected` (true) or `seconds` pass (false; records the last answer).
    private func poll(_ lab: DaemonLab, _ query: String, _ expected: String, seconds: TimeInterval) throws -> Bool {
        let last = try pollUntil(timeout: seconds, every: 0.2, { try lab.busctl(query) }, isDone: { $0 == expected })
        if last == expected { return true }
        Issue.record("\(query): last answer \(last), expected \(expected)")
        return false
    }
}
