internal import TOMLKit

/// A parsed TOML value, copied out of TOMLKit right after parsing so the rest of the module works on
/// plain Sendable values and TOMLKit (a C++ library underneath) never leaks into public signatures.
indirect enum TOMLNode: Sendable {
    case table([String: TOMLNode])
    case array([TOMLNode])
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    /// Dates and times: valid TOML, but no Triglav key takes one.
    case dateOrTime(String)

    /// "a string", "an integer", … for messages like "expected a string, got an integer".
    var kindDescription: String {
        switch self {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a floating-point number"
        case .boolean: "a boolean"
        case .dateOrTime: "a date/time"
        }
    }

    /// Parses a TOML document into its root table.
    static func parseDocument(_ text: String) throws(TOMLSyntaxError) -> [String: TOMLNode] {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw TOMLSyntaxError(message: error.description,
                                  location: SourceLocation(line: error.source.begin.line,
                                                           column: error.source.begin.column))
        } catch {
            throw TOMLSyntaxError(message: String(describing: error), location: nil)
        }
        return convert(table)
    }

    private static func convert(_ table: TOMLTable) -> [String: TOMLNode] {
        var entries: [String: TOMLNode] = [:]
        for (key, value) in table {
            entries[key] = convert(value)
        }
        return entries
    }

    private static func convert(_ value: any TOMLValueConvertible) -> TOMLNode {
        switch value.type {
        case .table:
            return .table(value.table.map(convert) ?? [:])
        case .array:
            guard let array = value.array else { return .array([]) }
            return .array(array.map { convert($0) })
        case .string:
            return .string(value.string ?? "")
        case .int:
            return value.int.map(TOMLNode.integer) ?? .dateOrTime(value.debugDescription)
        case .double:
            return .float(value.double ?? .nan)
        case .bool:
            return .boolean(value.bool ?? false)
        case .date, .time, .dateTime:
            return .dateOrTime(value.debugDescription)
        }
    }
}

/// A TOML syntax error with its position when the parser reports one.
struct TOMLSyntaxError: Error {
    let message: String
    let location: SourceLocation?
}
