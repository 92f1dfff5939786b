import Foundation
import Testing

/// The server daemon's NAT and forwarding in a namespace (root only; CI runs them as root): `[server.nat]
/// outbound_interface` reaches the nftables rule, and what the server installs goes again on SIGTERM, and
/// after a `kill -9` the next start replaces the leftover table instead of adding a second one and puts the crashed
/// run's forwarding values back.
@Suite("triglavd server NAT in namespaces", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonServerNATTests {
    @Test("outbound_interface reaches nftables; SIGTERM removes the table and turns forwarding back off; kill -9 + restart leaves one table and restores forwarding")
    func natTableLifecycle() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        let base = try String(contentsOfFile: "\(lab.directory)/server.toml", encoding: .utf8)
        #expect(base.contains("enabled = false"))
        try lab.write("server-nat.toml", base.replacingOccurrences(of: "enabled = false", with: "enabled = true\noutbound_interface = \"dn2\""))
        func forwarding() throws -> String {
            try lab.exec(lab.server, "sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding")
                .split(separator: "\n").joined(separator: " ")
        }
        func tables() throws -> String { try lab.exec(lab.server, "nft list tables") }
        func start(_ logName: String) throws -> Process {
            let (process, notify) = try lab.startDaemon(namespace: lab.server, "--config \(lab.directory)/server-nat.toml",
                                                        logName: logName, onBus: false)
            try notify.waitFor("READY=1", timeout: 15)
            return process
        }
        #expect(try forwarding() == "0 0")

        let server = try start("server")
        let table = try lab.exec(lab.server, "nft list table inet triglav")
        #expect(table.contains("ip saddr 10.78.0.0/24 oifname \"dn2\" masquerade"), "\(table)")
        #expect(table.contains("ip6 saddr fd78::/64 oifname \"dn2\" masquerade"), "\(table)")
        #expect(!table.contains("oifname != "), "\(table)")
        #expect(try forwarding() == "1 1")
        lab.terminate(server)
        #expect(server.terminationStatus == 0, "server log:\n\(lab.log("server"))")
        let tablesAfter = try tables()
        #expect(tablesAfter.contains("triglav") == false, "table left after SIGTERM: \(tablesAfter)")
        #expect(try lab.exec(lab.server, "ip -o link show").contains("tgs0") == false)
        #expect(try forwarding() == "0 0", "forwarding left on after SIGTERM")

        // A crash leaves the table (and forwarding); the next start replaces it rather than adding another.
        let crashed = try start("server-2")
        kill(crashed.processIdentifier, SIGKILL)
        lab.waitForExit(crashed, timeout: 5)
        #expect(try tables().contains("inet triglav"))
        let record = (try? String(contentsOfFile: "\(lab.directory)/server-sysctl.state", encoding: .utf8)) ?? ""
        #expect(record.contains("net/ipv4/ip_forward 0 1") && record.contains("net/ipv6/conf/all/forwarding 0 1"), "\(record)")
        let restarted = try start("server-3")
        let tablesRestarted = try tables()
        #expect(tablesRestarted.components(separatedBy: "inet triglav").count == 2, "\(tablesRestarted)")
        let again = try lab.exec(lab.server, "nft list table inet triglav")
        #expect(again.components(separatedBy: "masquerade").count == 3, "one rule per tunnel prefix: \(again)")
        // The crashed run's record of forwarding (and accept_ra) is in the lab's state directory.
        lab.terminate(restarted)
        #expect(try tables().contains("triglav") == false)
        // The restart put the crashed run's forwarding back first, so the stop turns it off as it was before any run.
        #expect(try forwarding() == "0 0", "server-3 log:\n\(lab.log("server-3"))")
        #expect(!FileManager.default.fileExists(atPath: "\(lab.directory)/server-sysctl.state"))
        #expect(lab.log("server-3").contains("changed by a run that did not stop cleanly"), "\(lab.log("server-3"))")
    }
}
