internal import CDBus
internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif

/// Converts between `DBusValue` and libdbus message bodies. Values are validated completely before
/// the first byte is appended, so a message is never left half-built and libdbus's own argument
/// checks (which abort the process) are never reached.
enum Marshalling {
    static let basicTypeCodes: Set<Character> = ["y", "b", "n", "q", "i", "u", "x", "t", "d", "s", "o", "g"]

    // MARK: Writing

    static func append(_ values: [DBusValue], to message: OpaquePointer) throws(TriglavDBusError) {
        for value in values { try validate(value) }
        var iter = DBusMessageIter()
        dbus_message_iter_init_append(message, &iter)
        for value in values {
            guard appendValidated(value, to: &iter) else {
                throw .invalidValue(reason: "out of memory while marshalling \(value.signature)")
            }
        }
    }

    /// Checks every invariant libdbus would otherwise enforce by aborting.
    static func validate(_ value: DBusValue) throws(TriglavDBusError) {
        let signature = value.signature.rawValue
        guard isValidSingleSignature(signature) else {
            throw .invalidValue(reason: "invalid or too deeply nested type signature \(signature)")
        }
        try validateTree(value)
    }

    static func isValidSingleSignature(_ signature: String) -> Bool {
        guard !signature.utf8.contains(0) else { return false }
        return dbus_signature_validate_single(signature, nil) != 0
    }

    private static func validateTree(_ value: DBusValue) throws(TriglavDBusError) {
        switch value {
        case .string(let s):
            if s.utf8.contains(0) { throw .invalidValue(reason: "string contains a NUL byte") }
        case .signature(let g):
            if !g.rawValue.isEmpty && dbus_signature_validate(g.rawValue, nil) == 0 {
                throw .invalidValue(reason: "invalid signature value \(g.rawValue)")
            }
        case .array(let element, let elements):
            guard isValidSingleSignature(element.rawValue) else {
                throw .invalidValue(reason: "invalid array element signature \(element.rawValue)")
            }
            for item in elements {
                guard item.signature == element else {
                    throw .invalidValue(reason: "array of \(element.rawValue) holds a \(item.signature.rawValue)")
                }
                try validateTree(item)
            }
        case .dictionary(let key, let valueSignature, let entries):
            guard key.rawValue.count == 1, let code = key.rawValue.first, basicTypeCodes.contains(code) else {
                throw .invalidValue(reason: "dictionary key type \(key.rawValue) is not a basic type")
            }
            guard isValidSingleSignature(valueSignature.rawValue) else {
                throw .invalidValue(reason: "invalid dictionary value signature \(valueSignature.rawValue)")
            }
            for entry in entries {
                guard entry.key.signature == key, entry.value.signature == valueSignature else {
                    throw .invalidValue(reason: "dictionary a{\(key)\(valueSignature)} holds {\(entry.key.signature)\(entry.value.signature)}")
                }
                try validateTree(entry.key)
                try validateTree(entry.value)
            }
        case .structure(let fields):
            if fields.isEmpty { throw .invalidValue(reason: "empty structure") }
            for field in fields { try validateTree(field) }
        case .variant(let inner):
            try validate(inner)
        case .byte, .boolean, .int16, .uint16, .int32, .uint32, .int64, .uint64, .double, .objectPath:
            break
        }
    }

    private static func appendBasic<T>(_ iter: inout DBusMessageIter, _ type: Int, _ value: T) -> Bool {
        var copy = value
        return withUnsafePointer(to: &copy) { dbus_message_iter_append_basic(&iter, Int32(type), $0) != 0 }
    }

    private static func appendString(_ iter: inout DBusMessageIter, _ type: Int, _ string: String) -> Bool {
        string.withCString { cString in
            var pointer: UnsafePointer<CChar>? = cString
            return withUnsafePointer(to: &pointer) { dbus_message_iter_append_basic(&iter, Int32(type), $0) != 0 }
        }
    }

    private static func withContainer(_ iter: inout DBusMessageIter, _ type: Int, _ contained: String?,
                                      _ body: (inout DBusMessageIter) -> Bool) -> Bool {
        var sub = DBusMessageIter()
        let opened: Bool
        if let contained {
            opened = dbus_message_iter_open_container(&iter, Int32(type), contained, &sub) != 0
        } else {
            opened = dbus_message_iter_open_container(&iter, Int32(type), nil, &sub) != 0
        }
        guard opened else { return false }
        guard body(&sub) else {
            dbus_message_iter_abandon_container(&iter, &sub)
            return false
        }
        return dbus_message_iter_close_container(&iter, &sub) != 0
    }

    private static func appendValidated(_ value: DBusValue, to iter: inout DBusMessageIter) -> Bool {
        switch value {
        case .byte(let v): return appendBasic(&iter, TG_DBUS_TYPE_BYTE, v)
        case .boolean(let v): return appendBasic(&iter, TG_DBUS_TYPE_BOOLEAN, dbus_bool_t(v ? 1 : 0))
        case .int16(let v): return appendBasic(&iter, TG_DBUS_TYPE_INT16, v)
        case .uint16(let v): return appendBasic(&iter, TG_DBUS_TYPE_UINT16, v)
        case .int32(let v): return appendBasic(&iter, TG_DBUS_TYPE_INT32, v)
        case .uint32(let v): return appendBasic(&iter, TG_DBUS_TYPE_UINT32, v)
        case .int64(let v): return appendBasic(&iter, TG_DBUS_TYPE_INT64, v)
        case .uint64(let v): return appendBasic(&iter, TG_DBUS_TYPE_UINT64, v)
        case .double(let v): return appendBasic(&iter, TG_DBUS_TYPE_DOUBLE, v)
        case .string(let v): return appendString(&iter, TG_DBUS_TYPE_STRING, v)
        case .objectPath(let v): return appendString(&iter, TG_DBUS_TYPE_OBJECT_PATH, v.rawValue)
        case .signature(let v): return appendString(&iter, TG_DBUS_TYPE_SIGNATURE, v.rawValue)
        case .array(let element, let elements):
            return withContainer(&iter, TG_DBUS_TYPE_ARRAY, element.rawValue) { sub in
                elements.allSatisfy { appendValidated($0, to: &sub) }
            }
        case .dictionary(let key, let valueSignature, let entries):
            return withContainer(&iter, TG_DBUS_TYPE_ARRAY, "{\(key.rawValue)\(valueSignature.rawValue)}") { sub in
                entries.allSatisfy { entry in
                    withContainer(&sub, TG_DBUS_TYPE_DICT_ENTRY, nil) { pair in
                        appendValidated(entry.key, to: &pair) && appendValidated(entry.value, to: &pair)
                    }
                }
            }
        case .structure(let fields):
            return withContainer(&iter, TG_DBUS_TYPE_STRUCT, nil) { sub in
                fields.allSatisfy { appendValidated($0, to: &sub) }
            }
        case .variant(let inner):
            return withContainer(&iter, TG_DBUS_TYPE_VARIANT, inner.signature.rawValue) { sub in
                appendValidated(inner, to: &sub)
            }
        }
    }

    // MARK: Reading (libdbus has validated incoming messages, so reading can't fail)

    static func read(_ message: OpaquePointer) -> [DBusValue] {
        var iter = DBusMessageIter()
        guard dbus_message_iter_init(message, &iter) != 0 else { return [] }
        var values: [DBusValue] = []
        repeat {
            values.append(readOne(&iter))
        } while dbus_message_iter_next(&iter) != 0
        return values
    }

    private static func readBasic<T>(_ iter: inout DBusMessageIter, _ initial: T) -> T {
        var value = initial
        withUnsafeMutablePointer(to: &value) { dbus_message_iter_get_basic(&iter, $0) }
        return value
    }

    private static func readString(_ iter: inout DBusMessageIter) -> String {
        let pointer: UnsafePointer<CChar>? = readBasic(&iter, nil)
        return pointer.map { String(cString: $0) } ?? ""
    }

    private static func currentSignature(_ iter: inout DBusMessageIter) -> String {
        guard let raw = dbus_message_iter_get_signature(&iter) else { return "" }
        defer { dbus_free(raw) }
        return String(cString: raw)
    }

    private static func readOne(_ iter: inout DBusMessageIter) -> DBusValue {
        let type = Int(dbus_message_iter_get_arg_type(&iter))
        switch type {
        case TG_DBUS_TYPE_BYTE: return .byte(readBasic(&iter, UInt8(0)))
        case TG_DBUS_TYPE_BOOLEAN: return .boolean(readBasic(&iter, dbus_bool_t(0)) != 0)
        case TG_DBUS_TYPE_INT16: return .int16(readBasic(&iter, Int16(0)))
        case TG_DBUS_TYPE_UINT16: return .uint16(readBasic(&iter, UInt16(0)))
        case TG_DBUS_TYPE_INT32: return .int32(readBasic(&iter, Int32(0)))
        case TG_DBUS_TYPE_UINT32: return .uint32(readBasic(&iter, UInt32(0)))
        case TG_DBUS_TYPE_INT64: return .int64(readBasic(&iter, Int64(0)))
        case TG_DBUS_TYPE_UINT64: return .uint64(readBasic(&iter, UInt64(0)))
        case TG_DBUS_TYPE_DOUBLE: return .double(readBasic(&iter, Double(0)))
        case TG_DBUS_TYPE_STRING: return .string(readString(&iter))
        case TG_DBUS_TYPE_OBJECT_PATH:
            // libdbus validated the path on receipt.
            return .objectPath(DBusObjectPath(readString(&iter)) ?? .root)
        case TG_DBUS_TYPE_SIGNATURE: return .signature(DBusSignature(readString(&iter)))
        case TG_DBUS_TYPE_UNIX_FD:
            // We never ask for descriptors; close any we are handed so they don't leak.
            let fd = readBasic(&iter, Int32(-1))
            if fd >= 0 { close(fd) }
            return .int32(-1)
        case TG_DBUS_TYPE_VARIANT:
            var sub = DBusMessageIter()
            dbus_message_iter_recurse(&iter, &sub)
            return .variant(readOne(&sub))
        case TG_DBUS_TYPE_STRUCT:
            var sub = DBusMessageIter()
            dbus_message_iter_recurse(&iter, &sub)
            var fields: [DBusValue] = []
            while dbus_message_iter_get_arg_type(&sub) != Int32(TG_DBUS_TYPE_INVALID) {
                fields.append(readOne(&sub))
                dbus_message_iter_next(&sub)
            }
            return .structure(fields)
        case TG_DBUS_TYPE_ARRAY:
            let element = String(currentSignature(&iter).dropFirst())
            var sub = DBusMessageIter()
            dbus_message_iter_recurse(&iter, &sub)
            if element.hasPrefix("{") {
                let inner = element.dropFirst().dropLast()
                let keySignature = String(inner.prefix(1))
                let valueSignature = String(inner.dropFirst())
                var entries: [DBusDictEntry] = []
                while dbus_message_iter_get_arg_type(&sub) == Int32(TG_DBUS_TYPE_DICT_ENTRY) {
                    var pair = DBusMessageIter()
                    dbus_message_iter_recurse(&sub, &pair)
                    let key = readOne(&pair)
                    dbus_message_iter_next(&pair)
                    let value = readOne(&pair)
                    entries.append(DBusDictEntry(key, value))
                    dbus_message_iter_next(&sub)
                }
                return .dictionary(keySignature: DBusSignature(keySignature),
                                   valueSignature: DBusSignature(valueSignature), entries)
            }
            var elements: [DBusValue] = []
            while dbus_message_iter_get_arg_type(&sub) != Int32(TG_DBUS_TYPE_INVALID) {
                elements.append(readOne(&sub))
                dbus_message_iter_next(&sub)
            }
            return .array(elementSignature: DBusSignature(element), elements)
        default:
            return .structure([])
        }
    }
}
