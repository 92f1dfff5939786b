import Foundation
import Testing

/// The client's cleanup removes exactly what it installed (root only; CI runs it as root): a user's rules at the
/// client's rule priorities and a user's route in its table survive a start and a clean stop, and survive the
/// cleanup after a crash, which still removes the crashed run's rules, and untagged rules of the client's own
/// shapes (what a kernel before 4.17, which drops a rule's protocol, leaves).
@Suite("DataPlane route cleanup in namespaces", .serialized, .enabled(if: DataPlaneLab.isRoot, "needs root for network namespaces"))
struct DataPlaneRouteCleanupTests {
    /// The user's own rules and routes, at the client's default priorities (29797–29799) and in its table (29799).
    static let userSetup = [
        "ip -4 rule add priority 29799 from 192.0.2.0/24 lookup 100",
        "ip -4 rule add priority 29798 to 198.51.100.0/24 lookup main",
        "ip -6 rule add priority 29797 from 2001:db8:5::/48 lookup 100",
        "ip -4 route add 203.0.113.0/24 via 10.201.2.1 dev up2 table 29799",
        "ip -6 route add unreachable 2001:db8:6::/48 table 29799",
    ]
    /// How the user's rules and routes show up (`ip rule`/`ip route` output).
    static let userLines = [
        "29799:\tfrom 192.0.2.0/24 lookup 100", "29798:\tfrom all to 198.51.100.0/24 lookup main",
        "29797:\tfrom 2001:db8:5::/48 lookup 100", "203.0.113.0/24 via 10.201.2.1 dev up2", "unreachable 2001:db8:6::/48",
    ]

    @Test("a user's rules at the client's priorities and routes in its table survive start, stop and crash cleanup")
    func cleanupRemovesOnlyOwnRulesAndRoutes() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        for command in Self.userSetup { try lab.exec(lab.client, command) }
        // Main has a default route through up1, so traffic the tunnel doesn't catch after a crash has a way out.
        try lab.exec(lab.client, "ip route add default via 10.201.1.1 dev up1")
        _ = try lab.startServer()

        // Start and a clean stop: the user's rules and routes are there while the tunnel runs, and after.
        let first = try lab.startClient(fullTunnel: true)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        let running = try snapshot(lab)
        #expect(running.contains("suppress_prefixlength 0"), "the tunnel's rules are missing:\n\(running)")
        for line in Self.userLines { #expect(running.contains(line), "'\(line)' gone while the tunnel runs:\n\(running)") }
        lab.terminate(first)
        let stopped = try snapshot(lab)
        for line in Self.userLines { #expect(stopped.contains(line), "'\(line)' gone after a clean stop:\n\(stopped)") }
        #expect(ownLines(stopped).isEmpty, "the tunnel's rules or routes outlived a clean stop:\n\(stopped)")

        // A crash leaves the tunnel's rules; untagged rules of its shapes stand for a kernel that drops the tag.
        let crashed = try lab.startClient(fullTunnel: true, logName: "client-2")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client-2"))")
        lab.crash(crashed)
        #expect(!ownLines(try snapshot(lab)).isEmpty, "kill -9 left nothing to clean up: the test proves nothing")
        // While the client is dead (its TUN and the routes via it gone), the kill switch's standing unreachable route
        // refuses traffic: nothing to the internet host leaves through an uplink in cleartext.
        let captures = try lab.captureOnUplinks(filter: "host \(DataPlaneLab.internetAddress)")
        #expect((try? lab.exec(lab.client, "ping -c2 -i0.2 -W1 \(DataPlaneLab.internetAddress)")) == nil, "ping got through after the crash")
        _ = try? lab.exec(lab.client, "sh -c 'echo leak > /dev/udp/\(DataPlaneLab.internetAddress)/53'")
        Thread.sleep(forTimeInterval: 0.3)
        for (uplink, process) in captures {
            lab.crash(process)  // line-buffered (-l): SIGKILL loses nothing
            let leaked = lab.log("tcpdump-\(uplink)").split(separator: "\n").filter { $0.contains(DataPlaneLab.internetAddress) }
            #expect(leaked.isEmpty, "cleartext on \(uplink) while the client was dead: \(leaked)")
        }
        for family in ["-4", "-6"] {
            try lab.exec(lab.client, "ip \(family) rule add priority 29798 lookup main suppress_prefixlength 0")
            try lab.exec(lab.client, "ip \(family) rule add priority 29799 not fwmark 0x7467 lookup 29799")
        }
        let restarted = try lab.startClient(fullTunnel: true, logName: "client-3")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client-3"))")
        let again = try snapshot(lab)
        // One rule of each kind per family: the leftovers went before the new ones were installed.
        #expect(count(of: "lookup main suppress_prefixlength 0", in: again) == 2, "\(again)")
        #expect(count(of: "not from all fwmark 0x7467 lookup 29799", in: again) == 2, "\(again)")
        for line in Self.userLines { #expect(again.contains(line), "'\(line)' gone by the crash cleanup:\n\(again)") }
        lab.terminate(restarted)
        let end = try snapshot(lab)
        #expect(ownLines(end).isEmpty, "the tunnel's rules or routes outlived a clean stop:\n\(end)")
        for line in Self.userLines { #expect(end.contains(line), "'\(line)' gone after the last stop:\n\(end)") }
    }

    /// Rules (with their protocol) and the routes of every table, both families.
    private func snapshot(_ lab: DataPlaneLab) throws -> String {
        try ["ip -d -4 rule show", "ip -d -6 rule show", "ip -4 route show table all", "ip -6 route show table all"]
            .map { try lab.exec(lab.client, $0) }.joined(separator: "\n")
    }

    /// Lines of `snapshot` that are the tunnel's: tagged (proto 116), or of its rule shapes, or in its table but the user's.
    private func ownLines(_ text: String) -> [Substring] {
        text.split(separator: "\n").filter { line in
            line.contains("proto 116") || line.contains("suppress_prefixlength") || line.contains("fwmark 0x7467")
                || (line.contains("table 29799") && !Self.userLines.contains { line.contains($0) })
        }
    }

    private func count(of needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }
}
