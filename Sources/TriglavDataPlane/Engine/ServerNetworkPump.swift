internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif
import Logging
import TriglavCore
import TriglavCrypto
import TriglavMultipath
import TriglavProtocol

/// Clients → TUN pump of the server, and its timers. Handshakes are answered here too: they are rare,
/// and keeping them on this thread keeps session creation ordered with the traffic. Data frames go
/// through their tunnel's multipath engine (reorder buffer; held packets wait in that tunnel's
/// `PacketPool`); released packets are written to the TUN device after the lock, one per write.
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
    /// Packet storage per tunnel (its engine's reorder buffer holds slot numbers), dropped with the tunnel.
    private var pools: [UInt64: PacketPool] = [:]
    /// Released packets to write after the lock: (tunnel, pool slot).
    private var deliveries: [(UInt64, Int)] = []
    private var nextTimer: Nanoseconds = 0

    init(server: ServerTunnel, tun: TunDevice, sockets: [UDPSocket]) {
        self.server = server
        self.tun = tun
        self.sockets = sockets
        ready = Array(repeating: false, count: sockets.count)
        deliveries.reserveCapacity(4 * Self.batchSize)
    }

    func iterate() {
        var now = monotonicNow()
        var deadline = nextTimer
        server.withState { state in
            for tunnel in state.tunnels.values {
                if let engineDeadline = tunnel.engine.nextDeadline() { deadline = min(deadline, engineDeadline) }
            }
        }
        let timeout = Int32(min(100, max(0, (deadline &- min(now, deadline)) / Nanoseconds.millisecond)))
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
        runDuties(now: now)
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
                // The engine needs one non-decreasing clock across both pump threads.
                let now = state.clock.advance(to: now)
                for index in 0..<count {
                    process(index: index, socketIndex: socketIndex, socket: socket, now: now, state: &state)
                }
            }
            writeDeliveries()
            if count < batch.capacity { return }
        }
    }

    private func writeDeliveries() {
        for (tunnelID, slot) in deliveries {
            guard let pool = pools[tunnelID] else { continue }
            tun.write(pool.packet(slot))
            pool.release(slot)
        }
        deliveries.removeAll(keepingCapacity: true)
    }

    private func pool(for tunnelID: UInt64) -> PacketPool {
        if let pool = pools[tunnelID] { return pool }
        let pool = PacketPool(capacity: server.configuration.multipath.reorderCapacity + Self.batchSize)
        pools[tunnelID] = pool
        return pool
    }

    private func process(index: Int, socketIndex: Int, socket: UDPSocket, now: Nanoseconds, state: inout ServerState) {
        let datagram = batch.received(index)
        switch Demultiplexer.classify(UnsafeRawBufferPointer(datagram)) {
        case .handshakeInitiation:
            handshake(index: index, socketIndex: socketIndex, socket: socket, now: now, state: &state)
        case .transport(let receiver):
            // Opened in place: a copy of the session would copy its replay window.
            let frame: OpenedFrame
            do {
                guard let opened = try state.sessions[receiver]?.transport.open(datagram, now: now) else { return }
                frame = opened
            } catch {
                if case .sessionClosed = error { state.removeSession(receiver, now: now) }
                return
            }
            guard let tunnelID = state.sessions[receiver]?.tunnelID, let uplink = state.sessions[receiver]?.uplink else { return }
            state.sessions[receiver]?.lastReceive = now
            state.sessions[receiver]?.socket = socketIndex
            // Roaming: the endpoint follows the last authenticated packet's source.
            batch.withAddress(index) { address, length in
                state.sessions[receiver]?.address = address.pointee
                state.sessions[receiver]?.addressLength = length
            }
            batch.withLocalAddress(index) { local in
                if local.pointee.ss_family != 0 { state.sessions[receiver]?.localAddress = local.pointee }
            }
            if state.tunnels[tunnelID]?.uplinkSessions[uplink.rawValue] != receiver {
                // First authentic packet on this session: it now carries its uplink (a rekey retires the old one).
                let previous = state.tunnels[tunnelID]?.uplinkSessions[uplink.rawValue]
                state.tunnels[tunnelID]?.uplinkSessions[uplink.rawValue] = receiver
                if let previous, let replaced = state.sessions[receiver]?.replaces, previous == replaced {
                    state.removeSession(replaced, now: now)
                }
                state.sessions[receiver]?.replaces = nil
                if state.tunnels[tunnelID]?.engine.uplinkIDs.contains(uplink) == false {
                    try? state.tunnels[tunnelID]?.engine.addUplink(uplink, now: now)
                }
            }
            let body = UnsafeRawBufferPointer(rebasing: datagram[frame.body])
            switch frame.type {
            case .data:
                guard let tunnel = state.tunnels[tunnelID], state.isSourceAllowed(body, tunnel: tunnel) else {
                    state.droppedSpoofed &+= 1
                    return
                }
                state.tunnels[tunnelID]?.receivedPackets &+= 1
                let pool = pool(for: tunnelID)
                guard let stored = pool.store(body),
                      let verdict = state.tunnels[tunnelID]?.engine.receive(stored, sequence: frame.tunnelSequence, uplink: uplink,
                                                                            counter: frame.counter, bytes: datagram.count, now: now)
                else { return }
                switch verdict {
                case .deliverNow: deliveries.append((tunnelID, stored))
                case .buffered: break
                case .duplicate, .stale, .overflow: pool.release(stored)
                }
                while let released = state.tunnels[tunnelID]?.engine.nextDelivery(now: now) { deliveries.append((tunnelID, released)) }
            case .probe:
                guard case .probe(let probe)? = try? ControlFrame.parse(type: .probe, body: body) else { return }
                state.tunnels[tunnelID]?.engine.handle(.probeReceived(uplink, senderTimestamp: probe.timestamp, at: now))
                sendControl(.probeReply(probe), session: receiver, now: now, state: &state)
            case .probeReply:
                guard case .probeReply(let probe)? = try? ControlFrame.parse(type: .probeReply, body: body) else { return }
                state.tunnels[tunnelID]?.engine.handle(.probeReplied(uplink, probeID: UInt32(truncatingIfNeeded: probe.id), at: now))
            case .feedback:
                guard case .feedback(let report)? = try? ControlFrame.parse(type: .feedback, body: body) else { return }
                state.tunnels[tunnelID]?.engine.handle(.feedbackReceived(uplink, FeedbackReport(
                    highestCounter: report.highestCounter, receivedPackets: report.receivedPackets,
                    receivedBytes: report.receivedBytes), at: now))
            case .close:
                state.removeSession(receiver, now: now)
            case .keepalive:
                break
            }
        case .handshakeResponse, .cookieReply, .versionMismatch, .invalid:
            return
        }
    }

    /// The engines' duties: probes and feedback on the session carrying each uplink; in-order releases.
    private func runDuties(now: Nanoseconds) {
        server.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            for tunnelID in state.tunnels.keys {
                while let released = state.tunnels[tunnelID]?.engine.nextDelivery(now: now) { deliveries.append((tunnelID, released)) }
                var budget = 64
                while budget > 0, let duty = state.tunnels[tunnelID]?.engine.nextDuty(now: now) {
                    budget -= 1
                    switch duty {
                    case .sendProbe(let uplink, let probeID, let timestamp):
                        guard let session = state.tunnels[tunnelID]?.uplinkSessions[uplink.rawValue] else { continue }
                        sendControl(.probe(ProbeBody(id: UInt64(probeID), timestamp: timestamp)), session: session, now: now, state: &state)
                    case .sendFeedback(let uplink, let report):
                        guard let session = state.tunnels[tunnelID]?.uplinkSessions[uplink.rawValue] else { continue }
                        let body = FeedbackBody(receivedPackets: report.receivedPackets, receivedBytes: report.receivedBytes,
                                                highestCounter: report.highestCounter, reportedAt: now)
                        sendControl(.feedback(body), session: session, now: now, state: &state)
                    case .stateChanged(let uplink, let from, let to):
                        server.logger.debug("tunnel \(String(tunnelID, radix: 16)) \(uplink): \(from.rawValue) -> \(to.rawValue)")
                    case .resend, .requestResend:
                        continue  // no retransmit store yet (docs/DATAPLANE.md)
                    }
                }
            }
        }
        writeDeliveries()
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
            let tunnelID = accepted.tunnel.tunnelID
            if case .created(let replaced) = accepted.event {
                if let replaced { removeTunnel(replaced, state: &state) }
                // A create also replaces whatever else this identity had (its client restarted).
                for (id, tunnel) in state.tunnels where tunnel.key == accepted.client { removeTunnel(id, state: &state) }
                // The configuration gave every client an IPv4 address (ServerTunnelConfiguration.clients).
                guard let ipv4 = accepted.tunnel.ipv4,
                      let engine = try? MultipathEngine<Int>(configuration: server.configuration.multipath) else { return }
                let addresses = TunnelAddresses(ipv4: ipv4, ipv6: accepted.tunnel.ipv6)
                state.addTunnel(ServerClientTunnel(tunnelID: tunnelID, key: accepted.client, addresses: addresses, engine: engine))
                server.logger.info("client \(accepted.client) connected from \(source) (tunnel \(addresses))")
            }
            guard state.tunnels[tunnelID] != nil else { return }
            // A rekey keeps its uplink's identity; a new uplink gets a new one.
            let uplink: UplinkID
            if let replaced = accepted.replacesSessionIndex, let old = state.sessions[replaced], old.tunnelID == tunnelID {
                uplink = old.uplink
            } else {
                state.nextUplinkID &+= 1
                uplink = UplinkID(state.nextUplinkID)
            }
            let localIndex = accepted.session.localIndex
            state.sessions[localIndex] = ServerSession(
                tunnelID: tunnelID, uplink: uplink, transport: accepted.session, replaces: accepted.replacesSessionIndex,
                socket: socketIndex, address: target.address, addressLength: target.addressLength,
                localAddress: target.localAddress, lastReceive: now)
            state.tunnels[tunnelID]?.sessions.append(localIndex)
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

    private func removeTunnel(_ tunnelID: UInt64, state: inout ServerState) {
        state.removeTunnel(tunnelID)
        pools[tunnelID] = nil
        deliveries.removeAll { $0.0 == tunnelID }
    }

    /// Seals a control frame with session `index` in place and sends it to the session's endpoint.
    private func sendControl(_ frame: ControlFrame, session index: UInt32, now: Nanoseconds, state: inout ServerState) {
        guard let socketIndex = state.sessions[index]?.socket, socketIndex < sockets.count,
              let length = try? state.sessions[index]?.transport.seal(frame, in: reply.slot(0), now: now) else { return }
        state.sessions[index]?.withReplyTarget { address, addressLength, local in
            reply.prepareSend(0, length: length, address: address, addressLength: addressLength, localAddress: local)
        }
        reply.count = 1
        sockets[socketIndex].send(reply)
    }

    private func sendBytes(_ bytes: [UInt8], to target: inout ReplyTarget, socket: UDPSocket) {
        let slot = reply.slot(0)
        guard bytes.count <= slot.count else { return }
        bytes.withUnsafeBytes { slot.copyMemory(from: $0) }
        withUnsafePointer(to: &target.address) { address in
            withUnsafePointer(to: &target.localAddress) { local in
                reply.prepareSend(0, length: bytes.count, address: address, addressLength: target.addressLength,
                                  localAddress: local.pointee.ss_family == 0 ? nil : local)
            }
        }
        reply.count = 1
        socket.send(reply)
    }

    private func expireSessions(now: Nanoseconds) {
        let timeout = server.configuration.sessionTimeout.nanoseconds
        server.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            let expired = state.sessions.filter { now &- $0.value.lastReceive >= timeout || $0.value.transport.isExpired(now: now) }
            for index in expired.keys { state.removeSession(index, now: now) }
            for tunnelID in pools.keys where state.tunnels[tunnelID] == nil { pools[tunnelID] = nil }
        }
    }
}

/// Where a reply goes: the peer's address and the local address it talked to.
struct ReplyTarget {
    var address = sockaddr_storage()
    var addressLength: socklen_t = 0
    var localAddress = sockaddr_storage()
}
