#if canImport(Glibc)
import Glibc
#endif
internal import CTriglavShims
import TriglavCore

/// A non-blocking UDP socket of one uplink or one server listener. Owns its fd; closes on `close()`/deinit.
/// Uplink sockets are bound to their interface with SO_BINDTODEVICE (so Wi-Fi and LTE each carry their own
/// share, whatever the default route says) and marked with SO_MARK (so the full-tunnel policy lets them
/// out). They do not bind a source address: the kernel picks the interface's current one per packet, so a
/// DHCP renumbering needs no socket rebuild. A socket bound to a device stays bound to that device's *index*:
/// if the interface is deleted and created again under the same name, every send fails with ENODEV (receives
/// just stay empty) until the socket is replaced; `boundInterfaceIndex` and `deviceVanished` tell its owner.
final class UDPSocket: @unchecked Sendable {
    static let transientErrors: Set<Int32> = [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ENETDOWN, EMSGSIZE, ENOBUFS]
    static let noBufferSpace: Int32 = ENOBUFS
    /// Send errors meaning the bound device no longer exists (deleted; its index is gone for good).
    static let deviceGoneErrors: Set<Int32> = [ENODEV, ENXIO]

    struct Options: Sendable {
        /// Interface to bind to (SO_BINDTODEVICE); nil for none.
        var device: InterfaceName?
        /// Local address and port to bind; nil binds the wildcard address and an ephemeral port.
        var localEndpoint: IPEndpoint?
        /// SO_MARK value; 0 for none.
        var mark: UInt32 = 0
        /// Socket buffer sizes in bytes (forced when privileged).
        var bufferBytes: Int32 = 4 << 20
        /// Receive the local address of every datagram (servers on wildcard addresses need it to reply).
        var packetInfo = false
    }

    let descriptor: OwnedDescriptor
    let family: Int32
    let label: String
    /// Datagrams the kernel refused to send, and the last errno it gave; read for statistics.
    var sendErrors = 0
    var sendDrops = 0
    var lastSendError: Int32 = 0
    /// Index of the interface bound with SO_BINDTODEVICE when the socket was opened; 0 for none.
    let boundInterfaceIndex: Int32
    /// Set (from either pump thread) when a send failed because the bound device is gone.
    let deviceVanished = AtomicFlag()

    /// Opens a socket of the family of `family` (the server's address family) with `options`.
    init(family: SocketFamily, options: Options, label: String) throws(TriglavDataPlaneError) {
        let socketFamily = family == .v4 ? AF_INET : AF_INET6
        self.family = socketFamily
        self.label = label
        let fd = try Syscall.libc("socket(\(family)) for \(label)") {
            socket(socketFamily, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        descriptor = OwnedDescriptor(fd)
        try Syscall.shim("set socket buffers of \(label)") { tg_socket_set_buffers(fd, options.bufferBytes, options.bufferBytes) }
        if socketFamily == AF_INET6 {
            // A listener on [::] serves only IPv6; IPv4 gets its own socket, so addresses are never v4-mapped.
            try Syscall.shim("IPV6_V6ONLY on \(label)") { tg_socket_set_v6only(fd, 1) }
        }
        if let device = options.device {
            do {
                try Syscall.shim("bind \(label) to device \(device)") { tg_socket_bind_to_device(fd, device.rawValue) }
            } catch {
                if case .systemCall(_, let code) = error, code == ENODEV { throw .noSuchInterface(device.rawValue) }
                throw error
            }
        }
        boundInterfaceIndex = options.device == nil ? 0 : (try? Syscall.shim("SO_BINDTOIFINDEX of \(label)") {
            tg_socket_bound_ifindex(fd)
        }) ?? 0
        if options.mark != 0 {
            try Syscall.shim("SO_MARK \(options.mark) on \(label)") { tg_socket_set_mark(fd, options.mark) }
        }
        if options.packetInfo {
            try Syscall.shim("enable PKTINFO on \(label)") { tg_socket_enable_pktinfo(fd, socketFamily) }
        }
        let local = options.localEndpoint ?? IPEndpoint(address: family == .v4 ? .v4(0) : .v6(high: 0, low: 0), port: 0)
        if options.localEndpoint != nil { try Syscall.shim("SO_REUSEADDR on \(label)") { tg_socket_set_reuseaddr(fd) } }
        var storage = sockaddr_storage()
        let length = SocketAddress.write(local, into: &storage)
        _ = try withUnsafePointer(to: &storage) { (pointer) throws(TriglavDataPlaneError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(TriglavDataPlaneError) in
                try Syscall.libc("bind \(label) to \(local)") { bind(fd, address, length) }
            }
        }
    }

    /// The bound local endpoint (the ephemeral port after binding to port 0).
    func localEndpoint() throws(TriglavDataPlaneError) -> IPEndpoint {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { (pointer) throws(TriglavDataPlaneError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(TriglavDataPlaneError) in
                try Syscall.libc("getsockname of \(label)") { getsockname(descriptor.raw, address, &length) }
            }
        }
        guard let endpoint = withUnsafePointer(to: &storage, { SocketAddress.read($0) }) else {
            throw .invalidAddress("local address of \(label)")
        }
        return endpoint
    }

    /// Sends one datagram (control path: handshakes, probes). Errors are counted, not thrown: UDP is lossy anyway.
    func sendOne(_ bytes: UnsafeRawBufferPointer, to address: UnsafePointer<sockaddr_storage>, length: socklen_t) {
        let result = address.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            sendto(descriptor.raw, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), pointer, length)
        }
        if result < 0 {
            sendErrors &+= 1
            lastSendError = errno
            if Self.deviceGoneErrors.contains(lastSendError) { _ = deviceVanished.setOnce() }
        }
    }

    /// The kernel's buffer sizes of this socket (SO_RCVBUF, SO_SNDBUF), which are twice what was granted.
    func bufferSizes() throws(TriglavDataPlaneError) -> (receive: Int32, send: Int32) {
        var receive: Int32 = 0
        var send: Int32 = 0
        try Syscall.shim("SO_RCVBUF/SO_SNDBUF of \(label)") { tg_socket_get_buffers(descriptor.raw, &receive, &send) }
        return (receive, send)
    }

    func close() { descriptor.close() }
}

/// IP address family of a socket.
enum SocketFamily: Sendable, CustomStringConvertible {
    case v4, v6
    init(of address: IPAddress) { self = address.isIPv4 ? .v4 : .v6 }
    var description: String { self == .v4 ? "IPv4" : "IPv6" }
}
