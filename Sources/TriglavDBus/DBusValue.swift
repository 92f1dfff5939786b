/// A D-Bus object path such as `/org/example/thing/3`. Valid by construction: the initializer
/// checks the D-Bus path grammar, so a marshaller never sees an invalid path.
public struct DBusObjectPath: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: String

    /// Returns nil unless `rawValue` is a valid object path (`/`, or `/`-separated non-empty
    /// elements of `[A-Za-z0-9_]`, no trailing slash).
    public init?(_ rawValue: String) {
        guard DBusObjectPath.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    public static let root = DBusObjectPath(checked: "/")

    /// For literals known to be valid; traps on a programming error, never on input.
    public init(checked rawValue: String) {
        precondition(DBusObjectPath.isValid(rawValue), "invalid D-Bus object path literal \(rawValue)")
        self.rawValue = rawValue
    }

    public var description: String { rawValue }

    public static func < (lhs: DBusObjectPath, rhs: DBusObjectPath) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Appends one element; `element` is sanitized to the path alphabet.
    public func appending(_ element: String) -> DBusObjectPath {
        let clean = String(element.unicodeScalars.map { DBusObjectPath.isPathCharacter($0) ? Character($0) : "_" })
        let safe = clean.isEmpty ? "_" : clean
        return DBusObjectPath(checked: rawValue == "/" ? "/" + safe : rawValue + "/" + safe)
    }

    /// True when `self` is strictly below `ancestor`.
    public func isDescendant(of ancestor: DBusObjectPath) -> Bool {
        if ancestor.rawValue == "/" { return rawValue != "/" }
        return rawValue.hasPrefix(ancestor.rawValue + "/")
    }

    /// The parent path, or nil for the root.
    public var parent: DBusObjectPath? {
        guard rawValue != "/" else { return nil }
        guard let slash = rawValue.lastIndex(of: "/") else { return nil }
        let head = String(rawValue[rawValue.startIndex..<slash])
        return DBusObjectPath(checked: head.isEmpty ? "/" : head)
    }

    /// The last element ("3" for `/org/example/thing/3`); empty for the root.
    public var lastElement: String {
        guard rawValue != "/", let slash = rawValue.lastIndex(of: "/") else { return "" }
        return String(rawValue[rawValue.index(after: slash)...])
    }

    static func isPathCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", "_": return true
        default: return false
        }
    }

    static func isValid(_ path: String) -> Bool {
        if path == "/" { return true }
        guard path.hasPrefix("/"), !path.hasSuffix("/") else { return false }
        for element in path.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            guard !element.isEmpty, element.unicodeScalars.allSatisfy(isPathCharacter) else { return false }
        }
        return true
    }
}

/// A D-Bus type signature such as `a{sv}`. Holds any string; `DBusSignature.isValidSingle`
/// checks a complete single type with libdbus before anything is marshalled.
public struct DBusSignature: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }
}

/// One entry of a D-Bus dictionary (`{kv}`), kept in order.
public struct DBusDictEntry: Sendable, Hashable {
    public var key: DBusValue
    public var value: DBusValue
    public init(_ key: DBusValue, _ value: DBusValue) {
        self.key = key
        self.value = value
    }
}

/// A D-Bus value of any type, marshalled to and from libdbus messages by this module.
///
/// Containers carry their element signature so that empty arrays and dictionaries still have a
/// type. Invariants the marshaller checks (and reports as `TriglavDBusError.invalidValue`, never a
/// trap): array elements match the element signature, strings contain no NUL, dictionary keys are
/// basic types.
public indirect enum DBusValue: Sendable, Hashable {
    case byte(UInt8)
    case boolean(Bool)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case double(Double)
    case string(String)
    case objectPath(DBusObjectPath)
    case signature(DBusSignature)
    /// An array whose elements all have type `elementSignature`.
    case array(elementSignature: DBusSignature, [DBusValue])
    /// A dictionary `a{kv}`; entries keep their order.
    case dictionary(keySignature: DBusSignature, valueSignature: DBusSignature, [DBusDictEntry])
    case structure([DBusValue])
    case variant(DBusValue)

    /// The D-Bus type signature of this value.
    public var signature: DBusSignature {
        switch self {
        case .byte: return "y"
        case .boolean: return "b"
        case .int16: return "n"
        case .uint16: return "q"
        case .int32: return "i"
        case .uint32: return "u"
        case .int64: return "x"
        case .uint64: return "t"
        case .double: return "d"
        case .string: return "s"
        case .objectPath: return "o"
        case .signature: return "g"
        case .array(let element, _): return DBusSignature("a" + element.rawValue)
        case .dictionary(let key, let value, _): return DBusSignature("a{" + key.rawValue + value.rawValue + "}")
        case .structure(let fields): return DBusSignature("(" + fields.map(\.signature.rawValue).joined() + ")")
        case .variant: return "v"
        }
    }
}

// MARK: - Convenience constructors and accessors

extension DBusValue {
    /// `as`
    public static func stringArray(_ strings: [String]) -> DBusValue {
        .array(elementSignature: "s", strings.map(DBusValue.string))
    }

    /// `ao`
    public static func objectPathArray(_ paths: [DBusObjectPath]) -> DBusValue {
        .array(elementSignature: "o", paths.map(DBusValue.objectPath))
    }

    /// `a{sv}` from ordered pairs.
    public static func vardict(_ pairs: [(String, DBusValue)]) -> DBusValue {
        .dictionary(keySignature: "s", valueSignature: "v",
                    pairs.map { DBusDictEntry(.string($0.0), .variant($0.1)) })
    }

    /// `a{sv}` from a dictionary (keys sorted, so output is deterministic).
    public static func vardict(_ dictionary: [String: DBusValue]) -> DBusValue {
        vardict(dictionary.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    /// The value inside any number of variant wrappers.
    public var unwrapped: DBusValue {
        if case .variant(let inner) = self { return inner.unwrapped }
        return self
    }

    public var stringValue: String? {
        if case .string(let s) = unwrapped { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .boolean(let b) = unwrapped { return b }
        return nil
    }

    public var objectPathValue: DBusObjectPath? {
        if case .objectPath(let p) = unwrapped { return p }
        return nil
    }

    public var doubleValue: Double? {
        if case .double(let d) = unwrapped { return d }
        return nil
    }

    /// Any unsigned or non-negative signed integer, widened.
    public var uint64Value: UInt64? {
        switch unwrapped {
        case .byte(let v): return UInt64(v)
        case .uint16(let v): return UInt64(v)
        case .uint32(let v): return UInt64(v)
        case .uint64(let v): return v
        case .int16(let v): return v >= 0 ? UInt64(v) : nil
        case .int32(let v): return v >= 0 ? UInt64(v) : nil
        case .int64(let v): return v >= 0 ? UInt64(v) : nil
        default: return nil
        }
    }

    /// Elements of an array, or nil.
    public var arrayValue: [DBusValue]? {
        if case .array(_, let elements) = unwrapped { return elements }
        return nil
    }

    /// A dictionary with string keys (`a{s…}`), variants unwrapped; nil for other types.
    public var stringKeyedDictionary: [String: DBusValue]? {
        guard case .dictionary(_, _, let entries) = unwrapped else { return nil }
        var result: [String: DBusValue] = [:]
        for entry in entries {
            guard case .string(let key) = entry.key else { return nil }
            result[key] = entry.value.unwrapped
        }
        return result
    }
}
