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
    /// Poller tokens: UDP sockets are 0..<n, TCP listeners start here, TCP connections at `connectionTokenBase`.
    static let listenerTokenBase: UInt64 = 1 << 20
    static let connectionTokenBase: UInt64 = 1 << 21

    private let server: ServerTunnel
    private let tun: TunDevice
    private let sockets: [UDPSocket]
    private let listeners: [TCPListener]
    private var readyConnections: [UInt32] = []
    private var nextConnectionID: UInt32 = 0
    /// Fallback connections refused (for the log, which names every 256th).
    private var refusedConnections = 0
    /// Listeners (indices) `accept` stopped watching until the next timer round: out of descriptors, spare included.
    private var pausedListeners: [Int] = []
    /// Connections the timer found expired (reused), and those to close after the lock.
    private var expiredConnections: [UInt32] = []
    private var closingConnections: [TCPConnection] = []
    /// Slots big enough for a UDP_GRO run (the listeners ask for it, `ServerTunnel`): 4 MiB in all.
    private let batch = DatagramBatch(capacity: ServerNetworkPump.batchSize, slotSize: DatagramBatch.coalescingSlotSize)
    /// One-slot batch for replies (handshake responses, probe replies) that must leave from a given address.
    private let reply = DatagramBatch(capacity: 1, slotSize: 256)
    /// One-slot batch for resent data packets.
    private let resendBatch = DatagramBatch(capacity: 1, slotSize: TunnelMTU.largestDatagram)
    private var ready: [Bool]
    /// The socket that reads first in the next wake-up (rotates, so no socket of a group is always first).
    private var firstSocket = 0
    /// Turns of `receiveRoundRobin` per wake-up: up to this many batches from each socket before duties and timers.
    private static let receiveTurns = 8
    /// Packet storage per tunnel (its engine's reorder buffer holds slot numbers), dropped with the tunnel.
    private var pools: [UInt64: PacketPool] = [:]
    /// Released packets to write after the lock: (tunnel, pool slot).
    private var deliveries: [(UInt64, Int)] = []
    private var nextTimer: Nanoseconds = 0
    /// Tunnels whose duties are due this round (reused).
    private var dueTunnels: [UInt64] = []
    /// Sequences of `resend` duties that couldn't be carried out, gathered into resend-declined runs (per tunnel:
    /// flushed before the next tunnel's duties).
    private var declines = DeclineAccumulator()
    /// When the tunnels' resend-repair counters are next logged (those that moved), and what each was then.
    private var nextResendReport: Nanoseconds = 0
    private var reportedRepair: [UInt64: ResendRepairCounters] = [:]
    /// 2 s; `TRIGLAV_PACING_REPORT_MS` (experiment knob) shortens it to trace the pacer's estimates.
    private static let resendReportInterval = PacingSwitch.environmentNumber("TRIGLAV_PACING_REPORT_MS")
        .map { $0 * Nanoseconds.millisecond } ?? 2 * Nanoseconds.second
    /// Pacing: uplinks that went down in this tunnel's duties (reused), and whether resends were queued this round
    /// (the TUN pump, which sends them, is woken after the lock).
    private var wentDown: [UplinkID] = []
    private var wakeTunPump = false

    init(server: ServerTunnel, tun: TunDevice, sockets: [UDPSocket], listeners: [TCPListener]) {
        self.server = server
        self.tun = tun
        self.sockets = sockets
        self.listeners = listeners
        ready = Array(repeating: false, count: sockets.count)
        deliveries.reserveCapacity(4 * Self.batchSize)
    }

    func iterate() {
        var now = monotonicNow()
        var deadline = nextTimer
        server.withState { state in
            // Cached per tunnel (see `ServerState.dutyDeadlines`): no engine is asked here, so an idle wake-up
            // costs one comparison per client, not a walk over every client's uplinks.
            for due in state.dutyDeadlines.values { deadline = min(deadline, due) }
        }
        let timeout = Int32(min(100, max(0, (deadline &- min(now, deadline)) / Nanoseconds.millisecond)))
        do {
            try server.networkPollerForPump.wait(timeoutMilliseconds: timeout) { token in
                if token < UInt64(sockets.count) {
                    ready[Int(token)] = true
                } else if token >= Self.connectionTokenBase, token != Poller.wakeToken {
                    readyConnections.append(UInt32(truncatingIfNeeded: token - Self.connectionTokenBase))
                } else if token >= Self.listenerTokenBase, token < Self.listenerTokenBase + UInt64(listeners.count) {
                    accept(listener: Int(token - Self.listenerTokenBase))
                }
            }
        } catch {
            return
        }
        now = monotonicNow()
        receiveRoundRobin(now: now)
        for connection in readyConnections { receive(connection: connection, now: now) }
        readyConnections.removeAll(keepingCapacity: true)
        runDuties(now: now)
        if now >= nextTimer {
            nextTimer = now &+ Self.timerInterval
            expireSessions(now: now)
            resumeListeners()
        }
    }

    /// Reads the sockets in turns, one batch (at most `batchSize` datagrams) from each per turn, up to `receiveTurns`
    /// turns per wake-up, starting with a different socket each wake-up. Every turn tries every socket that was
    /// readable at the wake-up or became so since (one recvmmsg that finds nothing costs little next to a batch), so a
    /// socket that was empty a moment ago gets its turn as soon as something arrives, not after the other sockets'
    /// remaining turns. With the listener groups steering each client source address to one socket, a client
    /// sending faster than the server can take gets one batch per turn like everyone else, and its excess waits (and
    /// is dropped by the kernel) in its own socket before any of it is decrypted.
    private func receiveRoundRobin(now: Nanoseconds) {
        let count = sockets.count
        guard count > 0, ready.contains(true) else { return }
        for _ in 0..<Self.receiveTurns {
            var anyFull = false
            for offset in 0..<count {
                let index = (firstSocket + offset) % count
                if receiveBatch(socketIndex: index, now: now) { anyFull = true }
            }
            if !anyFull { break }
        }
        firstSocket = (firstSocket + 1) % count
        for index in 0..<count { ready[index] = false }
    }

    /// Receives and processes one batch from socket `socketIndex`; whether it was full (more may be waiting).
    private func receiveBatch(socketIndex: Int, now: Nanoseconds) -> Bool {
        let socket = sockets[socketIndex]
        guard let count = try? socket.receive(into: batch), count > 0 else { return false }
        server.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            state.tunJoinedWrites = tun.joinedWrites
            state.coalescedDatagrams &+= batch.coalescedDatagrams(count: count)
            for index in 0..<count {
                var source = DatagramSource(socketIndex: socketIndex)
                batch.withAddress(index) { address, length in
                    source.target.address = address.pointee
                    source.target.addressLength = length
                }
                batch.withLocalAddress(index) { source.target.localAddress = $0.pointee }
                source.outerECN = batch.receivedECN(index)
                batch.forEachReceivedDatagram(index) { process($0, source: &source, now: now, state: &state) }
            }
        }
        writeDeliveries()
        return count == batch.capacity
    }

    private func writeDeliveries() {
        for (tunnelID, slot) in deliveries {
            guard let pool = pools[tunnelID] else { continue }
            tun.write(pool.packet(slot))
            pool.release(slot)
        }
        tun.flushWrites()
        deliveries.removeAll(keepingCapacity: true)
    }

    /// Accepts waiting fallback connections and watches them, within `TCPFallbackLimits`: a source address at its
    /// limit, or a full table, makes room by closing the oldest connection that hasn't authenticated (of that
    /// source, or of all); when every candidate has authenticated, the new connection is refused instead.
    private func accept(listener index: Int) {
        let listener = listeners[index]
        // The table's size follows the descriptor limit, read per wake-up (one getrlimit): it may be changed at runtime.
        let limit = TCPFallbackLimits.connectionLimit(descriptorLimit: Int(tg_descriptor_limit()))
        // Whether a connection was closed for a descriptor since the last successful accept: if accept still fails
        // (ENFILE: another process took it), evicting more would only empty the table.
        var evictedForDescriptor = false
        for _ in 0..<64 {
            guard let (connection, peer) = listener.accept() else {
                guard listener.lastAcceptOutOfDescriptors else { return }
                // Out of descriptors anyway (other fds of the process): free one held by a connection that hasn't
                // authenticated, or refuse the pending connection; never leave it queued (epoll would spin).
                if !evictedForDescriptor,
                   let victim = server.withState({ Self.removeOldestUnauthenticated(from: &$0.connections, peer: nil) }) {
                    closeConnection(victim)
                    evictedForDescriptor = true
                    continue
                }
                guard listener.refusePending() else {
                    // Not even the spare descriptor came back: stop watching the listener for a timer round rather
                    // than wake again at once for the same queued connection (`resumeListeners`).
                    server.networkPollerForPump.remove(fd: listener.descriptor.raw)
                    pausedListeners.append(index)
                    return
                }
                noteRefused("""
                    (out of file descriptors); raise the descriptor limit (LimitNOFILE=) above \
                    \(TCPFallbackLimits.maxConnections + TCPFallbackLimits.reservedDescriptors)
                    """)
                continue
            }
            evictedForDescriptor = false
            let now = monotonicNow()
            connection.peerAddress = peer?.address
            connection.acceptedAt = now
            var evicted: [TCPConnection] = []
            let accepted: UInt32? = server.withState { state in
                if let address = connection.peerAddress,
                   state.connections.values.lazy.filter({ $0.peerAddress == address }).count >= TCPFallbackLimits.maxConnectionsPerSource {
                    guard let victim = Self.removeOldestUnauthenticated(from: &state.connections, peer: address) else { return nil }
                    evicted.append(victim)
                }
                if state.connections.count >= limit {
                    guard let victim = Self.removeOldestUnauthenticated(from: &state.connections, peer: nil) else { return nil }
                    evicted.append(victim)
                }
                nextConnectionID &+= 1
                state.connections[nextConnectionID] = connection
                return nextConnectionID
            }
            for victim in evicted { closeConnection(victim) }
            guard let id = accepted else {
                noteRefused("from \(peer.map(\.description) ?? "?"): its source or the table (\(limit)) is full of authenticated connections")
                connection.close()
                continue
            }
            do {
                try server.networkPollerForPump.add(fd: connection.descriptor.raw, token: Self.connectionTokenBase + UInt64(id))
                server.logger.debug("TCP fallback connection from \(peer.map(\.description) ?? "?")")
            } catch {
                server.withState { $0.connections[id] = nil }
                connection.close()
            }
        }
    }

    /// Counts a refused fallback connection; logs `reason` for the first and every 256th after it, so a flood
    /// can't flood the log.
    private func noteRefused(_ reason: @autoclosure () -> String) {
        refusedConnections &+= 1
        guard refusedConnections & 0xff == 1 else { return }
        server.logger.warning("refused a TCP fallback connection \(reason()) (\(refusedConnections) refused so far)")
    }

    /// Watches the listeners `accept` paused again (a timer round later, descriptors may have been freed).
    private func resumeListeners() {
        for index in pausedListeners {
            let listener = listeners[index]
            do {
                try server.networkPollerForPump.add(fd: listener.descriptor.raw, token: Self.listenerTokenBase + UInt64(index))
            } catch {
                server.logger.error("\(listener.label): can't watch it again: \(error); no new TCP fallback connections")
            }
        }
        pausedListeners.removeAll(keepingCapacity: true)
    }

    /// Removes and returns the connection accepted longest ago that hasn't authenticated, of `peer` (nil: of any).
    private static func removeOldestUnauthenticated(from connections: inout [UInt32: TCPConnection], peer: IPAddress?) -> TCPConnection? {
        var oldest: (id: UInt32, at: Nanoseconds)?
        for (id, other) in connections where other.lastAuthenticated == nil && (peer == nil || other.peerAddress == peer) {
            if other.acceptedAt < oldest?.at ?? .max { oldest = (id, other.acceptedAt) }
        }
        guard let oldest else { return nil }
        return connections.removeValue(forKey: oldest.id)
    }

    /// Stops watching a connection that is no longer in `ServerState.connections` and closes it.
    private func closeConnection(_ connection: TCPConnection) {
        server.networkPollerForPump.remove(fd: connection.descriptor.raw)
        connection.close()
    }

    /// Closes fallback connections that didn't authenticate within `TCPFallbackLimits.handshakeDeadline` of being
    /// accepted, and those silent (nothing authentic) for the session timeout: by then their sessions have
    /// expired too (`expireSessions`), so the connection serves nobody. A walk over at most
    /// `TCPFallbackLimits.maxConnections`, every `timerInterval`.
    private func expireConnections(now: Nanoseconds, state: inout ServerState) {
        let idleTimeout = server.configuration.sessionTimeout.nanoseconds
        expiredConnections.removeAll(keepingCapacity: true)
        for (id, connection) in state.connections {
            if let last = connection.lastAuthenticated {
                if now &- min(now, last) >= idleTimeout { expiredConnections.append(id) }
            } else if now &- min(now, connection.acceptedAt) >= TCPFallbackLimits.handshakeDeadline {
                expiredConnections.append(id)
            }
        }
        for id in expiredConnections {
            guard let connection = state.connections.removeValue(forKey: id) else { continue }
            closingConnections.append(connection)
        }
    }

    /// Reads the frames of one fallback connection; each is processed like a UDP datagram.
    private func receive(connection id: UInt32, now: Nanoseconds) {
        let finished: TCPConnection? = server.withState { state in
            let now = state.clock.advance(to: now)
            guard let connection = state.connections[id] else { return nil }
            var source = DatagramSource(socketIndex: 0, connection: id)
            let alive = connection.readFrames { datagram in process(datagram, source: &source, now: now, state: &state) }
            connection.flush()
            guard !alive else { return nil }
            state.connections[id] = nil
            return connection
        }
        writeDeliveries()
        if let finished {
            server.networkPollerForPump.remove(fd: finished.descriptor.raw)
            finished.close()
        }
    }

    private func pool(for tunnelID: UInt64) -> PacketPool {
        if let pool = pools[tunnelID] { return pool }
        let pool = PacketPool(capacity: server.configuration.multipath.reorderCapacity + Self.batchSize)
        pools[tunnelID] = pool
        return pool
    }

    private func process(_ datagram: UnsafeMutableRawBufferPointer, source: inout DatagramSource, now: Nanoseconds,
                         state: inout ServerState) {
        switch Demultiplexer.classify(UnsafeRawBufferPointer(datagram)) {
        case .handshakeInitiation:
            handshake(datagram, source: &source, now: now, state: &state)
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
            state.dutyDeadlines[tunnelID] = 0  // its engine learned something: ask it for duties this round
            if let connection = source.connection { state.connections[connection]?.lastAuthenticated = now }
            // Roaming: the endpoint (address or fallback connection) follows the last authenticated packet.
            state.sessions[receiver]?.connection = source.connection
            if source.connection == nil {
                // A NAT mapping that changed under a live session (rebinding): the client hears of it at once (a
                // keepalive gets its report below anyway).
                let rebound = state.sessions[receiver].map { session in
                    !SocketAddress.isSame(session.address, length: session.addressLength,
                                          as: source.target.address, length: source.target.addressLength)
                } ?? false
                state.sessions[receiver]?.socket = source.socketIndex
                state.sessions[receiver]?.address = source.target.address
                state.sessions[receiver]?.addressLength = source.target.addressLength
                if source.target.localAddress.ss_family != 0 { state.sessions[receiver]?.localAddress = source.target.localAddress }
                if rebound && frame.type != .keepalive { reportEndpoint(&source, session: receiver, now: now, state: &state) }
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
                    do {
                        // As a backup until the client's policy for it arrives (below): a data packet may confirm the
                        // session first, and a metered backup must not carry downloads meanwhile. (It still carries
                        // when nothing better works, as any backup does.)
                        try state.tunnels[tunnelID]?.engine.addUplink(uplink, policy: UplinkPolicyFlags.unannounced, now: now)
                    } catch {
                        // The handshake refuses uplinks beyond the engine's limit; joins answered further apart than
                        // `pendingJoinWindow` but confirmed together can still overshoot. A session the engine can't
                        // schedule must not linger as if it worked: the client hears silence and handshakes again.
                        state.refusedUplinks &+= 1
                        server.logger.warning("tunnel \(String(tunnelID, radix: 16)): can't add \(uplink) to its engine: \(error); session dropped")
                        state.removeSession(receiver, now: now)
                        return
                    }
                }
            }
            if frame.type != .data, frame.type != .close, state.sessions[receiver] != nil,
               let policy = UplinkPolicyFlags.serverUpdate(flags: frame.flags, applied: state.sessions[receiver]?.policyFlags,
                                                           ownHeartbeat: server.configuration.multipath.heartbeatInterval) {
                // The client's tier/metered setting for this uplink: schedule the download direction alike. Its idle
                // heartbeat too: a client that relaxed it on this uplink (metered) gets the same quiet from this side,
                // on this path only; its other uplinks keep theirs.
                state.sessions[receiver]?.policyFlags = frame.flags
                try? state.tunnels[tunnelID]?.engine.updatePolicy(policy, for: uplink)
            }
            if let mode = state.tunnels[tunnelID]?.followClientScheduler(frame.tunnelFlags),
               let switches = state.tunnels[tunnelID]?.shouldLogSchedulerSwitch(at: now) {
                // The client's scheduler (`[multipath] scheduler`, or switched at runtime) holds for its downloads too.
                let count = switches > 1 ? " (\(switches) switches since the last report)" : ""
                server.logger.info("tunnel \(String(tunnelID, radix: 16)): scheduler \(mode.rawValue), as its client asked\(count)")
            }
            let body = UnsafeRawBufferPointer(rebasing: datagram[frame.body])
            switch frame.type {
            case .data:
                guard state.isSourceAllowed(body, addresses: state.tunnels[tunnelID]?.addresses) else {
                    state.droppedSpoofed &+= 1
                    return
                }
                state.tunnels[tunnelID]?.receivedPackets &+= 1
                state.tunnels[tunnelID]?.receivedBytes &+= UInt64(body.count)
                let pool = pool(for: tunnelID)
                guard let stored = pool.store(body) else { return }
                guard state.ecnDecapsulation.decapsulate(outer: source.outerECN, slot: stored, pool: pool) else {
                    pool.release(stored)
                    return
                }
                guard let verdict = state.tunnels[tunnelID]?.engine.receive(stored, sequence: frame.tunnelSequence, uplink: uplink,
                                                                            counter: frame.counter, bytes: datagram.count, now: now,
                                                                            ordered: !PacketClassifier.isPureTCPAck(body))
                else { pool.release(stored); return }
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
                // The RTT just moved: whether this uplink's queue is long, for answering resend requests.
                // Paced, the network's queue holds about the allowance, never a full buffer: a loss there is not our
                // congestion (that shows as the shared queue's AQM refusals), so every request is answered.
                if state.tunnels[tunnelID]?.paced == nil {
                    state.tunnels[tunnelID]?.retransmit.noteQueue(of: uplink, statistics: state.tunnels[tunnelID]?.engine.statistics(for: uplink))
                }
            case .feedback:
                guard case .feedback(let report)? = try? ControlFrame.parse(type: .feedback, body: body) else { return }
                state.tunnels[tunnelID]?.engine.handle(.feedbackReceived(uplink, FeedbackReport(report), at: now))
            case .close:
                state.removeSession(receiver, now: now)
            case .resendRequest:
                guard case .resendRequest(let run)? = try? ControlFrame.parse(type: .resendRequest, body: body),
                      let store = state.tunnels[tunnelID]?.retransmit,
                      let transmitSequence = state.tunnels[tunnelID]?.transmitSequence else { return }
                store.answer(run, transmitSequence: transmitSequence, resend: { first, count in
                    state.tunnels[tunnelID]?.engine.handle(.resendRequested(firstSequence: first, count: count, at: now))
                }, decline: { first, count in
                    // On the uplink with the shortest queue of ours, not the one the request came on: a decline mostly
                    // answers a loss into a long queue, and behind that queue it would stall the client's delivery longer.
                    sendControlOnBestUplink(.resendDeclined(ResendRun(firstSequence: first, count: count)), tunnel: tunnelID,
                                            now: now, state: &state)
                })
            case .resendDeclined:
                // Only a reorder buffer that asks for resends waits for them; otherwise there is nothing to stop.
                guard state.tunnels[tunnelID]?.engine.configuration.requestsResends == true,
                      case .resendDeclined(let run)? = try? ControlFrame.parse(type: .resendDeclined, body: body) else { return }
                state.tunnels[tunnelID]?.engine.handle(.resendDeclined(firstSequence: run.firstSequence, count: run.count, at: now))
                while let released = state.tunnels[tunnelID]?.engine.nextDelivery(now: now) { deliveries.append((tunnelID, released)) }
            case .keepalive:
                // The client keepalives after every handshake and on idle uplinks: tell it where its packets come
                // from, so it can tell a NAT on the way (and a NAT mapping that changed) from a direct path. And the
                // DNS offer: every new session confirms with a keepalive, so a lost offer comes again with the next.
                reportEndpoint(&source, session: receiver, now: now, state: &state)
                if let offer = server.configuration.dnsOffer {
                    sendControl(.dnsOffer(offer), session: receiver, now: now, state: &state)
                }
            case .endpointReport, .pathProbeAck, .dnsOffer:
                break  // server → client only (the server doesn't search its paths' MTU)
            case .pathProbe:
                // The client searches its uplink's path MTU: the probe arrived whole, so its size passes.
                guard case .pathProbe(let probe)? = try? ControlFrame.parse(type: .pathProbe, body: body) else { return }
                sendControl(.pathProbeAck(probe), session: receiver, now: now, state: &state)
            }
        case .handshakeResponse, .cookieReply, .versionMismatch, .invalid:
            return
        }
    }

    /// The engines' duties: probes and feedback on the session carrying each uplink; in-order releases.
    /// Only tunnels whose cached deadline has come (or that saw traffic) are asked; each gets its next
    /// deadline cached again, so the work per wake-up follows the busy clients, not all of them.
    private func runDuties(now: Nanoseconds) {
        server.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            dueTunnels.removeAll(keepingCapacity: true)
            for (tunnelID, due) in state.dutyDeadlines where due <= now { dueTunnels.append(tunnelID) }
            for tunnelID in dueTunnels {
                defer {
                    if state.tunnels[tunnelID] != nil {
                        state.dutyDeadlines[tunnelID] = state.tunnels[tunnelID]?.engine.nextDeadline() ?? now &+ Self.timerInterval
                    }
                }
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
                        if to == .down, state.tunnels[tunnelID]?.paced != nil { wentDown.append(uplink) }
                    case .resend(let sequence):
                        // One the client asked for (or one in flight on a dead uplink) that can't go: a client that asks
                        // for resends hears so at once instead of waiting for it until its reorder wait ends.
                        if !resend(sequence: sequence, tunnel: tunnelID, now: now, state: &state),
                           state.tunnels[tunnelID]?.retransmit.peerRequestsResends == true, let run = declines.add(sequence) {
                            sendControlOnBestUplink(.resendDeclined(run), tunnel: tunnelID, now: now, state: &state)
                        }
                    case .requestResend(let first, let count):
                        sendControlOnBestUplink(.resendRequest(ResendRun(firstSequence: first, count: count)), tunnel: tunnelID,
                                                now: now, state: &state)
                    }
                }
                for uplink in wentDown { requeueResends(of: uplink, tunnel: tunnelID, now: now, state: &state) }
                wentDown.removeAll(keepingCapacity: true)
                if let run = declines.take() { sendControlOnBestUplink(.resendDeclined(run), tunnel: tunnelID, now: now, state: &state) }
            }
        }
        writeDeliveries()
        if wakeTunPump {
            // Resends were queued: the TUN pump sends paced packets.
            wakeTunPump = false
            server.tunPollerForPump.wake()
        }
    }

    private func handshake(_ bytes: UnsafeMutableRawBufferPointer, source: inout DatagramSource, now: Nanoseconds,
                           state: inout ServerState) {
        let datagram = Array(bytes)
        // The peer's address (for the cookie and the per-source rate limit); a fallback connection is its own source.
        let peer: AnyHashable = source.connection.map { AnyHashable("tcp#\($0)") }
            ?? AnyHashable(withUnsafePointer(to: &source.target.address) { SocketAddress.read($0) })
        let peerText = source.connection.map { "TCP fallback connection #\($0)" }
            ?? withUnsafePointer(to: &source.target.address) { SocketAddress.read($0)?.description ?? "?" }
        switch state.responder.handleInitiation(datagram, from: peer, now: now) {
        case .accept(let accepted):
            let tunnelID = accepted.tunnel.tunnelID
            if case .created(let replaced) = accepted.event {
                if let replaced { removeTunnel(replaced, state: &state) }
                // A create also replaces whatever else this identity had (its client restarted).
                for (id, tunnel) in state.tunnels where tunnel.key == accepted.client { removeTunnel(id, state: &state) }
                // The configuration gave every client an address (ServerTunnelConfiguration.clients).
                guard let addresses = TunnelAddresses(ipv4: accepted.tunnel.ipv4, ipv6: accepted.tunnel.ipv6),
                      let engine = try? MultipathEngine<Int>(configuration: server.configuration.multipath) else { return }
                let tunnel = ServerClientTunnel(tunnelID: tunnelID, key: accepted.client, addresses: addresses, engine: engine)
                tunnel.transmitSequence = state.resumeSequences[accepted.client] ?? 0
                if server.configuration.multipath.pacingQueueAllowance != nil {
                    tunnel.paced = PacedSendQueue(slotSize: server.configuration.effectiveMTU)
                }
                state.addTunnel(tunnel)
                server.logger.info("client \(accepted.client) connected from \(peerText) (tunnel \(addresses))")
            }
            guard state.tunnels[tunnelID] != nil else { return }
            // A rekey keeps its uplink's identity; a new uplink gets a new one.
            let uplink: UplinkID
            if let replaced = accepted.replacesSessionIndex, let old = state.sessions[replaced], old.tunnelID == tunnelID {
                uplink = old.uplink
            } else {
                // A client gets at most `MultipathLimits.maxUplinks` uplinks (its engine's limit). One more is
                // refused here, before it holds a session: no reply, the client's attempt times out. Counted,
                // and logged once per 256 so a client retrying in a loop can't flood the log. Counted are the
                // confirmed uplinks and the joins answered in the last `pendingJoinWindow` (not yet confirmed):
                // older unconfirmed sessions are lost responses, which must not use up a client's allowance.
                let uplinks = uplinkCount(of: tunnelID, now: now, state: state)
                guard uplinks < MultipathLimits.maxUplinks else {
                    state.responder.sessionEnded(localIndex: accepted.session.localIndex)
                    state.refusedUplinks &+= 1
                    if state.refusedUplinks & 0xff == 1 {
                        let refused = state.refusedUplinks
                        server.logger.warning("""
                            client \(accepted.client) from \(peerText) already has \(uplinks) uplinks, the limit \
                            (\(MultipathLimits.maxUplinks)); refused another (\(refused) refused so far)
                            """)
                    }
                    return
                }
                state.nextUplinkID &+= 1
                uplink = UplinkID(state.nextUplinkID)
            }
            let localIndex = accepted.session.localIndex
            state.sessions[localIndex] = ServerSession(
                tunnelID: tunnelID, uplink: uplink, transport: accepted.session, replaces: accepted.replacesSessionIndex,
                socket: source.socketIndex, address: source.target.address, addressLength: source.target.addressLength,
                localAddress: source.target.localAddress, lastReceive: now, connection: source.connection)
            state.tunnels[tunnelID]?.sessions.append(localIndex)
            // The connection keeps its handshake deadline: a replayed initiation is accepted too, so only an authentic
            // transport frame (the client's keepalive right after this reply) marks it as a client's (`process`).
            state.answeredHandshakes &+= 1
            sendBytes(accepted.reply, to: &source, state: &state)
        case .challenge(let cookieReply):
            sendBytes(cookieReply, to: &source, state: &state)
        case .reject(let error, let reply):
            state.rejectedHandshakes &+= 1
            if state.rejectedHandshakes & 0xff == 1 {
                server.logger.info("rejected a handshake from \(peerText): \(error)")
            }
            if let reply { sendBytes(reply, to: &source, state: &state) }
        }
    }

    /// Sends the session an endpoint report: where its last packet came from as we see it (the UDP source, or the TCP
    /// fallback connection's peer).
    private func reportEndpoint(_ source: inout DatagramSource, session: UInt32, now: Nanoseconds, state: inout ServerState) {
        let observed = source.connection.flatMap { state.connections[$0].flatMap { SocketBinding.peerEndpoint(of: $0.descriptor.raw) } }
            ?? withUnsafePointer(to: &source.target.address) { SocketAddress.read($0) }
        guard let observed else { return }
        sendControl(.endpointReport(EndpointReport(endpoint: observed)), session: session, now: now, state: &state)
    }

    /// How long an answered join counts toward its client's uplinks before it is confirmed (the client
    /// confirms at once with a keepalive; a retry comes after 1 s).
    static let pendingJoinWindow = 2 * Nanoseconds.second

    /// Distinct uplinks of a tunnel: the confirmed ones and those of joins answered within `pendingJoinWindow`.
    private func uplinkCount(of tunnelID: UInt64, now: Nanoseconds, state: ServerState) -> Int {
        guard let tunnel = state.tunnels[tunnelID] else { return 0 }
        var uplinks = Set(tunnel.uplinkSessions.keys)
        for index in tunnel.sessions {
            guard let session = state.sessions[index], !session.transport.isConfirmed,
                  now &- session.lastReceive < Self.pendingJoinWindow else { continue }
            uplinks.insert(session.uplink.rawValue)
        }
        return uplinks.count
    }

    private func removeTunnel(_ tunnelID: UInt64, state: inout ServerState) {
        state.removeTunnel(tunnelID)
        pools[tunnelID] = nil
        deliveries.removeAll { $0.0 == tunnelID }
    }

    /// Sends a packet to the client again (one in flight on a dead uplink, or one the client asked for) on the uplink
    /// the engine picks now, avoiding the one it first went on. False when it couldn't: no longer stored, or no
    /// uplink took it (`scheduleResend` leaves a loss into a full queue to the inner TCP). With pacing the resend is
    /// queued in the chosen uplink's lane (a repair ahead of the failover resends) and the TUN pump sends it as the
    /// pacer allows; a sequence still waiting in a lane is copied only if the copy arrives first
    /// (`originalWaitsBehind`), and not copied is not declined: the original is on its way.
    private func resend(sequence: UInt32, tunnel tunnelID: UInt64, now: Nanoseconds, state: inout ServerState) -> Bool {
        guard let store = state.tunnels[tunnelID]?.retransmit, let packet = store.packet(sequence: sequence) else { return false }
        let wireLength = packet.count + WireLayout.transportOverhead
        if let paced = state.tunnels[tunnelID]?.paced {
            // A resend of a packet whose uplink is down now is a failover resend; any other answers a request.
            let kind = paced.classifyResend(sequence, store: store) { state.tunnels[tunnelID]?.engine.statistics(for: $0)?.state == .down }
            guard let selection = state.tunnels[tunnelID]?.engine.scheduleResend(
                packetLength: wireLength, originalUplink: kind.original, now: now, originalWaitsBehind: kind.waiting?.bytesAhead)
            else { return false }
            if selection.isEmpty { return kind.waiting != nil }
            var queued = false
            for uplink in selection where paced.queueResend(sequence: sequence, wireLength: wireLength, on: uplink,
                                                            isRepair: kind.isRepair, lostRepair: kind.lostRepair) {
                queued = true
            }
            if queued {
                state.pacingDeadlines[tunnelID] = 0
                wakeTunPump = true
            }
            return queued
        }
        guard let selection = state.tunnels[tunnelID]?.engine.scheduleResend(
                packetLength: wireLength, originalUplink: store.uplink(sequence: sequence), now: now)
        else { return false }
        var sent = false
        for uplink in selection {
            guard let index = state.tunnels[tunnelID]?.uplinkSessions[uplink.rawValue],
                  let counter = state.sessions[index]?.transport.nextSendCounter else { continue }
            let target = resendBatch.slot(0)
            UnsafeMutableRawBufferPointer(rebasing: target[WireLayout.bodyOffset...]).copyMemory(from: packet)
            guard let sealed = try? state.sessions[index]?.transport.seal(.data, tunnelSequence: sequence, bodyLength: packet.count,
                                                                          in: target, now: now) else { continue }
            if let connection = state.sessions[index]?.connection {
                state.connections[connection]?.send(UnsafeRawBufferPointer(rebasing: target[0..<sealed]))
            } else if let socketIndex = state.sessions[index]?.socket, socketIndex < sockets.count {
                state.sessions[index]?.withReplyTarget { address, addressLength, local in
                    resendBatch.prepareSend(0, length: sealed, address: address, addressLength: addressLength, localAddress: local,
                                            ecn: PacketClassifier.outerECN(for: packet))
                }
                resendBatch.count = 1
                sockets[socketIndex].send(resendBatch)
            }
            state.tunnels[tunnelID]?.engine.handle(.packetSent(uplink, counter: counter, sequence: sequence, bytes: sealed, at: now))
            state.resentPackets &+= 1
            sent = true
        }
        return sent
    }

    /// Pacing: the resends still queued for `uplink`, which went down, go to the uplinks the engine picks now as
    /// failover resends (after this round's duties, whose failover resends carry older sequences); one no uplink
    /// takes is declined, so the client skips the gap at once.
    private func requeueResends(of uplink: UplinkID, tunnel tunnelID: UInt64, now: Nanoseconds, state: inout ServerState) {
        guard let paced = state.tunnels[tunnelID]?.paced else { return }
        var budget = PacedSendQueue.laneCapacity
        while budget > 0, let (sequence, wireLength, wasRepair) = paced.takeResend(of: uplink) {
            budget -= 1
            let selection = state.tunnels[tunnelID]?.engine.scheduleResend(packetLength: wireLength, originalUplink: uplink, now: now)
            var queued = false
            for other in selection ?? UplinkSelection() where other != uplink
                && paced.queueResend(sequence: sequence, wireLength: wireLength, on: other, isRepair: false, lostRepair: wasRepair) {
                queued = true
            }
            if queued {
                state.pacingDeadlines[tunnelID] = 0
                wakeTunPump = true
            } else if state.tunnels[tunnelID]?.retransmit.peerRequestsResends == true, let run = declines.add(sequence) {
                sendControlOnBestUplink(.resendDeclined(run), tunnel: tunnelID, now: now, state: &state)
            }
        }
    }

    /// Sends a tunnel-wide control frame (resend request or declined) to the client on the session of the uplink(s) the
    /// engine would pick for a small packet now, counting only the queue it put there itself (`schedule`'s
    /// `isAcknowledgement`); in `redundant` mode on each of them.
    private func sendControlOnBestUplink(_ frame: ControlFrame, tunnel tunnelID: UInt64, now: Nanoseconds, state: inout ServerState) {
        let length = frame.bodyLength + WireLayout.transportOverhead
        // Paced: avoid an uplink gone silent (maybe blackholing unnoticed), as the simulator's paced deployment does
        // (docs/MULTIPATH.md, "Requests off silent uplinks").
        let paced = state.tunnels[tunnelID]?.paced != nil
        guard let selection = paced
            ? state.tunnels[tunnelID]?.engine.scheduleControl(packetLength: length, now: now, isAcknowledgement: true)
            : state.tunnels[tunnelID]?.engine.schedule(packetLength: length, flowKey: nil, now: now, isAcknowledgement: true)
        else { return }
        for uplink in selection {
            guard let session = state.tunnels[tunnelID]?.uplinkSessions[uplink.rawValue] else { continue }
            sendControl(frame, session: session, now: now, state: &state)
        }
    }

    /// Logs, at most every `resendReportInterval` and for the tunnels where they moved, what resend repair did (see
    /// `ResendRepairCounters`; `resent` is server-wide). Runs on the timer, not per packet.
    private func reportResendRepair(now: Nanoseconds, state: inout ServerState) {
        guard now >= nextResendReport else { return }
        nextResendReport = now &+ Self.resendReportInterval
        for tunnelID in reportedRepair.keys where state.tunnels[tunnelID] == nil { reportedRepair[tunnelID] = nil }
        for (tunnelID, tunnel) in state.tunnels {
            guard let paced = tunnel.paced, tunnel.transmittedPackets != tunnel.reportedTransmittedPackets else { continue }
            state.tunnels[tunnelID]?.reportedTransmittedPackets = tunnel.transmittedPackets
            // What the pacer works with: each path's capacity estimate (the rate it releases at) and RTTs.
            let paths = tunnel.engine.allStatistics().map { path in
                "\(path.id) \(path.state.rawValue) \(path.capacityBitsPerSecond / 100_000) dMbit/s rtt \(path.smoothedRTT / 1_000_000)"
                    + "/\(path.minimumRTT / 1_000_000) ms jitter \(path.jitter / 1_000_000) ms tx \(path.txBytes >> 20) MiB"
            }.joined(separator: ", ")
            server.logger.info("""
                tunnel \(String(tunnelID, radix: 16)): paced: \(paths); queued \(paced.sharedCount)+\(paced.resendCount), \
                refused \(tunnel.engine.ingressDrops) (\(paced.overflowDrops) full), ECN-marked \(tunnel.engine.congestionMarks), \
                shed \(paced.shedPackets), \
                retransmissions of drops ahead \(paced.retransmissionsAhead) protected \(paced.protectedRetransmissions), \
                superseded failover resends \(paced.supersededFailoverResends), lost repairs ahead \(paced.lostRepairsAhead); \
                server-wide \(state.pacedDrops) paced drops, \(state.resentPackets) resent
                """)
        }
        for (tunnelID, tunnel) in state.tunnels
        where tunnel.engine.configuration.requestsResends || tunnel.retransmit.peerRequestsResends {
            let counters = ResendRepairCounters(reorder: tunnel.engine.reorderStatistics, store: tunnel.retransmit, resent: state.resentPackets)
            guard counters != reportedRepair[tunnelID] ?? ResendRepairCounters() else { continue }
            reportedRepair[tunnelID] = counters
            server.logger.info("tunnel \(String(tunnelID, radix: 16)): resend repair: \(counters)")
        }
    }

    /// Seals a control frame with session `index` in place and sends it to the session's endpoint.
    private func sendControl(_ frame: ControlFrame, session index: UInt32, now: Nanoseconds, state: inout ServerState) {
        guard let socketIndex = state.sessions[index]?.socket, socketIndex < sockets.count,
              let length = try? state.sessions[index]?.transport.seal(frame, in: reply.slot(0), now: now) else { return }
        if let connection = state.sessions[index]?.connection {
            state.connections[connection]?.send(UnsafeRawBufferPointer(rebasing: reply.slot(0)[0..<length]))
            return
        }
        state.sessions[index]?.withReplyTarget { address, addressLength, local in
            reply.prepareSend(0, length: length, address: address, addressLength: addressLength, localAddress: local)
        }
        reply.count = 1
        sockets[socketIndex].send(reply)
    }

    /// Sends handshake-layer bytes back the way `source` came (UDP from the address it talked to, or its connection).
    private func sendBytes(_ bytes: [UInt8], to source: inout DatagramSource, state: inout ServerState) {
        if let connection = source.connection {
            bytes.withUnsafeBytes { _ = state.connections[connection]?.send($0) }
            return
        }
        let slot = reply.slot(0)
        guard bytes.count <= slot.count, source.socketIndex < sockets.count else { return }
        bytes.withUnsafeBytes { slot.copyMemory(from: $0) }
        withUnsafePointer(to: &source.target.address) { address in
            withUnsafePointer(to: &source.target.localAddress) { local in
                reply.prepareSend(0, length: bytes.count, address: address, addressLength: source.target.addressLength,
                                  localAddress: local.pointee.ss_family == 0 ? nil : local)
            }
        }
        reply.count = 1
        sockets[source.socketIndex].send(reply)
    }

    private func expireSessions(now: Nanoseconds) {
        let timeout = server.configuration.sessionTimeout.nanoseconds
        server.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            let expired = state.sessions.filter { now &- $0.value.lastReceive >= timeout || $0.value.transport.isExpired(now: now) }
            for index in expired.keys { state.removeSession(index, now: now) }
            for tunnelID in pools.keys where state.tunnels[tunnelID] == nil { pools[tunnelID] = nil }
            expireConnections(now: now, state: &state)
            reportResendRepair(now: now, state: &state)
        }
        if !closingConnections.isEmpty {
            server.logger.debug("closed \(closingConnections.count) TCP fallback connections (no handshake in time, or idle)")
        }
        for connection in closingConnections { closeConnection(connection) }
        closingConnections.removeAll(keepingCapacity: true)
    }
}

/// Where a received datagram came from: a UDP socket and peer address, or a TCP fallback connection.
struct DatagramSource {
    var socketIndex: Int
    var connection: UInt32? = nil
    /// The outer ECN codepoint the datagram arrived with (0 for TCP fallback frames).
    var outerECN: UInt8 = 0
    var target = ReplyTarget()
}

/// Where a reply goes: the peer's address and the local address it talked to.
struct ReplyTarget {
    var address = sockaddr_storage()
    var addressLength: socklen_t = 0
    var localAddress = sockaddr_storage()
}
