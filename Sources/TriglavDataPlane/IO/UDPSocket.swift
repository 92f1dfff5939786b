#if canImport(Glibc)
import Glibc
#endif
internal import CTriglavShims
import Synchronization
import TriglavCore

/// A non-blocking UDP socket of one uplink or one server listener. Owns its fd; closes on `close()`/deinit.
/// Every such socket refuses to fragment (IP_PMTUDISC_DO / IPV6_PMTUDISC_DO): a datagram larger than the path
/// MTU the kernel knows fails with EMSGSIZE (counted in `sendErrors`) instead of leaving in fragments.
/// Uplink sockets are bound to their interface with SO_BINDTODEVICE (so Wi-Fi and LTE each carry their own
/// share, whatever the default route says) and marked with SO_MARK (so the full-tunnel policy lets them
/// out). They bind the wildcard address but send from the interface's current address (`setSource`, passed
/// per datagram as IP_PKTINFO/IPV6_PKTINFO), so source-based policy routing (`ip rule from ADDR`) matches,
/// and a DHCP renumbering needs no socket rebuild: the owner refreshes the source (docs/DATAPLANE.md,
/// "Sockets"). A socket bound to a device stays bound to that device's *index*:
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
        /// SO_REUSEPORT: the socket joins (or starts) the reuseport group of its local endpoint (server listeners).
        var reusePort = false
        /// UDP_GRO (unless the environment's `TRIGLAV_UDP_GRO` is `0`): the kernel may hand over a run of one peer's
        /// datagrams as one (a sender's UDP GSO message arrives whole; a NIC's GRO joins the rest), so it must be read
        /// into a batch of `DatagramBatch.coalescingSlotSize` slots and split (`forEachReceivedDatagram`).
        var coalescesReceives = false
        /// Called (from the sending thread, at most once until `sourceRefreshed()`) when a send from the
        /// source set with `setSource` failed in a way a stale source causes, so the owner looks it up again.
        var sourceRejected: (@Sendable () -> Void)?
    }

    /// Send errors a source address that is no longer the interface's can cause: IPv4 reports a non-local
    /// source as ENETUNREACH, IPv6 as EINVAL (EADDRNOTAVAIL for good measure).
    static let staleSourceErrors: Set<Int32> = [ENETUNREACH, EINVAL, EADDRNOTAVAIL]

    let descriptor: OwnedDescriptor
    let family: Int32
    let label: String
    /// Datagrams the kernel refused to send, and the last errno it gave; read for statistics.
    var sendErrors = 0
    /// Whether `send(_:)` hands runs of equal datagrams to the kernel as one UDP GSO message
    /// (`DatagramBatch.markSegmentationRuns`); off after the kernel refused one for good, or when the environment's
    /// `TRIGLAV_UDP_GSO` is `0` (a diagnostic switch, for comparisons).
    var segmentationOffload = EnvironmentSwitch.isOn("TRIGLAV_UDP_GSO")
    /// Datagrams the kernel took as parts of UDP GSO messages.
    var segmentedDatagrams: UInt64 = 0
    /// Whether UDP_GRO is on: received datagrams may be runs to split (`Options.coalescesReceives`; off when the
    /// kernel refused it, which leaves every datagram separate).
    let coalescesReceives: Bool
    var sendDrops = 0
    var lastSendError: Int32 = 0
    /// Index of the interface bound with SO_BINDTODEVICE when the socket was opened; 0 for none.
    let boundInterfaceIndex: Int32
    /// Set (from either pump thread) when a send failed because the bound device is gone.
    let deviceVanished = AtomicFlag()
    /// Address every datagram leaves from (family 0: the kernel picks). Written by `setSource` and read by the
    /// senders only under the owner's lock (`ClientTunnel`'s state mutex), like the rest of the uplink's state.
    private var source = sockaddr_storage()
    private let sourceRejected: (@Sendable () -> Void)?
    /// Whether `sourceRejected` was called since the last `sourceRefreshed()`.
    private let sourceRefreshRequested = Atomic<Bool>(false)

    /// Opens a socket of the family of `family` (the server's address family) with `options`.
    init(family: SocketFamily, options: Options, label: String) throws(TriglavDataPlaneError) {
        let socketFamily = family == .v4 ? AF_INET : AF_INET6
        self.family = socketFamily
        self.label = label
        sourceRejected = options.sourceRejected
        let fd = try Syscall.libc("socket(\(family)) for \(label)") {
            socket(socketFamily, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        descriptor = OwnedDescriptor(fd)
        try Syscall.shim("set socket buffers of \(label)") { tg_socket_set_buffers(fd, options.bufferBytes, options.bufferBytes) }
        if socketFamily == AF_INET6 {
            // A listener on [::] serves only IPv6; IPv4 gets its own socket, so addresses are never v4-mapped.
            try Syscall.shim("IPV6_V6ONLY on \(label)") { tg_socket_set_v6only(fd, 1) }
        }
        try Syscall.shim("IP_PMTUDISC_DO on \(label)") { tg_socket_refuse_fragmentation(fd, socketFamily) }
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
        // Every datagram reports its outer ECN field, which decapsulation copies inward (RFC 6040).
        try Syscall.shim("enable IP_RECVTOS/IPV6_RECVTCLASS on \(label)") { tg_socket_enable_recv_ecn(fd, socketFamily) }
        coalescesReceives = options.coalescesReceives && EnvironmentSwitch.isOn("TRIGLAV_UDP_GRO") && tg_udp_enable_gro(fd) == 0
        let local = options.localEndpoint ?? IPEndpoint(address: family == .v4 ? .v4(0) : .v6(high: 0, low: 0), port: 0)
        if options.localEndpoint != nil { try Syscall.shim("SO_REUSEADDR on \(label)") { tg_socket_set_reuseaddr(fd) } }
        if options.reusePort { try Syscall.shim("SO_REUSEPORT on \(label)") { tg_socket_set_reuseport(fd) } }
        try Syscall.libc("bind \(label) to \(local)") { SocketBinding.bind(fd, to: local) }
    }

    /// The bound local endpoint (the ephemeral port after binding to port 0).
    func localEndpoint() throws(TriglavDataPlaneError) -> IPEndpoint {
        guard let endpoint = SocketBinding.localEndpoint(of: descriptor.raw) else {
            throw .invalidAddress("local address of \(label)")
        }
        return endpoint
    }

    /// Sends one datagram (control path: handshakes, probes, keepalives) from the source set with `setSource`.
    /// Errors are counted, not thrown: UDP is lossy anyway. Call under the owner's lock (it reads the source).
    func sendOne(_ bytes: UnsafeRawBufferPointer, to address: UnsafePointer<sockaddr_storage>, length: socklen_t) {
        var datagram = tg_datagram()
        datagram.buffer = UnsafeMutableRawPointer(mutating: bytes.baseAddress)
        datagram.length = bytes.count
        datagram.address = address.pointee
        datagram.address_length = length
        datagram.local_address = source
        let result = tg_sendmmsg(descriptor.raw, &datagram, 1)
        if result < 0 {
            sendErrors &+= 1
            lastSendError = -result
            if Self.deviceGoneErrors.contains(lastSendError) { _ = deviceVanished.setOnce() }
            if source.ss_family != 0, Self.staleSourceErrors.contains(lastSendError), let sourceRejected,
               sourceRefreshRequested.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
                sourceRejected()
            }
        }
    }

    /// Sets the address datagrams leave from (nil: let the kernel pick); it must be of the socket's family.
    /// Call under the owner's lock. Re-arms `Options.sourceRejected`.
    func setSource(_ address: IPAddress?) {
        if let address, SocketFamily(of: address) == (family == AF_INET ? .v4 : .v6) {
            _ = SocketAddress.write(IPEndpoint(address: address, port: 0), into: &source)
        } else {
            source = sockaddr_storage()
        }
        sourceRefreshRequested.store(false, ordering: .relaxed)
    }

    /// The source set with `setSource`, nil for none (allocates nothing; for the control path and tests).
    var sourceAddress: IPAddress? {
        withUnsafePointer(to: source) { SocketAddress.read($0)?.address }
    }

    /// Calls `body` with the source address to put into a batch slot (`DatagramBatch.prepareSend`'s
    /// `localAddress`), nil when the kernel picks. Call under the owner's lock.
    func withSource<R>(_ body: (UnsafePointer<sockaddr_storage>?) -> R) -> R {
        guard source.ss_family != 0 else { return body(nil) }
        return withUnsafePointer(to: source) { body($0) }
    }

    /// Connects the socket to `endpoint` (a route lookup with the socket's device, mark and bound address).
    func connect(to endpoint: IPEndpoint) throws(TriglavDataPlaneError) {
        var storage = sockaddr_storage()
        let length = SocketAddress.write(endpoint, into: &storage)
        _ = try withUnsafePointer(to: &storage) { (pointer) throws(TriglavDataPlaneError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(TriglavDataPlaneError) in
                try Syscall.libc("connect \(label) to \(endpoint)") { Glibc.connect(descriptor.raw, address, length) }
            }
        }
    }

    /// The path MTU of a connected socket's route (IP_MTU / IPV6_MTU): the link MTU, a route's `mtu`
    /// attribute, or what ICMP "fragmentation needed" / "packet too big" taught the kernel.
    func pathMTU() throws(TriglavDataPlaneError) -> Int {
        Int(try Syscall.shim("IP_MTU of \(label)") { tg_socket_path_mtu(descriptor.raw, family) })
    }

    /// The socket's path-MTU discovery mode (IP_PMTUDISC_*; `refusesFragmentation` is the one it sets).
    func mtuDiscoveryMode() throws(TriglavDataPlaneError) -> Int32 {
        try Syscall.shim("IP_MTU_DISCOVER of \(label)") { tg_socket_mtu_discovery_mode(descriptor.raw, family) }
    }

    /// IP_PMTUDISC_DO: DF set, never fragmented locally.
    static var refusesFragmentation: Int32 { tg_pmtudisc_do() }

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
