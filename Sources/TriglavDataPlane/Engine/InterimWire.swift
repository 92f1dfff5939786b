import TriglavCore
import TriglavCrypto

// INTERIM wire format, used until TriglavProtocol (Noise NK sessions, issue 3) lands in main.
// The handshake is authenticated with the Ed25519 identity keys (client and server sign), so only
// authorized clients get a tunnel and a client only trusts its pinned server; but transport frames are
// NOT encrypted or authenticated. Everything the engine needs from the protocol goes through
// `InterimWire` and `TransportSession` below, so switching to TriglavProtocol touches this file and the
// two handshake call sites only. Never deploy this build outside a lab.

/// Message types on the wire (first byte).
enum WireMessageType: UInt8 {
    case initiation = 1
    case response = 2
    case transport = 4
}

/// Kinds of transport frames (second byte of a transport message).
enum FrameKind: UInt8 {
    /// An inner IP packet.
    case data = 0
    /// Liveness/RTT probe carrying the sender's timestamp; answered by `probeReply` echoing it.
    case probe = 1
    case probeReply = 2
    /// The sender closes this session (client shutdown).
    case close = 3
}

/// Byte layout of the interim messages (big-endian):
/// initiation: type(1) version(1) 0(2) senderIndex(4) instance(8) timestamp(8) clientKey(32) signature(64) = 120
///   signature: client's Ed25519 over bytes 0..<56 ++ server public key.
/// response: type(1) version(1) 0(2) senderIndex(4) receiverIndex(4) ipv4(4) ipv4Length(1) hasIPv6(1)
///   ipv6(16) ipv6Length(1) 0(1) signature(64) = 100; signature: server's Ed25519 over bytes 0..<36 ++
///   the initiation's signature (binds the response to that initiation).
/// transport: type(1) kind(1) 0(2) receiverIndex(4) counter(8) sequence(4) payload.
enum InterimWire {
    static let initiationLength = 120
    static let initiationSignedLength = 56
    static let responseLength = 100
    static let responseSignedLength = 36
    static let transportHeaderLength = 20
    /// Initiations older than this (by the client's clock in the message) are refused as replays.
    static let initiationMaxAge: UInt64 = 120 * Nanoseconds.second

    static func messageType(_ bytes: UnsafeRawBufferPointer) -> WireMessageType? {
        guard let first = bytes.first else { return nil }
        return WireMessageType(rawValue: first)
    }

    // MARK: Handshake

    static func initiation(identity: IdentityKey, serverKey: IdentityPublicKey, senderIndex: UInt32,
                           instance: UInt64, timestamp: UInt64) -> [UInt8] {
        var message: [UInt8] = [WireMessageType.initiation.rawValue, PROTOCOL_VERSION, 0, 0]
        message.appendBigEndian(senderIndex)
        message.appendBigEndian(instance)
        message.appendBigEndian(timestamp)
        message += identity.publicKey.bytes
        message += identity.sign(message + serverKey.bytes)
        return message
    }

    struct ParsedInitiation {
        var senderIndex: UInt32
        var instance: UInt64
        var timestamp: UInt64
        var clientKey: IdentityPublicKey
        var signature: [UInt8]
    }

    /// Parses and verifies an initiation addressed to `serverKey`; nil when malformed, from another protocol
    /// version, or forged.
    static func parseInitiation(_ bytes: UnsafeRawBufferPointer, serverKey: IdentityPublicKey) -> ParsedInitiation? {
        guard bytes.count == initiationLength, bytes[0] == WireMessageType.initiation.rawValue,
              bytes[1] == PROTOCOL_VERSION else { return nil }
        let signed = Array(bytes[0..<initiationSignedLength])
        let signature = Array(bytes[initiationSignedLength..<initiationLength])
        guard let clientKey = try? IdentityPublicKey(bytes: Array(bytes[24..<56])),
              clientKey.verify(signature: signature, message: signed + serverKey.bytes) else { return nil }
        return ParsedInitiation(senderIndex: bytes.loadBigEndian(at: 4), instance: bytes.loadBigEndian(at: 8),
                                timestamp: bytes.loadBigEndian(at: 16), clientKey: clientKey, signature: signature)
    }

    static func response(identity: IdentityKey, senderIndex: UInt32, receiverIndex: UInt32,
                         assignment: TunnelAssignment, initiationSignature: [UInt8]) -> [UInt8] {
        var message: [UInt8] = [WireMessageType.response.rawValue, PROTOCOL_VERSION, 0, 0]
        message.appendBigEndian(senderIndex)
        message.appendBigEndian(receiverIndex)
        message += assignment.ipv4.address.bytes
        message.append(UInt8(assignment.ipv4.length))
        if let ipv6 = assignment.ipv6 {
            message.append(1)
            message += ipv6.address.bytes
            message.append(UInt8(ipv6.length))
        } else {
            message += [UInt8](repeating: 0, count: 18)
        }
        message.append(0)
        message += identity.sign(message + initiationSignature)
        return message
    }

    struct ParsedResponse {
        var senderIndex: UInt32
        var receiverIndex: UInt32
        var assignment: TunnelAssignment
    }

    /// Parses and verifies a response signed by `serverKey` for the initiation that carried `initiationSignature`.
    static func parseResponse(_ bytes: UnsafeRawBufferPointer, serverKey: IdentityPublicKey,
                              initiationSignature: [UInt8]) -> ParsedResponse? {
        guard bytes.count == responseLength, bytes[0] == WireMessageType.response.rawValue,
              bytes[1] == PROTOCOL_VERSION else { return nil }
        let signed = Array(bytes[0..<responseSignedLength])
        guard serverKey.verify(signature: Array(bytes[responseSignedLength..<responseLength]),
                               message: signed + initiationSignature),
              let v4 = IPAddress(bytes: bytes[12..<16]),
              let ipv4 = try? IPPrefix(address: v4, length: Int(bytes[16])) else { return nil }
        var ipv6: IPPrefix?
        if bytes[17] == 1 {
            guard let v6 = IPAddress(bytes: bytes[18..<34]),
                  let prefix = try? IPPrefix(address: v6, length: Int(bytes[34])) else { return nil }
            ipv6 = prefix
        }
        return ParsedResponse(senderIndex: bytes.loadBigEndian(at: 4), receiverIndex: bytes.loadBigEndian(at: 8),
                              assignment: TunnelAssignment(ipv4: ipv4, ipv6: ipv6))
    }

    // MARK: Transport

    /// Receiver index of a transport message, or nil when it is not one.
    static func transportReceiver(_ bytes: UnsafeRawBufferPointer) -> UInt32? {
        guard bytes.count >= transportHeaderLength, bytes[0] == WireMessageType.transport.rawValue else { return nil }
        return bytes.loadBigEndian(at: 4)
    }
}

/// One established transport session: this side's and the peer's index and the send counter.
/// A value type owned by the engine under its lock; `seal` and `open` allocate nothing.
struct TransportSession {
    let localIndex: UInt32
    let peerIndex: UInt32
    private(set) var sendCounter: UInt64 = 0
    /// Highest counter received; the interim format has no replay window (TriglavProtocol brings one).
    private(set) var receiveCounter: UInt64 = 0

    init(localIndex: UInt32, peerIndex: UInt32) {
        self.localIndex = localIndex
        self.peerIndex = peerIndex
    }

    /// Where the payload starts in a datagram buffer: callers write the inner packet there, then seal.
    static let payloadOffset = InterimWire.transportHeaderLength
    static let overhead = InterimWire.transportHeaderLength

    /// Writes the header in front of `payloadLength` bytes already at `payloadOffset`; returns the datagram length.
    mutating func seal(_ buffer: UnsafeMutableRawBufferPointer, payloadLength: Int, kind: FrameKind, sequence: UInt32) -> Int {
        sendCounter &+= 1
        buffer[0] = WireMessageType.transport.rawValue
        buffer[1] = kind.rawValue
        buffer[2] = 0
        buffer[3] = 0
        buffer.storeBigEndian(peerIndex, at: 4)
        buffer.storeBigEndian(sendCounter, at: 8)
        buffer.storeBigEndian(sequence, at: 16)
        return InterimWire.transportHeaderLength + payloadLength
    }

    struct Opened {
        var kind: FrameKind
        var sequence: UInt32
        /// Payload range within the datagram.
        var payload: Range<Int>
    }

    /// Opens a transport datagram addressed to this session; nil when it is malformed.
    mutating func open(_ datagram: UnsafeMutableRawBufferPointer) -> Opened? {
        guard datagram.count >= InterimWire.transportHeaderLength,
              let kind = FrameKind(rawValue: datagram[1]) else { return nil }
        let counter: UInt64 = UnsafeRawBufferPointer(datagram).loadBigEndian(at: 8)
        receiveCounter = max(receiveCounter, counter)
        return Opened(kind: kind, sequence: UnsafeRawBufferPointer(datagram).loadBigEndian(at: 16),
                      payload: InterimWire.transportHeaderLength..<datagram.count)
    }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        let size = MemoryLayout<T>.size
        for shift in stride(from: (size - 1) * 8, through: 0, by: -8) {
            append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }
}

extension UnsafeRawBufferPointer {
    func loadBigEndian<T: FixedWidthInteger>(at offset: Int) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size { value = value << 8 | T(self[offset + index]) }
        return value
    }
}

extension UnsafeMutableRawBufferPointer {
    func storeBigEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        let size = MemoryLayout<T>.size
        for index in 0..<size { self[offset + index] = UInt8(truncatingIfNeeded: value >> ((size - 1 - index) * 8)) }
    }
}
