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
            // The normal client: no more than 10% ping loss, average RTT under 150 ms, and the 5 MB download in
            // under 20 s. Unloaded: ~0.5 ms and 0.25 s; measured under this load alone 6–18 ms and ~0.7 s, up to
            // 55 ms and 6 s with other suites running beside it. A starved client loses its pings outright.
            #expect(underLoad.loss <= 10, "ping under load: \(underLoad)")
            #expect(underLoad.averageMilliseconds < 150, "ping under load: \(underLoad)")
            #expect(downloadSeconds < 20, "5 MB download took \(downloadSeconds) s")
        }

        // MARK: Helpers

        struct PingStatistics: CustomStringConvertible {
            var loss: Double
            var averageMilliseconds: Double
            var description: String { "\(Int(loss))% loss, avg \(String(format: "%.2f", averageMilliseconds)) ms" }
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
