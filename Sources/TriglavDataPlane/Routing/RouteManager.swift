import Foundation
import Logging
import TriglavCore

/// Numbers that tag everything the data plane installs, so shutdown removes exactly it and a restart after
/// a crash finds its leftovers.
public enum RoutingConstants {
    /// SO_MARK of uplink sockets and number of the client's routing table ("tg" = 0x7467 = 29799).
    public static let defaultFirewallMark: UInt32 = 0x7467
    /// Priority of `lookup main suppress_prefixlength 0` (must precede the next one).
    public static let suppressRulePriority = 29798
    /// Priority of `not fwmark MARK lookup TABLE`.
    public static let tunnelRulePriority = 29799
    /// The server's nftables table (family inet).
    public static let serverNATTable = "triglav"
}

/// Installs and removes addresses, routes, rules and NAT.
///
/// INTERIM backend: runs `ip` (iproute2) and `nft -f -`. Addresses, routes and rules move to TriglavNetlink
/// (libnl) when it lands in main; nftables stays on `nft -f` by design (libnftnl is not a required library,
/// and one atomic ruleset file is easy to audit). Every command's failure is reported with its output.
final class RouteManager: Sendable {
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    // MARK: Client

    /// Removes rules at our priorities and flushes our table: leftovers of a crashed (kill -9) run.
    /// The TUN device itself is not persistent, so the kernel removed it with the dead process.
    func removeClientLeftovers(table: UInt32) throws(TriglavDataPlaneError) {
        removeRulesAndTable(table: table)
    }

    func bringUp(_ interface: InterfaceName) throws(TriglavDataPlaneError) {
        try run(["ip", "link", "set", "dev", interface.rawValue, "up"])
    }

    /// Sets the tunnel addresses and the routing policy. Idempotent: replaces what a previous assignment set.
    func applyClient(tun: InterfaceName, assignment: TunnelAddresses, routing: ClientRouting,
                     table: UInt32) throws(TriglavDataPlaneError) {
        let name = tun.rawValue
        try run(["ip", "-4", "address", "flush", "dev", name])
        if let ipv4 = assignment.ipv4 {
            try run(["ip", "-4", "address", "add", "\(ipv4)", "dev", name])
        }
        if let ipv6 = assignment.ipv6 {
            // Without nodad the address stays "tentative" for a second and can't be used as a source.
            try run(["ip", "-6", "address", "replace", "\(ipv6)", "dev", name, "nodad"])
        }
        removeRulesAndTable(table: table)
        let tableText = String(table)
        let markText = String(table)
        switch routing {
        case .none:
            break
        case .split(let prefixes):
            for prefix in prefixes {
                if prefix.address.isIPv4 ? assignment.ipv4 != nil : assignment.ipv6 != nil {
                    try run(["ip", prefix.address.isIPv4 ? "-4" : "-6", "route", "replace", "\(prefix)", "dev", name])
                }
            }
        case .fullTunnel:
            if assignment.ipv4 != nil {
                try run(["ip", "-4", "route", "replace", "default", "dev", name, "table", tableText])
            } else {
                try run(["ip", "-4", "route", "replace", "blackhole", "default", "table", tableText])
            }
            if assignment.ipv6 != nil {
                try run(["ip", "-6", "route", "replace", "default", "dev", name, "table", tableText])
            } else {
                // No IPv6 from the server: block it rather than let it leave around the tunnel.
                try run(["ip", "-6", "route", "replace", "blackhole", "default", "table", tableText])
            }
            for family in ["-4", "-6"] {
                try run(["ip", family, "rule", "add", "priority", String(RoutingConstants.tunnelRulePriority),
                         "not", "fwmark", markText, "table", tableText])
                try run(["ip", family, "rule", "add", "priority", String(RoutingConstants.suppressRulePriority),
                         "table", "main", "suppress_prefixlength", "0"])
            }
        }
    }

    /// Removes what `applyClient` installed (the TUN's own addresses go with the device).
    func removeClient(tun: InterfaceName, table: UInt32) {
        removeRulesAndTable(table: table)
    }

    private func removeRulesAndTable(table: UInt32) {
        for family in ["-4", "-6"] {
            for priority in [RoutingConstants.suppressRulePriority, RoutingConstants.tunnelRulePriority] {
                // Bounded: at most a few duplicates can exist (one per crashed run that raced us).
                for _ in 0..<16 {
                    guard (try? run(["ip", family, "rule", "del", "priority", String(priority)], quiet: true)) != nil else { break }
                }
            }
            _ = try? run(["ip", family, "route", "flush", "table", String(table)], quiet: true)
        }
    }

    // MARK: Server

    /// Addresses the server's TUN device, enables forwarding in this namespace and installs NAT for the
    /// tunnel subnets in the `inet triglav` table (replacing a leftover one).
    func applyServer(tun: InterfaceName, addresses: [IPPrefix], masquerade: Bool) throws(TriglavDataPlaneError) {
        let name = tun.rawValue
        try run(["ip", "link", "set", "dev", name, "up"])
        for address in addresses {
            try run(["ip", address.address.isIPv4 ? "-4" : "-6", "address", "replace", "\(address)", "dev", name]
                    + (address.address.isIPv4 ? [] : ["nodad"]))
        }
        try writeSysctl("/proc/sys/net/ipv4/ip_forward", "1")
        if addresses.contains(where: { !$0.address.isIPv4 }) {
            try writeSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")
        }
        removeServerNAT()
        guard masquerade else { return }
        var ruleset = "table inet \(RoutingConstants.serverNATTable) {\n"
        ruleset += "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        for address in addresses {
            let network = networkPrefix(address)
            let family = address.address.isIPv4 ? "ip" : "ip6"
            ruleset += "    \(family) saddr \(network) oifname != \"\(name)\" masquerade\n"
        }
        ruleset += "  }\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
        ruleset += "    iifname \"\(name)\" accept\n    oifname \"\(name)\" ct state established,related accept\n"
        ruleset += "  }\n}\n"
        try run(["nft", "-f", "-"], input: ruleset)
    }

    /// Deletes the server's nftables table (no error when absent).
    func removeServerNAT() {
        _ = try? run(["nft", "delete", "table", "inet", RoutingConstants.serverNATTable], quiet: true)
    }

    private func networkPrefix(_ prefix: IPPrefix) -> String {
        let bytes = prefix.address.bytes
        var masked = bytes
        var remaining = prefix.length
        for index in 0..<masked.count {
            let bits = min(8, max(0, remaining))
            masked[index] = bytes[index] & UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            remaining -= 8
        }
        guard let address = IPAddress(bytes: masked) else { return "\(prefix)" }
        return "\(address)/\(prefix.length)"
    }

    private func writeSysctl(_ path: String, _ value: String) throws(TriglavDataPlaneError) {
        do {
            try value.write(toFile: path, atomically: false, encoding: .utf8)
        } catch {
            throw .routingCommand(command: "write \(value) to \(path)", status: -1, output: "\(error)")
        }
    }

    // MARK: Running tools

    @discardableResult
    private func run(_ arguments: [String], input: String? = nil, quiet: Bool = false) throws(TriglavDataPlaneError) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let inputPipe = input.map { _ in Pipe() }
        if let inputPipe { process.standardInput = inputPipe }
        let command = arguments.joined(separator: " ")
        do {
            try process.run()
        } catch {
            throw .routingCommand(command: command, status: -1, output: "cannot start: \(error)")
        }
        if let inputPipe, let input {
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try? inputPipe.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0 else {
            if !quiet { logger.debug("\(command) failed: \(text)") }
            throw .routingCommand(command: command, status: process.terminationStatus, output: text)
        }
        logger.trace("\(command)")
        return text
    }
}
