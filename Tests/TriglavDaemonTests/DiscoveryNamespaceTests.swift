import Foundation
import Synchronization
import Testing
import TriglavCore
import TriglavNetlink
@testable import TriglavDaemon

/// A network namespace for one discovery test, deleted on `close()`/deinit even when the test fails.
private final class DiscoveryNamespace: @unchecked Sendable {
    let name = "tg-netlink-disc-\(UInt32.random(in: 0...UInt32.max))"
    private var closed = false

    init() throws {
        try Self.run(["netns", "add", name])
        try batch(["link set lo up"])
    }

    var path: String { "/run/netns/\(name)" }

    /// Runs several `ip` commands in the namespace with one process (`ip -n NS -batch -`).
    func batch(_ commands: [String]) throws {
        try Self.run(["-n", name, "-batch", "-"], input: commands.joined(separator: "\n") + "\n")
    }

    /// `ip ARGUMENTS`' standard output.
    static func output(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    static func run(_ arguments: [String], input: String? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = arguments
        let stdin = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardError = stderr
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw DiscoveryCommandFailed(message: "ip \(arguments.joined(separator: " ")): \(String(decoding: errors, as: UTF8.self))")
        }
    }

    /// One long-lived `ip -n NS -batch -` fed command by command: hundreds of cycles without spawning a
    /// process each (spawns stall for seconds when the whole suite runs in parallel on two cores).
    func startBatchSession() throws -> BatchSession { try BatchSession(namespace: name) }

    final class BatchSession {
        private let process = Process()
        private let input = Pipe()

        init(namespace: String) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = ["-n", namespace, "-force", "-batch", "-"]  // -force: go on after an error, exit non-zero
            process.standardInput = input
            try process.run()
        }

        func send(_ commands: [String]) {
            input.fileHandleForWriting.write(Data((commands.joined(separator: "\n") + "\n").utf8))
        }

        /// Ends the session; the batch's exit status (non-zero when a command failed).
        func finish() -> Int32 {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        _ = try? Self.run(["netns", "delete", name])
    }

    deinit { close() }
}

private struct DiscoveryCommandFailed: Error { let message: String }

private final class DiscoveryRecorder: Sendable {
    private let storage = Mutex<[(ContinuousClock.Instant, DiscoveryEvent)]>([])
    func record(_ event: DiscoveryEvent) { storage.withLock { $0.append((.now, event)) } }
    var events: [DiscoveryEvent] { storage.withLock { $0.map(\.1) } }

    /// Waits (polling every 2 ms, at most `timeout`) for an event matching `predicate` after position
    /// `from`; returns when it arrived.
    func waitFor(after from: Int = 0, timeout: Duration = .seconds(15),
                 _ predicate: (DiscoveryEvent) -> Bool) -> ContinuousClock.Instant? {
        let deadline = ContinuousClock.now + timeout
        repeat {
            if let hit = storage.withLock({ $0.dropFirst(from).first { predicate($0.1) }?.0 }) { return hit }
            Thread.sleep(forTimeInterval: 0.002)
        } while ContinuousClock.now < deadline
        return nil
    }

    var count: Int { storage.withLock { $0.count } }
}

@Suite("Uplink discovery in a namespace", .enabled(if: getuid() == 0, "needs root to create network namespaces"))
struct DiscoveryNamespaceTests {
    private func isAdded(_ name: String) -> (DiscoveryEvent) -> Bool {
        { if case .added(let uplink) = $0 { uplink.name == name } else { false } }
    }

    private func isRemoved(_ name: String) -> (DiscoveryEvent) -> Bool {
        { if case .removed(let uplink) = $0 { uplink.name == name } else { false } }
    }

    @Test func vethWithAddressBecomesAnUplinkWithinOneSecond() throws {
        let ns = try DiscoveryNamespace()
        defer { ns.close() }
        let recorder = DiscoveryRecorder()
        let service = UplinkDiscoveryService(policy: DiscoveryPolicy(virtualInterfaces: ["tgd*"]),
                                             networkNamespacePath: ns.path)
        try service.start { recorder.record($0) }
        defer { service.stop() }
        #expect(recorder.waitFor { $0 == .synchronized } != nil)

        let start = ContinuousClock.now
        try ns.batch(["link add name tgd0 type veth peer name tgp0", "link set tgp0 up",
                      "address add 10.99.0.1/24 dev tgd0", "link set tgd0 up"])
        let added = try #require(recorder.waitFor(isAdded("tgd0")), "\(recorder.events)")
        #expect(added - start < .seconds(1))
        let uplink = try #require(service.uplinks.first)
        #expect(uplink.localAddresses.map(\.description) == ["10.99.0.1"])
        #expect(uplink.kind == .ethernet)
        #expect(service.uplinks.count == 1)  // the peer has no address: not an uplink

        let mark = recorder.count
        let removing = ContinuousClock.now
        try ns.batch(["link del tgd0"])
        let removed = try #require(recorder.waitFor(after: mark, isRemoved("tgd0")), "\(recorder.events)")
        #expect(removed - removing < .seconds(1))
        #expect(service.uplinks.isEmpty)
    }

    @Test func asyncSequenceDeliversAndEndsOnStop() async throws {
        let ns = try DiscoveryNamespace()
        defer { ns.close() }
        let service = UplinkDiscoveryService(policy: DiscoveryPolicy(virtualInterfaces: ["tgd*"]),
                                             networkNamespacePath: ns.path)
        let stream = try service.events()
        try ns.batch(["link add name tgd0 type veth peer name tgp0", "link set tgp0 up",
                      "address add 10.99.0.1/24 dev tgd0", "link set tgd0 up"])
        let consumer = Task {
            var seen: [DiscoveryEvent] = []
            for await event in stream { seen.append(event) }
            return seen
        }
        let deadline = ContinuousClock.now + .seconds(15)
        while service.uplinks.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        service.stop()
        let seen = await consumer.value
        #expect(seen.contains(.synchronized))
        // What the namespace had, for an intermittent miss seen once in CI under load (2026-11-29).
        let links = (try? DiscoveryNamespace.output(["-n", ns.name, "-br", "address"])) ?? "?"
        #expect(seen.contains { if case .added(let uplink) = $0 { uplink.name == "tgd0" } else { false } },
                "events: \(seen); namespace: \(links)")
    }

    @Test func vethsAreSkippedByDefault() throws {
        let ns = try DiscoveryNamespace()
        defer { ns.close() }
        let recorder = DiscoveryRecorder()
        let service = UplinkDiscoveryService(policy: DiscoveryPolicy(), networkNamespacePath: ns.path)
        try service.start { recorder.record($0) }
        defer { service.stop() }
        try ns.batch(["link add name tgd0 type veth peer name tgp0", "link set tgp0 up",
                      "address add 10.99.0.1/24 dev tgd0", "link set tgd0 up"])
        #expect(recorder.waitFor(timeout: .milliseconds(300), isAdded("tgd0")) == nil)
        // ...until a config reload allows them.
        service.updatePolicy(DiscoveryPolicy(virtualInterfaces: ["tgd0"]))
        #expect(recorder.waitFor(isAdded("tgd0")) != nil)
    }

    @Test func twoHundredAddRemoveCyclesLeaveNothingBehind() throws {
        let ns = try DiscoveryNamespace()
        defer { ns.close() }
        let recorder = DiscoveryRecorder()
        let service = UplinkDiscoveryService(policy: DiscoveryPolicy(virtualInterfaces: ["tgd*"]),
                                             networkNamespacePath: ns.path)
        try service.start { recorder.record($0) }
        defer { service.stop() }
        #expect(recorder.waitFor { $0 == .synchronized } != nil)
        let baseline = service.trackedInterfaceCount  // lo
        let ip = try ns.startBatchSession()
        let deadline = ContinuousClock.now + .seconds(120)
        for cycle in 0..<200 where ContinuousClock.now < deadline {
            var mark = recorder.count
            ip.send(["link add name tgd0 type veth peer name tgp0", "link set tgp0 up",
                     "address add 10.99.\(cycle % 250).1/24 dev tgd0", "link set tgd0 up"])
            guard recorder.waitFor(after: mark, isAdded("tgd0")) != nil else {
                Issue.record("cycle \(cycle): no uplink appeared")
                break
            }
            mark = recorder.count
            ip.send(["link del tgd0"])
            guard recorder.waitFor(after: mark, isRemoved("tgd0")) != nil else {
                Issue.record("cycle \(cycle): the uplink was not removed")
                break
            }
        }
        #expect(ip.finish() == 0, "an ip command of the cycles failed")
        #expect(recorder.events.filter { if case .added = $0 { true } else { false } }.count == 200)
        #expect(service.uplinks.isEmpty)
        #expect(service.trackedInterfaceCount == baseline)
    }
}
