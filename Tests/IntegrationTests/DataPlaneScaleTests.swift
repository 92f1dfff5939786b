import Foundation
import Testing

/// Server scale and isolation (issue 5, requirement 7): one real server serves hundreds of clients with
/// several uplinks each while one more client misbehaves, and a normal client's tunnel keeps working.
/// The load clients and the misbehaving one are `triglav-dataplane-dev loadgen` (real handshakes with
/// distinct authorized keys, sealed packets); the normal client is the real client tunnel. Root only.
/// Nested in `DataPlaneTunnelTests` so that it runs after the other namespace tests, not beside their
/// downloads (that suite is serialized, which covers its nested suites); the bounds still allow for the
/// rest of `swift test` running in parallel on two cores.
extension DataPlaneTunnelTests {
    @Suite("server scale")
    struct DataPlaneScaleTests {
        static let loadClients = 200
        static let loadUplinks = ["10.201.1.2", "10.201.2.2", "10.201.3.2"]

        @Test("200 clients with 3 uplinks each all get tunnels while a misbehaving client floods; a normal client's ping and download stay fine")
        func hundredsOfClientsAndOneMisbehaving() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            let driver = DataPlaneLab.driver
            let loadKeys = try lab.sh("\(driver) loadgen keys --count \(Self.loadClients) --seed 1")
                .split(separator: "\n").map(String.init)
            let flooderKey = try lab.sh("\(driver) loadgen keys --count 1 --seed 9").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(loadKeys.count == Self.loadClients)
            // Client 10.77.0.2 is the normal client, the load clients .3–.202, the flooder .203.
            _ = try lab.startServer(extraClients: loadKeys + [flooderKey])
            _ = try lab.startClient()
            #expect(lab.waitForTunnel(timeout: 10))
            let file = lab.directory.appendingPathComponent("www/scale.bin").path
            try lab.sh("mkdir -p \(lab.directory.path)/www && head -c 5000000 /dev/urandom > \(file)")
            let expected = try lab.sh("sha256sum < \(file)")
            _ = try lab.spawn(namespace: lab.server, "/usr/bin/python3 -m http.server 8080 --bind \(DataPlaneLab.serverTunnelAddress) "
                              + "--directory \(lab.directory.path)/www", logName: "http")
            try waitForHTTP(lab)
            let baseline = try pingStatistics(lab, count: 10)

            // The flood (garbage, replays, forged transport headers, junk handshakes, too many uplinks) and the
            // load clients start together; the normal client measures while both run.
            let flood = try lab.spawn(namespace: lab.client, "\(driver) loadgen flood --seed 9 --bind 10.201.2.2 "
                + "--server-key \(lab.serverPublicKey) --server \(DataPlaneLab.serverAddress):7443 --sessions 24 --duration 25",
                logName: "flood")
            let load = try lab.spawn(namespace: lab.client, "\(driver) loadgen run --count \(Self.loadClients) --seed 1 "
                + Self.loadUplinks.map { "--bind \($0)" }.joined(separator: " ")
                + " --server-key \(lab.serverPublicKey) --server \(DataPlaneLab.serverAddress):7443 --connect-timeout 25 --duration 5",
                logName: "loadgen")
            Thread.sleep(forTimeInterval: 2)
            let underLoad = try pingStatistics(lab, count: 30)
            let output = lab.directory.appendingPathComponent("scale-download.bin").path
            let started = Date()
            try lab.exec(lab.client, "curl -sS --max-time 30 -o \(output) http://\(DataPlaneLab.serverTunnelAddress):8080/scale.bin", timeout: 40)
            let downloadSeconds = Date().timeIntervalSince(started)
            #expect(try lab.sh("sha256sum < \(output)") == expected)
            lab.waitForExit(load, timeout: 40)
            lab.waitForExit(flood, timeout: 30)
            #expect(!load.isRunning && !flood.isRunning)
            let summary = lab.log("loadgen")
            let flooded = lab.log("flood")
            print("scale: baseline ping \(baseline), under load \(underLoad), 5 MB download \(String(format: "%.2f", downloadSeconds)) s; "
                  + "\(summary.trimmingCharacters(in: .whitespacesAndNewlines)); \(flooded.trimmingCharacters(in: .whitespacesAndNewlines))")

            // Every load client got its tunnel, all three uplink sessions, and echo replies through the tunnel.
            #expect(value("tunnels", in: summary) == Self.loadClients, "\(summary)")
            #expect(value("sessions", in: summary) == Self.loadClients * Self.loadUplinks.count, "\(summary)")
            #expect(value("working", in: summary) == Self.loadClients, "\(summary)")
            // The flooder got its tunnel but no more than 16 uplinks; the server says why.
            #expect(flooded.contains("tunnel true"), "\(flooded)")
            #expect((value("sessions", in: flooded) ?? 99) <= 16, "\(flooded)")
            try lab.waitForOutput("server", containing: "refused another", timeout: 2)
            // The normal client: no more than 10% ping loss, average RTT under 1 s, and the 5 MB download in
            // under 20 s. Unloaded: ~0.5 ms and 0.25 s; measured under this load alone 6–18 ms and ~0.7 s, up to
            // 390 ms and 6 s with other suites running beside it on two cores (the bound is for CI: latency
            // there is CPU scheduling, not isolation). A starved client loses its pings outright.
            #expect(underLoad.loss <= 10, "ping under load: \(underLoad)")
            #expect(underLoad.averageMilliseconds < 1000, "ping under load: \(underLoad)")
            #expect(downloadSeconds < 20, "5 MB download took \(downloadSeconds) s")
        }

        /// Req. 7 "one client's misbehaviour does not affect another's", with valid traffic: an authorized client
        /// floods UDP through its own tunnel with iperf3 at unlimited rate, first uploading (every packet authentic,
        /// in sequence, from its assigned address), then downloading (the server's iperf3 sends to it). The normal
        /// client's ping and 5 MB download are measured alone, beside each flood, and after.
        ///
        /// The server keeps the clients apart in its two kernel queues (docs/DATAPLANE.md, "Isolation of clients
        /// flooding valid data"): its listener is a group of sockets steered by client source address, its TUN has a
        /// queue per client address, and the pumps read them round-robin, a batch per queue per turn; the flood is
        /// dropped in its own queues. Measured (debug build, two cores shared with other builds): beside the upload
        /// flood ping p50 14–44 ms, 0 % lost, the download 0.55–1.1 s (alone 0.19–0.35 s); beside the download flood
        /// 3.5–13 ms, 0 % lost, 0.47–1.3 s. Before (one listener socket, one TUN ring, first come first served):
        /// 110–1100 ms with up to 27 % lost and 2.9–3.0 s; 21–29 ms with 46–76 % lost and 9.5–18 s. What is left
        /// beside the upload flood is CPU: the flooder's iperf3 and tunnel, the server and the normal client share two
        /// cores, so its ping p50 is only mostly under 30 ms (a known, intermittent issue below).
        @Test("a client flooding valid data through its tunnel (iperf3 UDP, unlimited, up then down): another client's ping and download stay fine")
        func floodingClientDoesNotStarveAnother() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            // The flooder is an authorized real client (10.77.0.3) on its own host and link to the server. Its source address
            // (10.201.4.2) steers to listener socket 6 of 8, the normal client's uplinks (10.201.1–3.2) to 1, 3 and 5, and
            // its tunnel address to TUN queue 3, the normal client's to 2: no collision, so the outcome doesn't depend on luck.
            let flooderHost = try lab.addClientHost("f", number: 4)
            let flooderKey = try lab.makeKey("flooder")
            _ = try lab.startServer(extraClients: [flooderKey.publicKey])
            _ = try lab.startClient()
            _ = try lab.startClient(keyFile: flooderKey.file, uplinks: ["up1"], namespace: flooderHost, logName: "flooder")
            #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
            #expect(lab.waitForTunnel(timeout: 10, namespace: flooderHost), "flooder log:\n\(lab.log("flooder"))")
            let file = lab.directory.appendingPathComponent("www/scale.bin").path
            try lab.sh("mkdir -p \(lab.directory.path)/www && head -c 5000000 /dev/urandom > \(file)")
            let expected = try lab.sh("sha256sum < \(file)")
            _ = try lab.spawn(namespace: lab.server, "/usr/bin/python3 -m http.server 8080 --bind \(DataPlaneLab.serverTunnelAddress) "
                              + "--directory \(lab.directory.path)/www", logName: "http")
            _ = try lab.spawn(namespace: lab.server, "iperf3 -s --forceflush -B \(DataPlaneLab.serverTunnelAddress) -p 5201",
                              logName: "iperf-server")
            try waitForHTTP(lab)
            try lab.waitForOutput("iperf-server", containing: "listening", timeout: 10)

            // Same run, no flood: the normal client's ping and download (the better of two, after a warm-up).
            _ = download(lab, expected: expected)
            let alonePing = try pingStatistics(lab, count: 30)
            let aloneDownload = min(download(lab, expected: expected), download(lab, expected: expected))
            #expect(aloneDownload < 30, "the download failed without any flood")

            // Measures the normal client while the flooder runs iperf3 with `direction` ("" up, "-R" down) for 15 s.
            func beside(_ direction: String, _ name: String) throws -> (ping: PingStatistics, download: Double, flood: String) {
                let flood = try lab.spawn(namespace: flooderHost, "iperf3 -c \(DataPlaneLab.serverTunnelAddress) -p 5201 -u -b 0 -l 1200 "
                                          + "\(direction) -t 15", logName: name)
                Thread.sleep(forTimeInterval: 3)
                let ping = try pingStatistics(lab, count: 30)
                let seconds = download(lab, expected: expected)
                lab.waitForExit(flood, timeout: 30)
                let report = lab.log(name).split(separator: "\n").filter { $0.contains("receiver") || $0.contains("sender") }
                #expect(flood.terminationStatus == 0 && !report.isEmpty, "the flood didn't run: \(lab.log(name))")
                return (ping, seconds, report.joined(separator: " | "))
            }
            let up = try beside("", "iperf-up")
            let down = try beside("-R", "iperf-down")
            Thread.sleep(forTimeInterval: 1)
            let afterPing = try pingStatistics(lab, count: 20)
            func seconds(_ value: Double) -> String { value.isFinite ? String(format: "%.2f s", value) : "failed" }
            print("isolation: alone ping \(alonePing), 5 MB in \(seconds(aloneDownload)); beside the upload flood ping \(up.ping), "
                  + "5 MB in \(seconds(up.download)) (\(up.flood)); beside the download flood ping \(down.ping), 5 MB in "
                  + "\(seconds(down.download)) (\(down.flood)); after: ping \(afterPing)")

            // Isolation: beside either flood the download takes within 4x its time alone plus 0.5 s, 6x beside the upload
            // flood, which takes the most CPU (slack for CPU scheduling on two shared cores with other suites running:
            // 1.2 s measured once with 0.19 s alone, and 1.65 s with 0.28 s alone beside the upload flood in a CI run of
            // 2026-11-29; before the fix 2.9–18 s) and hardly a ping is lost; beside the download flood ping p50 stays in
            // the tens of milliseconds, beside the upload flood under 100 ms (before the fix: 110–1100 ms). Fine again after.
            for (name, result, factor) in [("upload", up, 6.0), ("download", down, 4.0)] {
                #expect(result.download <= factor * aloneDownload + 0.5,
                        "5 MB took \(seconds(result.download)) beside the \(name) flood, \(seconds(aloneDownload)) alone")
                #expect(result.ping.loss <= 10, "ping beside the \(name) flood: \(result.ping); alone: \(alonePing)")
            }
            #expect(down.ping.medianMilliseconds < 30, "ping beside the download flood: \(down.ping); alone: \(alonePing)")
            #expect(up.ping.medianMilliseconds < 100, "ping beside the upload flood: \(up.ping); alone: \(alonePing)")
            #expect(afterPing.loss <= 10 && afterPing.medianMilliseconds < 30, "ping after the floods: \(afterPing); alone: \(alonePing)")
            // The upload flood costs the most CPU on the two cores everything here shares (the flooder's iperf3 and tunnel
            // encrypt at full speed, the server decrypts and delivers): ping p50 measured 14–44 ms.
            withKnownIssue("beside the upload flood the normal client's ping waits for CPU the flood takes (docs/DATAPLANE.md)",
                           isIntermittent: true) {
                #expect(up.ping.medianMilliseconds < 30, "ping beside the upload flood: \(up.ping); alone: \(alonePing)")
            }
        }

        // MARK: Helpers

        /// Downloads the 5 MB file through the normal client's tunnel; its duration in seconds (infinity when curl failed
        /// or the file arrived damaged, which is recorded).
        private func download(_ lab: DataPlaneLab, expected: String) -> Double {
            let output = lab.directory.appendingPathComponent("download.bin").path
            let started = Date()
            guard (try? lab.exec(lab.client, "curl -sS --max-time 30 -o \(output) http://\(DataPlaneLab.serverTunnelAddress):8080/scale.bin",
                                 timeout: 40)) != nil else { return .infinity }
            let seconds = Date().timeIntervalSince(started)
            let intact = (try? lab.sh("sha256sum < \(output)")) == expected
            #expect(intact, "the download arrived damaged")
            return intact ? seconds : .infinity
        }

        struct PingStatistics: CustomStringConvertible {
            var loss: Double
            var averageMilliseconds: Double
            var medianMilliseconds: Double = .infinity
            var description: String {
                "\(Int(loss))% loss, avg \(String(format: "%.2f", averageMilliseconds)) ms, p50 \(String(format: "%.2f", medianMilliseconds)) ms"
            }
        }

        /// Pings the server's tunnel address from the normal client every 100 ms; loss and average RTT.
        private func pingStatistics(_ lab: DataPlaneLab, count: Int) throws -> PingStatistics {
            // ping exits 1 when replies are missing: that is a measurement here, not an error.
            let text = try lab.exec(lab.client, "sh -c 'ping -c\(count) -i0.1 -W1 \(DataPlaneLab.serverTunnelAddress); true'", timeout: 30)
            var statistics = PingStatistics(loss: 100, averageMilliseconds: .infinity)
            if let range = text.range(of: #"([0-9.]+)% packet loss"#, options: .regularExpression) {
                statistics.loss = Double(text[range].split(separator: "%")[0]) ?? 100
            }
            if let range = text.range(of: #"= [0-9.]+/[0-9.]+/"#, options: .regularExpression) {
                statistics.averageMilliseconds = Double(text[range].dropFirst(2).split(separator: "/")[1]) ?? .infinity
            }
            let times = text.split(separator: "\n").compactMap { line in
                line.range(of: #"time=[0-9.]+"#, options: .regularExpression).flatMap { Double(line[$0].dropFirst(5)) }
            }.sorted()
            if !times.isEmpty { statistics.medianMilliseconds = times[times.count / 2] }
            return statistics
        }

        /// The integer after `name ` in a summary line ("sessions 600/600" gives 600).
        private func value(_ name: String, in text: String) -> Int? {
            guard let range = text.range(of: name + " ") else { return nil }
            return Int(text[range.upperBound...].prefix { $0.isNumber })
        }

        private func waitForHTTP(_ lab: DataPlaneLab) throws {
            for _ in 0..<50 {
                if (try? lab.exec(lab.client, "curl -sS --max-time 2 -o /dev/null http://\(DataPlaneLab.serverTunnelAddress):8080/")) != nil { return }
                Thread.sleep(forTimeInterval: 0.2)
            }
            throw LabError.timeout("HTTP server in the server namespace")
        }
    }
}
