internal import CDBus
import Dispatch
import Synchronization

/// A received signal.
public struct DBusSignal: Sendable {
    public let sender: String
    public let path: DBusObjectPath
    public let interface: String
    public let member: String
    public let arguments: [DBusValue]

    public init(sender: String, path: DBusObjectPath, interface: String, member: String, arguments: [DBusValue]) {
        self.sender = sender
        self.path = path
        self.interface = interface
        self.member = member
        self.arguments = arguments
    }

    init(message: OpaquePointer) {
        sender = dbus_message_get_sender(message).map { String(cString: $0) } ?? ""
        path = dbus_message_get_path(message).flatMap { DBusObjectPath(String(cString: $0)) } ?? .root
        interface = dbus_message_get_interface(message).map { String(cString: $0) } ?? ""
        member = dbus_message_get_member(message).map { String(cString: $0) } ?? ""
        arguments = Marshalling.read(message)
    }
}

/// Which signals a subscription wants. The bus filters by all fields (including `sender`); the
/// local dispatch re-checks everything except `sender`, which the bus resolves to a unique name.
public struct DBusMatchRule: Sendable, Hashable {
    public var sender: String?
    public var interface: String?
    public var member: String?
    public var path: DBusObjectPath?
    /// Matches this path and everything below it.
    public var pathNamespace: DBusObjectPath?
    /// Matches when the first argument is this string.
    public var arg0: String?

    public init(sender: String? = nil, interface: String? = nil, member: String? = nil,
                path: DBusObjectPath? = nil, pathNamespace: DBusObjectPath? = nil, arg0: String? = nil) {
        self.sender = sender
        self.interface = interface
        self.member = member
        self.path = path
        self.pathNamespace = pathNamespace
        self.arg0 = arg0
    }

    /// The rule in the bus's AddMatch syntax.
    public var ruleString: String {
        var parts = ["type='signal'"]
        func quoted(_ value: String) -> String { value.replacingApostrophes() }
        if let sender { parts.append("sender='\(quoted(sender))'") }
        if let interface { parts.append("interface='\(quoted(interface))'") }
        if let member { parts.append("member='\(quoted(member))'") }
        if let path { parts.append("path='\(path.rawValue)'") }
        if let pathNamespace { parts.append("path_namespace='\(pathNamespace.rawValue)'") }
        if let arg0 { parts.append("arg0='\(quoted(arg0))'") }
        return parts.joined(separator: ",")
    }

    func matches(_ signal: DBusSignal) -> Bool {
        if let interface, interface != signal.interface { return false }
        if let member, member != signal.member { return false }
        if let path, path != signal.path { return false }
        if let pathNamespace, signal.path != pathNamespace && !signal.path.isDescendant(of: pathNamespace) { return false }
        if let arg0, signal.arguments.first?.stringValue != arg0 { return false }
        return true
    }
}

extension String {
    /// AddMatch values can't contain an apostrophe; D-Bus names and paths never do, so we drop it.
    fileprivate func replacingApostrophes() -> String { String(filter { $0 != "'" }) }
}

/// A live signal subscription; `cancel()` removes the match rule from the bus.
public final class DBusSubscription: Sendable {
    let id: UInt64
    let rule: DBusMatchRule
    let connection: BusConnection

    init(id: UInt64, rule: DBusMatchRule, connection: BusConnection) {
        self.id = id
        self.rule = rule
        self.connection = connection
    }

    public func cancel() {
        let connection = self.connection, id = self.id, rule = self.rule
        connection.enqueue {
            guard connection.state.subscriptions.removeValue(forKey: id) != nil else { return }
            connection.sendBusCallNoReply(member: "RemoveMatch", arguments: [.string(rule.ruleString)])
        }
    }
}

extension BusConnection {
    public static let defaultTimeout: Duration = .seconds(25)

    /// Calls a method and returns its output arguments.
    public func call(destination: String, path: DBusObjectPath, interface: String, member: String,
                     arguments: [DBusValue] = [], timeout: Duration = BusConnection.defaultTimeout)
        async throws(TriglavDBusError) -> [DBusValue]
    {
        try validateCall(destination: destination, interface: interface, member: member, arguments: arguments)
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<[DBusValue], TriglavDBusError>, Never>) in
            let resumeOnce = Mutex<CheckedContinuation<Result<[DBusValue], TriglavDBusError>, Never>?>(continuation)
            startCall(destination: destination, path: path, interface: interface, member: member, arguments: arguments,
                      timeout: timeout) { result in
                resumeOnce.withLock { stored in
                    stored?.resume(returning: result)
                    stored = nil
                }
            }
        }
        return try result.get()
    }

    /// `call` for synchronous code: blocks until the reply, the timeout or a disconnect. Never call it on the
    /// connection's own loop thread (a method handler): the reply would wait for that thread.
    public func callSynchronously(destination: String, path: DBusObjectPath, interface: String, member: String,
                                  arguments: [DBusValue] = [], timeout: Duration = BusConnection.defaultTimeout)
        throws(TriglavDBusError) -> [DBusValue]
    {
        try validateCall(destination: destination, interface: interface, member: member, arguments: arguments)
        let outcome = Mutex<Result<[DBusValue], TriglavDBusError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        startCall(destination: destination, path: path, interface: interface, member: member, arguments: arguments,
                  timeout: timeout) { result in
            let first = outcome.withLock { stored in
                guard stored == nil else { return false }
                stored = result
                return true
            }
            if first { done.signal() }
        }
        // The loop thread always completes the call (reply, error, its own timeout or the disconnect).
        done.wait()
        return try outcome.withLock { $0 ?? .failure(.disconnected) }.get()
    }

    private func validateCall(destination: String, interface: String, member: String,
                              arguments: [DBusValue]) throws(TriglavDBusError) {
        for value in arguments { try Marshalling.validate(value) }
        try BusNames.validate(destination: destination, interface: interface, member: member)
    }

    /// Sends the call from the loop thread; `complete` gets the reply, the error, the timeout or the disconnect.
    private func startCall(destination: String, path: DBusObjectPath, interface: String, member: String,
                           arguments: [DBusValue], timeout: Duration,
                           complete: @escaping @Sendable (Result<[DBusValue], TriglavDBusError>) -> Void) {
        let methodName = "\(interface).\(member)"
        let accepted = enqueue { [self] in
            guard !state.isClosed else { return complete(.failure(.disconnected)) }
            guard let message = dbus_message_new_method_call(destination, path.rawValue, interface, member) else {
                return complete(.failure(.invalidValue(reason: "out of memory building \(methodName)")))
            }
            defer { dbus_message_unref(message) }
            do throws(TriglavDBusError) {
                try Marshalling.append(arguments, to: message)
            } catch {
                return complete(.failure(error))
            }
            let serial = send(message)
            let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
            state.pendingReplies[serial] = LoopState.PendingReply(
                method: methodName, deadline: .now + timeout, timeoutSeconds: seconds, complete: complete)
        }
        if !accepted { complete(.failure(.disconnected)) }
    }

    /// `org.freedesktop.DBus.Properties.Get`, variant unwrapped.
    public func getProperty(destination: String, path: DBusObjectPath, interface: String, name: String)
        async throws(TriglavDBusError) -> DBusValue
    {
        let reply = try await call(destination: destination, path: path, interface: DBusStandardInterface.properties,
                                   member: "Get", arguments: [.string(interface), .string(name)])
        guard let value = reply.first else { throw .unexpectedReply(expected: "v", got: "") }
        return value.unwrapped
    }

    /// `org.freedesktop.DBus.Properties.GetAll`, variants unwrapped.
    public func getAllProperties(destination: String, path: DBusObjectPath, interface: String)
        async throws(TriglavDBusError) -> [String: DBusValue]
    {
        let reply = try await call(destination: destination, path: path, interface: DBusStandardInterface.properties,
                                   member: "GetAll", arguments: [.string(interface)])
        guard let dictionary = reply.first?.stringKeyedDictionary else {
            throw .unexpectedReply(expected: "a{sv}", got: reply.map(\.signature.rawValue).joined())
        }
        return dictionary
    }

    /// `org.freedesktop.DBus.Properties.Set`.
    public func setProperty(destination: String, path: DBusObjectPath, interface: String, name: String,
                            value: DBusValue) async throws(TriglavDBusError)
    {
        _ = try await call(destination: destination, path: path, interface: DBusStandardInterface.properties,
                           member: "Set", arguments: [.string(interface), .string(name), .variant(value)])
    }

    /// `org.freedesktop.DBus.ObjectManager.GetManagedObjects`: path → interface → property → value.
    public func managedObjects(destination: String, path: DBusObjectPath)
        async throws(TriglavDBusError) -> [DBusObjectPath: [String: [String: DBusValue]]]
    {
        let reply = try await call(destination: destination, path: path, interface: DBusStandardInterface.objectManager,
                                   member: "GetManagedObjects")
        guard case .dictionary(_, _, let objects)? = reply.first else {
            throw .unexpectedReply(expected: "a{oa{sa{sv}}}", got: reply.map(\.signature.rawValue).joined())
        }
        var result: [DBusObjectPath: [String: [String: DBusValue]]] = [:]
        for object in objects {
            guard let objectPath = object.key.objectPathValue, case .dictionary(_, _, let interfaces) = object.value else { continue }
            var byInterface: [String: [String: DBusValue]] = [:]
            for entry in interfaces {
                guard let name = entry.key.stringValue else { continue }
                byInterface[name] = entry.value.stringKeyedDictionary ?? [:]
            }
            result[objectPath] = byInterface
        }
        return result
    }

    /// Subscribes to signals matching `rule`. `handler` runs on the loop thread and must not block.
    /// When this returns, the bus has accepted the match rule.
    public func subscribe(_ rule: DBusMatchRule, handler: @escaping @Sendable (DBusSignal) -> Void)
        async throws(TriglavDBusError) -> DBusSubscription
    {
        let id = await withCheckedContinuation { (continuation: CheckedContinuation<UInt64?, Never>) in
            let accepted = enqueue { [self] in
                guard !state.isClosed else { return continuation.resume(returning: nil) }
                let id = state.nextSubscriptionID
                state.nextSubscriptionID += 1
                state.subscriptions[id] = LoopState.Subscription(rule: rule, handler: handler)
                continuation.resume(returning: id)
            }
            if !accepted { continuation.resume(returning: nil) }
        }
        guard let id else { throw .disconnected }
        let subscription = DBusSubscription(id: id, rule: rule, connection: self)
        do {
            _ = try await call(destination: DBusStandardInterface.bus, path: DBusObjectPath(checked: "/org/freedesktop/DBus"),
                               interface: DBusStandardInterface.bus, member: "AddMatch", arguments: [.string(rule.ruleString)])
        } catch {
            subscription.cancel()
            throw error
        }
        return subscription
    }

    /// Requests ownership of `name` without queueing; throws unless we became (or already were) the owner.
    public func requestName(_ name: String) async throws(TriglavDBusError) {
        guard dbus_validate_bus_name(name, nil) != 0 else { throw .invalidName(name) }
        let reply = try await call(destination: DBusStandardInterface.bus, path: DBusObjectPath(checked: "/org/freedesktop/DBus"),
                                   interface: DBusStandardInterface.bus, member: "RequestName",
                                   arguments: [.string(name), .uint32(UInt32(DBUS_NAME_FLAG_DO_NOT_QUEUE))])
        guard case .uint32(let code)? = reply.first else {
            throw .unexpectedReply(expected: "u", got: reply.map(\.signature.rawValue).joined())
        }
        guard code == UInt32(DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER) || code == UInt32(DBUS_REQUEST_NAME_REPLY_ALREADY_OWNER) else {
            throw .nameNotAcquired(name: name, code: code)
        }
    }

    /// Emits a signal from `path`. Thread-safe; the signal is sent in order with other output.
    public func emitSignal(path: DBusObjectPath, interface: String, member: String, arguments: [DBusValue] = [])
        throws(TriglavDBusError)
    {
        for value in arguments { try Marshalling.validate(value) }
        try BusNames.validate(destination: nil, interface: interface, member: member)
        enqueue { [self] in
            guard !state.isClosed else { return }
            sendSignal(path: path, interface: interface, member: member, arguments: arguments)
        }
    }

    /// Loop thread only; arguments already validated.
    func sendSignal(path: DBusObjectPath, interface: String, member: String, arguments: [DBusValue]) {
        guard let message = dbus_message_new_signal(path.rawValue, interface, member) else { return }
        defer { dbus_message_unref(message) }
        guard (try? Marshalling.append(arguments, to: message)) != nil else { return }
        send(message)
    }

    /// Loop thread only: a bus call whose reply we don't need.
    func sendBusCallNoReply(member: String, arguments: [DBusValue]) {
        guard let message = dbus_message_new_method_call(DBusStandardInterface.bus, "/org/freedesktop/DBus",
                                                         DBusStandardInterface.bus, member) else { return }
        defer { dbus_message_unref(message) }
        dbus_message_set_no_reply(message, 1)
        guard (try? Marshalling.append(arguments, to: message)) != nil else { return }
        send(message)
    }
}

/// Name checks with libdbus's own validators (which never abort), so nothing invalid reaches a
/// libdbus function that would abort on it.
enum BusNames {
    static func validate(destination: String?, interface: String, member: String) throws(TriglavDBusError) {
        if let destination, dbus_validate_bus_name(destination, nil) == 0 { throw .invalidName(destination) }
        guard dbus_validate_interface(interface, nil) != 0 else { throw .invalidName(interface) }
        guard dbus_validate_member(member, nil) != 0 else { throw .invalidName(member) }
    }

    static func isValidInterface(_ name: String) -> Bool { dbus_validate_interface(name, nil) != 0 }
    static func isValidMember(_ name: String) -> Bool { dbus_validate_member(name, nil) != 0 }
    static func isValidErrorName(_ name: String) -> Bool { dbus_validate_error_name(name, nil) != 0 }
}
