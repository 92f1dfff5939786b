public import TriglavControlAPI
public import TriglavDBus

extension ControlValue {
    /// The D-Bus value of this property value.
    public var dbusValue: DBusValue {
        switch self {
        case .string(let s): return .string(s)
        case .boolean(let b): return .boolean(b)
        case .uint32(let v): return .uint32(v)
        case .uint64(let v): return .uint64(v)
        case .double(let d): return .double(d)
        case .strings(let list): return .stringArray(list)
        case .objectPath(let p): return .objectPath(DBusObjectPath(p) ?? .root)
        case .objectPaths(let list): return .objectPathArray(list.compactMap(DBusObjectPath.init))
        case .records(let fields, let records):
            return .array(elementSignature: DBusSignature("(\(fields))"), records.map { .structure($0.map(\.dbusValue)) })
        }
    }

    /// The value for a D-Bus value of a type the API uses (variants unwrapped); nil for other types.
    public init?(_ value: DBusValue) {
        switch value.unwrapped {
        case .string(let s): self = .string(s)
        case .boolean(let b): self = .boolean(b)
        case .uint32(let v): self = .uint32(v)
        case .uint64(let v): self = .uint64(v)
        case .double(let d): self = .double(d)
        case .objectPath(let p): self = .objectPath(p.rawValue)
        case .array(let element, let items) where element == "s": self = .strings(items.compactMap(\.stringValue))
        case .array(let element, let items) where element == "o": self = .objectPaths(items.compactMap { $0.objectPathValue?.rawValue })
        case .array(let element, let items) where element.rawValue.hasPrefix("("):
            var records: [[ControlValue]] = []
            for item in items {
                guard case .structure(let fields) = item else { return nil }
                let values = fields.compactMap(ControlValue.init)
                guard values.count == fields.count else { return nil }
                records.append(values)
            }
            self = .records(fields: String(element.rawValue.dropFirst().dropLast()), records)
        default: return nil
        }
    }
}

extension PropertyRecord {
    /// Property values as D-Bus values.
    public var dbusProperties: [String: DBusValue] {
        Dictionary(uniqueKeysWithValues: propertyValues.map { ($0.name, $0.value.dbusValue) })
    }
}
