import Foundation
import Synchronization
import Testing
import TriglavTestSupport
import TriglavControlAPI
import TriglavDBus

/// Manager1.RoutingError driven with real busctl and the triglav CLI on a private system-like bus, against the
/// bus fixture whose fake controller reports a routing failure (`--routing-error`; SIGHUP ends it).
@Suite("Manager1.RoutingError over a private system-like bus", .serialized)
struct BusRoutingErrorTests {
    static let refusal = "adding route 0.0.0.0/0 dev tg0 table 51820: Operation not permitted (EPERM)"

    @Test func aRoutingFailureIsReadableSignalledAndShownByTheCLI() async throws {
        let environment = try await BusAPIEnvironment(clients: 0, fixtureArguments: ["--routing-error", Self.refusal])
        defer { environment.tearDown() }
        func property(_ name: String) throws -> String {
            let result = try environment.busctl(["get-property", "org.triglav", "/org/triglav", TriglavBus.managerInterface, name])
            #expect(result.status == 0, "\(result)")
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // Disconnected: no tunnel, so no routing error, whatever the data plane would say.
        #expect(try property("RoutingError") == "s \"\"")
        #expect(try property("State") == "s \"disconnected\"")
        #expect(!(try environment.cli(["status"]).stdout.contains("Routing")))

        let connect = try environment.cli(["connect", "home"])
        #expect(connect.status == 0, "\(connect)")
        #expect(try property("RoutingError") == "s \"\(Self.refusal)\"")
        #expect(try property("State") == "s \"degraded\"")
        let status = try environment.cli(["status"])
        #expect(status.status == 0, "\(status)")
        let routingLine = status.stdout.split(separator: "\n").first { $0.hasPrefix("Routing:") }.map(String.init)
        #expect(routingLine?.contains("FAILED") == true && routingLine?.contains(Self.refusal) == true, "\(status.stdout)")
        let json = try environment.cli(["status", "--json"]).stdout
        #expect(json.contains("\"RoutingError\":\"\(Self.refusal)\""), "\(json)")

        let client = try BusConnection(address: environment.address)
        defer { client.close() }
        let changes = Mutex<[(error: String?, state: String?)]>([])
        _ = try await client.subscribe(DBusMatchRule(sender: TriglavBus.name, interface: DBusStandardInterface.properties,
                                                     member: "PropertiesChanged",
                                                     pathNamespace: DBusObjectPath(checked: "/org/triglav"))) { signal in
            guard signal.arguments.first?.stringValue == TriglavBus.managerInterface,
                  let values = signal.arguments[1].stringKeyedDictionary else { return }
            changes.withLock { $0.append((values["RoutingError"]?.stringValue, values["State"]?.stringValue)) }
        }
        environment.fixture.signal(SIGHUP)  // the retry succeeds: addresses and routes applied
        let deadline = ContinuousClock.now + .seconds(15)
        while changes.withLock({ !$0.contains { $0.error != nil } }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let seen = changes.withLock { $0 }
        #expect(seen.contains { $0.error == "" && $0.state == "connected" }, "\(seen)")
        #expect(try property("RoutingError") == "s \"\"")
        #expect(try property("State") == "s \"connected\"")
        #expect(!(try environment.cli(["status"]).stdout.contains("Routing")))
    }
}
