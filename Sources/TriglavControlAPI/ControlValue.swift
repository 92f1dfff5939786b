/// The few value types the org.triglav API uses, independent of any D-Bus library, so the daemon
/// adaptor and the CLI share one description of every property (name, type, value).
public enum ControlValue: Sendable, Hashable {
    case string(String)
    case boolean(Bool)
    case uint32(UInt32)
    case uint64(UInt64)
    case double(Double)
    case strings([String])
    case objectPath(String)
    case objectPaths([String])
    /// An array of structures, `a(<fields>)`: each record's values in `fields` order (`fields` is the structure's
    /// member signature, e.g. `"ust"`, kept so an empty array still has its type).
    case records(fields: String, [[ControlValue]])

    /// The D-Bus signature.
    public var signature: String {
        switch self {
        case .string: return "s"
        case .boolean: return "b"
        case .uint32: return "u"
        case .uint64: return "t"
        case .double: return "d"
        case .strings: return "as"
        case .objectPath: return "o"
        case .objectPaths: return "ao"
        case .records(let fields, _): return "a(\(fields))"
        }
    }

    public var string: String? {
        switch self {
        case .string(let s), .objectPath(let s): return s
        default: return nil
        }
    }

    public var boolean: Bool? { if case .boolean(let b) = self { return b } else { return nil } }
    public var uint64: UInt64? {
        switch self {
        case .uint64(let v): return v
        case .uint32(let v): return UInt64(v)
        default: return nil
        }
    }
    public var uint32: UInt32? { if case .uint32(let v) = self { return v } else { return nil } }
    public var double: Double? { if case .double(let d) = self { return d } else { return nil } }
    public var records: [[ControlValue]]? { if case .records(_, let records) = self { return records } else { return nil } }
    public var strings: [String]? {
        switch self {
        case .strings(let s), .objectPaths(let s): return s
        default: return nil
        }
    }
}

/// One property of an org.triglav interface, as dbus/org.triglav.xml declares it.
public struct PropertySpec: Sendable, Hashable {
    public let name: String
    public let signature: String
    public let writable: Bool
    /// Counters and measurements: PropertiesChanged at most once per
    /// `TriglavBus.counterSignalIntervalMilliseconds`.
    public let rateLimited: Bool

    public init(_ name: String, _ signature: String, writable: Bool = false, rateLimited: Bool = false) {
        self.name = name
        self.signature = signature
        self.writable = writable
        self.rateLimited = rateLimited
    }
}

/// A status record that maps one-to-one onto the properties of one interface.
public protocol PropertyRecord: Sendable, Equatable {
    /// The interface's properties in documentation order.
    static var propertySpecs: [PropertySpec] { get }
    /// Current values, in `propertySpecs` order.
    var propertyValues: [(name: String, value: ControlValue)] { get }
    /// Builds the record from property values; missing or mistyped values fall back to defaults so a
    /// CLI keeps working against a slightly different daemon.
    init(propertyValues: [String: ControlValue])
}
