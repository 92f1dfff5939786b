import Foundation
import Synchronization
import Testing
import TriglavTestSupport
@testable import TriglavDBus

/// Collects signals delivered on the loop thread and lets a test wait for one (bounded).
final class SignalRecorder: Sendable {
    private let signals = Mutex<[DBusSignal]>([])

    func record(_ signal: DBusSignal) { signals.withLock { $0.append(signal) } }

    var all: [DBusSignal] { signals.withLock { $0 } }

    // Generous: it returns as soon as the predicate holds; only a failure waits this long.
    func wait(timeout: Duration = .seconds(10), until predicate: ([DBusSignal]) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if predicate(all) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return predicate(all)
    }
}

/// A service object used by the tests: Echo(v)→v, Fail()→error, Slow()→reply after 100 ms,
/// Never() never replies (but keeps the call), Drop() discards the call; properties Name (rw), Counter (coalesced).
final class TestService: Sendable {
    let heldCalls = Mutex<[DBusMethodCall]>([])
    let objectBox = Mutex<DBusExportedObject?>(nil)

    func interface() -> DBusInterface {
        DBusInterface(
            name: "org.example.Test1",
            methods: [
                DBusMethod("Echo", in: [DBusArgument("value", "v")], out: [DBusArgument("value", "v")]) { call in
                    call.reply([call.arguments[0]])
                },
                DBusMethod("Add", in: [DBusArgument("a", "i"), DBusArgument("b", "i")], out: [DBusArgument("sum", "x")]) { call in
                    guard case .int32(let a) = call.arguments[0], case .int32(let b) = call.arguments[1] else { return }
                    call.reply([.int64(Int64(a) + Int64(b))])
                },
                DBusMethod("Fail") { call in
                    call.replyError(name: "org.example.Error.Nope", message: "nope, by design")
                },
                DBusMethod("Slow", out: [DBusArgument("text", "s")]) { call in
                    Task {
                        try? await Task.sleep(for: .milliseconds(100))
                        call.reply([.string("late")])
                    }
                },
                DBusMethod("Never") { [self] call in self.heldCalls.withLock { $0.append(call) } },
                DBusMethod("Drop") { _ in },
                DBusMethod("WrongReply", out: [DBusArgument("n", "u")]) { call in call.reply([.string("not a u")]) },
            ],
            properties: [
                DBusProperty("Name", "s", access: .readWrite, initialValue: .string("initial")) { [self] value, call in
                    guard value.stringValue != "forbidden" else {
                        return call.replyError(name: "org.example.Error.Invalid", message: "that name is forbidden")
                    }
                    try? self.objectBox.withLock { $0 }?.setProperties(["Name": value], interface: "org.example.Test1")
                    call.reply()
                },
                DBusProperty("Counter", "t", emission: .coalesced(minimumInterval: .milliseconds(300)), initialValue: .uint64(0)),
                DBusProperty("Items", "as", initialValue: .stringArray([])),
            ],
            signals: [DBusSignalDescription("Poked", [DBusArgument("count", "u")])]
        )
    }
}

struct Fixture {
    let bus: PrivateBus
    let server: BusConnection
    let client: BusConnection
    let service = TestService()
    let object: DBusExportedObject
    static let path = DBusObjectPath(checked: "/org/example/things/one")
    static let root = DBusObjectPath(checked: "/org/example")

    init() async throws {
        bus = try PrivateBus()
        server = try BusConnection(address: bus.address)
        client = try BusConnection(address: bus.address)
        server.addObjectManager(at: Fixture.root)
        object = try server.export(Fixture.path, interfaces: [service.interface()])
        service.objectBox.withLock { $0 = object }
        try await server.requestName("org.example.Test")
    }

    func call(_ member: String, _ arguments: [DBusValue] = [], path: DBusObjectPath = Fixture.path,
              interface: String = "org.example.Test1", timeout: Duration = BusConnection.defaultTimeout) async throws(TriglavDBusError) -> [DBusValue] {
        try await client.call(destination: "org.example.Test", path: path, interface: interface, member: member,
                              arguments: arguments, timeout: timeout)
    }

    func tearDown() {
        client.close()
        server.close()
        bus.stop()
    }
}

@Suite("BusConnection on a private bus", .serialized)
struct BusConnectionTests {
    static let samples: [DBusValue] = [
        .byte(255), .boolean(true), .boolean(false), .int16(-5), .uint16(65535), .int32(Int32.min), .uint32(UInt32.max),
        .int64(Int64.min), .uint64(UInt64.max), .double(-0.25), .string(""), .string("žličnik ☃"),
        .objectPath(DBusObjectPath(checked: "/a/b_c/9")), .signature("a{sv}"),
        .array(elementSignature: "s", []), .stringArray(["x", "y"]),
        .objectPathArray([DBusObjectPath(checked: "/x"), .root]),
        .vardict(["rtt": .uint64(42), "name": .string("wlan0"), "nested": .vardict(["b": .boolean(true)])]),
        .dictionary(keySignature: "o", valueSignature: "a{sv}", []),
        .structure([.int32(1), .string("two"), .array(elementSignature: "(ii)", [.structure([.int32(3), .int32(4)])])]),
        .variant(.variant(.uint32(7))),
        .array(elementSignature: "ay", [.array(elementSignature: "y", [.byte(0), .byte(1)])]),
    ]

    @Test("values survive a round trip through the bus unchanged", arguments: samples)
    func roundTrip(value: DBusValue) async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        let reply = try await fixture.call("Echo", [.variant(value)])
        #expect(reply == [.variant(value)])
    }

    @Test func typedMethodAndAsyncReply() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        #expect(try await fixture.call("Add", [.int32(40), .int32(2)]) == [.int64(42)])
        #expect(try await fixture.call("Slow") == [.string("late")])
    }

    @Test func invalidValuesAreRejectedBeforeSending() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        await #expect(throws: TriglavDBusError.self) { try await fixture.call("Echo", [.variant(.string("a\0b"))]) }
        await #expect(throws: TriglavDBusError.self) {
            try await fixture.call("Echo", [.variant(.array(elementSignature: "s", [.uint32(1)]))])
        }
        await #expect(throws: TriglavDBusError.invalidName("not a name")) {
            try await fixture.client.call(destination: "not a name", path: .root, interface: "a.b", member: "C")
        }
        #expect(DBusObjectPath("/trailing/") == nil)
        #expect(DBusObjectPath("relative") == nil)
        #expect(DBusObjectPath("/a//b") == nil)
        #expect(DBusObjectPath("/ok/x_1")?.parent == DBusObjectPath("/ok"))
    }

    @Test func errorsCarryNamesAndMessages() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        await #expect(throws: TriglavDBusError.remote(name: "org.example.Error.Nope", message: "nope, by design")) {
            try await fixture.call("Fail")
        }
        await #expect(throws: TriglavDBusError.remote(name: DBusStandardError.invalidArgs, message: "org.example.Test1.Add takes (ii), got (s)")) {
            try await fixture.call("Add", [.string("x")])
        }
        do {
            _ = try await fixture.call("Nope")
            Issue.record("unknown method succeeded")
        } catch {
            #expect(error.remoteName == DBusStandardError.unknownMethod)
        }
        do {
            _ = try await fixture.call("Echo", [.variant(.byte(1))], path: DBusObjectPath(checked: "/nothing/here"))
            Issue.record("unknown object succeeded")
        } catch {
            #expect(error.remoteName == DBusStandardError.unknownObject)
        }
        do {
            _ = try await fixture.call("Drop")
            Issue.record("dropped call succeeded")
        } catch {
            #expect(error.remoteName == DBusStandardError.failed)
        }
        do {
            _ = try await fixture.call("WrongReply")
            Issue.record("badly typed reply succeeded")
        } catch {
            #expect(error.remoteName == DBusStandardError.failed)
        }
    }

    @Test func callsTimeOutAndFailOnClose() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        let started = ContinuousClock.now
        await #expect(throws: TriglavDBusError.timeout(method: "org.example.Test1.Never", seconds: 0.2)) {
            try await fixture.call("Never", timeout: .milliseconds(200))
        }
        // Far below the default call timeout (25 s), with room for a loaded CI machine: the 200 ms one applied.
        #expect(ContinuousClock.now - started < .seconds(5))
        let pending = Task { () async throws(TriglavDBusError) -> [DBusValue] in try await fixture.call("Never") }
        try await Task.sleep(for: .milliseconds(100))
        fixture.client.close()
        let outcome = await pending.result
        #expect(throws: TriglavDBusError.disconnected) { try outcome.get() }
        await #expect(throws: TriglavDBusError.disconnected) { try await fixture.call("Add", [.int32(1), .int32(1)]) }
    }

    @Test func propertiesGetSetAndChangeSignals() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        let recorder = SignalRecorder()
        let subscription = try await fixture.client.subscribe(
            DBusMatchRule(interface: DBusStandardInterface.properties, member: "PropertiesChanged", path: Fixture.path)
        ) { recorder.record($0) }
        let client = fixture.client
        func get(_ name: String) async throws -> DBusValue {
            try await client.getProperty(destination: "org.example.Test", path: Fixture.path, interface: "org.example.Test1", name: name)
        }
        #expect(try await get("Name") == .string("initial"))
        try await client.setProperty(destination: "org.example.Test", path: Fixture.path, interface: "org.example.Test1",
                                     name: "Name", value: .string("renamed"))
        #expect(try await get("Name") == .string("renamed"))
        #expect(await recorder.wait { signals in
            signals.contains { $0.arguments.count == 3 && $0.arguments[1].stringKeyedDictionary?["Name"] == .string("renamed") }
        })
        await #expect(throws: TriglavDBusError.remote(name: "org.example.Error.Invalid", message: "that name is forbidden")) {
            try await client.setProperty(destination: "org.example.Test", path: Fixture.path, interface: "org.example.Test1",
                                         name: "Name", value: .string("forbidden"))
        }
        for (name, value, expected) in [("Name", DBusValue.uint32(1), DBusStandardError.invalidArgs),
                                        ("Counter", .uint64(1), DBusStandardError.propertyReadOnly),
                                        ("Missing", .uint64(1), DBusStandardError.unknownProperty)] {
            do {
                try await client.setProperty(destination: "org.example.Test", path: Fixture.path, interface: "org.example.Test1",
                                             name: name, value: value)
                Issue.record("Set \(name) succeeded")
            } catch {
                #expect(error.remoteName == expected)
            }
        }
        let all = try await client.getAllProperties(destination: "org.example.Test", path: Fixture.path, interface: "org.example.Test1")
        #expect(all == ["Name": .string("renamed"), "Counter": .uint64(0), "Items": .stringArray([])])

        // Setting the same value again emits nothing.
        let before = recorder.all.count
        try fixture.object.setProperties(["Items": .stringArray([])], interface: "org.example.Test1")
        await fixture.server.barrier()
        try await Task.sleep(for: .milliseconds(100))
        #expect(recorder.all.count == before)
        #expect(throws: TriglavDBusError.self) { try fixture.object.setProperties(["Items": .string("x")], interface: "org.example.Test1") }
        subscription.cancel()
    }

    @Test func coalescedPropertiesAreRateLimitedButEndOnTheLatestValue() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        let recorder = SignalRecorder()
        _ = try await fixture.client.subscribe(
            DBusMatchRule(interface: DBusStandardInterface.properties, member: "PropertiesChanged", path: Fixture.path)
        ) { recorder.record($0) }
        // 30 updates over ~600 ms with a 300 ms interval: at most 3–4 signals, the last carrying 30. Under load the
        // loop may last longer, and more intervals legitimately end in it, so the bound follows the time that passed.
        let start = ContinuousClock.now
        for counter in 1...30 {
            try fixture.object.setProperties(["Counter": .uint64(UInt64(counter))], interface: "org.example.Test1")
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(await recorder.wait { $0.last?.arguments[1].stringKeyedDictionary?["Counter"] == .uint64(30) })
        let counts = recorder.all.compactMap { $0.arguments[1].stringKeyedDictionary?["Counter"] }
        let intervals = Int(((ContinuousClock.now - start) / .milliseconds(300)).rounded(.up))
        #expect(counts.count >= 2 && counts.count <= max(5, intervals + 2), "got \(counts.count) signals: \(counts)")
        let value = try await fixture.client.getProperty(destination: "org.example.Test", path: Fixture.path,
                                                         interface: "org.example.Test1", name: "Counter")
        #expect(value == .uint64(30))
    }

    @Test func objectManagerAnnouncesObjectsAndIntrospectionListsChildren() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        let recorder = SignalRecorder()
        _ = try await fixture.client.subscribe(DBusMatchRule(interface: DBusStandardInterface.objectManager)) { recorder.record($0) }
        let secondPath = DBusObjectPath(checked: "/org/example/things/two")
        let second = try fixture.server.export(secondPath, interfaces: [fixture.service.interface()])
        #expect(throws: TriglavDBusError.self) { _ = try fixture.server.export(secondPath, interfaces: []) }
        #expect(await recorder.wait { $0.contains { $0.member == "InterfacesAdded" && $0.arguments.first == .objectPath(secondPath) } })
        let objects = try await fixture.client.managedObjects(destination: "org.example.Test", path: Fixture.root)
        #expect(Set(objects.keys) == [Fixture.path, secondPath])
        #expect(objects[secondPath]?["org.example.Test1"]?["Name"] == .string("initial"))

        let xml = try await fixture.call("Introspect", path: DBusObjectPath(checked: "/org/example/things"),
                                         interface: DBusStandardInterface.introspectable)
        let text = xml.first?.stringValue ?? ""
        #expect(text.contains("<node name=\"one\"/>") && text.contains("<node name=\"two\"/>"))
        let objectXML = try await fixture.call("Introspect", interface: DBusStandardInterface.introspectable).first?.stringValue ?? ""
        #expect(objectXML.contains("<method name=\"Add\">"))
        #expect(objectXML.contains("<property name=\"Name\" type=\"s\" access=\"readwrite\"/>"))

        second.unexport()
        #expect(await recorder.wait {
            $0.contains { $0.member == "InterfacesRemoved" && $0.arguments == [.objectPath(secondPath), .stringArray(["org.example.Test1"])] }
        })
        let after = try await fixture.client.managedObjects(destination: "org.example.Test", path: Fixture.root)
        #expect(Set(after.keys) == [Fixture.path])
    }

    @Test func signalsReachSubscribers() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        let recorder = SignalRecorder()
        let subscription = try await fixture.client.subscribe(DBusMatchRule(interface: "org.example.Test1", member: "Poked")) {
            recorder.record($0)
        }
        try fixture.object.emitSignal(interface: "org.example.Test1", member: "Poked", arguments: [.uint32(3)])
        #expect(await recorder.wait { $0.contains { $0.arguments == [.uint32(3)] && $0.path == Fixture.path } })
        subscription.cancel()
        await fixture.client.barrier()
        try fixture.object.emitSignal(interface: "org.example.Test1", member: "Poked", arguments: [.uint32(4)])
        try await Task.sleep(for: .milliseconds(150))
        #expect(!recorder.all.contains { $0.arguments == [.uint32(4)] })
    }

    @Test func secondOwnerOfANameIsRefused() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        await #expect(throws: TriglavDBusError.nameNotAcquired(name: "org.example.Test", code: 3)) {
            try await fixture.client.requestName("org.example.Test")
        }
        #expect(throws: TriglavDBusError.self) { _ = try BusConnection(address: "unix:path=/nonexistent/bus") }
    }
}

@Suite("Exported object churn", .serialized)
struct ObjectChurnTests {
    @Test func twoHundredExportUnexportCyclesLeaveNothingBehind() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        let recorder = SignalRecorder()
        _ = try await fixture.client.subscribe(DBusMatchRule(interface: DBusStandardInterface.objectManager)) { recorder.record($0) }
        for cycle in 0..<200 {
            let path = DBusObjectPath(checked: "/org/example/churn/\(cycle)")
            let object = try fixture.server.export(path, interfaces: [fixture.service.interface()])
            try object.setProperties(["Counter": .uint64(UInt64(cycle))], interface: "org.example.Test1")
            object.unexport()
        }
        await fixture.server.barrier()
        #expect(await recorder.wait(timeout: .seconds(10)) { $0.filter { $0.member == "InterfacesRemoved" }.count == 200 })
        #expect(recorder.all.filter { $0.member == "InterfacesAdded" }.count == 200)
        let objects = try await fixture.client.managedObjects(destination: "org.example.Test", path: Fixture.root)
        #expect(Set(objects.keys) == [Fixture.path])
        #expect(fixture.server.exportedPaths.withLock { $0 } == [Fixture.path])
        let count = await withCheckedContinuation { (continuation: CheckedContinuation<Int, Never>) in
            let server = fixture.server
            server.enqueue { continuation.resume(returning: server.state.objects.count) }
        }
        #expect(count == 1)
    }
}
