import Foundation
import Testing
import TriglavTestSupport
import TriglavControlAPI
import TriglavDBus

/// The daemon side must answer every call, however wrong, and must not grow with object churn.
@Suite("org.triglav robustness", .serialized)
struct BusRobustnessTests {
    /// SplitMix64: reproducible pseudo-random input.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func randomValue(_ random: inout Generator, depth: Int = 0) -> DBusValue {
        let strings = ["", "home", "eth0", "wlan0", "tier", "scheduler", "metered", "server", "../x", "a/b", "žž", "primary", "bogus"]
        switch Int.random(in: 0..<(depth < 2 ? 12 : 8), using: &random) {
        case 0: return .string(strings.randomElement(using: &random) ?? "")
        case 1: return .boolean(Bool.random(using: &random))
        case 2: return .uint32(UInt32.random(in: 0...UInt32.max, using: &random))
        case 3: return .int64(Int64.random(in: Int64.min...Int64.max, using: &random))
        case 4: return .double(Double.random(in: -1e9...1e9, using: &random))
        case 5: return .objectPath(DBusObjectPath(checked: ["/", "/org/triglav", "/org/triglav/uplink/1", "/org/triglav/client/9"]
            .randomElement(using: &random) ?? "/"))
        case 6: return .byte(UInt8.random(in: 0...255, using: &random))
        case 7: return .uint64(UInt64.random(in: 0...UInt64.max, using: &random))
        case 8:
            let pairs = (0..<Int.random(in: 0...3, using: &random)).map { _ in
                (strings.randomElement(using: &random) ?? "", randomValue(&random, depth: depth + 1))
            }
            var unique: [String: DBusValue] = [:]
            for (key, value) in pairs { unique[key] = value }
            return .vardict(unique)
        case 9: return .variant(randomValue(&random, depth: depth + 1))
        case 10: return .structure([randomValue(&random, depth: depth + 1), randomValue(&random, depth: depth + 1)])
        default: return .stringArray((0..<Int.random(in: 0...3, using: &random)).map { _ in strings.randomElement(using: &random) ?? "" })
        }
    }

    @Test func everyRandomCallIsAnsweredAndTheDaemonSurvives() async throws {
        let environment = try await BusAPIEnvironment(clients: 1)
        defer { environment.tearDown() }
        let client = try BusConnection(address: environment.address)
        defer { client.close() }
        let targets: [(path: String, interface: String, members: [String])] = [
            ("/org/triglav", TriglavBus.managerInterface, ["Connect", "Disconnect", "AddUplink", "RemoveUplink", "Reload", "Nope"]),
            ("/org/triglav", TriglavBus.serverInterface, ["DisconnectClient", "Nope"]),
            ("/org/triglav", DBusStandardInterface.properties, ["Get", "GetAll", "Set", "Nope"]),
            ("/org/triglav/uplink/1", DBusStandardInterface.properties, ["Get", "GetAll", "Set"]),
            ("/org/triglav/uplink/1", TriglavBus.uplinkInterface, ["Nope"]),
            ("/org/triglav", DBusStandardInterface.objectManager, ["GetManagedObjects"]),
            ("/org/triglav/nothing", TriglavBus.managerInterface, ["Connect"]),
            ("/", DBusStandardInterface.introspectable, ["Introspect"]),
        ]
        var random = Generator(state: 0x7269_676C_6176)
        var calls: [(DBusObjectPath, String, String, [DBusValue])] = []
        for _ in 0..<400 {
            let target = targets.randomElement(using: &random) ?? targets[0]
            let arguments = (0..<Int.random(in: 0...3, using: &random)).map { _ in Self.randomValue(&random) }
            calls.append((DBusObjectPath(checked: target.path), target.interface,
                          target.members.randomElement(using: &random) ?? "Nope", arguments))
        }
        let outcomes = await withTaskGroup(of: String?.self) { group -> [String] in
            for (index, call) in calls.enumerated() {
                if index >= 16 { _ = await group.next() }
                group.addTask {
                    do throws(TriglavDBusError) {
                        _ = try await client.call(destination: TriglavBus.name, path: call.0, interface: call.1, member: call.2,
                                                  arguments: call.3, timeout: .seconds(10))
                        return nil
                    } catch {
                        if case .remote(let name, _) = error {
                            // Errors from the bus itself (the daemon gone) don't count as answers.
                            return name.hasPrefix("org.freedesktop.DBus.Error.ServiceUnknown") ? "daemon gone: \(name)" : nil
                        }
                        return "\(call.1).\(call.2)\(call.3): \(error)"
                    }
                }
            }
            var failures: [String] = []
            for await outcome in group { if let outcome { failures.append(outcome) } }
            return failures
        }
        #expect(outcomes.isEmpty, "calls without an answer: \(outcomes.prefix(5))")
        _ = try await client.call(destination: TriglavBus.name, path: DBusObjectPath(checked: "/org/triglav"),
                                  interface: DBusStandardInterface.peer, member: "Ping")
        #expect(kill(environment.fixture.pid, 0) == 0, "the fixture died")
    }

    static func residentKilobytes(_ pid: pid_t) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    @Test func uplinkChurnLeavesNoObjectsAndFlatMemory() async throws {
        let environment = try await BusAPIEnvironment(clients: 0)
        defer { environment.tearDown() }
        let client = try BusConnection(address: environment.address)
        defer { client.close() }
        let root = DBusObjectPath(checked: TriglavBus.managerPath)
        func cycle() async throws {
            let reply = try await client.call(destination: TriglavBus.name, path: root, interface: TriglavBus.managerInterface,
                                              member: "AddUplink", arguments: [.string("usb0"), .vardict([:])])
            let path = try #require(reply.first?.objectPathValue)
            _ = try await client.call(destination: TriglavBus.name, path: root, interface: TriglavBus.managerInterface,
                                      member: "RemoveUplink", arguments: [.objectPath(path)])
        }
        for _ in 0..<50 { try await cycle() }
        let before = Self.residentKilobytes(environment.fixture.pid)
        for _ in 0..<200 { try await cycle() }
        let after = Self.residentKilobytes(environment.fixture.pid)
        let objects = try await client.managedObjects(destination: TriglavBus.name, path: root)
        #expect(objects.count == 2, "leftover objects: \(objects.keys.sorted())")
        let uplinks = try await client.getProperty(destination: TriglavBus.name, path: root, interface: TriglavBus.managerInterface,
                                                   name: "Uplinks")
        #expect(uplinks.arrayValue?.count == 2)
        #expect(before > 0 && after - before < 2048, "RSS grew from \(before) kB to \(after) kB over 200 cycles")
    }
}
