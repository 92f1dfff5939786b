internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif
import Logging
import TriglavCore
import TriglavMultipath
import TriglavProtocol

/// The uplinks → TUN pump of a client, and its timers: receives batches from every ready uplink socket and
/// opens them under the lock, where data frames go through the multipath engine's reorder buffer (packets
/// it holds wait in `pool`); the packets it releases are written to the TUN device after the lock, one
/// packet per write. The engine's duties (probes, feedback) run here too, and every `timerInterval` the
/// handshakes, keepalives and dead-uplink checks.
final class ClientNetworkPump: @unchecked Sendable {
    private static let batchSize = 64
    private static let timerInterval = 100 * Nanoseconds.millisecond
    /// How often the uplinks' link MTUs are checked for changes (one netlink query, off the packet path).
    static let mtuCheckInterval = Nanoseconds.second

    private let tunnel: ClientTunnel
    private let tun: TunDevice
    private let poller: Poller
    /// Slots big enough for a UDP_GRO run (the uplink sockets ask for it, `ClientTunnel.openSocket`): 4 MiB in all.
    private let batch = DatagramBatch(capacity: ClientNetworkPump.batchSize, slotSize: DatagramBatch.coalescingSlotSize)
    private let pool: PacketPool
    private var ready: [Bool] = Array(repeating: false, count: ClientTunnel.maximumUplinks)
    private var readyTCP: [Bool] = Array(repeating: false, count: ClientTunnel.maximumUplinks)
    /// Pool slots released in order by the engine, to write to the TUN device after the lock.
    private var deliveries: [Int] = []
    private var nextTimer: Nanoseconds = 0
    private var nextMTUCheck: Nanoseconds = 0
    /// The TUN's MTU as of the last duties round, for the MSS clamp of deliveries (0: not set yet, no clamp).
    private var tunnelMTU = 0
    /// Deliveries the clamp changed since the last duties round (added to the tunnel's count there, under its lock).
    private var mssClamped: UInt64 = 0
    /// Room for any control frame, a path-MTU probe padded to the largest datagram included.
    private var controlBuffer = [UInt8](repeating: 0, count: TunnelMTU.largestDatagram)
    /// Scratch buffer for sealing resent packets (the network pump's own: no allocation per resend).
    private var resendBuffer = [UInt8](repeating: 0, count: TunnelMTU.largestDatagram + WireLayout.transportOverhead)
    /// Sequences of `resend` duties that couldn't be carried out, gathered into resend-declined runs.
    private var declines = DeclineAccumulator()
    /// When the resend-repair counters are next logged (if they moved), and what they were then.
    private var nextResendReport: Nanoseconds = 0
    private var reportedRepair = ResendRepairCounters()
    private static let resendReportInterval = 2 * Nanoseconds.second
    /// Pacing: uplinks that went down in this round's duties (reused), and whether resends were queued (the TUN pump,
    /// which sends them, is woken after the lock).
    private var wentDown: [UplinkID] = []
    private var wakeTunPump = false

    init(tunnel: ClientTunnel, tun: TunDevice) {
        self.tunnel = tunnel
        self.tun = tun
        poller = tunnel.networkPollerForPump
        // The reorder buffer can hold its capacity, plus one batch in flight.
        pool = PacketPool(capacity: tunnel.configuration.multipath.reorderCapacity + Self.batchSize)
        deliveries.reserveCapacity(pool.capacity)
    }

    func iterate() {
        var now = monotonicNow()
        var deadline = nextTimer
        if let engineDeadline = tunnel.withState({ $0.engine.nextDeadline() }) { deadline = min(deadline, engineDeadline) }
        let timeout = Int32(min(100, max(0, (deadline &- min(now, deadline)) / Nanoseconds.millisecond)))
        do {
            try poller.wait(timeoutMilliseconds: timeout) { token in
                if token < UInt64(ClientTunnel.maximumUplinks) {
                    ready[Int(token)] = true
                } else if token >= ClientTunnel.tcpTokenBase, token < ClientTunnel.tcpTokenBase + UInt64(ClientTunnel.maximumUplinks) {
                    readyTCP[Int(token - ClientTunnel.tcpTokenBase)] = true
                }
            }
        } catch {
            return
        }
        now = monotonicNow()
        for slot in 0..<ClientTunnel.maximumUplinks where ready[slot] {
            ready[slot] = false
            receive(slot: slot, now: now)
        }
        for slot in 0..<ClientTunnel.maximumUplinks where readyTCP[slot] {
            readyTCP[slot] = false
            receiveTCP(slot: slot, now: now)
        }
        runDuties(now: now)
        if now >= nextTimer {
            nextTimer = now &+ Self.timerInterval
            runTimers(now: now)
        }
        if now >= nextMTUCheck {
            nextMTUCheck = now &+ Self.mtuCheckInterval
            tunnel.scheduleMTUUpdate()
            replaceSocketsOfRecreatedInterfaces()
        }
    }

    /// Sockets whose bound interface no longer exists or is another one now (deleted and created again under
    /// the same name: a socket stays bound to the old index, so every send fails with ENODEV and nothing
    /// arrives). Checked every `mtuCheckInterval` with one SIOCGIFINDEX per uplink, which also catches uplinks
    /// that send nothing (tier `never`, no route); sends that failed with ENODEV/ENXIO are caught sooner, by the
    /// timers (`UDPSocket.deviceVanished`). The timers reopen a dropped socket on the interface's current index.
    private func replaceSocketsOfRecreatedInterfaces() {
        let bound: [(Int, UDPSocket, InterfaceName)] = tunnel.withState { state in
            state.uplinks.indices.compactMap { slot in
                guard let uplink = state.uplinks[slot], let socket = uplink.socket, socket.boundInterfaceIndex > 0 else { return nil }
                return (slot, socket, uplink.interface)
            }
        }
        for (slot, socket, interface) in bound {
            let current = tg_if_nametoindex(interface.rawValue)
            guard current != socket.boundInterfaceIndex else { continue }
            let now = current < 0 ? "gone" : "index \(current) now"
            replaceSocket(socket, slot: slot, reason: "interface \(interface) was index \(socket.boundInterfaceIndex), \(now)")
        }
    }

    /// Drops the uplink's socket if it is still `socket` (the timers open a new one bound to the interface as it is
    /// now, and the uplink handshakes again, naming its old session as replaced).
    private func replaceSocket(_ socket: UDPSocket, slot: Int, reason: String) {
        let dropped: String? = tunnel.withState { state in
            guard state.uplinks[slot]?.socket === socket else { return nil }
            state.uplinks[slot]?.socket = nil
            state.resetUplink(slot, now: state.clock.advance(to: monotonicNow()))
            return state.uplinks[slot]?.interface.rawValue
        }
        guard let dropped else { return }
        poller.remove(fd: socket.descriptor.raw)
        tunnel.log(info: "uplink \(dropped): \(reason); reopening its socket")
        tunnel.scheduleMTUUpdate()
    }

    private func receive(slot: Int, now: Nanoseconds) {
        guard let socket = tunnel.withState({ $0.uplinks[slot]?.socket }) else { return }
        var rounds = 0
        while rounds < 8 {
            rounds += 1
            let count: Int
            do {
                count = try socket.receive(into: batch)
            } catch {
                if case .systemCall(_, let code) = error, code == ENODEV || code == ENXIO {
                    tunnel.dropSocket(slot: slot)
                }
                return
            }
            if count == 0 { return }
            process(count: count, slot: slot, now: now)
            writeDeliveries()
            if count < batch.capacity { break }
        }
    }

    /// Writes the released packets to the TUN device (one write each, or joined: `TunDevice.write`) and frees their slots.
    private func writeDeliveries() {
        for slot in deliveries {
            // The SYN-ACK (or SYN) coming back gets the same MSS clamp as what the TUN pump sends (`MSSClamp`).
            if tunnelMTU > 0, MSSClamp.clamp(pool.mutablePacket(slot), mtu: tunnelMTU) { mssClamped &+= 1 }
            tun.write(pool.packet(slot))
            pool.release(slot)
        }
        tun.flushWrites()
        deliveries.removeAll(keepingCapacity: true)
    }

    /// Carries out the engine's duties (probes, feedback) and releases packets whose reorder wait ended.
    private func runDuties(now: Nanoseconds) {
        tunnel.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            state.tunJoinedWrites = tun.joinedWrites
            tunnelMTU = state.appliedMTU
            state.mssClamped &+= mssClamped
            mssClamped = 0
            while let slot = state.engine.nextDelivery(now: now) { deliveries.append(slot) }
            var budget = 64
            while budget > 0, let duty = state.engine.nextDuty(now: now) {
                budget -= 1
                switch duty {
                case .sendProbe(let id, let probeID, let timestamp):
                    guard let slot = state.slot(of: id) else { continue }
                    sendControl(.probe(ProbeBody(id: UInt64(probeID), timestamp: timestamp)), slot: slot, now: now, state: &state)
                    state.uplinks[slot]?.lastProbe = now
                case .sendFeedback(let id, let report):
                    guard let slot = state.slot(of: id) else { continue }
                    let body = FeedbackBody(receivedPackets: report.receivedPackets, receivedBytes: report.receivedBytes,
                                            highestCounter: report.highestCounter, reportedAt: now)
                    sendControl(.feedback(body), slot: slot, now: now, state: &state)
                case .stateChanged(let id, let from, let to):
                    if to == .down, state.paced != nil { wentDown.append(id) }
                    let name = state.slot(of: id).flatMap { state.uplinks[$0]?.interface.rawValue } ?? "\(id)"
                    tunnel.log(info: "uplink \(name): \(from.rawValue) -> \(to.rawValue)\(to == .down ? Self.downContext(state.engine.statistics(for: id)) : "")")
                case .resend(let sequence):
                    // One the peer asked for (or one in flight on a dead uplink) that can't go: a peer that asks for
                    // resends hears so at once instead of waiting for it until its reorder wait ends.
                    if !resend(sequence: sequence, now: now, state: &state), state.retransmit.peerRequestsResends,
                       let run = declines.add(sequence) {
                        sendControlOnBestUplink(.resendDeclined(run), now: now, state: &state)
                    }
                case .requestResend(let first, let count):
                    sendControlOnBestUplink(.resendRequest(ResendRun(firstSequence: first, count: count)), now: now, state: &state)
                }
            }
            // Paced: resends still queued for an uplink that went down go elsewhere, after this round's failover resends.
            for id in wentDown {
                guard let paced = state.paced else { break }
                var budget = PacedSendQueue.laneCapacity
                while budget > 0, let (sequence, wireLength, wasRepair) = paced.takeResend(of: id) {
                    budget -= 1
                    var queued = false
                    for other in state.engine.scheduleResend(packetLength: wireLength, originalUplink: id, now: now)
                    where other != id
                        && paced.queueResend(sequence: sequence, wireLength: wireLength, on: other, isRepair: false, lostRepair: wasRepair) {
                        queued = true
                    }
                    if queued {
                        state.pacingDeadline = 0
                        wakeTunPump = true
                    } else if state.retransmit.peerRequestsResends, let run = declines.add(sequence) {
                        sendControlOnBestUplink(.resendDeclined(run), now: now, state: &state)
                    }
                }
            }
            wentDown.removeAll(keepingCapacity: true)
            if let run = declines.take() { sendControlOnBestUplink(.resendDeclined(run), now: now, state: &state) }
        }
        writeDeliveries()
        if wakeTunPump {
            // Resends were queued: the TUN pump sends paced packets.
            wakeTunPump = false
            tunnel.tunPollerForPump.wake()
        }
    }

    /// Sends a tunnel-wide control frame (resend request or declined) on the uplink(s) the engine would pick for a
    /// small packet now, counting only the queue it put there itself (as for a download's ACKs: the probes' RTT holds
    /// the download's own queue). In `redundant` mode that is several uplinks: the frame goes on each.
    private func sendControlOnBestUplink(_ frame: ControlFrame, now: Nanoseconds, state: inout ClientState) {
        let length = frame.bodyLength + WireLayout.transportOverhead
        // Paced: avoid an uplink gone silent (docs/MULTIPATH.md, "Requests off silent uplinks").
        let selection = state.paced != nil
            ? state.engine.scheduleControl(packetLength: length, now: now, isAcknowledgement: true)
            : state.engine.schedule(packetLength: length, flowKey: nil, now: now, isAcknowledgement: true)
        for id in selection {
            guard let slot = state.slot(of: id) else { continue }
            sendControl(frame, slot: slot, now: now, state: &state)
        }
    }

    /// Logs, at most every `resendReportInterval` and only when they moved, what resend repair did: the requests this
    /// side's reorder buffer sent and the gaps it skipped, and the peer's requests we answered.
    private func reportResendRepair(now: Nanoseconds, state: inout ClientState) {
        guard now >= nextResendReport, state.engine.configuration.requestsResends || state.retransmit.peerRequestsResends else { return }
        nextResendReport = now &+ Self.resendReportInterval
        let counters = ResendRepairCounters(reorder: state.engine.reorderStatistics, store: state.retransmit, resent: state.resentPackets)
        guard counters != reportedRepair else { return }
        reportedRepair = counters
        tunnel.log(info: "resend repair: \(counters)")
    }

    /// What the engine knew of an uplink it just declared down (why it did is often the question: a link whose
    /// feedback waits behind a download's queue, or one really gone).
    private static func downContext(_ statistics: TriglavMultipath.UplinkStatistics?) -> String {
        guard let statistics else { return "" }
        func ms(_ value: UInt64) -> String { "\(value / Nanoseconds.millisecond) ms" }
        return " (SRTT \(ms(statistics.smoothedRTT)), RTTVAR \(ms(statistics.rttVariance)), min RTT \(ms(statistics.minimumRTT)),"
            + " one-way delay above the fastest uplink \(statistics.relativeOneWayDelay.map(ms) ?? "unknown"),"
            + " received \(statistics.rxPackets) packets, sent \(statistics.txPackets))"
    }

    /// Opens every datagram of the batch under the lock.
    private func process(count: Int, slot: Int, now: Nanoseconds) {
        var newAddresses: TunnelAddresses?
        tunnel.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            guard state.uplinks[slot] != nil else { return }
            state.uplinks[slot]?.status.coalescedDatagrams &+= batch.coalescedDatagrams(count: count)
            for index in 0..<count {
                let outerECN = batch.receivedECN(index)
                batch.forEachReceivedDatagram(index) { datagram in
                    processOne(datagram, outerECN: outerECN, slot: slot, now: now, state: &state, newAddresses: &newAddresses)
                }
            }
        }
        if let newAddresses, let name = tunnel.withState({ $0.tun?.name }) {
            tunnel.assignmentChanged(newAddresses, tun: name)
        }
    }

    /// Reads the frames of the uplink's TCP fallback connection; each is processed like a UDP datagram.
    private func receiveTCP(slot: Int, now: Nanoseconds) {
        var newAddresses: TunnelAddresses?
        let finished: TCPConnection? = tunnel.withState { state in
            let now = state.clock.advance(to: now)
            guard let connection = state.uplinks[slot]?.tcp else { return nil }
            let alive = connection.readFrames { datagram in
                processOne(datagram, slot: slot, now: now, state: &state, newAddresses: &newAddresses)
            }
            connection.flush()
            guard !alive, state.uplinks[slot]?.tcp === connection else { return nil }
            let name = state.uplinks[slot]?.interface.rawValue ?? "?"
            let reason = connection.closeError == 0 ? "" : " (\(errnoName(connection.closeError)), \(connection.closeError))"
            if connection.isConnected {
                tunnel.log(info: "TCP fallback connection of \(name) closed\(reason)")
            } else {
                // Refused or unreachable before the connect completed: the attempt failed; UDP, then TCP again.
                tunnel.log(info: "uplink \(name): TCP fallback connect to \(tunnel.configuration.server) failed\(reason)")
                state.uplinks[slot]?.status.tcpConnectFailures &+= 1
            }
            state.uplinks[slot]?.tcp = nil
            state.resetUplink(slot, now: now)
            return connection
        }
        writeDeliveries()
        if let finished {
            poller.remove(fd: finished.descriptor.raw)
            finished.close()
        }
        if let newAddresses, let name = tunnel.withState({ $0.tun?.name }) {
            tunnel.assignmentChanged(newAddresses, tun: name)
        }
    }

    /// The server told us where this uplink's packets reach it from: kept with the uplink's local endpoint (its
    /// socket's, or its fallback connection's), logged when it is new or changed (a new address, or a NAT rebinding).
    private func noteEndpointReport(_ endpoint: IPEndpoint, slot: Int, state: inout ClientState) {
        guard let uplink = state.uplinks[slot] else { return }
        let local = uplink.tcp.flatMap { SocketBinding.localEndpoint(of: $0.descriptor.raw) }
            ?? uplink.socket.flatMap { try? $0.localEndpoint() }
        let previous = uplink.status.publicEndpoint
        state.uplinks[slot]?.status.publicEndpoint = endpoint
        state.uplinks[slot]?.status.localEndpoint = local
        guard previous != endpoint else { return }
        let from = local.map { " (sent from \($0))" } ?? ""
        if let previous {
            tunnel.log(info: "uplink \(uplink.interface): the server now sees it as \(endpoint)\(from), no longer \(previous): a new address, or a NAT's new mapping")
        } else {
            tunnel.log(info: "uplink \(uplink.interface): the server sees it as \(endpoint)\(from)")
        }
    }

    /// Handles one datagram from the uplink in `slot` (UDP or a TCP fallback frame), under the lock.
    private func processOne(_ datagram: UnsafeMutableRawBufferPointer, outerECN: UInt8 = 0, slot: Int, now: Nanoseconds, state: inout ClientState,
                            newAddresses: inout TunnelAddresses?) {
        switch Demultiplexer.classify(UnsafeRawBufferPointer(datagram)) {
        case .handshakeResponse(let receiver), .cookieReply(let receiver), .versionMismatch(let receiver, _):
            if let addresses = handshakeAnswer(datagram, receiver: receiver, slot: slot, now: now, state: &state) {
                newAddresses = addresses
            }
        case .transport:
            // Opened in place: a copy of the uplink would copy the session's replay window.
            guard let frame = try? state.uplinks[slot]?.keyring.open(datagram, now: now),
                  let id = state.uplinks[slot]?.id else { return }
            state.uplinks[slot]?.lastReceive = now
            state.uplinks[slot]?.unansweredUDP = 0
            let body = UnsafeRawBufferPointer(rebasing: datagram[frame.body])
            switch frame.type {
            case .data:
                state.uplinks[slot]?.status.receivedPackets &+= 1
                state.uplinks[slot]?.status.receivedBytes &+= UInt64(frame.body.count)
                guard let stored = pool.store(body) else { return }  // pool full: drop, like a full queue
                guard state.ecnDecapsulation.decapsulate(outer: outerECN, slot: stored, pool: pool) else {
                    pool.release(stored)
                    return
                }
                switch state.engine.receive(stored, sequence: frame.tunnelSequence, uplink: id, counter: frame.counter,
                                            bytes: datagram.count, now: now, ordered: !PacketClassifier.isPureTCPAck(body)) {
                case .deliverNow:
                    deliveries.append(stored)
                case .buffered:
                    break
                case .duplicate, .stale, .overflow:
                    pool.release(stored)
                }
                while let released = state.engine.nextDelivery(now: now) { deliveries.append(released) }
            case .probe:
                guard case .probe(let probe)? = try? ControlFrame.parse(type: .probe, body: body) else { return }
                state.engine.handle(.probeReceived(id, senderTimestamp: probe.timestamp, at: now))
                sendControl(.probeReply(probe), slot: slot, now: now, state: &state)
            case .probeReply:
                guard case .probeReply(let probe)? = try? ControlFrame.parse(type: .probeReply, body: body) else { return }
                state.engine.handle(.probeReplied(id, probeID: UInt32(truncatingIfNeeded: probe.id), at: now))
                // The RTT just moved: whether this uplink's queue is long, for answering resend requests. Paced, the
                // network's queue is the allowance: every request is answered (as on the server).
                if state.paced == nil { state.retransmit.noteQueue(of: id, statistics: state.engine.statistics(for: id)) }
            case .feedback:
                guard case .feedback(let report)? = try? ControlFrame.parse(type: .feedback, body: body) else { return }
                state.engine.handle(.feedbackReceived(id, FeedbackReport(report), at: now))
            case .close:
                // The server dropped the session (tunnel removed, restart): handshake again now.
                state.resetUplink(slot, now: now)
            case .resendRequest:
                guard case .resendRequest(let run)? = try? ControlFrame.parse(type: .resendRequest, body: body) else { return }
                let store = state.retransmit
                store.answer(run, transmitSequence: state.transmitSequence, resend: { first, count in
                    state.engine.handle(.resendRequested(firstSequence: first, count: count, at: now))
                }, decline: { first, count in
                    // On the uplink with the shortest queue of ours, not the one the request came on: a decline mostly
                    // answers a loss into a long queue, and behind that queue it would stall the peer's delivery longer.
                    sendControlOnBestUplink(.resendDeclined(ResendRun(firstSequence: first, count: count)), now: now, state: &state)
                })
            case .resendDeclined:
                // Only a reorder buffer that asks for resends waits for them; otherwise there is nothing to stop.
                guard state.engine.configuration.requestsResends,
                      case .resendDeclined(let run)? = try? ControlFrame.parse(type: .resendDeclined, body: body) else { return }
                state.engine.handle(.resendDeclined(firstSequence: run.firstSequence, count: run.count, at: now))
                while let released = state.engine.nextDelivery(now: now) { deliveries.append(released) }
            case .keepalive:
                break
            case .endpointReport:
                guard case .endpointReport(let report)? = try? ControlFrame.parse(type: .endpointReport, body: body) else { return }
                noteEndpointReport(report.endpoint, slot: slot, state: &state)
            case .dnsOffer:
                let offer: DNSOffer
                do throws(ProtocolError) {
                    guard case .dnsOffer(let parsed) = try ControlFrame.parse(type: .dnsOffer, body: body) else { return }
                    offer = parsed
                } catch {
                    tunnel.log(debug: "dropped a malformed DNS offer from the server: \(error)")
                    return
                }
                guard offer != state.dnsOffer else { return }
                state.dnsOffer = offer
                let domains = offer.domains.isEmpty ? "" : "; domains \(offer.domains.joined(separator: ", "))"
                tunnel.log(info: "the server offers DNS \(offer.servers.map(\.description).joined(separator: ", "))\(domains)")
            case .pathProbeAck:
                guard case .pathProbeAck(let ack)? = try? ControlFrame.parse(type: .pathProbeAck, body: body),
                      var search = state.uplinks[slot]?.mtuSearch, let interface = state.uplinks[slot]?.interface else { return }
                let before = search.phase
                search.acknowledge(ack, now: now)
                state.uplinks[slot]?.mtuSearch = search
                noteSearchDone(search, on: interface, phaseBefore: before)
            case .pathProbe:
                break  // client → server only
            }
        case .handshakeInitiation, .invalid:
            return
        }
    }

    /// Feeds a handshake answer to the uplink's initiator. Returns new tunnel addresses when the server
    /// assigned different ones.
    private func handshakeAnswer(_ datagram: UnsafeMutableRawBufferPointer, receiver: UInt32, slot: Int, now: Nanoseconds,
                                 state: inout ClientState) -> TunnelAddresses? {
        guard var uplink = state.uplinks[slot], var initiator = uplink.initiator, initiator.localIndex == receiver else { return nil }
        defer { state.uplinks[slot] = uplink }
        uplink.unansweredUDP = 0  // the server answers on this path
        let established: EstablishedSession?
        do {
            established = try initiator.receive(Array(datagram), now: now)
            uplink.initiator = initiator
        } catch {
            uplink.initiator = nil
            if state.creatingSlot == slot { state.creatingSlot = nil }
            switch error {
            case .joinRefused:
                // The server no longer knows our tunnel (it restarted): create a new one.
                tunnel.log(info: "server refused to join tunnel on \(uplink.interface); creating a new tunnel")
                state.joinToken = nil
                state.tunnelID = nil
            case .versionMismatch(let local, let remote):
                tunnel.log(error: "server speaks protocol version \(remote), we speak \(local); upgrade one side")
            default:
                tunnel.log(debug: "handshake answer on \(uplink.interface) rejected: \(error)")
            }
            return nil
        }
        guard let established else { return nil }  // a cookie reply: the next retransmission carries mac2
        let created = uplink.initiatorCreates
        uplink.initiator = nil
        uplink.initiatorCreates = false
        uplink.keyring.install(established.session)
        uplink.abandonedRemoteIndex = nil
        if uplink.initiatorOverUDP, let connection = uplink.tcp {
            // UDP works again: the new session came over it; leave TCP.
            tunnel.log(info: "uplink \(uplink.interface): UDP works again; leaving the TCP fallback")
            uplink.tcp = nil
            poller.remove(fd: connection.descriptor.raw)
            connection.close()
        }
        uplink.initiatorOverUDP = false
        uplink.lastReceive = now
        uplink.status.handshakes &+= 1
        sendKeepalive(&uplink, now: now, state: &state)
        state.uplinks[slot] = uplink
        let assignment = established.tunnel
        if created {
            // A new tunnel on the server (first start, server restart, join refused after DisconnectClient):
            // its sender starts a new sequence space, so the receive state of the old one must go.
            startFreshReceiveState(keeping: slot, now: now, state: &state)
        }
        state.admitUplink(slot, now: now)
        if created || state.tunnelID != assignment.tunnelID {
            if state.creatingSlot == slot { state.creatingSlot = nil }
            if let previous = state.tunnelID, previous != assignment.tunnelID {
                // The server replaced our old tunnel: sessions of the other uplinks belong to it; rejoin.
                for other in state.uplinks.indices where other != slot { state.resetUplink(other, now: now) }
            }
            state.tunnelID = assignment.tunnelID
            state.joinToken = assignment.joinToken
            tunnel.log(info: "tunnel \(String(assignment.tunnelID, radix: 16)) established via \(uplink.interface)")
        }
        guard let addresses = TunnelAddresses(ipv4: assignment.ipv4, ipv6: assignment.ipv6) else {
            tunnel.log(error: "the server assigned no tunnel address (neither IPv4 nor IPv6); check this client's entry in the server's configuration")
            return nil
        }
        guard state.assignment != addresses else { return nil }
        state.assignment = addresses
        return addresses
    }

    /// Replaces the multipath engine (reorder buffer, delay equaliser, path estimates) with a fresh one of the
    /// same configuration and frees the pool slots the old one held. The other uplinks' sessions belong to
    /// the old tunnel: they are reset and join the new one. Control path (a tunnel was created): allocates.
    private func startFreshReceiveState(keeping slot: Int, now: Nanoseconds, state: inout ClientState) {
        for other in state.uplinks.indices where other != slot { state.resetUplink(other, now: now) }
        guard let fresh = try? MultipathEngine<Int>(configuration: state.engine.configuration) else { return }
        state.engine = fresh
        // Packets already released (in `deliveries`) are still written; everything else held is dropped.
        pool.releaseAll(except: deliveries)
    }

    /// Handshake starts and retries, rekeys, probes, keepalives, dead-uplink detection, socket reopening.
    private func runTimers(now: Nanoseconds) {
        let configuration = tunnel.configuration
        let retry = configuration.handshakeRetryInterval.nanoseconds
        let timeout = configuration.uplinkTimeout.nanoseconds
        let keepalive = configuration.keepaliveInterval.nanoseconds
        var missingSockets: [Int] = []
        var vanishedSockets: [(Int, UDPSocket)] = []
        var failedConnections: [TCPConnection] = []
        tunnel.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            reportResendRepair(now: now, state: &state)
            // A create that isn't answered soon is abandoned so another uplink can try.
            if let creator = state.creatingSlot,
               state.uplinks[creator]?.initiator == nil || now &- (state.uplinks[creator]?.lastAttempt ?? 0) >= 2 * retry {
                state.uplinks[creator]?.initiator = nil
                state.creatingSlot = nil
            }
            for slot in 0..<ClientTunnel.maximumUplinks {
                guard var uplink = state.uplinks[slot] else { continue }
                defer { state.uplinks[slot] = uplink }
                uplink.updateReceiveRate(now: now)
                guard let socket = uplink.socket else {
                    if now &- uplink.lastAttempt >= retry {
                        uplink.lastAttempt = now
                        missingSockets.append(slot)
                    }
                    continue
                }
                if socket.deviceVanished.isSet { vanishedSockets.append((slot, socket)) }
                for index in uplink.keyring.removeExpired(now: now) { _ = index }
                // A `never` uplink sends nothing at all: no handshakes, probes or keepalives.
                if uplink.policy.tier == .never { continue }
                // An idle uplink hears a probe reply and a server probe once per its heartbeat: one on a relaxed (metered)
                // heartbeat may be quiet for seconds and still fine, so its silence bound is three of its heartbeats.
                let silence = max(timeout, 3 &* (uplink.policy.heartbeatInterval ?? configuration.multipath.heartbeatInterval))
                if uplink.isEstablished && now &- uplink.lastReceive >= silence {
                    tunnel.log(debug: "uplink \(uplink.interface) silent for \(silence / 1_000_000) ms; handshaking again")
                    reset(&uplink, slot: slot, now: now, state: &state)
                }
                if let connection = uplink.tcp, !checkConnect(connection, &uplink, now: now) {
                    failedConnections.append(connection)
                    reset(&uplink, slot: slot, now: now, state: &state)
                }
                uplink.tcp?.flush()
                if uplink.isEstablished && now &- max(uplink.lastSend, uplink.lastProbe) >= keepalive {
                    uplink.lastProbe = now
                    sendKeepalive(&uplink, now: now, state: &state)
                }
                // Over UDP only: TCP segments the stream itself, so its path MTU never limits a frame.
                if uplink.isEstablished, uplink.tcp == nil, uplink.transport == .udp, var search = uplink.mtuSearch {
                    let delivered = search.probeSentAt.map { uplink.lastReceive > $0 } ?? false
                    let before = search.phase
                    if let probe = search.poll(now: now, deliveredSinceProbe: delivered) {
                        sendControl(.pathProbe(probe), &uplink, now: now, state: &state)
                    }
                    uplink.mtuSearch = search
                    noteSearchDone(search, on: uplink.interface, phaseBefore: before)
                }
                driveHandshake(&uplink, slot: slot, now: now, retry: retry, state: &state)
            }
        }
        for connection in failedConnections {
            poller.remove(fd: connection.descriptor.raw)
            connection.close()
        }
        for slot in missingSockets { tunnel.openSocket(slot: slot) }
        for (slot, socket) in vanishedSockets {
            replaceSocket(socket, slot: slot, reason: "sends fail with \(errnoName(socket.lastSendError)) (interface gone)")
        }
    }

    /// Follows the uplink's TCP fallback connect (non-blocking; checked every `timerInterval`, so a deadline is
    /// noticed within 100 ms). Returns false when the attempt failed (refused, unreachable, or not connected within
    /// `TCPFallbackTimeouts.connect`): the connection is detached from the uplink for the caller to close, and the
    /// uplink starts over as after any lost fallback connection (UDP first, TCP again after
    /// `ClientTunnel.udpAttemptsBeforeTCP` unanswered attempts).
    private func checkConnect(_ connection: TCPConnection, _ uplink: inout ClientUplink, now: Nanoseconds) -> Bool {
        guard !connection.isConnected else { return true }
        let server = tunnel.configuration.server
        switch connection.connectProgress(now: now) {
        case .connected:
            tunnel.log(debug: "uplink \(uplink.interface): TCP fallback connected to \(server)")
            return true
        case .inProgress:
            return true
        case .failed(let code):
            tunnel.log(info: "uplink \(uplink.interface): TCP fallback connect to \(server) failed (\(errnoName(code)), \(code))")
        case .timedOut:
            tunnel.log(info: "uplink \(uplink.interface): TCP fallback connect to \(server) timed out after "
                + "\(TCPFallbackTimeouts.connect / Nanoseconds.second) s; trying \(uplink.transport == .tcp ? "TCP" : "UDP") again")
        }
        uplink.status.tcpConnectFailures &+= 1
        uplink.tcp = nil
        return false
    }

    /// Starts, retransmits or (for rekeys) begins this uplink's handshake as due.
    private func driveHandshake(_ uplink: inout ClientUplink, slot: Int, now: Nanoseconds, retry: UInt64, state: inout ClientState) {
        // Silence on an uplink with no route to the server says nothing about UDP being blocked (TCP can't get
        // there either): count nothing until a route appears, then try UDP first.
        if uplink.routeToServer == false { uplink.unansweredUDP = 0 }
        // UDP unanswered a few times: the network may block UDP. Fall back to TCP for this uplink.
        if uplink.tcp == nil, uplink.unansweredUDP >= ClientTunnel.udpAttemptsBeforeTCP {
            uplink.unansweredUDP = 0
            startTCPFallback(&uplink, slot: slot, now: now, state: &state)
            return
        }
        // TCP only: connect (again, after a failure or a closed connection, at the handshake retry pace); never UDP.
        if uplink.transport == .tcp, uplink.tcp == nil {
            guard now &- uplink.lastTCPConnect >= retry else { return }
            uplink.lastTCPConnect = now
            startTCPFallback(&uplink, slot: slot, now: now, state: &state)
            return
        }
        if var initiator = uplink.initiator {
            do {
                if let retransmission = try initiator.handleDeadline(now: now) {
                    if uplink.initiatorOverUDP && initiator.attempts > ClientTunnel.udpAttemptsBeforeTCP {
                        // UDP is still blocked: stay on TCP and try again later.
                        uplink.initiator = nil
                        uplink.initiatorOverUDP = false
                        uplink.tcpSince = now
                        return
                    }
                    send(retransmission, uplink: uplink, state: &state, forceUDP: uplink.initiatorOverUDP)
                    if uplink.tcp == nil { uplink.unansweredUDP += 1 }
                    uplink.lastAttempt = now
                }
                uplink.initiator = initiator
            } catch {
                uplink.initiator = nil
                uplink.initiatorOverUDP = false
                if state.creatingSlot == slot { state.creatingSlot = nil }
            }
            return
        }
        let rekeyDue = uplink.keyring.current?.isRekeyDue(now: now) ?? false
        // On TCP for a while: see whether UDP works again, with a rekey over UDP (TCP keeps carrying traffic).
        let retryUDP = uplink.transport == .udp && uplink.tcp != nil && uplink.isEstablished
            && now &- uplink.tcpSince >= tunnel.configuration.udpRetryInterval.nanoseconds
        guard (!uplink.isEstablished || rekeyDue || retryUDP), now &- uplink.lastAttempt >= retry else { return }
        let request: TunnelRequest
        if let token = state.joinToken {
            request = .join(token, replacing: (rekeyDue || retryUDP) ? uplink.keyring.current?.remoteIndex : uplink.abandonedRemoteIndex)
        } else {
            guard state.creatingSlot == nil else { return }  // another uplink is creating the tunnel
            request = .create
            state.creatingSlot = slot
        }
        guard var initiator = tunnel.makeInitiator(request: request),
              let initiation = try? initiator.start(now: now, wallClock: wallClockNow()) else {
            if state.creatingSlot == slot { state.creatingSlot = nil }
            return
        }
        uplink.initiator = initiator
        uplink.initiatorCreates = request == .create
        uplink.initiatorOverUDP = retryUDP && !rekeyDue
        uplink.lastAttempt = now
        send(initiation, uplink: uplink, state: &state, forceUDP: uplink.initiatorOverUDP)
        if uplink.tcp == nil { uplink.unansweredUDP += 1 }
    }

    /// Opens the uplink's TCP fallback connection (bound to its interface) and restarts its handshake there.
    private func startTCPFallback(_ uplink: inout ClientUplink, slot: Int, now: Nanoseconds, state: inout ClientState) {
        let configuration = tunnel.configuration
        guard configuration.tcpFallback else { return }
        let connection: TCPConnection
        do {
            connection = try TCPConnection.connect(to: configuration.server, device: uplink.interface, mark: configuration.firewallMark,
                                                   label: "TCP fallback \(uplink.interface)", now: now)
        } catch {
            // Failed at once (no route, interface down): counts as a failed attempt; UDP, then TCP again.
            tunnel.log(info: "uplink \(uplink.interface): \(error)")
            uplink.status.tcpConnectFailures &+= 1
            return
        }
        guard (try? poller.add(fd: connection.descriptor.raw, token: ClientTunnel.tcpTokenBase + UInt64(slot))) != nil else { return }
        if uplink.transport == .udp { tunnel.log(info: "uplink \(uplink.interface): no answer over UDP; falling back to TCP") }
        uplink.tcp = connection
        uplink.tcpSince = now
        uplink.initiator = nil
        uplink.lastAttempt = 0
        if state.creatingSlot == slot { state.creatingSlot = nil }
    }

    /// `ClientState.resetUplink` for the timers' working copy of an uplink: stores it, resets the stored one and
    /// reloads the copy, so the rest of the round works on the reset uplink.
    private func reset(_ uplink: inout ClientUplink, slot: Int, now: Nanoseconds, state: inout ClientState) {
        state.uplinks[slot] = uplink
        state.resetUplink(slot, now: now)
        uplink = state.uplinks[slot] ?? uplink
    }

    /// Logs (debug) when the uplink's path MTU search just finished: what passes, and whether that is less than the
    /// kernel's bound (the control queue's pass warns about a blackhole and lowers the TUN MTU).
    private func noteSearchDone(_ search: PathMTUSearch, on interface: InterfaceName, phaseBefore: PathMTUSearch.Phase) {
        guard search.phase == .complete, phaseBefore != .complete else { return }
        let found = search.blackholeLimit.map { _ in ", less than the kernel's \(search.upperBound ?? 0)" } ?? ""
        tunnel.log(debug: "uplink \(interface): path MTU search done: \(search.confirmed ?? 0)-byte datagrams pass\(found)")
    }

    private func sendKeepalive(_ uplink: inout ClientUplink, now: Nanoseconds, state: inout ClientState) {
        sendControl(.keepalive, &uplink, now: now, state: &state)
    }

    private func sendControl(_ frame: ControlFrame, _ uplink: inout ClientUplink, now: Nanoseconds, state: inout ClientState) {
        guard let socket = uplink.socket,
              let length = try? controlBuffer.withUnsafeMutableBytes({ (raw) throws(ProtocolError) in
                  try uplink.keyring.sealControl(frame, flags: policyFlags(uplink.policy), in: raw, now: now)
              }) else { return }
        if let connection = uplink.tcp {
            controlBuffer.withUnsafeBytes { _ = connection.send(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            return
        }
        withUnsafePointer(to: &state.serverAddress) { address in
            controlBuffer.withUnsafeBytes { bytes in
                socket.sendOne(UnsafeRawBufferPointer(rebasing: bytes[0..<length]), to: address, length: state.serverAddressLength)
            }
        }
    }

    /// Sends a packet again (one that was in flight on a dead uplink, or one the server asked for), on the uplink
    /// the engine picks now, avoiding the one it first went on. False when it couldn't: no longer stored, or no
    /// uplink took it (`scheduleResend` leaves a loss into a full queue to the inner TCP).
    private func resend(sequence: UInt32, now: Nanoseconds, state: inout ClientState) -> Bool {
        guard let packet = state.retransmit.packet(sequence: sequence) else { return false }
        let length = packet.count
        if let paced = state.paced {
            // Paced: queued in the chosen uplink's lane for the TUN pump (as the server does, `ServerNetworkPump.resend`).
            let wireLength = length + WireLayout.transportOverhead
            let kind = paced.classifyResend(sequence, store: state.retransmit) { state.engine.statistics(for: $0)?.state == .down }
            let selection = state.engine.scheduleResend(packetLength: wireLength, originalUplink: kind.original, now: now,
                                                        originalWaitsBehind: kind.waiting?.bytesAhead)
            if selection.isEmpty { return kind.waiting != nil }
            var queued = false
            for id in selection where paced.queueResend(sequence: sequence, wireLength: wireLength, on: id,
                                                        isRepair: kind.isRepair, lostRepair: kind.lostRepair) {
                queued = true
            }
            if queued {
                state.pacingDeadline = 0
                wakeTunPump = true
            }
            return queued
        }
        let selection = state.engine.scheduleResend(packetLength: length + WireLayout.transportOverhead,
                                                    originalUplink: state.retransmit.uplink(sequence: sequence), now: now)
        var sent = false
        for id in selection {
            guard let slot = state.slot(of: id), let socket = state.uplinks[slot]?.socket,
                  let counter = state.uplinks[slot]?.keyring.current?.nextSendCounter else { continue }
            let sealed: Int? = resendBuffer.withUnsafeMutableBytes { raw in
                UnsafeMutableRawBufferPointer(rebasing: raw[WireLayout.bodyOffset...]).copyMemory(from: packet)
                return try? state.uplinks[slot]?.keyring.seal(.data, tunnelSequence: sequence, bodyLength: length, in: raw, now: now)
            }
            guard let sealed else { continue }
            resendBuffer.withUnsafeBytes { raw in
                let datagram = UnsafeRawBufferPointer(rebasing: raw[0..<sealed])
                if let connection = state.uplinks[slot]?.tcp {
                    connection.send(datagram)
                } else {
                    withUnsafePointer(to: &state.serverAddress) { socket.sendOne(datagram, to: $0, length: state.serverAddressLength) }
                }
            }
            state.engine.handle(.packetSent(id, counter: counter, sequence: sequence, bytes: sealed, at: now))
            state.resentPackets &+= 1
            sent = true
        }
        return sent
    }

    /// The flags byte of the uplink's control frames: its policy and the idle heartbeat this client probes it at
    /// (the uplink's own, e.g. a metered one's, else the tunnel's), which the server follows for its own idle probes
    /// on that uplink (`UplinkPolicyFlags`).
    private func policyFlags(_ policy: UplinkPolicy) -> UInt8 {
        UplinkPolicyFlags.encode(policy, heartbeatInterval: policy.heartbeatInterval ?? tunnel.configuration.multipath.heartbeatInterval)
    }

    /// Seals a control frame with the slot's session in place and sends it.
    private func sendControl(_ frame: ControlFrame, slot: Int, now: Nanoseconds, state: inout ClientState) {
        guard let socket = state.uplinks[slot]?.socket,
              let length = try? controlBuffer.withUnsafeMutableBytes({ (raw) throws(ProtocolError) -> Int? in
                  let flags = state.uplinks[slot].map { policyFlags($0.policy) } ?? 0
                  return try state.uplinks[slot]?.keyring.sealControl(frame, flags: flags, in: raw, now: now)
              }) else { return }
        if let connection = state.uplinks[slot]?.tcp {
            controlBuffer.withUnsafeBytes { _ = connection.send(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            return
        }
        withUnsafePointer(to: &state.serverAddress) { address in
            controlBuffer.withUnsafeBytes { bytes in
                socket.sendOne(UnsafeRawBufferPointer(rebasing: bytes[0..<length]), to: address, length: state.serverAddressLength)
            }
        }
    }

    /// Sends handshake bytes on the uplink: over its TCP fallback connection if it has one (unless `forceUDP`,
    /// used to test whether UDP works again), else over UDP.
    private func send(_ bytes: [UInt8], uplink: ClientUplink, state: inout ClientState, forceUDP: Bool = false) {
        if !forceUDP, let connection = uplink.tcp {
            bytes.withUnsafeBytes { _ = connection.send($0) }
            return
        }
        guard let socket = uplink.socket else { return }
        withUnsafePointer(to: &state.serverAddress) { address in
            bytes.withUnsafeBytes { socket.sendOne($0, to: address, length: state.serverAddressLength) }
        }
    }
}

extension ClientTunnel {
    func log(debug message: @autoclosure () -> String) { logger.debug("\(message())") }
    func log(info message: @autoclosure () -> String) { logger.info("\(message())") }
    func log(error message: @autoclosure () -> String) { logger.error("\(message())") }
}
