import Foundation
import Testing
import TriglavTestSupport

extension DaemonTests {
    /// The real systemd-resolved (the installed systemd's version, unpacked by `make test-deps`: scripts/fetch-resolved)
    /// in the client namespace on the lab's bus, with its own /run. The client daemon hands it the profile's `[dns]`;
    /// `resolvectl` then shows the tunnel link's servers and domains, and a query for a name of the domain goes through
    /// the tunnel to a resolver in the server namespace and comes back. Disconnecting takes it back. The client daemon
    /// runs with the packaged unit's privileges (CAP_NET_ADMIN alone), which is what resolved authorises. Then
    /// `[dns] resolver = "file"` on reload moves the DNS from resolved into the daemon's /etc/resolv.conf.
    @Test("the real systemd-resolved takes the profile's [dns] for the TUN link and resolves through the tunnel; [dns] resolver = \"file\" moves it to /etc/resolv.conf")
    func realResolvedResolvesThroughTheTunnel() throws {
        let resolved = Self.unpackedResolved("lib/systemd/systemd-resolved")
        try #require(FileManager.default.isExecutableFile(atPath: resolved),
                     "\(resolved) is missing: run 'make test-deps' (scripts/fetch-resolved unpacks it)")
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        // resolved started as root drops to this user; its package would create it.
        if try runShell("id -u systemd-resolve", timeout: 10).status != 0 {
            try lab.sh("useradd --system --no-create-home --shell /usr/sbin/nologin systemd-resolve")
        }
        try lab.startBus()
        let bus = lab.busAddress ?? ""
        try lab.edit("profiles/lab.toml") { $0 + "[dns]\nservers = [\"\(DaemonLab.serverTunnelAddress)\"]\ndomains = [\"corp.example\"]" }
        // Its own /run: resolved writes /run/systemd/resolve/ and must not touch the host's.
        _ = try lab.spawn(namespace: lab.client, "unshare -m sh -c 'mount -t tmpfs tmpfs /run && mkdir /run/systemd && exec env "
                          + "DBUS_SYSTEM_BUS_ADDRESS=\(bus) \(resolved)'", logName: "resolved")
        let owners = try pollUntil(timeout: 10, { try lab.busctl("list") }, isDone: { $0.contains("org.freedesktop.resolve1") })
        try #require(owners.contains("org.freedesktop.resolve1"), "resolved log:\n\(lab.log("resolved"))")

        let (_, serverNotify) = try lab.startServer(onBus: false)
        try serverNotify.waitFor("READY=1", timeout: 15)
        // A resolver on the server's tunnel address that answers A queries for corp.example's names and logs them.
        try Self.startTunnelResolver(lab)
        // With CAP_NET_ADMIN alone, as the packaged unit runs it: resolved authorises the calls by that capability.
        let (client, clientNotify) = try lab.startClient(privileges: .unitOnly)
        try clientNotify.waitFor("READY=1", timeout: 15)
        let capabilities = try String(contentsOfFile: "/proc/\(client.processIdentifier)/status", encoding: .utf8)
        #expect(capabilities.contains("CapEff:\t0000000000001000"), "the client daemon runs with more than CAP_NET_ADMIN")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")

        let resolvectl = "env DBUS_SYSTEM_BUS_ADDRESS=\(bus) \(Self.unpackedResolved("usr/bin/resolvectl")) --no-pager"
        let status = try pollUntil(timeout: 5, { try lab.exec(lab.client, "\(resolvectl) status tgc0") },
                                   isDone: { $0.contains("DNS Servers") })
        #expect(status.contains("DNS Servers: \(DaemonLab.serverTunnelAddress)"), "\(status)")
        #expect(status.contains("DNS Domain: corp.example ~."), "\(status)")
        #expect(status.contains("+DefaultRoute"), "\(status)")  // systemd 252 shows it among the protocols
        #expect(try lab.busctl("get-property org.triglav /org/triglav org.triglav.Manager1 DNSError") == "s \"\"\n",
                "client log:\n\(lab.log("client"))")

        // The query leaves through the tunnel (the resolver sees the client's tunnel address) and the answer comes back.
        let answer = try lab.exec(lab.client, "\(resolvectl) --legend=no query -4 host.corp.example")
        #expect(answer.contains("192.0.2.77") && answer.contains("link: tgc0"), "\(answer)\nresolved log:\n\(lab.log("resolved"))")
        let queries = Self.resolverQueries(lab)
        #expect(queries.contains("\(DaemonLab.clientTunnelAddress) host.corp.example"), "\(queries)")

        try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(bus)' disconnect")
        let after = try pollUntil(timeout: 5, { try lab.exec(lab.client, "\(resolvectl) status") },
                                  isDone: { !$0.contains(DaemonLab.serverTunnelAddress) })
        #expect(!after.contains(DaemonLab.serverTunnelAddress), "\(after)")
        #expect(!lab.log("client").contains("not reverted"), "client log:\n\(lab.log("client"))")

        // `[dns] resolver = "file"` with resolved running: a reload that sets it moves the link's DNS from resolved into
        // /etc/resolv.conf at once, and lookups through the C library still go through the tunnel.
        try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(bus)' connect lab")
        let linked = try pollUntil(timeout: 10, { try lab.exec(lab.client, "\(resolvectl) status tgc0") },
                                   isDone: { $0.contains("DNS Servers: \(DaemonLab.serverTunnelAddress)") })
        #expect(linked.contains("DNS Servers: \(DaemonLab.serverTunnelAddress)"), "\(linked)")
        try lab.edit("client.toml") { $0 + "\n[dns]\nresolver = \"file\"\n" }
        kill(client.processIdentifier, SIGHUP)
        let path = lab.resolvConfPath(lab.client)
        func file() -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let written = try pollUntil(timeout: 5, file, isDone: { $0.contains("nameserver \(DaemonLab.serverTunnelAddress)") })
        #expect(written.hasPrefix("# Generated by triglavd for the tunnel tgc0"), "\(written)\nclient log:\n\(lab.log("client"))")
        #expect(try lab.busctl("get-property org.triglav /org/triglav org.triglav.Manager1 DNSResolver") == "s \"/etc/resolv.conf\"\n")
        let unlinked = try pollUntil(timeout: 5, { try lab.exec(lab.client, "\(resolvectl) status tgc0") },
                                     isDone: { !$0.contains(DaemonLab.serverTunnelAddress) })
        #expect(!unlinked.contains(DaemonLab.serverTunnelAddress), "resolved kept the link's DNS: \(unlinked)")
        let lookup = "nsenter -t \(client.processIdentifier) -m -n getent ahostsv4 host.corp.example"
        #expect(try lab.sh(lookup).contains("192.0.2.77"), "client log:\n\(lab.log("client"))")
        try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(bus)' disconnect")
        #expect(try pollUntil(timeout: 5, file, isDone: { $0 == DaemonLab.labResolvConf }) == DaemonLab.labResolvConf)
    }

    /// A file of the systemd-resolved package as `make test-deps` unpacks it in .build-deps/ of the package.
    static func unpackedResolved(_ path: String) -> String { unpacked("systemd-resolved/" + path) }

    /// A path under .build-deps/ of the package (found from this file's path), where `make test-deps` unpacks the
    /// Debian packages the DNS tests run (scripts/unpack-deb).
    static func unpacked(_ path: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build-deps/" + path).path
    }

    /// A minimal DNS server: one A record (192.0.2.77) for every name under corp.example, an empty answer for other
    /// types, NXDOMAIN elsewhere; each query is logged as "SOURCE NAME". Runs until killed.
    static let resolverScript = """
        import socket, sys
        address, log = sys.argv[1], sys.argv[2]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 53))
        print("READY")
        while True:
            query, peer = sock.recvfrom(4096)
            if len(query) < 12:
                continue
            labels, offset = [], 12
            while offset < len(query) and query[offset] != 0:
                length = query[offset]
                labels.append(query[offset + 1:offset + 1 + length].decode('ascii', 'replace'))
                offset += 1 + length
            offset += 1
            if offset + 4 > len(query):
                continue
            qtype = int.from_bytes(query[offset:offset + 2], 'big')
            name = '.'.join(labels).lower()
            with open(log, 'a') as f:
                f.write(f"{peer[0]} {name}\\n")
            question = query[12:offset + 4]
            inside = name == 'corp.example' or name.endswith('.corp.example')
            answers = b''
            if inside and qtype == 1:
                answers = b'\\xc0\\x0c' + (1).to_bytes(2, 'big') + (1).to_bytes(2, 'big') + (60).to_bytes(4, 'big') \\
                    + (4).to_bytes(2, 'big') + bytes([192, 0, 2, 77])
            flags = 0x8180 if inside else 0x8183
            header = query[0:2] + flags.to_bytes(2, 'big') + (1).to_bytes(2, 'big') \\
                + (1 if answers else 0).to_bytes(2, 'big') + bytes(4)
            sock.sendto(header + question + answers, peer)
        """
}
