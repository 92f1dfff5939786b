import TriglavCore

/// Address arithmetic the validators need and TriglavCore doesn't offer.
extension IPPrefix {
    /// The prefix with its host bits cleared (what `ip route` accepts), e.g. 10.0.0.0/8 for 10.1.2.3/8.
    var network: IPPrefix {
        let masked = IPPrefix.mask(address.bytes, keepingBits: length)
        guard let address = IPAddress(bytes: masked), let network = try? IPPrefix(address: address, length: length) else {
            preconditionFailure("masking keeps the address family and the prefix length valid")
        }
        return network
    }

    /// Whether the address part has host bits set (10.1.2.3/8 rather than 10.0.0.0/8).
    var hasHostBits: Bool { network.address != address }

    /// Whether `candidate` is the network address (all host bits zero) of this prefix.
    func isNetworkAddress(_ candidate: IPAddress) -> Bool {
        length < address.bitWidth && contains(candidate)
            && IPPrefix.mask(candidate.bytes, keepingBits: length) == candidate.bytes
    }

    /// Whether `candidate` is the IPv4 broadcast address (all host bits one) of this prefix.
    func isBroadcastAddress(_ candidate: IPAddress) -> Bool {
        guard candidate.isIPv4, length < 31, contains(candidate) else { return false }
        let bytes = candidate.bytes
        var remaining = length
        for byte in bytes {
            let hostMask = UInt8(truncatingIfNeeded: 0xff >> min(8, remaining))
            if byte & hostMask != hostMask { return false }
            remaining = max(0, remaining - 8)
        }
        return true
    }

    /// Usable host addresses besides the network (and IPv4 broadcast) address, capped at Int.max.
    var hostCapacity: Int {
        let hostBits = address.bitWidth - length
        guard hostBits < 62 else { return Int.max }
        let all = 1 << hostBits
        return address.isIPv4 ? max(0, all - 2) : all - 1
    }

    private static func mask(_ bytes: [UInt8], keepingBits bits: Int) -> [UInt8] {
        var remaining = bits
        return bytes.map { byte in
            let keep = min(8, remaining)
            remaining = max(0, remaining - 8)
            return keep == 0 ? 0 : byte & UInt8(truncatingIfNeeded: 0xff << (8 - keep))
        }
    }
}
