import Testing
@testable import TriglavDataPlane
import TriglavCore

/// Which forward chains the server warns about (`RouteManager.droppingForwardChains`), from `nft -j list ruleset`
/// output as nftables 1.0 prints it. The namespace test IntegrationTests.DataPlaneServerHostTests checks the warning
/// against a real ruleset.
@Suite("Server: forward chains that drop the tunnel's traffic")
struct ForwardChainWarningTests {
    static func tun() throws -> InterfaceName { try InterfaceName("tgs0") }

    static func ruleset(_ objects: [String]) -> String {
        #"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, "# + objects.joined(separator: ", ") + "]}"
    }

    static func chain(_ family: String, _ table: String, _ name: String, hook: String = "forward", policy: String = "drop") -> String {
        #"{"chain": {"family": "\#(family)", "table": "\#(table)", "name": "\#(name)", "handle": 1, "type": "filter", "hook": "\#(hook)", "prio": 0, "policy": "\#(policy)"}}"#
    }

    static func rule(_ family: String, _ table: String, _ chain: String, interface: String) -> String {
        #"{"rule": {"family": "\#(family)", "table": "\#(table)", "chain": "\#(chain)", "handle": 2, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "\#(interface)"}}, {"accept": null}]}}"#
    }

    @Test("a drop-policy forward chain of another table is reported; accept policies, other hooks, bridge and our own table are not")
    func reportsOnlyDroppingForwardChains() throws {
        let json = Self.ruleset([
            Self.chain("ip", "filter", "FORWARD"),
            Self.chain("ip6", "filter", "FORWARD", policy: "accept"),
            Self.chain("inet", "fw", "input", hook: "input"),
            Self.chain("bridge", "br", "forward"),
            Self.chain("inet", "triglav", "forward"),
            #"{"chain": {"family": "inet", "table": "fw", "name": "regular", "handle": 5}}"#,
        ])
        let chains = try RouteManager.droppingForwardChains(inRuleset: json, tun: Self.tun())
        #expect(chains == [.init(family: "ip", table: "filter", name: "FORWARD", priority: 0)])
    }

    @Test("a table with a rule naming the TUN (in any chain, as ufw and Docker jump to sub-chains) counts as configured")
    func tableNamingTheTunIsConfigured() throws {
        let configured = Self.ruleset([Self.chain("ip", "filter", "FORWARD"), Self.rule("ip", "filter", "DOCKER-USER", interface: "tgs0")])
        #expect(try RouteManager.droppingForwardChains(inRuleset: configured, tun: Self.tun()).isEmpty)
        // A rule for another interface, or one naming the TUN in another table, doesn't count.
        let other = Self.ruleset([Self.chain("inet", "firewalld", "filter_FORWARD"), Self.rule("inet", "firewalld", "x", interface: "tgs01"),
                                  Self.rule("ip", "filter", "FORWARD", interface: "tgs0")])
        #expect(try RouteManager.droppingForwardChains(inRuleset: other, tun: Self.tun()).map(\.table) == ["firewalld"])
    }

    @Test("output that isn't the JSON ruleset is an error, not a crash or silence")
    func garbledOutput() throws {
        for text in ["", "table ip filter {", #"{"other": []}"#, #"{"nftables": 3}"#] {
            #expect(throws: TriglavDataPlaneError.self) { try RouteManager.droppingForwardChains(inRuleset: text, tun: Self.tun()) }
        }
        // An empty ruleset is fine.
        #expect(try RouteManager.droppingForwardChains(inRuleset: #"{"nftables": []}"#, tun: Self.tun()).isEmpty)
    }
}
