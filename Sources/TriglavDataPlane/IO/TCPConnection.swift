#if canImport(Glibc)
import Glibc
#endif
internal import CTriglavShims
import TriglavCore

/// The TCP fallback transport: the same datagrams as over UDP, each sent as a frame of a 2-byte big-endian
/// length followed by the datagram. Used by uplinks whose UDP handshakes keep failing (UDP blocked).
enum TCPFraming {
    static let headerLength = 2
    /// Largest datagram a frame may carry (the UDP path never sends more than an MTU).
    static let maxFrameLength = TunnelMTU.largestDatagram
}

/// One non-blocking TCP connection carrying framed datagrams. Owns its fd (closed on `close()`/deinit).
///
/// Threading: `readFrames` is called by one thread only (the network pump); `send` and `flush` only with the
/// owning tunnel's lock held, so the output queue needs no lock of its own. A full output queue drops
/// frames like a full UDP socket buffer would: the inner TCP recovers, and the tunnel never blocks.
final class TCPConnection: @unchecked Sendable {
    static let inputCapacity = 64 * 1024
    static let maxPendingOutput = 256 * 1024

    let descriptor: OwnedDescriptor
    let label: String
    private let input: UnsafeMutableRawPointer
    private var inputCount = 0
    private var output: [UInt8] = []
    private var outputOffset = 0
    /// Frames dropped because the output queue was full.
    private(set) var droppedFrames = 0
    private(set) var isClosed = false

    init(descriptor: OwnedDescriptor, label: String) {
        self.descriptor = descriptor
        self.label = label
        input = .allocate(byteCount: Self.inputCapacity, alignment: 16)
        output.reserveCapacity(Self.maxPendingOutput)
    }

    deinit { input.deallocate() }

    /// Starts a non-blocking connection to `endpoint`, bound to `device` and marked like the UDP uplinks.
    static func connect(to endpoint: IPEndpoint, device: InterfaceName?, mark: UInt32,
                        label: String) throws(TriglavDataPlaneError) -> TCPConnection {
        let family = endpoint.address.isIPv4 ? AF_INET : AF_INET6
        let fd = try Syscall.libc("socket(TCP) for \(label)") {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let descriptor = OwnedDescriptor(fd)
        if let device {
            try Syscall.shim("bind \(label) to device \(device)") { tg_socket_bind_to_device(fd, device.rawValue) }
        }
        if mark != 0 { try Syscall.shim("SO_MARK on \(label)") { tg_socket_set_mark(fd, mark) } }
        _ = tg_tcp_set_nodelay(fd)
        var storage = sockaddr_storage()
        let length = SocketAddress.write(endpoint, into: &storage)
        let result = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        if result < 0 && errno != EINPROGRESS {
            throw .systemCall(operation: "connect \(label) to \(endpoint)", errno: errno)
        }
        return TCPConnection(descriptor: descriptor, label: label)
    }

    /// Reads what is available and calls `body` with each complete frame's datagram (a mutable view into the
    /// input buffer, valid during the call). Returns false when the connection is finished: the peer closed
    /// it, an error occurred, or a frame announced an impossible length.
    func readFrames(_ body: (UnsafeMutableRawBufferPointer) -> Void) -> Bool {
        guard !isClosed else { return false }
        var rounds = 0
        while rounds < 16 {
            rounds += 1
            let count = Glibc.read(descriptor.raw, input + inputCount, Self.inputCapacity - inputCount)
            if count == 0 { isClosed = true; return false }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { return true }
                isClosed = true
                return false
            }
            inputCount += count
            var offset = 0
            while inputCount - offset >= TCPFraming.headerLength {
                let length = Int(input.load(fromByteOffset: offset, as: UInt8.self)) << 8
                    | Int(input.load(fromByteOffset: offset + 1, as: UInt8.self))
                guard length > 0, length <= TCPFraming.maxFrameLength else { isClosed = true; return false }
                guard inputCount - offset >= TCPFraming.headerLength + length else { break }
                body(UnsafeMutableRawBufferPointer(start: input + offset + TCPFraming.headerLength, count: length))
                offset += TCPFraming.headerLength + length
            }
            if offset > 0 {
                // Keep the partial frame at the start of the buffer.
                (input + 0).copyMemory(from: input + offset, byteCount: inputCount - offset)
                inputCount -= offset
            }
        }
        return true
    }

    /// Queues one datagram as a frame and writes as much as the socket takes. Returns false when dropped.
    @discardableResult
    func send(_ datagram: UnsafeRawBufferPointer) -> Bool {
        guard !isClosed, datagram.count > 0, datagram.count <= TCPFraming.maxFrameLength else { return false }
        flush()
        guard output.count - outputOffset + TCPFraming.headerLength + datagram.count <= Self.maxPendingOutput else {
            droppedFrames += 1
            return false
        }
        output.append(UInt8(datagram.count >> 8))
        output.append(UInt8(datagram.count & 0xff))
        output.append(contentsOf: datagram)
        flush()
        return true
    }

    /// Writes queued output (call when the socket may have drained).
    func flush() {
        while outputOffset < output.count {
            let written = output.withUnsafeBytes { bytes in
                Glibc.write(descriptor.raw, bytes.baseAddress! + outputOffset, bytes.count - outputOffset)
            }
            if written > 0 {
                outputOffset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                if written < 0 && errno != EAGAIN && errno != ENOTCONN { isClosed = true }
                break
            }
        }
        if outputOffset == output.count {
            output.removeAll(keepingCapacity: true)
            outputOffset = 0
        } else if outputOffset > Self.maxPendingOutput / 2 {
            output.removeFirst(outputOffset)
            outputOffset = 0
        }
    }

    /// Whether a non-blocking connect has completed successfully (nil: still in progress).
    func connectResult() -> Bool? {
        let pending = tg_socket_pending_error(descriptor.raw)
        if pending > 0 { isClosed = true; return false }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let connected = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(descriptor.raw, $0, &length) }
        }
        return connected == 0 ? true : nil
    }

    func close() {
        isClosed = true
        descriptor.close()
    }
}

/// A listening TCP socket for fallback clients. Owns its fd.
final class TCPListener: @unchecked Sendable {
    let descriptor: OwnedDescriptor
    let label: String

    init(endpoint: IPEndpoint, label: String) throws(TriglavDataPlaneError) {
        self.label = label
        let family = endpoint.address.isIPv4 ? AF_INET : AF_INET6
        let fd = try Syscall.libc("socket(TCP) for \(label)") {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        descriptor = OwnedDescriptor(fd)
        try Syscall.shim("SO_REUSEADDR on \(label)") { tg_socket_set_reuseaddr(fd) }
        if family == AF_INET6 { try Syscall.shim("IPV6_V6ONLY on \(label)") { tg_socket_set_v6only(fd, 1) } }
        var storage = sockaddr_storage()
        let length = SocketAddress.write(endpoint, into: &storage)
        _ = try withUnsafePointer(to: &storage) { (pointer) throws(TriglavDataPlaneError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(TriglavDataPlaneError) in
                try Syscall.libc("bind \(label) to \(endpoint)") { bind(fd, address, length) }
            }
        }
        try Syscall.libc("listen on \(label)") { listen(fd, 128) }
    }

    /// Accepts one pending connection (non-blocking); nil when none is waiting.
    func accept() -> (TCPConnection, IPEndpoint?)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = tg_accept(descriptor.raw, &storage, &length)
        guard fd >= 0 else { return nil }
        _ = tg_tcp_set_nodelay(fd)
        let endpoint = withUnsafePointer(to: &storage) { SocketAddress.read($0) }
        return (TCPConnection(descriptor: OwnedDescriptor(fd), label: "fallback \(endpoint.map(\.description) ?? "?")"), endpoint)
    }
}
