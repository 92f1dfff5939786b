/// A path to a value inside a TOML document, printed the way a user would write it:
/// `server.clients[2].public_key`, `uplinks.interface."wwan*".tier`.
struct ConfigKeyPath: Hashable, Sendable, CustomStringConvertible {
    enum Component: Hashable, Sendable {
        case key(String)
        case index(Int)
    }

    private(set) var components: [Component] = []

    static let root = ConfigKeyPath()

    func appending(_ key: String) -> ConfigKeyPath {
        var copy = self
        copy.components.append(.key(key))
        return copy
    }

    func appending(index: Int) -> ConfigKeyPath {
        var copy = self
        copy.components.append(.index(index))
        return copy
    }

    var description: String {
        var text = ""
        for component in components {
            switch component {
            case .key(let key):
                if !text.isEmpty { text += "." }
                text += Self.isBareKey(key) ? key : "\"\(key)\""
            case .index(let index):
                text += "[\(index)]"
            }
        }
        return text
    }

    /// TOML bare keys: ASCII letters, digits, '_' and '-'. Anything else must be quoted.
    private static func isBareKey(_ key: String) -> Bool {
        !key.isEmpty && key.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-")
        }
    }
}
