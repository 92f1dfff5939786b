#if canImport(Glibc)
import Glibc
#endif
internal import CTriglavShims
import TriglavCore

/// A layer-3 TUN device (IFF_TUN|IFF_NO_PI): every read returns exactly one IP packet and every write
/// must carry exactly one. Packets are never coalesced into one writev — on a TUN fd that would merge them
/// into one malformed packet. Owns its fd; the kernel deletes the (non-persistent) device when it closes.
final class TunDevice: @unchecked Sendable {
    let descriptor: OwnedDescriptor
    let name: InterfaceName
    let interfaceIndex: Int32
    /// Packets the kernel refused on write (e.g. ENOBUFS under pressure, EINVAL for a malformed packet).
    var writeErrors = 0

    /// Creates (or attaches to) the device `name`, non-blocking, and sets its MTU.
    init(name: InterfaceName, mtu: Int) throws(TriglavDataPlaneError) {
        var actual = [CChar](repeating: 0, count: 16)
        let fd = tg_tun_open(name.rawValue, 0, 0, &actual, actual.count)
        guard fd >= 0 else { throw .tunDevice(name: name.rawValue, errno: -fd) }
        descriptor = OwnedDescriptor(fd)
        let actualName = String(decoding: actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do {
            self.name = try InterfaceName(actualName)
        } catch {
            throw .tunDevice(name: actualName, errno: EINVAL)
        }
        try Syscall.shim("set \(actualName) non-blocking") { tg_fd_set_nonblocking(fd) }
        try Syscall.shim("set MTU \(mtu) on \(actualName)") { tg_if_set_mtu(actualName, Int32(mtu)) }
        interfaceIndex = try Syscall.shim("look up index of \(actualName)") { tg_if_nametoindex(actualName) }
    }

    /// Reads one packet into `buffer`; nil when none is waiting.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(TriglavDataPlaneError) -> Int? {
        while true {
            let count = Glibc.read(descriptor.raw, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN { return nil }
            throw .systemCall(operation: "read from \(name)", errno: code)
        }
    }

    /// Writes one packet. Failures are counted, not thrown: a dropped packet is the inner protocol's business.
    func write(_ packet: UnsafeRawBufferPointer) {
        while true {
            let count = Glibc.write(descriptor.raw, packet.baseAddress, packet.count)
            if count >= 0 { return }
            if errno == EINTR { continue }
            writeErrors &+= 1
            return
        }
    }

    func close() { descriptor.close() }
}
