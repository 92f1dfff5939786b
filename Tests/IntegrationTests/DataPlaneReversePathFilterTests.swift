import Foundation
import Testing

/// A client host with strict reverse-path filtering (`rp_filter=1` on `all` and on its uplinks, as CIS-hardened hosts
/// have) and the server reached through default routes (one per uplink, metrics 1–3, as NetworkManager sets them up),
/// not host routes: without the client loosening its uplinks, the strict check drops the server's replies on every
/// uplink in full-tunnel mode (the route back leads into the tunnel) and on every uplink but the first otherwise.
/// Root only; CI runs it as root. The lab's namespaces go in `defer`, also on failure.
@Suite("DataPlane reverse-path filter in namespaces", .serialized, .enabled(if: DataPlaneLab.isRoot, "needs root for network namespaces"))
struct DataPlaneReversePathFilterTests {
    /// rp_filter per uplink before the client starts: up3 is 0 itself, strict only through conf/all.
    static let initial = ["up1": "1", "up2": "1", "up3": "0"]

    /// Default routes per uplink instead of the lab's host routes, and strict reverse-path filtering.
    private func harden(_ lab: DataPlaneLab) throws {
        for (index, uplink) in DataPlaneLab.uplinks.enumerated() {
            let number = index + 1
            try lab.exec(lab.client, "ip route del \(DataPlaneLab.serverAddress)/32 via 10.201.\(number).1 dev \(uplink) metric \(number)")
            try lab.exec(lab.client, "ip route add default via 10.201.\(number).1 dev \(uplink) metric \(number)")
        }
        try lab.exec(lab.client, "sysctl -qw net.ipv4.conf.all.rp_filter=1")
        for (uplink, value) in Self.initial { try lab.exec(lab.client, "sysctl -qw net.ipv4.conf.\(uplink).rp_filter=\(value)") }
    }

    @Test("strict rp_filter without full tunnel: the secondary uplinks, not the default route's, carry the tunnel too")
    func strictReversePathFilterWithoutFullTunnel() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        try harden(lab)
        _ = try lab.startServer()
        let client = try startClient(lab, state: lab.directory.appendingPathComponent("state").path, fullTunnel: false, logName: "client")
        #expect(lab.waitForTunnel(timeout: 15), "client log:\n\(lab.log("client"))")
        #expect(waitForEstablishedUplinks(lab, count: 3, logName: "client"), "not every uplink established:\n\(lab.log("client"))")
        #expect(try values(lab) == ["up1": "2", "up2": "2", "up3": "2"])
        lab.terminate(client)
        #expect(try values(lab) == Self.initial)
    }

    @Test("strict rp_filter: the full tunnel comes up over every uplink; values restored after a clean stop and after kill -9 + restart")
    func strictReversePathFilter() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        try harden(lab)
        let state = lab.directory.appendingPathComponent("state")
        let stateFile = state.appendingPathComponent("rp_filter.state").path
        _ = try lab.startServer()

        // Every uplink carries the tunnel, loosened while it does.
        let first = try startClient(lab, state: state.path, logName: "client")
        #expect(lab.waitForTunnel(timeout: 15), "client log:\n\(lab.log("client"))")
        try lab.exec(lab.client, "ping -c3 -i0.2 -W2 \(DataPlaneLab.internetAddress)")
        #expect(waitForEstablishedUplinks(lab, count: 3, logName: "client"), "not every uplink established:\n\(lab.log("client"))")
        #expect(try values(lab) == ["up1": "2", "up2": "2", "up3": "2"])
        #expect(try lab.exec(lab.client, "sysctl -n net.ipv4.conf.all.rp_filter").trimmingCharacters(in: .whitespacesAndNewlines) == "1")
        #expect(FileManager.default.fileExists(atPath: stateFile))
        #expect(lab.log("client").contains("set net.ipv4.conf.up2.rp_filter=2 (loose)"), "\(lab.log("client"))")

        // A clean stop restores every value and removes the record.
        lab.terminate(first)
        #expect(try values(lab) == Self.initial)
        #expect(!FileManager.default.fileExists(atPath: stateFile))

        // kill -9 leaves them loose and recorded; the next start (here with up1 only) restores the others at once.
        let crashed = try startClient(lab, state: state.path, logName: "client-2")
        #expect(lab.waitForTunnel(timeout: 15), "client log:\n\(lab.log("client-2"))")
        #expect(waitForEstablishedUplinks(lab, count: 3, logName: "client-2"))
        lab.crash(crashed)
        #expect(try values(lab) == ["up1": "2", "up2": "2", "up3": "2"], "kill -9 changed nothing: the test proves nothing")
        #expect(FileManager.default.fileExists(atPath: stateFile))
        let restarted = try startClient(lab, state: state.path, uplinks: ["up1"], logName: "client-3")
        #expect(lab.waitForTunnel(timeout: 15), "client log:\n\(lab.log("client-3"))")
        #expect(try values(lab) == ["up1": "2", "up2": "1", "up3": "0"], "client log:\n\(lab.log("client-3"))")
        lab.terminate(restarted)
        #expect(try values(lab) == Self.initial)
        #expect(!FileManager.default.fileExists(atPath: stateFile))
    }

    /// `triglav-dataplane-dev client` (`--full-tunnel` by default) with `STATE_DIRECTORY=state` (as systemd's StateDirectory= sets it).
    private func startClient(_ lab: DataPlaneLab, state: String, uplinks: [String] = DataPlaneLab.uplinks,
                             fullTunnel: Bool = true, logName: String) throws -> Process {
        let uplinkFlags = uplinks.map { "--uplink \($0)" }.joined(separator: " ")
        let process = try lab.spawn(namespace: lab.client, "env STATE_DIRECTORY=\(state) \(DataPlaneLab.driver) client "
            + "--key \(lab.clientKeyFile) --server-key \(lab.serverPublicKey) --server \(DataPlaneLab.serverAddress):7443 "
            + "--tun tgc0 \(uplinkFlags) \(fullTunnel ? "--full-tunnel" : "") --stats-interval 0.5 --verbose", logName: logName)
        try lab.waitForOutput(logName, containing: "ready", timeout: 10)
        return process
    }

    /// Whether a statistics line of the client shows `count` established uplinks within 10 s.
    private func waitForEstablishedUplinks(_ lab: DataPlaneLab, count: Int, logName: String) -> Bool {
        for _ in 0..<100 {
            let lines = lab.log(logName).split(separator: "\n").filter { $0.contains("ClientTunnelStatistics") }
            if let last = lines.last, last.components(separatedBy: "state: \"established\"").count - 1 >= count { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }

    private func values(_ lab: DataPlaneLab) throws -> [String: String] {
        var result: [String: String] = [:]
        for uplink in DataPlaneLab.uplinks {
            result[uplink] = try lab.exec(lab.client, "sysctl -n net.ipv4.conf.\(uplink).rp_filter").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return result
    }
}
