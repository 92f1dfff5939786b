/// A named, typed argument of a method or signal.
public struct DBusArgument: Sendable, Hashable {
    public let name: String
    public let signature: DBusSignature
    public init(_ name: String, _ signature: DBusSignature) {
        self.name = name
        self.signature = signature
    }
}

/// A method an exported interface offers. `handler` runs on the loop thread, must not block, and
/// must eventually answer the call (from any thread) with `reply` or `replyError`. The input
/// signature is checked before the handler runs, so `call.arguments` always matches `inArguments`.
public struct DBusMethod: Sendable {
    public let name: String
    public let inArguments: [DBusArgument]
    public let outArguments: [DBusArgument]
    public let handler: @Sendable (DBusMethodCall) -> Void

    public init(_ name: String, in inArguments: [DBusArgument] = [], out outArguments: [DBusArgument] = [],
                handler: @escaping @Sendable (DBusMethodCall) -> Void) {
        self.name = name
        self.inArguments = inArguments
        self.outArguments = outArguments
        self.handler = handler
    }

    var inSignature: String { inArguments.map(\.signature.rawValue).joined() }
    var outSignature: String { outArguments.map(\.signature.rawValue).joined() }
}

public enum DBusPropertyAccess: Sendable, Hashable {
    case read
    case readWrite

    var xmlValue: String { self == .read ? "read" : "readwrite" }
}

/// How changes of a property are announced with PropertiesChanged.
public enum DBusChangeEmission: Sendable, Hashable {
    /// A signal as soon as the value changes.
    case immediate
    /// At most one signal per `minimumInterval` per object and interface (for counters that change
    /// with every packet); the latest value is always sent, and `Get` always returns it.
    case coalesced(minimumInterval: Duration)
}

/// A property of an exported interface. `setter` (required for `.readWrite`) receives a value whose
/// signature already matches, runs on the loop thread, and answers through the call; it should
/// publish the accepted value with `DBusExportedObject.setProperties`.
public struct DBusProperty: Sendable {
    public let name: String
    public let signature: DBusSignature
    public let access: DBusPropertyAccess
    public let emission: DBusChangeEmission
    public let initialValue: DBusValue
    public let setter: (@Sendable (DBusValue, DBusMethodCall) -> Void)?

    public init(_ name: String, _ signature: DBusSignature, access: DBusPropertyAccess = .read,
                emission: DBusChangeEmission = .immediate, initialValue: DBusValue,
                setter: (@Sendable (DBusValue, DBusMethodCall) -> Void)? = nil) {
        self.name = name
        self.signature = signature
        self.access = access
        self.emission = emission
        self.initialValue = initialValue
        self.setter = setter
    }
}

public struct DBusSignalDescription: Sendable, Hashable {
    public let name: String
    public let arguments: [DBusArgument]
    public init(_ name: String, _ arguments: [DBusArgument] = []) {
        self.name = name
        self.arguments = arguments
    }
}

/// One interface of an exported object: its members, their handlers and initial property values.
public struct DBusInterface: Sendable {
    public let name: String
    public let methods: [DBusMethod]
    public let properties: [DBusProperty]
    public let signals: [DBusSignalDescription]

    public init(name: String, methods: [DBusMethod] = [], properties: [DBusProperty] = [],
                signals: [DBusSignalDescription] = []) {
        self.name = name
        self.methods = methods
        self.properties = properties
        self.signals = signals
    }

    /// Checks names and signatures and that property values match their types.
    func validate() throws(TriglavDBusError) {
        guard BusNames.isValidInterface(name) else { throw .invalidName(name) }
        for method in methods {
            guard BusNames.isValidMember(method.name) else { throw .invalidName("\(name).\(method.name)") }
            for argument in method.inArguments + method.outArguments
            where !Marshalling.isValidSingleSignature(argument.signature.rawValue) {
                throw .invalidValue(reason: "\(name).\(method.name) argument \(argument.name) has invalid type \(argument.signature)")
            }
        }
        for property in properties {
            guard BusNames.isValidMember(property.name) else { throw .invalidName("\(name).\(property.name)") }
            guard property.initialValue.signature == property.signature else {
                throw .invalidValue(reason: "\(name).\(property.name) is \(property.signature) but its value is \(property.initialValue.signature)")
            }
            try Marshalling.validate(property.initialValue)
            if property.access == .readWrite && property.setter == nil {
                throw .invalidValue(reason: "\(name).\(property.name) is writable but has no setter")
            }
        }
        for signal in signals where !BusNames.isValidMember(signal.name) {
            throw .invalidName("\(name).\(signal.name)")
        }
    }
}

/// Introspection XML generated from interface descriptions (the format `busctl introspect` reads).
public enum DBusIntrospection {
    public static let doctype = """
        <!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
         "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
        """

    /// The XML of one interface, indented by `indent` spaces.
    public static func xml(for interface: DBusInterfaceShape, indent: Int = 1) -> String {
        let pad = String(repeating: " ", count: indent)
        var lines = ["\(pad)<interface name=\"\(escape(interface.name))\">"]
        for method in interface.methods {
            let args = method.inArguments.map { (argument: $0, direction: "in") } + method.outArguments.map { (argument: $0, direction: "out") }
            if args.isEmpty {
                lines.append("\(pad) <method name=\"\(escape(method.name))\"/>")
                continue
            }
            lines.append("\(pad) <method name=\"\(escape(method.name))\">")
            for (argument, direction) in args {
                lines.append("\(pad)  <arg name=\"\(escape(argument.name))\" type=\"\(escape(argument.signature.rawValue))\" direction=\"\(direction)\"/>")
            }
            lines.append("\(pad) </method>")
        }
        for signal in interface.signals {
            if signal.arguments.isEmpty {
                lines.append("\(pad) <signal name=\"\(escape(signal.name))\"/>")
                continue
            }
            lines.append("\(pad) <signal name=\"\(escape(signal.name))\">")
            for argument in signal.arguments {
                lines.append("\(pad)  <arg name=\"\(escape(argument.name))\" type=\"\(escape(argument.signature.rawValue))\"/>")
            }
            lines.append("\(pad) </signal>")
        }
        for property in interface.properties {
            lines.append("\(pad) <property name=\"\(escape(property.name))\" type=\"\(escape(property.signature.rawValue))\" access=\"\(property.access.xmlValue)\"/>")
        }
        lines.append("\(pad)</interface>")
        return lines.joined(separator: "\n")
    }

    /// A whole `<node>` document.
    public static func document(interfaces: [DBusInterfaceShape], children: [String]) -> String {
        var parts = [doctype, "<node>"]
        parts += interfaces.map { xml(for: $0) }
        parts += children.map { " <node name=\"\(escape($0))\"/>" }
        parts.append("</node>")
        return parts.joined(separator: "\n") + "\n"
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}

/// The shape of an interface without handlers: what introspection describes.
public struct DBusInterfaceShape: Sendable, Hashable {
    public struct Method: Sendable, Hashable {
        public let name: String
        public let inArguments: [DBusArgument]
        public let outArguments: [DBusArgument]
    }
    public struct Property: Sendable, Hashable {
        public let name: String
        public let signature: DBusSignature
        public let access: DBusPropertyAccess
    }
    public let name: String
    public let methods: [Method]
    public let signals: [DBusSignalDescription]
    public let properties: [Property]

    public init(_ interface: DBusInterface) {
        name = interface.name
        methods = interface.methods.map { Method(name: $0.name, inArguments: $0.inArguments, outArguments: $0.outArguments) }
        signals = interface.signals
        properties = interface.properties.map { Property(name: $0.name, signature: $0.signature, access: $0.access) }
    }

    init(name: String, methods: [Method], signals: [DBusSignalDescription], properties: [Property]) {
        self.name = name
        self.methods = methods
        self.signals = signals
        self.properties = properties
    }

    static let introspectable = DBusInterfaceShape(
        name: DBusStandardInterface.introspectable,
        methods: [Method(name: "Introspect", inArguments: [], outArguments: [DBusArgument("xml_data", "s")])],
        signals: [], properties: [])

    static let peer = DBusInterfaceShape(
        name: DBusStandardInterface.peer,
        methods: [Method(name: "Ping", inArguments: [], outArguments: []),
                  Method(name: "GetMachineId", inArguments: [], outArguments: [DBusArgument("machine_uuid", "s")])],
        signals: [], properties: [])

    static let properties = DBusInterfaceShape(
        name: DBusStandardInterface.properties,
        methods: [
            Method(name: "Get", inArguments: [DBusArgument("interface_name", "s"), DBusArgument("property_name", "s")],
                   outArguments: [DBusArgument("value", "v")]),
            Method(name: "GetAll", inArguments: [DBusArgument("interface_name", "s")],
                   outArguments: [DBusArgument("props", "a{sv}")]),
            Method(name: "Set", inArguments: [DBusArgument("interface_name", "s"), DBusArgument("property_name", "s"),
                                              DBusArgument("value", "v")], outArguments: []),
        ],
        signals: [DBusSignalDescription("PropertiesChanged", [DBusArgument("interface_name", "s"),
                                                             DBusArgument("changed_properties", "a{sv}"),
                                                             DBusArgument("invalidated_properties", "as")])],
        properties: [])

    static let objectManager = DBusInterfaceShape(
        name: DBusStandardInterface.objectManager,
        methods: [Method(name: "GetManagedObjects", inArguments: [],
                         outArguments: [DBusArgument("object_paths_interfaces_and_properties", "a{oa{sa{sv}}}")])],
        signals: [
            DBusSignalDescription("InterfacesAdded", [DBusArgument("object_path", "o"),
                                                      DBusArgument("interfaces_and_properties", "a{sa{sv}}")]),
            DBusSignalDescription("InterfacesRemoved", [DBusArgument("object_path", "o"), DBusArgument("interfaces", "as")]),
        ],
        properties: [])
}
