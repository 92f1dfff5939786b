/// Name of a network interface as the kernel knows it (1–15 bytes, no '/', whitespace or NUL).
public struct InterfaceName: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let rawValue: String

    /// Validates `name` against the kernel's rules for interface names (IFNAMSIZ 16 including NUL).
    public init(_ name: String) throws(TriglavCoreError) {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 15 else {
            throw .invalidInterfaceName(name, reason: "must be 1 to 15 bytes long")
        }
        guard name != "." && name != "..",
              !bytes.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 <= 0x20 || $0 == 0x7f })
        else {
            throw .invalidInterfaceName(name, reason: "must not contain '/', ':', whitespace or control characters")
        }
        rawValue = name
    }

    public var description: String { rawValue }
    public static func < (lhs: InterfaceName, rhs: InterfaceName) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Identifies one uplink of a tunnel for its whole lifetime. Never reused within a daemon run,
/// so a stale reference can't silently point at a new uplink.
public struct UplinkID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "uplink#\(rawValue)" }
    public static func < (lhs: UplinkID, rhs: UplinkID) -> Bool { lhs.rawValue < rhs.rawValue }
}
