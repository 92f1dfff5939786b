/// An IPv4 or IPv6 address as raw network-order bytes, parsed and printed without libc.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6(high: UInt64, low: UInt64)

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (with `::` compression and an optional
    /// embedded IPv4 tail). Returns nil for anything else.
    public init?(_ text: String) {
        if let v4 = IPAddress.parseIPv4(Substring(text)) {
            self = .v4(v4)
        } else if let (high, low) = IPAddress.parseIPv6(text) {
            self = .v6(high: high, low: low)
        } else {
            return nil
        }
    }

    /// Builds an address from 4 or 16 network-order bytes.
    public init?(bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        switch array.count {
        case 4:
            self = .v4(array.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            let high = array[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let low = array[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            self = .v6(high: high, low: low)
        default:
            return nil
        }
    }

    public var isIPv4: Bool { if case .v4 = self { true } else { false } }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let value):
            return (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) }
        case .v6(let high, let low):
            return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
        }
    }

    /// Bit length of the address family (32 or 128).
    public var bitWidth: Int { isIPv4 ? 32 : 128 }

    public var description: String {
        switch self {
        case .v4:
            return bytes.map(String.init).joined(separator: ".")
        case .v6:
            let b = bytes
            let groups = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
            // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on ties.
            var bestStart = -1, bestLength = 0, index = 0
            while index < 8 {
                if groups[index] == 0 {
                    var end = index
                    while end < 8 && groups[end] == 0 { end += 1 }
                    if end - index > bestLength { bestStart = index; bestLength = end - index }
                    index = end
                } else {
                    index += 1
                }
            }
            let hex = groups.map { String($0, radix: 16) }
            guard bestLength >= 2 else { return hex.joined(separator: ":") }
            let head = hex[..<bestStart].joined(separator: ":")
            let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
            return head + "::" + tail
        }
    }

    private static func parseIPv4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  !(part.count > 1 && part.first == "0"),
                  let octet = UInt32(part), octet <= 255 else { return nil }
            value = value << 8 | octet
        }
        return value
    }

    private static func parseIPv6(_ text: String) -> (UInt64, UInt64)? {
        guard text.contains(":"), text.utf8.count <= 45 else { return nil }
        let halves = text.components(separatedByDoubleColon: ())
        guard halves.count <= 2 else { return nil }
        func groups(_ part: Substring, allowIPv4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            var result: [UInt16] = []
            for (index, field) in fields.enumerated() {
                if allowIPv4Tail, index == fields.count - 1, field.contains(".") {
                    guard let v4 = parseIPv4(field) else { return nil }
                    result.append(UInt16(v4 >> 16)); result.append(UInt16(v4 & 0xffff))
                } else {
                    guard (1...4).contains(field.count), let group = UInt16(field, radix: 16) else { return nil }
                    result.append(group)
                }
            }
            return result
        }
        var all: [UInt16]
        if halves.count == 2 {
            guard let head = groups(halves[0], allowIPv4Tail: false),
                  let tail = groups(halves[1], allowIPv4Tail: true),
                  head.count + tail.count <= 7 else { return nil }
            all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let only = groups(halves[0], allowIPv4Tail: true), only.count == 8 else { return nil }
            all = only
        }
        let high = all[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let low = all[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return (high, low)
    }
}

extension String {
    /// Splits at "::" (at most meaningful once in IPv6 text); more than one occurrence yields > 2 parts.
    fileprivate func components(separatedByDoubleColon _: Void) -> [Substring] {
        var parts: [Substring] = []
        var start = startIndex
        var index = startIndex
        while index < endIndex {
            let next = self.index(after: index)
            if self[index] == ":", next < endIndex, self[next] == ":" {
                parts.append(self[start..<index])
                start = self.index(after: next)
                index = start
            } else {
                index = next
            }
        }
        parts.append(self[start...])
        return parts
    }
}

/// An address with a prefix length, e.g. 10.77.0.2/24 or fd00::/64.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    public init(address: IPAddress, length: Int) throws(TriglavCoreError) {
        guard (0...address.bitWidth).contains(length) else {
            throw .invalidPrefix("\(address)/\(length)", reason: "prefix length must be 0 to \(address.bitWidth)")
        }
        self.address = address
        self.length = length
    }

    /// Parses "ADDRESS/LENGTH"; a bare address means a host prefix (/32 or /128).
    public init(_ text: String) throws(TriglavCoreError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else {
            throw .invalidPrefix(text, reason: "expected an IPv4 or IPv6 address, optionally followed by /LENGTH")
        }
        var length = address.bitWidth
        if parts.count == 2 {
            guard let parsed = Int(parts[1]) else {
                throw .invalidPrefix(text, reason: "prefix length must be a number")
            }
            length = parsed
        }
        try self.init(address: address, length: length)
    }

    public var description: String { "\(address)/\(length)" }

    /// Whether `other` lies inside this prefix.
    public func contains(_ other: IPAddress) -> Bool {
        guard other.isIPv4 == address.isIPv4 else { return false }
        let mine = address.bytes, theirs = other.bytes
        var remaining = length
        for index in 0..<mine.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            if mine[index] & mask != theirs[index] & mask { return false }
            remaining -= bits
        }
        return true
    }
}

/// An address and port, the identity of a UDP/TCP peer.
public struct IPEndpoint: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses "1.2.3.4:7443", "[2001:db8::1]:7443", or a bare address with `defaultPort`.
    public init(_ text: String, defaultPort: UInt16 = DEFAULT_PORT) throws(TriglavCoreError) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"),
                  let address = IPAddress(String(text[text.index(after: text.startIndex)..<close])),
                  !address.isIPv4 else {
                throw .invalidEndpoint(text, reason: "expected [IPv6]:PORT")
            }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                self.init(address: address, port: defaultPort)
            } else if rest.first == ":", let port = UInt16(rest.dropFirst()), port != 0 {
                self.init(address: address, port: port)
            } else {
                throw .invalidEndpoint(text, reason: "port must be 1 to 65535")
            }
        } else if let address = IPAddress(text) {
            self.init(address: address, port: defaultPort)
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let address = IPAddress(String(parts[0])), address.isIPv4 else {
                throw .invalidEndpoint(text, reason: "expected IPv4:PORT, [IPv6]:PORT or a bare address")
            }
            guard let port = UInt16(parts[1]), port != 0 else {
                throw .invalidEndpoint(text, reason: "port must be 1 to 65535")
            }
            self.init(address: address, port: port)
        }
    }

    public var description: String {
        address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}
