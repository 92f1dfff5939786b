#if canImport(Glibc)
import Glibc
#endif
internal import CTriglavShims
import TriglavCore

/// Preallocated datagrams for one recvmmsg/sendmmsg call: `capacity` slots of `slotSize` bytes each,
/// allocated once and reused for the batch's lifetime. Not thread-safe: one pump thread owns a batch.
final class DatagramBatch {
    let capacity: Int
    let slotSize: Int
    private let storage: UnsafeMutableRawPointer
    fileprivate let datagrams: UnsafeMutablePointer<tg_datagram>
    /// Number of slots filled (by a receive, or by the caller before a send).
    var count = 0

    init(capacity: Int, slotSize: Int) {
        precondition(capacity > 0 && capacity <= Int(TG_NET_MAX_BATCH), "batch capacity must be 1...\(TG_NET_MAX_BATCH)")
        self.capacity = capacity
        self.slotSize = slotSize
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity * slotSize, alignment: 16)
        datagrams = .allocate(capacity: capacity)
        datagrams.initialize(repeating: tg_datagram(), count: capacity)
        for index in 0..<capacity {
            datagrams[index].buffer = storage + index * slotSize
            datagrams[index].length = slotSize
        }
    }

    deinit {
        datagrams.deallocate()
        storage.deallocate()
    }

    /// Full writable buffer of slot `index`.
    func slot(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: storage + index * slotSize, count: slotSize)
    }

    /// Bytes received into slot `index`.
    func received(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: storage + index * slotSize, count: datagrams[index].received)
    }

    /// Peer address of slot `index`.
    func withAddress<R>(_ index: Int, _ body: (UnsafeMutablePointer<sockaddr_storage>, socklen_t) -> R) -> R {
        withUnsafeMutablePointer(to: &datagrams[index].address) { body($0, datagrams[index].address_length) }
    }

    /// Peer endpoint of slot `index` (allocates: for control paths only).
    func endpoint(_ index: Int) -> IPEndpoint? {
        withUnsafePointer(to: &datagrams[index].address) { SocketAddress.read($0) }
    }

    /// Prepares slot `index` to send `length` bytes to the address stored at `address`, its outer IP header carrying
    /// the ECN codepoint `ecn` (0, Not-ECT, for anything but a data frame: RFC 6040 normal mode copies the inner one).
    func prepareSend(_ index: Int, length: Int, address: UnsafePointer<sockaddr_storage>, addressLength: socklen_t,
                     localAddress: UnsafePointer<sockaddr_storage>?, ecn: UInt8 = 0) {
        datagrams[index].length = length
        datagrams[index].ecn = ecn
        datagrams[index].address = address.pointee
        datagrams[index].address_length = addressLength
        datagrams[index].gso_segment_size = 0
        datagrams[index].segments = 0
        if let localAddress {
            datagrams[index].local_address = localAddress.pointee
        } else {
            datagrams[index].local_address.ss_family = 0
        }
    }

    /// Marks runs of the prepared slots from `start` on that can leave as one UDP GSO message (`UDP_SEGMENT`): the same
    /// peer, source and ECN codepoint, every one as long as the first but the last, which may be shorter, at most
    /// `maximumSegments` and `maximumBytes` in all. The kernel then builds one large datagram and cuts it late (in
    /// the driver or the NIC) instead of walking the stack once per datagram. Returns how many runs were marked.
    @discardableResult
    func markSegmentationRuns(from start: Int = 0, maximumSegments: Int = 64, maximumBytes: Int = 65_000) -> Int {
        clearSegmentationRuns(from: start)
        var runs = 0
        var head = start
        while head < count {
            let size = datagrams[head].length
            var next = head + 1
            while next < count, next - head < maximumSegments, (next - head + 1) * size <= maximumBytes,
                  datagrams[next].length <= size, sameFlow(head, next) {
                next += 1
                if datagrams[next - 1].length < size { break }
            }
            if next - head > 1 {
                datagrams[head].segments = UInt16(next - head)
                datagrams[head].gso_segment_size = UInt16(size)
                runs += 1
            }
            head = next
        }
        return runs
    }

    /// Datagrams in `range` that are parts of runs (`range` starts at a run's first datagram or a lone one).
    func segmentedDatagrams(in range: Range<Int>) -> UInt64 {
        var total: UInt64 = 0
        var index = range.lowerBound
        while index < range.upperBound {
            let run = Int(datagrams[index].segments)
            if run > 1 { total &+= UInt64(run) }
            index += max(run, 1)
        }
        return total
    }

    /// Whether slot `index` is the first of a run marked by `markSegmentationRuns`.
    func isSegmentationRun(_ index: Int) -> Bool { datagrams[index].segments > 1 }

    /// Unmarks every run from `start` on: each datagram leaves alone.
    func clearSegmentationRuns(from start: Int) {
        for index in start..<max(start, count) {
            datagrams[index].segments = 0
            datagrams[index].gso_segment_size = 0
        }
    }

    /// Same peer, source address and ECN codepoint (read in place: a slot is over 250 bytes).
    private func sameFlow(_ first: Int, _ second: Int) -> Bool {
        let a = datagrams + first, b = datagrams + second
        guard a.pointee.ecn == b.pointee.ecn, a.pointee.address_length == b.pointee.address_length,
              a.pointee.local_address.ss_family == b.pointee.local_address.ss_family else { return false }
        let localLength = switch Int32(a.pointee.local_address.ss_family) {
        case AF_INET: MemoryLayout<sockaddr_in>.size
        case AF_INET6: MemoryLayout<sockaddr_in6>.size
        default: 0
        }
        return Self.equalBytes(&a.pointee.address, &b.pointee.address, count: Int(a.pointee.address_length))
            && Self.equalBytes(&a.pointee.local_address, &b.pointee.local_address, count: localLength)
    }

    private static func equalBytes(_ a: UnsafePointer<sockaddr_storage>, _ b: UnsafePointer<sockaddr_storage>, count: Int) -> Bool {
        UnsafeRawBufferPointer(start: a, count: count).elementsEqual(UnsafeRawBufferPointer(start: b, count: count))
    }

    /// Slot size for sockets with UDP_GRO (`UDPSocket.coalescesReceives`): the largest run the kernel hands over. A
    /// smaller slot would truncate a run, and the kernel drops what doesn't fit.
    static let coalescingSlotSize = 65_536

    /// The datagrams received into slot `index`: one, or (UDP_GRO) a run of the same peer's datagrams, each as long
    /// as the kernel's segment size but the last, which may be shorter. Each is handed to `body` in order, in place.
    func forEachReceivedDatagram(_ index: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) {
        let received = received(index)
        guard let segmentSize = runSegmentSize(index) else {
            body(received)
            return
        }
        var offset = 0
        while offset < received.count {
            let end = min(offset + segmentSize, received.count)
            body(UnsafeMutableRawBufferPointer(rebasing: received[offset..<end]))
            offset = end
        }
    }

    /// Datagrams among the first `count` received slots that arrived as parts of runs (UDP_GRO), for statistics.
    func coalescedDatagrams(count: Int) -> UInt64 {
        var total: UInt64 = 0
        for index in 0..<count {
            if let segmentSize = runSegmentSize(index) {
                total &+= UInt64((datagrams[index].received + segmentSize - 1) / segmentSize)
            }
        }
        return total
    }

    /// The datagrams' size when slot `index` holds a run of several (UDP_GRO); nil for a single datagram.
    private func runSegmentSize(_ index: Int) -> Int? {
        let segmentSize = Int(datagrams[index].gro_segment_size)
        return segmentSize > 0 && datagrams[index].received > segmentSize ? segmentSize : nil
    }

    /// The outer ECN codepoint slot `index` arrived with (0, Not-ECT, when the socket doesn't report it).
    func receivedECN(_ index: Int) -> UInt8 { datagrams[index].ecn }

    /// Local address slot `index` arrived on (family 0 when unknown).
    func withLocalAddress<R>(_ index: Int, _ body: (UnsafePointer<sockaddr_storage>) -> R) -> R {
        withUnsafePointer(to: &datagrams[index].local_address) { body($0) }
    }

    /// Restores every slot's receive capacity before the next recvmmsg.
    fileprivate func resetForReceive() {
        for index in 0..<capacity { datagrams[index].length = slotSize }
    }
}

extension UDPSocket {
    /// Receives up to `batch.capacity` datagrams without blocking; returns how many (0 when none were waiting).
    func receive(into batch: DatagramBatch) throws(TriglavDataPlaneError) -> Int {
        batch.resetForReceive()
        let result = tg_recvmmsg(descriptor.raw, batch.datagrams, UInt32(batch.capacity))
        if result >= 0 { batch.count = Int(result); return Int(result) }
        batch.count = 0
        let code = -result
        if code == Syscall.wouldBlock { return 0 }
        // Errors reported for earlier sends (ICMP unreachable) surface here; they are not fatal to the socket.
        if UDPSocket.transientErrors.contains(code) { return 0 }
        throw .systemCall(operation: "recvmmsg on \(label)", errno: code)
    }

    /// Sends the first `batch.count` prepared slots; returns how many the kernel took. A full socket buffer
    /// drops the rest (UDP semantics; the tunnel's congestion control is the inner TCP's).
    @discardableResult
    func send(_ batch: DatagramBatch) -> Int {
        var offset = 0
        if segmentationOffload { batch.markSegmentationRuns() }
        while offset < batch.count {
            let result = tg_sendmmsg(descriptor.raw, batch.datagrams + offset, UInt32(batch.count - offset))
            if result > 0 {
                if segmentationOffload { segmentedDatagrams &+= batch.segmentedDatagrams(in: offset..<(offset + Int(result))) }
                offset += Int(result)
            } else if result == 0 {
                break
            } else if -result == Syscall.wouldBlock || -result == UDPSocket.noBufferSpace {
                // The socket buffer is full: the rest of the batch is dropped, like a full NIC queue.
                sendDrops &+= batch.count - offset
                break
            } else if batch.isSegmentationRun(offset) {
                // The run goes again datagram by datagram, so a refusal counts as it would without GSO; a path or
                // device that can't take UDP GSO at all (EIO: no checksum offload; EINVAL) makes this socket send
                // every datagram alone from now on.
                if -result == EIO || -result == EINVAL { segmentationOffload = false }
                batch.clearSegmentationRuns(from: offset)
            } else {
                // Skip the datagram the kernel refused (EMSGSIZE, ENETUNREACH...) and go on with the others.
                sendErrors &+= 1
                lastSendError = -result
                if UDPSocket.deviceGoneErrors.contains(lastSendError) { _ = deviceVanished.setOnce() }
                offset += 1
            }
        }
        batch.count = 0
        return offset
    }
}
