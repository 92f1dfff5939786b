#if canImport(Glibc)
import Glibc
#endif
public import TriglavConfig
public import TriglavCore

/// Turns a profile's endpoint into an address to send to. Behind a protocol so tests need no DNS. A name without a
/// usable address throws `unresolvable` (the client manager counts any error of a resolver as that).
public protocol EndpointResolving: Sendable {
    func resolve(_ endpoint: RemoteEndpoint) throws(TriglavDaemonError) -> IPEndpoint
}

/// Resolves host names with getaddrinfo(3) (blocking: called on Connect and reload, and off the daemon's tick on the client
/// manager's resolution queue for retries and re-resolution), preferring
/// the first address the resolver returns, as the system's address selection ordered them.
public struct SystemEndpointResolver: EndpointResolving {
    public init() {}

    public func resolve(_ endpoint: RemoteEndpoint) throws(TriglavDaemonError) -> IPEndpoint {
        switch endpoint {
        case .address(let address):
            return address
        case .hostname(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            let rc = getaddrinfo(host, nil, &hints, &result)
            guard rc == 0, let first = result else {
                let reason = rc == 0 ? "no addresses" : String(cString: gai_strerror(rc))
                throw .unresolvable(endpoint: "\(endpoint)", reason: reason)
            }
            defer { freeaddrinfo(result) }
            var entry: UnsafeMutablePointer<addrinfo>? = first
            while let current = entry {
                if let address = Self.address(of: current.pointee) { return IPEndpoint(address: address, port: port) }
                entry = current.pointee.ai_next
            }
            throw .unresolvable(endpoint: "\(endpoint)", reason: "no IPv4 or IPv6 address")
        }
    }

    private static func address(of info: addrinfo) -> IPAddress? {
        guard let raw = info.ai_addr else { return nil }
        switch info.ai_family {
        case AF_INET:
            return raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin_addr) { IPAddress(bytes: $0) }
            }
        case AF_INET6:
            return raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin6_addr) { IPAddress(bytes: $0) }
            }
        default:
            return nil
        }
    }
}
