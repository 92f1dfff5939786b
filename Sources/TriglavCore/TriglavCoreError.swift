/// Errors from parsing the core value types. Each case carries the offending text.
public enum TriglavCoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidInterfaceName(String, reason: String)
    case invalidPrefix(String, reason: String)
    case invalidEndpoint(String, reason: String)

    public var description: String {
        switch self {
        case .invalidInterfaceName(let name, let reason):
            return "invalid interface name '\(name)': \(reason)"
        case .invalidPrefix(let text, let reason):
            return "invalid address prefix '\(text)': \(reason) (example: 10.77.0.2/24 or fd77::2/64)"
        case .invalidEndpoint(let text, let reason):
            return "invalid endpoint '\(text)': \(reason) (example: 203.0.113.5:7443 or [2001:db8::5]:7443)"
        }
    }
}
