internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif

/// An AF_PACKET raw socket bound to one interface, promiscuous, that doesn't see its own host's
/// transmissions. Owns the fd; closes it on deinit. Safe to receive on one thread while another
/// sends.
final class PacketSocket: Sendable {
    let descriptor: Int32
    let interfaceName: String
    let interfaceIndex: Int32
    /// False on kernels without PACKET_IGNORE_OUTGOING: the receiver then drops outgoing frames itself.
    let kernelIgnoresOutgoing: Bool

    /// Large buffers absorb the bursts a delayed link releases at once.
    static let socketBufferBytes: Int32 = 8 << 20

    init(interface name: String) throws(LinkEmulatorError) {
        let index = tg_if_nametoindex(name)
        guard index > 0 else { throw .unknownInterface(name) }
        let fd = tg_packet_socket()
        guard fd >= 0 else { throw .systemCall("socket(AF_PACKET)", interface: name, errno: -fd) }
        func check(_ result: Int32, _ call: String) throws(LinkEmulatorError) {
            if result < 0 {
                close(fd)
                throw .systemCall(call, interface: name, errno: -result)
            }
        }
        try check(tg_packet_bind(fd, index), "bind(sockaddr_ll)")
        try check(tg_packet_add_promiscuous(fd, index), "PACKET_ADD_MEMBERSHIP(PROMISC)")
        try check(tg_packet_set_buffer_sizes(fd, Self.socketBufferBytes, Self.socketBufferBytes), "SO_RCVBUF/SO_SNDBUF")
        try check(tg_packet_enable_timestamps(fd), "SO_TIMESTAMPNS")
        let ignoreResult = tg_packet_ignore_outgoing(fd)
        if ignoreResult < 0 && ignoreResult != -ENOPROTOOPT {
            try check(ignoreResult, "PACKET_IGNORE_OUTGOING")
        }
        descriptor = fd
        interfaceName = name
        interfaceIndex = index
        kernelIgnoresOutgoing = ignoreResult == 0
    }

    deinit { close(descriptor) }

    /// MTU of the bound interface.
    func mtu() throws(LinkEmulatorError) -> Int {
        let mtu = tg_packet_interface_mtu(interfaceName)
        guard mtu > 0 else { throw .systemCall("SIOCGIFMTU", interface: interfaceName, errno: -mtu) }
        return Int(mtu)
    }
}
