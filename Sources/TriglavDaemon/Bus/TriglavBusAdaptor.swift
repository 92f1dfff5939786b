public import Logging
public import TriglavControlAPI
import TriglavControlBus
public import TriglavDBus
import Synchronization

/// Exports the org.triglav API for a `TunnelController`: Manager1 and Server1 on /org/triglav (with
/// ObjectManager), one Uplink1 object per uplink and one Client1 object per server-side client.
///
/// Thread-safe. Method calls are validated here (signatures by the bus library; option keys, enum
/// values and names by `ControlAPI`), then run in a task against the controller, so a slow or failing
/// controller never blocks the bus thread; every call gets a reply or an `org.triglav.Error.*`.
/// Lifetime: call `start()` once; the objects live until the connection closes.
public final class TriglavBusAdaptor: Sendable {
    /// Nil only for the handler-less instance behind `interfaceShapes()`.
    let connection: BusConnection?
    let controller: any TunnelController
    let logger: Logger
    let authorization: CallerAuthorization

    private struct Exported {
        var manager: DBusExportedObject?
        var uplinks: [UInt32: DBusExportedObject] = [:]
        var clients: [UInt32: DBusExportedObject] = [:]
        var last: TriglavControlAPI.TriglavStatus?
    }
    private let exported = Mutex(Exported())

    static let rootPath = DBusObjectPath(checked: TriglavBus.managerPath)
    static let counterInterval: Duration = .milliseconds(TriglavBus.counterSignalIntervalMilliseconds)

    /// `authorization` is checked for every method call and property write (see `CallerAuthorization`).
    public convenience init(connection: BusConnection, controller: any TunnelController,
                            logger: Logger = Logger(label: "triglav.bus"),
                            authorization: CallerAuthorization = .standard) {
        self.init(optionalConnection: connection, controller: controller, logger: logger, authorization: authorization)
    }

    private init(optionalConnection connection: BusConnection?, controller: any TunnelController, logger: Logger,
                 authorization: CallerAuthorization) {
        self.authorization = authorization
        self.connection = connection
        self.controller = controller
        self.logger = logger
    }

    /// Exports the object tree from the controller's current status, then takes the bus name, so a
    /// client that sees the name always finds a complete tree.
    public func start() async throws(TriglavDBusError) {
        guard let connection else { throw .disconnected }
        let status = await controller.status().normalized
        connection.addObjectManager(at: Self.rootPath)
        let manager = try connection.export(Self.rootPath, interfaces: [managerInterface(status.manager), serverInterface(status.server)])
        exported.withLock { $0.manager = manager }
        publish(status)
        try await connection.requestName(TriglavBus.name)
        logger.debug("owning \(TriglavBus.name) as \(connection.uniqueName)")
    }

    /// Brings the bus in line with `status`: exports new uplinks/clients, removes vanished ones, and
    /// updates properties (only real changes are signalled). Call from any thread, as often as needed.
    public func publish(_ status: TriglavControlAPI.TriglavStatus) {
        let status = status.normalized
        exported.withLock { state in
            // Before start(), or after the bus went away (the daemon reports that once, not per tick).
            guard let connection, connection.isOpen, let manager = state.manager else { return }
            if state.last == status { return }
            do {
                for uplink in status.uplinks {
                    if let object = state.uplinks[uplink.id] {
                        try object.setProperties(uplink.dbusProperties, interface: TriglavBus.uplinkInterface)
                    } else {
                        let path = DBusObjectPath(checked: TriglavBus.uplinkPath(uplink.id))
                        state.uplinks[uplink.id] = try connection.export(path, interfaces: [uplinkInterface(uplink)])
                    }
                }
                for client in status.clients {
                    if let object = state.clients[client.id] {
                        try object.setProperties(client.dbusProperties, interface: TriglavBus.clientInterface)
                    } else {
                        let path = DBusObjectPath(checked: TriglavBus.clientPath(client.id))
                        state.clients[client.id] = try connection.export(path, interfaces: [clientInterface(client)])
                    }
                }
                try manager.setProperties(status.manager.dbusProperties, interface: TriglavBus.managerInterface)
                try manager.setProperties(status.server.dbusProperties, interface: TriglavBus.serverInterface)
            } catch {
                logger.error("cannot publish status on the bus: \(error)")
            }
            let liveUplinks = Set(status.uplinks.map(\.id))
            for (id, object) in state.uplinks where !liveUplinks.contains(id) {
                object.unexport()
                state.uplinks[id] = nil
            }
            let liveClients = Set(status.clients.map(\.id))
            for (id, object) in state.clients where !liveClients.contains(id) {
                object.unexport()
                state.clients[id] = nil
            }
            state.last = status
        }
    }

    // MARK: Running commands

    /// Runs `body` in a task once the caller is authorized; on success refreshes the bus from the
    /// controller, then replies.
    private func run(_ call: DBusMethodCall, _ body: @escaping @Sendable () async throws(ControlError) -> [DBusValue]) {
        let controller = self.controller
        Task {
            do throws(ControlError) {
                if let connection = self.connection {
                    try await self.authorization.authorize(sender: call.sender, on: connection)
                }
                let reply = try await body()
                self.publish(await controller.status())
                call.reply(reply)
            } catch {
                self.logger.debug("\(call.interface).\(call.member) from \(call.sender) failed: \(error.busName): \(error.message)")
                call.replyError(name: error.busName, message: error.message)
            }
        }
    }

    private static func options(_ value: DBusValue, method: String) throws(ControlError) -> [String: ControlValue] {
        guard let dictionary = value.stringKeyedDictionary else { throw .invalidArgument("\(method) options must be a{sv}") }
        var options: [String: ControlValue] = [:]
        for (key, raw) in dictionary {
            guard let converted = ControlValue(raw) else {
                throw .invalidArgument("\(method) option \(key) has unsupported type \(raw.signature)")
            }
            options[key] = converted
        }
        return options
    }

    private static func uplinkID(_ value: DBusValue) throws(ControlError) -> UInt32 {
        let path = value.objectPathValue?.rawValue ?? ""
        guard let id = TriglavBus.uplinkID(fromPath: path) else { throw .notFound("\(path) is not an uplink object") }
        return id
    }

    private static func validateProfileName(_ name: String) throws(ControlError) {
        guard !name.isEmpty, name.utf8.count <= 64,
              name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "-_.".unicodeScalars.contains($0)) }),
              !name.hasPrefix(".")
        else {
            throw .invalidArgument("profile name \"\(name)\" is invalid: use 1-64 letters, digits, '-', '_' or '.'")
        }
    }

    // MARK: Interfaces

    private func properties(_ record: some PropertyRecord,
                            setter: (String) -> (@Sendable (DBusValue, DBusMethodCall) -> Void)? = { _ in nil }) -> [DBusProperty] {
        let values = record.dbusProperties
        return type(of: record).propertySpecs.map { spec in
            DBusProperty(spec.name, DBusSignature(spec.signature), access: spec.writable ? .readWrite : .read,
                         emission: spec.rateLimited ? .coalesced(minimumInterval: Self.counterInterval) : .immediate,
                         initialValue: values[spec.name] ?? .string(""), setter: spec.writable ? setter(spec.name) : nil)
        }
    }

    func managerInterface(_ manager: TriglavControlAPI.ManagerStatus) -> DBusInterface {
        let controller = self.controller
        return DBusInterface(
            name: TriglavBus.managerInterface,
            methods: [
                DBusMethod(TriglavBus.Method.connect, in: [DBusArgument("profile", "s"), DBusArgument("options", "a{sv}")]) { call in
                    self.run(call) { () async throws(ControlError) -> [DBusValue] in
                        let profile = call.arguments[0].stringValue ?? ""
                        try Self.validateProfileName(profile)
                        let options = try TriglavControlAPI.ConnectOptions(options: Self.options(call.arguments[1], method: "Connect"))
                        try await controller.connect(profile: profile, options: options)
                        return []
                    }
                },
                DBusMethod(TriglavBus.Method.disconnect) { call in
                    self.run(call) { () async throws(ControlError) -> [DBusValue] in
                        try await controller.disconnect()
                        return []
                    }
                },
                DBusMethod(TriglavBus.Method.addUplink, in: [DBusArgument("interface", "s"), DBusArgument("options", "a{sv}")],
                           out: [DBusArgument("uplink", "o")]) { call in
                    self.run(call) { () async throws(ControlError) -> [DBusValue] in
                        let name = call.arguments[0].stringValue ?? ""
                        guard isValidInterfaceName(name) else {
                            throw .invalidArgument("\"\(name)\" is not a valid interface name (1-15 printable characters, no '/' or ':')")
                        }
                        let options = try TriglavControlAPI.UplinkOptions(options: Self.options(call.arguments[1], method: "AddUplink"))
                        let id = try await controller.addUplink(interface: name, options: options)
                        return [.objectPath(DBusObjectPath(checked: TriglavBus.uplinkPath(id)))]
                    }
                },
                DBusMethod(TriglavBus.Method.removeUplink, in: [DBusArgument("uplink", "o")]) { call in
                    self.run(call) { () async throws(ControlError) -> [DBusValue] in
                        try await controller.removeUplink(id: Self.uplinkID(call.arguments[0]))
                        return []
                    }
                },
                DBusMethod(TriglavBus.Method.reload) { call in
                    self.run(call) { () async throws(ControlError) -> [DBusValue] in
                        try await controller.reload()
                        return []
                    }
                },
            ],
            properties: properties(manager) { name in
                guard name == "Scheduler" else { return nil }
                return { value, call in
                    self.run(call) { () async throws(ControlError) -> [DBusValue] in
                        let scheduler = value.stringValue ?? ""
                        guard !scheduler.isEmpty else { throw .invalidArgument("Scheduler must not be empty") }
                        try await controller.setScheduler(scheduler)
                        return []
                    }
                }
            })
    }

    func serverInterface(_ server: TriglavControlAPI.ServerStatus) -> DBusInterface {
        let controller = self.controller
        return DBusInterface(
            name: TriglavBus.serverInterface,
            methods: [
                DBusMethod(TriglavBus.Method.disconnectClient, in: [DBusArgument("client", "o")]) { call in
                    self.run(call) { () async throws(ControlError) -> [DBusValue] in
                        let path = call.arguments[0].objectPathValue?.rawValue ?? ""
                        guard let id = TriglavBus.clientID(fromPath: path) else { throw .notFound("\(path) is not a client object") }
                        try await controller.disconnectClient(id: id)
                        return []
                    }
                },
            ],
            properties: properties(server))
    }

    func uplinkInterface(_ uplink: TriglavControlAPI.UplinkStatus) -> DBusInterface {
        let controller = self.controller
        let id = uplink.id
        return DBusInterface(
            name: TriglavBus.uplinkInterface,
            properties: properties(uplink) { name in
                { value, call in
                    self.run(call) { () async throws(ControlError) -> [DBusValue] in
                        var settings = TriglavControlAPI.UplinkOptions()
                        switch name {
                        case "Tier": settings.tier = try parseControlEnum(value.stringValue ?? "", name: "Tier")
                        case "Metered": settings.metered = value.boolValue
                        case "Enabled": settings.enabled = value.boolValue
                        case "Transport": settings.transport = try parseControlEnum(value.stringValue ?? "", name: "Transport")
                        default: throw .invalidArgument("\(name) is not writable")
                        }
                        try await controller.configureUplink(id: id, settings: settings)
                        return []
                    }
                }
            })
    }

    func clientInterface(_ client: TriglavControlAPI.ClientStatus) -> DBusInterface {
        DBusInterface(name: TriglavBus.clientInterface, properties: properties(client))
    }

    /// The interfaces this adaptor exports, without handlers: what dbus/org.triglav.xml must describe.
    public static func interfaceShapes() -> [DBusInterfaceShape] {
        let adaptor = TriglavBusAdaptor(optionalConnection: nil, controller: FakeTunnelController(),
                                        logger: Logger(label: "triglav.bus.shapes"), authorization: .anyone)
        return [adaptor.managerInterface(TriglavControlAPI.ManagerStatus()), adaptor.serverInterface(TriglavControlAPI.ServerStatus()),
                adaptor.uplinkInterface(TriglavControlAPI.UplinkStatus(id: 0, interface: "")), adaptor.clientInterface(TriglavControlAPI.ClientStatus(id: 0))]
            .map(DBusInterfaceShape.init)
    }
}
