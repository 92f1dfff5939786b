import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// Abuse and lifecycle cases of the data plane in namespaces (docs/DATAPLANE.md, "TCP fallback", "Sockets"):
/// idle TCP connections can't lock clients out of the fallback, an uplink interface deleted and recreated under
/// the same name is used again, and inner source addresses are checked. Root only; nested in the serialized
/// `DataPlaneTunnelTests`, so it never runs beside the other namespace tests.
extension DataPlaneTunnelTests {
    @Suite("robustness")
    struct DataPlaneRobustnessTests {
        /// Opens idle TCP connections to the server from each source address and holds them for `hold` seconds,
        /// paced so the listen backlog never overflows (the kernel would hold those, not the server). With
        /// `reconnect` = 1 it replaces every connection the server closes half a second later, as an attacker
        /// would. Reports `open-after-1s=N` once (a second after the last first connect) and at the end
        /// `opened=N closed=N overdue=N longest=SECONDS`: connections the server closed (EOF or reset), those still
        /// open after more than 7 s, and how long the longest-lived closed one lived.
        static let idleConnections = #"""
            import resource, selectors, socket, sys, time
            server, port, sources, per_source, hold, reconnect = (sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","),
                int(sys.argv[4]), float(sys.argv[5]), sys.argv[6] == "1")
            resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
            selector = selectors.DefaultSelector()
            opened, total = {}, 0
            def open_from(source):
                global total
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((source, 0))
                s.setblocking(False)
                s.connect_ex((server, port))
                opened[s] = (time.monotonic(), source)
                selector.register(s, selectors.EVENT_READ)
                total += 1
                if total % 50 == 0:
                    time.sleep(0.05)
            start = time.monotonic()
            for source in sources:
                for _ in range(per_source):
                    open_from(source)
            connected = time.monotonic()
            closed, longest, reported, pending = 0, 0.0, False, []
            while time.monotonic() - start < hold:
                for key, _ in selector.select(timeout=0.1):
                    s = key.fileobj
                    try:
                        data = s.recv(100)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data == b"":
                        selector.unregister(s)
                        born, source = opened.pop(s)
                        s.close()
                        closed += 1
                        longest = max(longest, time.monotonic() - born)
                        if reconnect:
                            pending.append((time.monotonic() + 0.5, source))
                now = time.monotonic()
                while pending and pending[0][0] <= now:
                    open_from(pending.pop(0)[1])
                if not reported and now - connected >= 1:
                    reported = True
                    print(f"open-after-1s={len(opened)}", flush=True)
                if not reconnect and not opened:
                    break
            overdue = sum(1 for born, _ in opened.values() if time.monotonic() - born > 7)
            print(f"opened={total} closed={closed} overdue={overdue} longest={longest:.1f}", flush=True)
            """#

        /// Writes the idle-connection script, adds 40 junk source addresses on the client's up2 and drops UDP to
        /// the server, so the real client must use the TCP fallback. Returns the script's path and the sources.
        private static func prepareJunkConnections(_ lab: DataPlaneLab) throws -> (script: String, sources: [String]) {
            let script = lab.directory.appendingPathComponent("idle-connections.py").path
            try idleConnections.write(toFile: script, atomically: true, encoding: .utf8)
            let sources = (10..<50).map { "10.201.2.\($0)" }
            for source in sources { try lab.sh("ip -n \(lab.client) address add \(source)/24 dev up2") }
            try lab.blockClientUDP()
            return (script, sources)
        }

        @Test("idle TCP connections from one host can't lock clients out of the fallback: per-source limit, eviction, handshake deadline")
        func idleConnectionsDontLockOutTCPFallback() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            // 40 junk source addresses on up2: enough connections to fill the server's table (1024) without
            // reaching the per-source limit (32), so the table-full eviction is what lets the client in.
            let (script, sources) = try Self.prepareJunkConnections(lab)
            _ = try lab.startServer()

            // One source, 100 connections: only the per-source limit stays open for long.
            _ = try lab.spawn(namespace: lab.client, "/usr/bin/python3 \(script) \(DataPlaneLab.serverAddress) 7443 10.201.2.2 100 25 0",
                              logName: "one-source")
            try lab.waitForOutput("one-source", containing: "open-after-1s=", timeout: 10)
            let oneSource = lab.log("one-source")
            let openAfterOneSecond = Self.value("open-after-1s", in: oneSource)
            #expect(openAfterOneSecond.map { $0 <= 32 } == true, "one source keeps more than 32 idle connections:\n\(oneSource)")

            // 40 sources × 27 = 1080 idle connections (more than the table holds), each replaced when the server closes
            // it; then a real client falls back to TCP.
            _ = try lab.spawn(namespace: lab.client, "/usr/bin/python3 \(script) \(DataPlaneLab.serverAddress) 7443 "
                              + "\(sources.joined(separator: ",")) 27 20 1", logName: "many-sources")
            try lab.waitForOutput("many-sources", containing: "open-after-1s=", timeout: 15)
            _ = try lab.startClient(uplinks: ["up1"])
            let up = lab.waitForTunnel(timeout: 15)
            #expect(up, "no tunnel over TCP while idle connections held the server:\n\(lab.log("client"))\n\(lab.log("many-sources"))")
            #expect(lab.log("client").contains("falling back to TCP"))

            // Every idle connection is closed by the server: beyond the limits at once, the rest at the handshake
            // deadline (5 s after being accepted). The scripts hold theirs for up to 25 and 20 s, longer than the client waits
            // for its tunnel: without the limits the table stays full all that time.
            try lab.waitForOutput("one-source", containing: "opened=", timeout: 30)
            try lab.waitForOutput("many-sources", containing: "opened=", timeout: 30)
            for name in ["one-source", "many-sources"] {
                let text = lab.log(name)
                #expect(Self.value("overdue", in: text) == 0, "idle connections the server didn't close in time (\(name)):\n\(text)")
                #expect(Self.value("longest", in: text).map { $0 <= 8 } == true, "an idle connection lived too long (\(name)):\n\(text)")
            }
            // The client's own connection authenticated and stays: the tunnel still works after the deadline.
            #expect(lab.waitForTunnel(timeout: 5), "the client's fallback connection was closed:\n\(lab.log("client"))")
        }

        @Test("out of file descriptors: the server sizes its table by RLIMIT_NOFILE, frees or refuses instead of spinning, and clients still get in")
        func fallbackUnderDescriptorLimit() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            let (script, sources) = try Self.prepareJunkConnections(lab)
            let server = try lab.startServer()
            let pid = server.processIdentifier
            // Room for ~340 connections; the reconnecting junk fills them.
            try lab.sh("prlimit --pid \(pid) --nofile=400:400")
            _ = try lab.spawn(namespace: lab.client, "/usr/bin/python3 \(script) \(DataPlaneLab.serverAddress) 7443 "
                              + "\(sources.joined(separator: ",")) 27 14 1", logName: "many-sources")
            try lab.waitForOutput("many-sources", containing: "open-after-1s=", timeout: 15)
            // Now far fewer descriptors than connections held: every accept hits EMFILE until connections are freed.
            try lab.sh("prlimit --pid \(pid) --nofile=100:100")
            let before = try cpuTicks(pid: pid)
            Thread.sleep(forTimeInterval: 4)
            let busy = Double(try cpuTicks(pid: pid) - before) / 100 / 4
            _ = try lab.startClient(uplinks: ["up1"])
            let up = lab.waitForTunnel(timeout: 15)
            #expect(up, "no tunnel over TCP while the server was out of descriptors:\n\(lab.log("client"))")
            // A server that leaves connections queued when accept fails spins its network thread (a core's worth).
            #expect(busy < 0.25, "the server used \(Int(busy * 100)) % of a core while out of descriptors")
            print("fallback under a 100-descriptor limit: server CPU \(Int(busy * 100)) % of a core")
        }

        /// User + system CPU time of process `pid` in clock ticks (1/100 s).
        private func cpuTicks(pid: Int32) throws -> Int {
            let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
            // Fields after the command name (which is in parentheses and may contain spaces): utime is the 12th, stime the 13th.
            guard let close = stat.lastIndex(of: ")") else { return 0 }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
            return user + system
        }

        @Test("an authenticated TCP fallback connection that goes silent is closed after the session timeout")
        func silentFallbackConnectionIsClosed() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            try lab.blockClientUDP()
            _ = try lab.startServer(extraArguments: "--session-timeout-s 10")
            let client = try lab.startClient(uplinks: ["up1"])
            #expect(lab.waitForTunnel(timeout: 15), "no tunnel over TCP:\n\(lab.log("client"))")
            let established = "ss -H -t -n state established '( sport = :7443 )'"
            #expect(try lab.exec(lab.server, established).contains("10.201.1.2"))
            // The client freezes (a suspended laptop): its connection stays open but carries nothing. It authenticated,
            // so the 5 s handshake deadline (past after 5 s) doesn't apply; the session timeout (10 s here) does. Margins of
            // 5 s either side: a loaded CI machine stalls the server's 0.5 s timer and these polls.
            kill(client.processIdentifier, SIGSTOP)
            defer { kill(client.processIdentifier, SIGCONT) }
            Thread.sleep(forTimeInterval: 5)
            #expect(try lab.exec(lab.server, established).contains("10.201.1.2"), "closed before the session timeout")
            let deadline = Date().addingTimeInterval(10)
            var open = true
            while open && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.25)
                open = try lab.exec(lab.server, established).contains("10.201.1.2")
            }
            #expect(!open, "the silent client's fallback connection is still open 15 s after it went quiet:\n\(lab.log("server"))")
        }

        @Test("an uplink interface deleted and created again under the same name carries the tunnel again")
        func recreatedUplinkInterfaceIsUsedAgain() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            // Tunnel datagrams the client sends through up2, counted by name (the rule survives the interface's
            // recreation). Not those arriving: the server keeps probing the old session's endpoint, which is the
            // same address, whether or not the client's socket can hear it.
            try lab.exec(lab.client, "nft add table inet tg_dp_count")
            try lab.exec(lab.client, "nft 'add chain inet tg_dp_count output { type filter hook output priority 0; }'")
            try lab.exec(lab.client, "nft add rule inet tg_dp_count output oifname up2 udp dport 7443 counter")
            _ = try lab.startServer()
            _ = try lab.startClient(uplinks: ["up1", "up2"])
            #expect(lab.waitForTunnel(timeout: 10))
            #expect(waitForUp2Packets(lab, moreThan: 20, timeout: 10), "up2 never carried the tunnel:\n\(lab.log("client"))")

            // Delete up2 (its peer dn2 goes with it), then create it again with the same name, address and route.
            try lab.sh("ip -n \(lab.client) link del up2")
            Thread.sleep(forTimeInterval: 1.5)
            try lab.sh("ip link add up2 netns \(lab.client) type veth peer name dn2 netns \(lab.server)")
            try lab.sh("ip -n \(lab.client) address add 10.201.2.2/24 dev up2")
            try lab.sh("ip -n \(lab.server) address add 10.201.2.1/24 dev dn2")
            try lab.sh("ip -n \(lab.client) link set up2 up")
            try lab.sh("ip -n \(lab.server) link set dn2 up")
            try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.2.1 dev up2 metric 2")
            // Probes and probe replies: 20 datagrams to the server take about a second on an established uplink.
            let back = waitForUp2Packets(lab, moreThan: up2Packets(lab) + 20, timeout: 10)
            #expect(back, "the recreated up2 carries no tunnel traffic:\n\(lab.log("client"))")
            #expect(lab.log("client").contains("uplink up2: interface up2 was index")
                    || lab.log("client").contains("uplink up2: sends fail with"), "no socket replacement logged:\n\(lab.log("client"))")
        }

        @Test("a client's inner packets from an address the server didn't assign to it are dropped")
        func spoofedInnerSourceIsDropped() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            _ = try lab.startServer()
            _ = try lab.startClient(uplinks: ["up1"])
            #expect(lab.waitForTunnel(timeout: 10))
            // What reaches the server's TUN, counted by inner source before routing (rp_filter can't interfere).
            try lab.exec(lab.server, "nft add table inet tg_dp_spoof")
            try lab.exec(lab.server, "nft 'add chain inet tg_dp_spoof pre { type filter hook prerouting priority -300; }'")
            try lab.exec(lab.server, "nft add rule inet tg_dp_spoof pre iifname tgs0 ip saddr 10.77.0.99 counter")
            try lab.exec(lab.server, "nft add rule inet tg_dp_spoof pre iifname tgs0 ip saddr \(DataPlaneLab.clientTunnelAddress) counter")
            // The client's TUN gets a second address the server never assigned; pings from it enter the tunnel.
            try lab.sh("ip -n \(lab.client) address add 10.77.0.99/32 dev tgc0")
            _ = try? lab.exec(lab.client, "ping -c5 -i0.2 -W1 -I 10.77.0.99 \(DataPlaneLab.serverTunnelAddress)", timeout: 15)
            try lab.exec(lab.client, "ping -c5 -i0.2 -W2 -I \(DataPlaneLab.clientTunnelAddress) \(DataPlaneLab.serverTunnelAddress)")
            let counters = try lab.exec(lab.server, "nft list table inet tg_dp_spoof")
            let packets = counters.components(separatedBy: "counter packets ").dropFirst().map { Int($0.prefix { $0.isNumber }) ?? -1 }
            #expect(packets.count == 2 && packets[0] == 0, "spoofed packets reached the server's TUN:\n\(counters)")
            // The same path carries the client's own pings (one may be lost on a loaded machine).
            #expect(packets.count == 2 && packets[1] >= 3, "the client's own packets did not arrive:\n\(counters)")
        }

        @Test("running tunnels' UDP sockets have the forced buffer sizes: 4 MiB per uplink, 8 MiB per socket of the server's listener group")
        func socketBuffersInNamespaces() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            _ = try lab.startServer()
            _ = try lab.startClient(uplinks: ["up1", "up2"])
            #expect(lab.waitForTunnel(timeout: 10))
            // rb/tb in `ss -m` are the kernel's sizes, twice the granted ones. rmem_max in these namespaces is 4 MiB, so the
            // listeners' size shows the force worked. The server listens with a group of 8 sockets (docs/DATAPLANE.md,
            // "Isolation of clients flooding valid data").
            let client = try lab.exec(lab.client, "ss -u -a -n -m")
            let server = try lab.exec(lab.server, "ss -u -a -n -m")
            #expect(count(of: "rb\(8 << 20),", in: client) == 2 && count(of: "tb\(8 << 20),", in: client) == 2,
                    "uplink sockets:\n\(client)")
            #expect(count(of: "rb\(16 << 20),", in: server) == 8 && count(of: "tb\(16 << 20),", in: server) == 8,
                    "server listener group:\n\(server)")
        }

        private func count(of needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

        /// Waits until the client's counter of tunnel datagrams sent through up2 exceeds `moreThan`.
        private func waitForUp2Packets(_ lab: DataPlaneLab, moreThan: Int, timeout: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if up2Packets(lab) > moreThan { return true }
                Thread.sleep(forTimeInterval: 0.2)
            }
            return false
        }

        /// The client's counter of tunnel datagrams sent through up2 (0 when unreadable).
        private func up2Packets(_ lab: DataPlaneLab) -> Int {
            let rules = (try? lab.exec(lab.client, "nft list table inet tg_dp_count")) ?? ""
            guard let range = rules.range(of: "counter packets ") else { return 0 }
            return Int(rules[range.upperBound...].prefix { $0.isNumber }) ?? 0
        }

        /// The integer part of `name=VALUE` in `text` (the last occurrence).
        static func value(_ name: String, in text: String) -> Int? {
            guard let range = text.range(of: "\(name)=", options: .backwards) else { return nil }
            let digits = text[range.upperBound...].prefix { $0.isNumber }
            return Int(digits)
        }
    }
}
