/// The sessions of one uplink across rekeys, so traffic never stops: `current` seals; packets may
/// still arrive on `previous` until it expires; a responder keeps a fresh session as `pending` until
/// the initiator's first packet on it authenticates (then it becomes `current`). Route a transport
/// datagram here when its receiver index is one of `localIndices`.
public struct UplinkKeyring: Sendable {
    public private(set) var current: TransportSession?
    public private(set) var previous: TransportSession?
    public private(set) var pending: TransportSession?
    /// Tunnel-wide flags sealed into every frame of this uplink (inner header byte 2, see
    /// `TransportSession.seal`); the owner keeps them in step with the tunnel's settings. They outlive
    /// the sessions: installing a new one keeps them.
    public var tunnelFlags: UInt8 = 0

    public init(tunnelFlags: UInt8 = 0) { self.tunnelFlags = tunnelFlags }

    /// Installs a new session. An initiator's session is current at once (it holds confirmed keys); a
    /// responder's waits in `pending` for confirmation unless there is no current session yet.
    public mutating func install(_ session: TransportSession) {
        if session.isConfirmed || current == nil {
            previous = current
            current = session
        } else {
            pending = session
        }
    }

    /// Receiver indices this uplink answers to.
    public var localIndices: [UInt32] { [current, previous, pending].compactMap { $0?.localIndex } }

    /// Seals with the current session (see `TransportSession.seal`).
    public mutating func seal(_ type: FrameType, flags: UInt8 = 0, tunnelSequence: UInt32 = 0, bodyLength: Int,
                              in buffer: UnsafeMutableRawBufferPointer, now: UInt64) throws(ProtocolError) -> Int {
        guard current != nil else { throw .sessionClosed }
        // Force-unwrap-free in-place mutation of the optional.
        var result: Result<Int, ProtocolError> = .failure(.sessionClosed)
        if var session = current {
            current = nil  // keep the session uniquely referenced so its replay window isn't copied
            do {
                result = .success(try session.seal(type, flags: flags, tunnelFlags: tunnelFlags, tunnelSequence: tunnelSequence,
                                                   bodyLength: bodyLength, in: buffer, now: now))
            } catch {
                result = .failure(error)
            }
            current = session
        }
        return try result.get()
    }

    /// Opens with whichever session the receiver index names. A pending session that authenticates a
    /// packet becomes current and the old current becomes previous.
    public mutating func open(_ datagram: UnsafeMutableRawBufferPointer, now: UInt64) throws(ProtocolError) -> OpenedFrame {
        guard case .transport(let index) = Demultiplexer.classify(UnsafeRawBufferPointer(datagram)) else {
            throw .malformedMessage(type: datagram.first ?? 0, length: datagram.count)
        }
        if var session = current, session.localIndex == index {
            current = nil
            defer { current = session }
            return try session.open(datagram, now: now)
        }
        if var session = pending, session.localIndex == index {
            pending = nil
            let frame: OpenedFrame
            do {
                frame = try session.open(datagram, now: now)
            } catch {
                pending = session
                throw error
            }
            previous = current
            current = session
            return frame
        }
        if var session = previous, session.localIndex == index {
            previous = nil
            defer { previous = session }
            return try session.open(datagram, now: now)
        }
        throw .unexpectedReceiverIndex(index)
    }

    /// Drops expired sessions; returns their local indices (tell the responder via `sessionEnded`).
    public mutating func removeExpired(now: UInt64) -> [UInt32] {
        var removed: [UInt32] = []
        if let session = previous, session.isExpired(now: now) { removed.append(session.localIndex); previous = nil }
        if let session = pending, session.isExpired(now: now) { removed.append(session.localIndex); pending = nil }
        if let session = current, session.isExpired(now: now) { removed.append(session.localIndex); current = nil }
        return removed
    }
}
