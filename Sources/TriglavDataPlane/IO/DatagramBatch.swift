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
        if let localAddress {
            datagrams[index].local_address = localAddress.pointee
        } else {
            datagrams[index].local_address.ss_family = 0
        }
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
        while offset < batch.count {
            let result = tg_sendmmsg(descriptor.raw, batch.datagrams + offset, UInt32(batch.count - offset))
            if result > 0 {
                offset += Int(result)
            } else if result == 0 {
                break
            } else if -result == Syscall.wouldBlock || -result == UDPSocket.noBufferSpace {
                // The socket buffer is full: the rest of the batch is dropped, like a full NIC queue.
                sendDrops &+= batch.count - offset
                break
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
