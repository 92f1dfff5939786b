internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif
import Logging
import TriglavCore
import TriglavCrypto

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
    private var pendingData: [(Int, Int, UInt32, Range<Int>)] = []
    /// Reorder buffer per client index, created on the client's first data packet.
    private var reorders: [Int: (generation: UInt64, buffer: ReorderBuffer)] = [:]
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
        for (_, entry) in reorders {
            if let deadline = entry.buffer.deadline {
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
        for (_, entry) in reorders where entry.buffer.isHolding {
            entry.buffer.flushExpired(now: now) { tun.write($0) }
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
            var generations: [(Int, UInt64)] = []
            server.withState { state in
                for index in 0..<count {
                    process(index: index, socketIndex: socketIndex, socket: socket, now: now, state: &state)
                }
                for (_, client, _, _) in pendingData where reorders[client]?.generation != state.clients[client].reorderGeneration {
                    generations.append((client, state.clients[client].reorderGeneration))
                }
            }
            for (client, generation) in generations where reorders[client]?.generation != generation {
                reorders[client] = (generation, ReorderBuffer(window: 256, maxHold: max(1, server.configuration.reorderHold.nanoseconds)))
            }
            for (index, client, sequence, range) in pendingData {
                guard let reorder = reorders[client]?.buffer else { continue }
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
        switch InterimWire.messageType(UnsafeRawBufferPointer(datagram)) {
        case .initiation:
            handshake(index: index, socketIndex: socketIndex, socket: socket, now: now, state: &state)
        case .transport:
            guard let receiver = InterimWire.transportReceiver(UnsafeRawBufferPointer(datagram)),
                  var session = state.sessions[receiver],
                  let opened = session.transport.open(datagram) else { return }
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
            state.sessions[receiver] = session
            switch opened.kind {
            case .data:
                let packet = UnsafeRawBufferPointer(rebasing: datagram[opened.payload])
                guard state.isSourceAllowed(packet, client: session.client) else {
                    state.droppedSpoofed &+= 1
                    return
                }
                state.clients[session.client].receivedPackets &+= 1
                pendingData.append((index, session.client, opened.sequence, opened.payload))
            case .probe:
                let target = reply.slot(0)
                let payloadLength = min(opened.payload.count, 64)
                UnsafeMutableRawBufferPointer(rebasing: target[TransportSession.payloadOffset..<(TransportSession.payloadOffset + payloadLength)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: datagram[opened.payload.prefix(payloadLength)]))
                let length = session.transport.seal(target, payloadLength: payloadLength, kind: .probeReply, sequence: 0)
                state.sessions[receiver] = session
                sendReply(length: length, session: &session, socket: socket)
            case .close:
                state.removeSession(receiver)
            case .probeReply:
                break
            }
        case .response, .none:
            return
        }
    }

    private func handshake(index: Int, socketIndex: Int, socket: UDPSocket, now: Nanoseconds, state: inout ServerState) {
        let datagram = UnsafeRawBufferPointer(batch.received(index))
        guard let initiation = InterimWire.parseInitiation(datagram, serverKey: server.configuration.identity.publicKey),
              let clientIndex = state.clients.firstIndex(where: { $0.key == initiation.clientKey }) else {
            state.rejectedHandshakes &+= 1
            if state.rejectedHandshakes & 0xff == 1 {
                server.logger.info("rejected a handshake from \(batch.endpoint(index).map(\.description) ?? "?") (unknown or unauthorized key, or another protocol version)")
            }
            return
        }
        if state.clients[clientIndex].instance != initiation.instance {
            // The client restarted: its old sessions and sequence space are gone.
            for old in state.clients[clientIndex].sessions { state.sessions.removeValue(forKey: old) }
            state.clients[clientIndex].sessions = []
            state.clients[clientIndex].instance = initiation.instance
            state.clients[clientIndex].reorderGeneration &+= 1
            server.logger.info("client \(initiation.clientKey) connected (tunnel \(state.clients[clientIndex].assignment))")
        }
        var localIndex = UInt32.random(in: 1...UInt32.max)
        while state.sessions[localIndex] != nil { localIndex = UInt32.random(in: 1...UInt32.max) }
        var session = ServerSession(client: clientIndex, transport: TransportSession(localIndex: localIndex, peerIndex: initiation.senderIndex),
                                    socket: socketIndex, address: sockaddr_storage(), addressLength: 0,
                                    localAddress: sockaddr_storage(), lastReceive: now)
        batch.withAddress(index) { address, length in
            session.address = address.pointee
            session.addressLength = length
        }
        batch.withLocalAddress(index) { session.localAddress = $0.pointee }
        // Bound the sessions of one client: a misbehaving client can only evict its own oldest session.
        if state.clients[clientIndex].sessions.count >= 16, let oldest = state.clients[clientIndex].sessions.first {
            state.removeSession(oldest)
        }
        state.sessions[localIndex] = session
        state.clients[clientIndex].sessions.append(localIndex)
        let response = InterimWire.response(identity: server.configuration.identity, senderIndex: localIndex,
                                            receiverIndex: initiation.senderIndex, assignment: state.clients[clientIndex].assignment,
                                            initiationSignature: initiation.signature)
        let target = reply.slot(0)
        response.withUnsafeBytes { target.copyMemory(from: $0) }
        sendReply(length: response.count, session: &session, socket: socket)
    }

    private func sendReply(length: Int, session: inout ServerSession, socket: UDPSocket) {
        withUnsafePointer(to: &session.address) { address in
            withUnsafePointer(to: &session.localAddress) { local in
                reply.prepareSend(0, length: length, address: address, addressLength: session.addressLength,
                                  localAddress: local.pointee.ss_family == 0 ? nil : local)
            }
        }
        reply.count = 1
        socket.send(reply)
    }

    private func expireSessions(now: Nanoseconds) {
        let timeout = server.configuration.sessionTimeout.nanoseconds
        server.withState { state in
            let expired = state.sessions.filter { now &- $0.value.lastReceive >= timeout }.map(\.key)
            for index in expired { state.removeSession(index) }
        }
    }
}
