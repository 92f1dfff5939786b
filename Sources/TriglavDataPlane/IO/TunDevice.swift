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
    /// Whether every read and write starts with a virtio-net header (`IFF_VNET_HDR`): reads may be TCP super-packets
    /// with checksums left to complete (`TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`), which `TunReadBatch` cuts into packets
    /// (`OffloadedRead`), and `write` joins a flow's consecutive segments into super-packets (`TunWriteCoalescer`).
    let offloads: Bool
    /// On unless the environment's `TRIGLAV_TUN_OFFLOADS` is `0` (a diagnostic switch, for comparisons).
    static var offloadsByDefault: Bool { EnvironmentSwitch.isOn("TRIGLAV_TUN_OFFLOADS") }
    /// With `offloads`: joins the segments `write` is given into super-packets, written at `flushWrites` at the latest.
    /// Only one thread writes (the network pump).
    private let coalescer: TunWriteCoalescer?
    /// Super-packets written, and the segments joined into them.
    var joinedWrites: (superPackets: UInt64, segments: UInt64) {
        (coalescer?.superPackets ?? 0, coalescer?.joinedSegments ?? 0)
    }

    /// Creates (or attaches to) the device `name`, non-blocking, and sets its MTU. With `queueCount` > 1 the device
    /// is multi-queue with that many queues and, when `steerByDestination` and the kernel allows BPF, each packet is
    /// queued by its destination address (one queue per tunnel address, modulo the count). With `offloads` the kernel
    /// hands over TCP super-packets (see `offloads`); a kernel that refuses them gets plain packets.
    init(name: InterfaceName, mtu: Int, queueCount: Int = 1, steerByDestination: Bool = false,
         offloads: Bool = false) throws(TriglavDataPlaneError) {
        var actual = [CChar](repeating: 0, count: 16)
        let multiQueue: Int32 = queueCount > 1 ? 1 : 0
        let vnetHeader: Int32 = offloads ? 1 : 0
        let fd = tg_tun_open(name.rawValue, multiQueue, vnetHeader, &actual, actual.count)
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
            let queue = tg_tun_open(actualName, 1, vnetHeader, &ignored, ignored.count)
            guard queue >= 0 else {
                for opened in queues { opened.close() }
                throw .tunDevice(name: actualName, errno: -queue)
            }
            queues.append(OwnedDescriptor(queue))
        }
        self.queues = queues
        self.offloads = offloads
        coalescer = offloads ? TunWriteCoalescer() : nil
        if offloads {
            // The device's features, for every queue. Without them (an old kernel) reads are still plain packets after
            // a header that asks for nothing.
            _ = tg_tun_set_offload(fd, tg_tun_f_csum() | tg_tun_f_tso4() | tg_tun_f_tso6())
        }
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

    /// Writes one packet, or (offloads) adds it to the segments being joined: call `flushWrites()` after a batch.
    /// Failures are counted, not thrown: a dropped packet is the inner protocol's business.
    func write(_ packet: UnsafeRawBufferPointer) {
        guard let coalescer else {
            writeWhole(packet)
            return
        }
        coalescer.add(packet, write: writeWhole)
    }

    /// Writes what `write` still holds.
    func flushWrites() {
        coalescer?.flush(write: writeWhole)
    }

    /// One `write` of `bytes` (a packet, or a virtio-net header and what follows it), retried on EINTR.
    private func writeWhole(_ bytes: UnsafeRawBufferPointer) {
        while true {
            if Glibc.write(descriptor.raw, bytes.baseAddress, bytes.count) >= 0 { return }
            if errno == EINTR { continue }
            writeErrors &+= 1
            return
        }
    }

    func close() {
        for queue in queues.reversed() { queue.close() }
    }
}
