#if canImport(Glibc)
import Glibc
#endif
internal import CTriglavShims
import TriglavCore

/// Conversions between `IPEndpoint` and the kernel's sockaddr_in/sockaddr_in6, written into caller storage
/// so the packet path allocates nothing.
enum SocketAddress {
    /// Writes `endpoint` into `storage`; returns the socklen.
    static func write(_ endpoint: IPEndpoint, into storage: UnsafeMutablePointer<sockaddr_storage>) -> socklen_t {
        let raw = UnsafeMutableRawPointer(storage)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<sockaddr_storage>.size)
        switch endpoint.address {
        case .v4(let value):
            let sin = raw.assumingMemoryBound(to: sockaddr_in.self)
            sin.pointee.sin_family = sa_family_t(AF_INET)
            sin.pointee.sin_port = endpoint.port.bigEndian
            sin.pointee.sin_addr.s_addr = value.bigEndian
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        case .v6:
            let sin6 = raw.assumingMemoryBound(to: sockaddr_in6.self)
            sin6.pointee.sin6_family = sa_family_t(AF_INET6)
            sin6.pointee.sin6_port = endpoint.port.bigEndian
            let bytes = endpoint.address.bytes
            withUnsafeMutableBytes(of: &sin6.pointee.sin6_addr) { target in
                for index in 0..<16 { target[index] = bytes[index] }
            }
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }

    /// Whether two kernel-filled addresses are the same (their first `length` bytes; the kernel zeroes the padding).
    static func isSame(_ first: sockaddr_storage, length: socklen_t, as second: sockaddr_storage, length secondLength: socklen_t) -> Bool {
        guard length == secondLength else { return false }
        return withUnsafeBytes(of: first) { left in
            withUnsafeBytes(of: second) { right in
                guard let leftBytes = left.baseAddress, let rightBytes = right.baseAddress else { return false }
                return memcmp(leftBytes, rightBytes, min(Int(length), left.count)) == 0
            }
        }
    }

    /// Reads an endpoint back; v4-mapped IPv6 addresses become IPv4. Nil for other families.
    static func read(_ storage: UnsafePointer<sockaddr_storage>) -> IPEndpoint? {
        let raw = UnsafeRawPointer(storage)
        switch Int32(storage.pointee.ss_family) {
        case AF_INET:
            let sin = raw.assumingMemoryBound(to: sockaddr_in.self).pointee
            return IPEndpoint(address: .v4(UInt32(bigEndian: sin.sin_addr.s_addr)), port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = raw.assumingMemoryBound(to: sockaddr_in6.self).pointee
            let port = UInt16(bigEndian: sin6.sin6_port)
            var bytes = [UInt8](repeating: 0, count: 16)
            withUnsafeBytes(of: sin6.sin6_addr) { source in
                for index in 0..<16 { bytes[index] = source[index] }
            }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff,
               let v4 = IPAddress(bytes: bytes[12..<16]) {
                return IPEndpoint(address: v4, port: port)
            }
            guard let address = IPAddress(bytes: bytes) else { return nil }
            return IPEndpoint(address: address, port: port)
        default:
            return nil
        }
    }
}

/// bind(2) and getsockname(2) in endpoint terms, for sockets other modules own (the daemon's metrics listener).
public enum SocketBinding {
    /// Binds `fd` to `endpoint`: 0, or -1 with errno set.
    public static func bind(_ fd: Int32, to endpoint: IPEndpoint) -> Int32 {
        var storage = sockaddr_storage()
        let length = SocketAddress.write(endpoint, into: &storage)
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
    }

    /// The endpoint `fd` is bound to (the ephemeral port after binding port 0); nil when getsockname fails.
    public static func localEndpoint(of fd: Int32) -> IPEndpoint? {
        endpoint(of: fd) { getsockname($0, $1, $2) }
    }

    /// The endpoint a connected `fd` talks to; nil when getpeername fails (not connected).
    static func peerEndpoint(of fd: Int32) -> IPEndpoint? {
        endpoint(of: fd) { getpeername($0, $1, $2) }
    }

    private static func endpoint(of fd: Int32,
                                 _ query: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32)
        -> IPEndpoint? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { query(fd, $0, &length) }
        }
        return rc == 0 ? SocketAddress.read(&storage) : nil
    }
}
