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
    /// Every queue's fd (IFF_MULTI_QUEUE when more than one; `descriptor` is the first). Each queue has its own
    /// transmit ring (txqueuelen packets), so what one queue can't take is dropped there and not in the others.
    let queues: [OwnedDescriptor]
    /// Whether the kernel picks a packet's queue by its destination address (`tg_tun_steer_by_destination`);
    /// false: by its flow hash (the kernel's default; single queue: there is nothing to pick).
    var steersByDestination: Bool { steeringError == 0 && queues.count > 1 }
    /// Why steering by destination was not set up when asked (the errno of `bpf()` or the ioctl); 0: it was, or
    /// wasn't asked for.
    let steeringError: Int32
    /// Packets the kernel refused on write (e.g. ENOBUFS under pressure, EINVAL for a malformed packet).
    var writeErrors = 0

    /// Creates (or attaches to) the device `name`, non-blocking, and sets its MTU. With `queueCount` > 1 the device
    /// is multi-queue with that many queues and, when `steerByDestination` and the kernel allows BPF, each packet is
    /// queued by its destination address (one queue per tunnel address, modulo the count).
    init(name: InterfaceName, mtu: Int, queueCount: Int = 1, steerByDestination: Bool = false) throws(TriglavDataPlaneError) {
        var actual = [CChar](repeating: 0, count: 16)
        let multiQueue: Int32 = queueCount > 1 ? 1 : 0
        let fd = tg_tun_open(name.rawValue, multiQueue, 0, &actual, actual.count)
        guard fd >= 0 else { throw .tunDevice(name: name.rawValue, errno: -fd) }
        descriptor = OwnedDescriptor(fd)
        let actualName = String(decoding: actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do {
            self.name = try InterfaceName(actualName)
        } catch {
            throw .tunDevice(name: actualName, errno: EINVAL)
        }
        var queues = [descriptor]
        // The further queues attach to the device by the name it got; closing the first one on failure deletes it.
        while queues.count < queueCount {
            var ignored = [CChar](repeating: 0, count: 16)
            let queue = tg_tun_open(actualName, 1, 0, &ignored, ignored.count)
            guard queue >= 0 else {
                for opened in queues { opened.close() }
                throw .tunDevice(name: actualName, errno: -queue)
            }
            queues.append(OwnedDescriptor(queue))
        }
        self.queues = queues
        steeringError = queueCount > 1 && steerByDestination ? -min(0, tg_tun_steer_by_destination(fd)) : 0
        for queue in queues {
            try Syscall.shim("set \(actualName) non-blocking") { tg_fd_set_nonblocking(queue.raw) }
        }
        try Syscall.shim("set MTU \(mtu) on \(actualName)") { tg_if_set_mtu(actualName, Int32(mtu)) }
        interfaceIndex = try Syscall.shim("look up index of \(actualName)") { tg_if_nametoindex(actualName) }
    }

    /// Reads one packet into `buffer` from queue `queue` (the first by default); nil when none is waiting.
    func read(into buffer: UnsafeMutableRawBufferPointer, queue: Int = 0) throws(TriglavDataPlaneError) -> Int? {
        let fd = queue == 0 ? descriptor.raw : queues[queue].raw
        while true {
            let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
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

    func close() {
        for queue in queues.reversed() { queue.close() }
    }
}
