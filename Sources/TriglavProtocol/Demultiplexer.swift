/// What a received datagram is, from its first byte and (where present) its receiver index, so a
/// server or client routes it in O(1) without touching any crypto: initiations go to the
/// `HandshakeResponder`, responses/cookie replies/version notices to the `HandshakeInitiator` whose
/// `localIndex` matches, transport packets to the `TransportSession` whose `localIndex` matches.
public enum DatagramKind: Equatable, Sendable {
    case handshakeInitiation
    case handshakeResponse(receiverIndex: UInt32)
    case cookieReply(receiverIndex: UInt32)
    case versionMismatch(receiverIndex: UInt32, peerVersion: UInt8)
    case transport(receiverIndex: UInt32)
    /// Unknown type or impossible size: drop silently.
    case invalid
}

/// Stateless classification of received datagrams (see `DatagramKind`).
public enum Demultiplexer {
    /// Classifies `datagram` by type byte and size. Never traps, never allocates.
    public static func classify(_ datagram: UnsafeRawBufferPointer) -> DatagramKind {
        guard let first = datagram.first, let type = WireLayout.MessageType(rawValue: first) else { return .invalid }
        switch type {
        case .handshakeInitiation:
            // Any size above the fixed prefix: a server of another version still answers with a notice.
            return datagram.count >= 8 + 2 * WireLayout.macSize ? .handshakeInitiation : .invalid
        case .handshakeResponse:
            return datagram.count == WireLayout.responseSize ? .handshakeResponse(receiverIndex: datagram.loadLE32(at: 8)) : .invalid
        case .cookieReply:
            return datagram.count == WireLayout.cookieReplySize ? .cookieReply(receiverIndex: datagram.loadLE32(at: 4)) : .invalid
        case .versionMismatch:
            return datagram.count == WireLayout.versionMismatchSize
                ? .versionMismatch(receiverIndex: datagram.loadLE32(at: 4), peerVersion: datagram[1]) : .invalid
        case .transport:
            return datagram.count >= WireLayout.minimumTransportSize ? .transport(receiverIndex: datagram.loadLE32(at: 4)) : .invalid
        }
    }

    public static func classify(_ datagram: [UInt8]) -> DatagramKind {
        datagram.withUnsafeBytes { classify($0) }
    }
}
