internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif
import Logging
import TriglavCore
import TriglavCrypto
import TriglavProtocol

/// Clients → TUN pump of the server, and its timers (session expiry). Handshakes are answered here too:
/// they are rare, and keeping them on this thread keeps session creation ordered with the traffic.
final class ServerNetworkPump: @unchecked Sendable {
    private static let batchSize = 64
    private static let timerInterval = 500 * Nanoseconds.millisecond

    private let server: ServerTunnel
    private let tun: TunDevice
    private let sockets: [UDPSocket]
    private let batch = DatagramBatch(capacity: ServerNetworkPump.batchSize, slotSize: 2048)
    /// One-slot batch for replies (handshake responses, probe replies) that must leave from a given address.
    private let reply = DatagramBatch(capacity: 1, slotSize: 256)
    private var ready: [Bool]
    /// Data frames opened in the current batch: (slot, tunnel, sequence, body range).
    private var pendingData: [(Int, UInt64, UInt32, Range<Int>)] = []
    /// Reorder buffer per tunnel, created on the tunnel's first data packet, dropped with the tunnel.
    private var reorders: [UInt64: ReorderBuffer] = [:]
    private var nextTimer: Nanoseconds = 0

    init(server: ServerTunnel, tun: TunDevice, sockets: [UDPSocket]) {
        self.server = server
        self.tun = tun
        self.sockets = sockets
        ready = Array(repeating: false, count: sockets.count)
        pendingData.reserveCapacity(Self.batchSize)
    }

    func iterate() {
        var timeout: Int32 = 100
        var now = monotonicNow()
        for (_, buffer) in reorders {
            if let deadline = buffer.deadline {
                timeout = min(timeout, Int32(max(1, (deadline &- min(now, deadline)) / Nanoseconds.millisecond)))
            }
        }
        do {
            try server.networkPollerForPump.wait(timeoutMilliseconds: timeout) { token in
                if token < UInt64(sockets.count) { ready[Int(token)] = true }
            }
        } catch {
            return
        }
        now = monotonicNow()
        for index in 0..<sockets.count where ready[index] {
            ready[index] = false
            receive(socketIndex: index, now: now)
        }
        for (_, buffer) in reorders where buffer.isHolding {
            buffer.flushExpired(now: now) { tun.write($0) }
        }
        if now >= nextTimer {
            nextTimer = now &+ Self.timerInterval
            expireSessions(now: now)
        }
    }

    private func receive(socketIndex: Int, now: Nanoseconds) {
        let socket = sockets[socketIndex]
        var rounds = 0
        while rounds < 8 {
            rounds += 1
            guard let count = try? socket.receive(into: batch), count > 0 else { return }
            server.withState { state in
                for index in 0..<count {
                    process(index: index, socketIndex: socketIndex, socket: socket, now: now, state: &state)
                }
            }
            for (_, tunnelID, _, _) in pendingData where reorders[tunnelID] == nil {
                reorders[tunnelID] = ReorderBuffer(window: 256, maxHold: max(1, server.configuration.reorderHold.nanoseconds))
            }
            for (index, tunnelID, sequence, range) in pendingData {
                guard let reorder = reorders[tunnelID] else { continue }
                reorder.insert(sequence: sequence, packet: UnsafeRawBufferPointer(rebasing: batch.received(index)[range]), now: now) {
                    tun.write($0)
                }
            }
            pendingData.removeAll(keepingCapacity: true)
            if count < batch.capacity { return }
        }
    }

    private func process(index: Int, socketIndex: Int, socket: UDPSocket, now: Nanoseconds, state: inout ServerState) {
        let datagram = batch.received(index)
        switch Demultiplexer.classify(UnsafeRawBufferPointer(datagram)) {
        case .handshakeInitiation:
            handshake(index: index, socketIndex: socketIndex, socket: socket, now: now, state: &state)
        case .transport(let receiver):
            guard var session = state.sessions[receiver] else { return }
            let frame: OpenedFrame
            do {
                frame = try session.transport.open(datagram, now: now)
            } catch {
                if case .sessionClosed = error { state.removeSession(receiver) }
                return
            }
            session.lastReceive = now
            // Roaming: the endpoint follows the last authenticated packet's source.
            batch.withAddress(index) { address, length in
                if !SocketAddress.equal(address, length, &session.address, session.addressLength) {
                    session.address = address.pointee
                    session.addressLength = length
                }
            }
            batch.withLocalAddress(index) { local in
                if local.pointee.ss_family != 0 { session.localAddress = local.pointee }
            }
            session.socket = socketIndex
            if let replaced = session.replaces {
                // The rekeyed session is confirmed: retire the one it replaces.
                session.replaces = nil
                state.removeSession(replaced)
            }
            state.sessions[receiver] = session
            switch frame.type {
            case .data:
                let packet = UnsafeRawBufferPointer(rebasing: datagram[frame.body])
                guard var tunnel = state.tunnels[session.tunnelID], state.isSourceAllowed(packet, tunnel: tunnel) else {
                    state.droppedSpoofed &+= 1
                    return
                }
                tunnel.receivedPackets &+= 1
                state.tunnels[session.tunnelID] = tunnel
                pendingData.append((index, session.tunnelID, frame.tunnelSequence, frame.body))
            case .probe:
                guard case .probe(let probe)? = try? ControlFrame.parse(type: .probe, body: UnsafeRawBufferPointer(rebasing: datagram[frame.body])),
                      let length = try? session.transport.seal(.probeReply(probe), in: reply.slot(0), now: now) else { return }
                state.sessions[receiver] = session
                sendReply(length: length, session: &session, socket: socket)
            case .close:
                state.removeSession(receiver)
            case .keepalive, .probeReply, .feedback:
                break
            }
        case .handshakeResponse, .cookieReply, .versionMismatch, .invalid:
            return
        }
    }

    private func handshake(index: Int, socketIndex: Int, socket: UDPSocket, now: Nanoseconds, state: inout ServerState) {
        let datagram = Array(batch.received(index))
        let source = batch.endpoint(index) ?? IPEndpoint(address: .v4(0), port: 0)
        var target = ReplyTarget()
        batch.withAddress(index) { address, length in
            target.address = address.pointee
            target.addressLength = length
        }
        batch.withLocalAddress(index) { target.localAddress = $0.pointee }
        switch state.responder.handleInitiation(datagram, from: source, now: now) {
        case .accept(let accepted):
            if case .created(let replaced) = accepted.event {
                if let replaced { state.removeTunnel(replaced) }
                // A create also replaces whatever else this identity had (its client restarted).
                for (id, tunnel) in state.tunnels where tunnel.key == accepted.client { state.removeTunnel(id) }
                state.addTunnel(ServerClientTunnel(tunnelID: accepted.tunnel.tunnelID, key: accepted.client,
                                                   addresses: TunnelAddresses(ipv4: accepted.tunnel.ipv4, ipv6: accepted.tunnel.ipv6)))
                server.logger.info("client \(accepted.client) connected from \(source) (tunnel \(TunnelAddresses(ipv4: accepted.tunnel.ipv4, ipv6: accepted.tunnel.ipv6)))")
            }
            guard state.tunnels[accepted.tunnel.tunnelID] != nil else { return }
            let localIndex = accepted.session.localIndex
            state.sessions[localIndex] = ServerSession(
                tunnelID: accepted.tunnel.tunnelID, transport: accepted.session, replaces: accepted.replacesSessionIndex,
                socket: socketIndex, address: target.address, addressLength: target.addressLength,
                localAddress: target.localAddress, lastReceive: now)
            state.tunnels[accepted.tunnel.tunnelID]?.sessions.append(localIndex)
            sendBytes(accepted.reply, to: &target, socket: socket)
        case .challenge(let cookieReply):
            sendBytes(cookieReply, to: &target, socket: socket)
        case .reject(let error, let reply):
            state.rejectedHandshakes &+= 1
            if state.rejectedHandshakes & 0xff == 1 {
                server.logger.info("rejected a handshake from \(source): \(error)")
            }
            if let reply { sendBytes(reply, to: &target, socket: socket) }
        }
    }

    private func sendBytes(_ bytes: [UInt8], to target: inout ReplyTarget, socket: UDPSocket) {
        let slot = reply.slot(0)
        guard bytes.count <= slot.count else { return }
        bytes.withUnsafeBytes { slot.copyMemory(from: $0) }
        sendReply(length: bytes.count, to: &target, socket: socket)
    }

    private func sendReply(length: Int, session: inout ServerSession, socket: UDPSocket) {
        var target = ReplyTarget(address: session.address, addressLength: session.addressLength, localAddress: session.localAddress)
        sendReply(length: length, to: &target, socket: socket)
    }

    private func sendReply(length: Int, to target: inout ReplyTarget, socket: UDPSocket) {
        withUnsafePointer(to: &target.address) { address in
            withUnsafePointer(to: &target.localAddress) { local in
                reply.prepareSend(0, length: length, address: address, addressLength: target.addressLength,
                                  localAddress: local.pointee.ss_family == 0 ? nil : local)
            }
        }
        reply.count = 1
        socket.send(reply)
    }

    private func expireSessions(now: Nanoseconds) {
        let timeout = server.configuration.sessionTimeout.nanoseconds
        server.withState { state in
            let expired = state.sessions.filter { now &- $0.value.lastReceive >= timeout || $0.value.transport.isExpired(now: now) }
            for index in expired.keys { state.removeSession(index) }
            // Forget reorder state of tunnels that are gone.
            for tunnelID in reorders.keys where state.tunnels[tunnelID] == nil { reorders[tunnelID] = nil }
        }
    }
}

/// Where a reply goes: the peer's address and the local address it talked to.
struct ReplyTarget {
    var address = sockaddr_storage()
    var addressLength: socklen_t = 0
    var localAddress = sockaddr_storage()
}
