internal import CDBus
import Synchronization

/// Wraps a libdbus message reference so it can travel to the loop thread. The message is never
/// touched concurrently: it is only read on the loop thread after receipt.
struct MessageReference: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// An incoming method call awaiting its answer. Answer exactly once, from any thread, with `reply`
/// or `replyError`; later answers are ignored. If the last reference goes away unanswered, the
/// caller gets `org.freedesktop.DBus.Error.Failed` so no client ever waits for a timeout.
public final class DBusMethodCall: Sendable {
    public let sender: String
    public let path: DBusObjectPath
    public let interface: String
    public let member: String
    public let arguments: [DBusValue]
    let expectedReplySignature: String?
    let message: MessageReference
    let connection: BusConnection
    private let answered = Mutex(false)

    init(message: OpaquePointer, interface: String, member: String, arguments: [DBusValue],
         expectedReplySignature: String?, connection: BusConnection) {
        dbus_message_ref(message)
        self.message = MessageReference(pointer: message)
        self.sender = dbus_message_get_sender(message).map { String(cString: $0) } ?? ""
        self.path = dbus_message_get_path(message).flatMap { DBusObjectPath(String(cString: $0)) } ?? .root
        self.interface = interface
        self.member = member
        self.arguments = arguments
        self.expectedReplySignature = expectedReplySignature
        self.connection = connection
    }

    deinit {
        let message = self.message
        let wasAnswered = answered.withLock { $0 }
        let connection = self.connection
        let description = "\(interface).\(member)"
        let accepted = connection.enqueue {
            if !wasAnswered && !connection.state.isClosed {
                connection.sendError(to: message.pointer, name: DBusStandardError.failed,
                                     text: "\(description) was dropped without a reply (daemon bug)")
            }
            dbus_message_unref(message.pointer)
        }
        if !accepted { dbus_message_unref(message.pointer) }
    }

    private func claimAnswer() -> Bool {
        answered.withLock { done in
            if done { return false }
            done = true
            return true
        }
    }

    /// Sends the method return. Values that don't match the declared output signature turn into a
    /// Failed error (a bug in the handler, reported rather than crashing).
    public func reply(_ values: [DBusValue] = []) {
        guard claimAnswer() else { return }
        let signature = values.map(\.signature.rawValue).joined()
        if let expected = expectedReplySignature, expected != signature {
            return sendError(DBusStandardError.failed, "\(interface).\(member) produced \(signature), declared \(expected) (daemon bug)")
        }
        let message = self.message, connection = self.connection
        connection.enqueue {
            guard !connection.state.isClosed, dbus_message_get_no_reply(message.pointer) == 0 else { return }
            guard let reply = dbus_message_new_method_return(message.pointer) else { return }
            defer { dbus_message_unref(reply) }
            do throws(TriglavDBusError) {
                try Marshalling.append(values, to: reply)
                connection.send(reply)
            } catch {
                connection.sendError(to: message.pointer, name: DBusStandardError.failed, text: error.description)
            }
        }
    }

    /// Sends an error reply. `name` must be a valid error name (else Failed is sent).
    public func replyError(name: String, message text: String) {
        guard claimAnswer() else { return }
        sendError(name, text)
    }

    private func sendError(_ name: String, _ text: String) {
        let message = self.message, connection = self.connection
        let validName = BusNames.isValidErrorName(name) ? name : DBusStandardError.failed
        connection.enqueue {
            guard !connection.state.isClosed else { return }
            connection.sendError(to: message.pointer, name: validName, text: text)
        }
    }
}

/// Loop-thread record of one exported object.
final class ObjectRecord {
    final class InterfaceRecord {
        let description: DBusInterface
        var values: [String: DBusValue]
        var pendingCoalesced: [String: DBusValue] = [:]
        var lastCoalescedEmission: ContinuousClock.Instant?
        var flushScheduled = false
        let coalesceInterval: Duration?

        init(_ description: DBusInterface) {
            self.description = description
            var values: [String: DBusValue] = [:]
            var interval: Duration?
            for property in description.properties {
                values[property.name] = property.initialValue
                if case .coalesced(let minimum) = property.emission {
                    interval = interval.map { min($0, minimum) } ?? minimum
                }
            }
            self.values = values
            self.coalesceInterval = interval
        }

        var allProperties: DBusValue {
            .vardict(description.properties.map { ($0.name, values[$0.name] ?? $0.initialValue) })
        }
    }

    let path: DBusObjectPath
    let interfaceOrder: [String]
    var interfaces: [String: InterfaceRecord]

    init(path: DBusObjectPath, interfaces: [DBusInterface]) {
        self.path = path
        self.interfaceOrder = interfaces.map(\.name)
        var records: [String: InterfaceRecord] = [:]
        for interface in interfaces { records[interface.name] = InterfaceRecord(interface) }
        self.interfaces = records
    }

    /// `a{sa{sv}}` of all interfaces and their properties.
    var interfacesAndProperties: DBusValue {
        .dictionary(keySignature: "s", valueSignature: "a{sv}",
                    interfaceOrder.compactMap { name in
                        interfaces[name].map { DBusDictEntry(.string(name), $0.allProperties) }
                    })
    }
}

/// Handle of an exported object. Thread-safe; updates are applied on the loop thread in order.
/// The object stays on the bus until `unexport()` (or the connection closes).
public final class DBusExportedObject: Sendable {
    public let path: DBusObjectPath
    let connection: BusConnection
    /// Immutable copy of the property types, for synchronous validation on the caller's thread.
    private let propertyTypes: [String: [String: DBusSignature]]

    init(path: DBusObjectPath, interfaces: [DBusInterface], connection: BusConnection) {
        self.path = path
        self.connection = connection
        var types: [String: [String: DBusSignature]] = [:]
        for interface in interfaces {
            types[interface.name] = Dictionary(uniqueKeysWithValues: interface.properties.map { ($0.name, $0.signature) })
        }
        self.propertyTypes = types
    }

    /// Updates property values; those that really changed are announced with one PropertiesChanged
    /// (coalesced properties at most once per their interval). Throws for unknown names or wrong types.
    public func setProperties(_ values: [String: DBusValue], interface: String) throws(TriglavDBusError) {
        guard let types = propertyTypes[interface] else { throw .invalidName(interface) }
        for (name, value) in values {
            guard let type = types[name] else { throw .invalidName("\(interface).\(name)") }
            guard value.signature == type else {
                throw .invalidValue(reason: "\(interface).\(name) is \(type), got \(value.signature)")
            }
            try Marshalling.validate(value)
        }
        let path = self.path, connection = self.connection
        connection.enqueue {
            connection.applyPropertyUpdate(path: path, interface: interface, values: values)
        }
    }

    /// Emits a signal from this object.
    public func emitSignal(interface: String, member: String, arguments: [DBusValue] = []) throws(TriglavDBusError) {
        try connection.emitSignal(path: path, interface: interface, member: member, arguments: arguments)
    }

    /// Removes the object (InterfacesRemoved is emitted when it is under an object manager).
    public func unexport() {
        let path = self.path, connection = self.connection
        connection.enqueue {
            connection.removeObject(path)
            // Released only now, so a re-export queued after this job finds the path free.
            connection.exportedPaths.withLock { _ = $0.remove(path) }
        }
    }
}

extension BusConnection {
    /// Exports an object at `path`. Visible to callers (and announced with InterfacesAdded under an
    /// object manager) before any later-enqueued reply or signal is sent.
    public func export(_ path: DBusObjectPath, interfaces: [DBusInterface]) throws(TriglavDBusError) -> DBusExportedObject {
        var seen: Set<String> = []
        for interface in interfaces {
            try interface.validate()
            guard seen.insert(interface.name).inserted else { throw .invalidName("duplicate interface \(interface.name)") }
        }
        let handle = DBusExportedObject(path: path, interfaces: interfaces, connection: self)
        guard exportedPaths.withLock({ $0.insert(path).inserted }) else { throw .pathAlreadyExported(path) }
        let accepted = enqueue { [self] in
            guard !state.isClosed else { return }
            let record = ObjectRecord(path: path, interfaces: interfaces)
            state.objects[path] = record
            for manager in state.objectManagers where path.isDescendant(of: manager) {
                sendSignal(path: manager, interface: DBusStandardInterface.objectManager, member: "InterfacesAdded",
                           arguments: [.objectPath(path), record.interfacesAndProperties])
            }
        }
        guard accepted else { throw .disconnected }
        return handle
    }

    /// Makes `path` implement org.freedesktop.DBus.ObjectManager for the objects below it.
    public func addObjectManager(at path: DBusObjectPath) {
        enqueue { [self] in state.objectManagers.insert(path) }
    }

    /// Waits until every job enqueued before this call has run on the loop.
    public func barrier() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            if !enqueue({ continuation.resume() }) { continuation.resume() }
        }
    }

    // MARK: Loop-thread internals

    func removeObject(_ path: DBusObjectPath) {
        guard !state.isClosed, let record = state.objects.removeValue(forKey: path) else { return }
        for manager in state.objectManagers where path.isDescendant(of: manager) {
            sendSignal(path: manager, interface: DBusStandardInterface.objectManager, member: "InterfacesRemoved",
                       arguments: [.objectPath(path), .stringArray(record.interfaceOrder)])
        }
    }

    func applyPropertyUpdate(path: DBusObjectPath, interface: String, values: [String: DBusValue]) {
        guard !state.isClosed, let record = state.objects[path]?.interfaces[interface] else { return }
        var immediate: [String: DBusValue] = [:]
        var coalesced: [String: DBusValue] = [:]
        let emissions = Dictionary(uniqueKeysWithValues: record.description.properties.map { ($0.name, $0.emission) })
        for (name, value) in values where record.values[name] != value {
            record.values[name] = value
            if case .coalesced? = emissions[name] { coalesced[name] = value } else { immediate[name] = value }
        }
        guard !immediate.isEmpty || !coalesced.isEmpty else { return }
        let now = ContinuousClock.now
        let interval = record.coalesceInterval ?? .zero
        let coalesceWindowOpen = record.lastCoalescedEmission.map { now - $0 >= interval } ?? true
        if !immediate.isEmpty || coalesceWindowOpen {
            var changed = immediate
            if !coalesced.isEmpty || !record.pendingCoalesced.isEmpty {
                if coalesceWindowOpen {
                    changed.merge(record.pendingCoalesced) { new, _ in new }
                    changed.merge(coalesced) { _, new in new }
                    record.pendingCoalesced.removeAll()
                    record.lastCoalescedEmission = now
                } else {
                    record.pendingCoalesced.merge(coalesced) { _, new in new }
                }
            }
            emitPropertiesChanged(path: path, interface: interface, changed: changed, order: record.description.properties)
        } else {
            record.pendingCoalesced.merge(coalesced) { _, new in new }
        }
        if !record.pendingCoalesced.isEmpty && !record.flushScheduled, let last = record.lastCoalescedEmission {
            record.flushScheduled = true
            scheduleTimer(at: last + interval) { [self] in
                record.flushScheduled = false
                guard !record.pendingCoalesced.isEmpty, state.objects[path]?.interfaces[interface] === record else { return }
                let changed = record.pendingCoalesced
                record.pendingCoalesced.removeAll()
                record.lastCoalescedEmission = .now
                emitPropertiesChanged(path: path, interface: interface, changed: changed, order: record.description.properties)
            }
        }
    }

    private func emitPropertiesChanged(path: DBusObjectPath, interface: String, changed: [String: DBusValue],
                                       order: [DBusProperty]) {
        let ordered = order.compactMap { property in changed[property.name].map { (property.name, $0) } }
        sendSignal(path: path, interface: DBusStandardInterface.properties, member: "PropertiesChanged",
                   arguments: [.string(interface), .vardict(ordered), .stringArray([])])
    }

    func sendError(to message: OpaquePointer, name: String, text: String) {
        guard dbus_message_get_no_reply(message) == 0 else { return }
        let safeText = String(text.filter { $0 != "\0" })
        guard let reply = dbus_message_new_error(message, name, safeText) else { return }
        defer { dbus_message_unref(reply) }
        send(reply)
    }

    private func reply(to message: OpaquePointer, _ values: [DBusValue]) {
        guard dbus_message_get_no_reply(message) == 0, let reply = dbus_message_new_method_return(message) else { return }
        defer { dbus_message_unref(reply) }
        if (try? Marshalling.append(values, to: reply)) != nil { send(reply) }
    }

    /// Routes a method call to an exported object or a standard interface. Every call is answered.
    func handleMethodCall(_ message: OpaquePointer) -> Bool {
        guard let path = dbus_message_get_path(message).flatMap({ DBusObjectPath(String(cString: $0)) }) else { return false }
        let interface = dbus_message_get_interface(message).map { String(cString: $0) }
        let member = dbus_message_get_member(message).map { String(cString: $0) } ?? ""
        let signature = dbus_message_get_signature(message).map { String(cString: $0) } ?? ""
        let object = state.objects[path]
        let isManager = state.objectManagers.contains(path)
        let hasChildren = state.objects.keys.contains { $0.isDescendant(of: path) }

        func invalidArgs(_ expected: String) {
            sendError(to: message, name: DBusStandardError.invalidArgs,
                      text: "\(interface ?? "").\(member) takes (\(expected)), got (\(signature))")
        }

        guard object != nil || isManager || hasChildren else {
            sendError(to: message, name: DBusStandardError.unknownObject, text: "no object at \(path)")
            return true
        }

        switch (interface, member) {
        case (DBusStandardInterface.introspectable?, "Introspect"), (nil, "Introspect"):
            guard signature.isEmpty else { invalidArgs(""); return true }
            reply(to: message, [.string(introspectionXML(path: path, object: object, isManager: isManager))])
            return true
        case (DBusStandardInterface.objectManager?, "GetManagedObjects") where isManager,
             (nil, "GetManagedObjects") where isManager:
            guard signature.isEmpty else { invalidArgs(""); return true }
            let entries = state.objects.values.filter { $0.path.isDescendant(of: path) }.sorted { $0.path < $1.path }
                .map { DBusDictEntry(.objectPath($0.path), $0.interfacesAndProperties) }
            reply(to: message, [.dictionary(keySignature: "o", valueSignature: "a{sa{sv}}", entries)])
            return true
        case (DBusStandardInterface.properties?, _):
            handlePropertiesCall(message, member: member, signature: signature, object: object)
            return true
        default:
            break
        }

        guard let object else {
            sendError(to: message, name: interface == nil ? DBusStandardError.unknownMethod : DBusStandardError.unknownInterface,
                      text: "\(path) only has child objects")
            return true
        }
        let candidates: [ObjectRecord.InterfaceRecord]
        if let interface {
            guard let record = object.interfaces[interface] else {
                sendError(to: message, name: DBusStandardError.unknownInterface, text: "\(path) does not implement \(interface)")
                return true
            }
            candidates = [record]
        } else {
            candidates = object.interfaceOrder.compactMap { object.interfaces[$0] }
        }
        for record in candidates {
            guard let method = record.description.methods.first(where: { $0.name == member }) else { continue }
            guard method.inSignature == signature else { invalidArgs(method.inSignature); return true }
            let call = DBusMethodCall(message: message, interface: record.description.name, member: member,
                                      arguments: Marshalling.read(message),
                                      expectedReplySignature: method.outSignature, connection: self)
            method.handler(call)
            return true
        }
        sendError(to: message, name: DBusStandardError.unknownMethod,
                  text: "no method \(member) in \(interface ?? "any interface of \(path)")")
        return true
    }

    private func handlePropertiesCall(_ message: OpaquePointer, member: String, signature: String, object: ObjectRecord?) {
        let arguments = Marshalling.read(message)
        func fail(_ name: String, _ text: String) { sendError(to: message, name: name, text: text) }
        let expected = ["Get": "ss", "GetAll": "s", "Set": "ssv"]
        guard let wanted = expected[member] else {
            return fail(DBusStandardError.unknownMethod, "no method \(member) in \(DBusStandardInterface.properties)")
        }
        guard wanted == signature else {
            return fail(DBusStandardError.invalidArgs, "\(DBusStandardInterface.properties).\(member) takes (\(wanted)), got (\(signature))")
        }
        guard let object, let interfaceName = arguments.first?.stringValue else {
            return fail(DBusStandardError.unknownInterface, "no properties here")
        }
        guard let record = object.interfaces[interfaceName] else {
            // GetAll of an unknown interface is an error too (sd-bus does the same).
            return fail(DBusStandardError.unknownInterface, "\(object.path) does not implement \(interfaceName)")
        }
        if member == "GetAll" { return reply(to: message, [record.allProperties]) }
        let propertyName = arguments[1].stringValue ?? ""
        guard let property = record.description.properties.first(where: { $0.name == propertyName }) else {
            return fail(DBusStandardError.unknownProperty, "\(interfaceName) has no property \(propertyName)")
        }
        if member == "Get" {
            return reply(to: message, [.variant(record.values[propertyName] ?? property.initialValue)])
        }
        guard property.access == .readWrite, let setter = property.setter else {
            return fail(DBusStandardError.propertyReadOnly, "\(interfaceName).\(propertyName) is read-only")
        }
        guard case .variant(let value) = arguments[2], value.signature == property.signature else {
            return fail(DBusStandardError.invalidArgs,
                        "\(interfaceName).\(propertyName) is of type \(property.signature), got \(arguments[2].unwrapped.signature)")
        }
        let call = DBusMethodCall(message: message, interface: DBusStandardInterface.properties, member: "Set",
                                  arguments: arguments, expectedReplySignature: "", connection: self)
        setter(value, call)
    }

    private func introspectionXML(path: DBusObjectPath, object: ObjectRecord?, isManager: Bool) -> String {
        var shapes: [DBusInterfaceShape] = [.introspectable, .peer]
        if object != nil { shapes.append(.properties) }
        if isManager { shapes.append(.objectManager) }
        if let object {
            shapes += object.interfaceOrder.compactMap { object.interfaces[$0].map { DBusInterfaceShape($0.description) } }
        }
        var children: Set<String> = []
        for candidate in state.objects.keys where candidate.isDescendant(of: path) {
            let rest = path.rawValue == "/" ? candidate.rawValue.dropFirst() : candidate.rawValue.dropFirst(path.rawValue.count + 1)
            if let first = rest.split(separator: "/").first { children.insert(String(first)) }
        }
        return DBusIntrospection.document(interfaces: shapes, children: children.sorted())
    }
}
