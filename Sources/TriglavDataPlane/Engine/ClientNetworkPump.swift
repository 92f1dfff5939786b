internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif
import Logging
import TriglavCore
import TriglavProtocol

/// The uplinks → TUN pump of a client, and its timers: receives batches from every ready uplink socket,
/// opens them under the lock, then (outside the lock) reorders data frames and writes them to the TUN
/// device one packet per write. Every `timerInterval` it retries handshakes, sends probes and keepalives,
/// and declares silent uplinks down.
final class ClientNetworkPump: @unchecked Sendable {
    private static let batchSize = 64
    private static let timerInterval = 100 * Nanoseconds.millisecond

    private let tunnel: ClientTunnel
    private let tun: TunDevice
    private let poller: Poller
    private let batch = DatagramBatch(capacity: ClientNetworkPump.batchSize, slotSize: 2048)
    private let reorder: ReorderBuffer
    private var ready: [Bool] = Array(repeating: false, count: ClientTunnel.maximumUplinks)
    /// Data frames opened in the current batch: (slot in batch, sequence, payload range).
    private var pendingData: [(Int, UInt32, Range<Int>)] = []
    private var nextTimer: Nanoseconds = 0
    private var controlBuffer = [UInt8](repeating: 0, count: 128)

    init(tunnel: ClientTunnel, tun: TunDevice) {
        self.tunnel = tunnel
        self.tun = tun
        poller = tunnel.networkPollerForPump
        reorder = ReorderBuffer(maxHold: max(1, tunnel.configuration.reorderHold.nanoseconds))
        pendingData.reserveCapacity(Self.batchSize)
    }

    func iterate() {
        var now = monotonicNow()
        var timeout = Int32(max(1, (nextTimer &- min(now, nextTimer)) / Nanoseconds.millisecond))
        if let deadline = reorder.deadline {
            timeout = min(timeout, Int32(max(1, (deadline &- min(now, deadline)) / Nanoseconds.millisecond)))
        }
        do {
            try poller.wait(timeoutMilliseconds: min(timeout, 100)) { token in
                if token < UInt64(ClientTunnel.maximumUplinks) { ready[Int(token)] = true }
            }
        } catch {
            return
        }
        now = monotonicNow()
        for slot in 0..<ClientTunnel.maximumUplinks where ready[slot] {
            ready[slot] = false
            receive(slot: slot, now: now)
        }
        reorder.flushExpired(now: now) { tun.write($0) }
        if now >= nextTimer {
            nextTimer = now &+ Self.timerInterval
            runTimers(now: now)
        }
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
            for (index, sequence, range) in pendingData {
                let datagram = batch.received(index)
                reorder.insert(sequence: sequence, packet: UnsafeRawBufferPointer(rebasing: datagram[range]), now: now) {
                    tun.write($0)
                }
            }
            pendingData.removeAll(keepingCapacity: true)
            if count < batch.capacity { break }
        }
        let counters = (reorder.reordered, reorder.gapsSkipped, reorder.duplicates)
        tunnel.withState { $0.reorderCounters = counters }
    }

    /// Opens every datagram of the batch under the lock; data frames are queued in `pendingData`.
    private func process(count: Int, slot: Int, now: Nanoseconds) {
        var newAddresses: TunnelAddresses?
        tunnel.withState { state in
            guard state.uplinks[slot] != nil else { return }
            for index in 0..<count {
                let datagram = batch.received(index)
                switch Demultiplexer.classify(UnsafeRawBufferPointer(datagram)) {
                case .handshakeResponse(let receiver), .cookieReply(let receiver), .versionMismatch(let receiver, _):
                    if let addresses = handshakeAnswer(datagram, receiver: receiver, slot: slot, now: now, state: &state) {
                        newAddresses = addresses
                    }
                case .transport:
                    guard var uplink = state.uplinks[slot] else { continue }
                    defer { state.uplinks[slot] = uplink }
                    guard let frame = try? uplink.keyring.open(datagram, now: now) else { continue }
                    uplink.lastReceive = now
                    switch frame.type {
                    case .data:
                        uplink.statistics.receivedPackets &+= 1
                        uplink.statistics.receivedBytes &+= UInt64(frame.body.count)
                        pendingData.append((index, frame.tunnelSequence, frame.body))
                    case .probeReply:
                        if case .probeReply(let probe)? = try? ControlFrame.parse(type: .probeReply, body: UnsafeRawBufferPointer(rebasing: datagram[frame.body])),
                           now >= probe.timestamp {
                            uplink.rtt.add(now - probe.timestamp)
                        }
                    case .close:
                        // The server dropped the session (tunnel removed, restart): handshake again now.
                        uplink.resetSessions()
                        uplink.lastAttempt = 0
                    case .keepalive, .probe, .feedback:
                        break
                    }
                case .handshakeInitiation, .invalid:
                    continue
                }
            }
        }
        if let newAddresses, let name = tunnel.withState({ $0.tun?.name }) {
            tunnel.assignmentChanged(newAddresses, tun: name)
        }
    }

    /// Feeds a handshake answer to the uplink's initiator. Returns new tunnel addresses when the server
    /// assigned different ones.
    private func handshakeAnswer(_ datagram: UnsafeMutableRawBufferPointer, receiver: UInt32, slot: Int, now: Nanoseconds,
                                 state: inout ClientState) -> TunnelAddresses? {
        guard var uplink = state.uplinks[slot], var initiator = uplink.initiator, initiator.localIndex == receiver else { return nil }
        defer { state.uplinks[slot] = uplink }
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
        uplink.lastReceive = now
        uplink.lastProbe = 0
        uplink.statistics.handshakes &+= 1
        sendKeepalive(&uplink, now: now, state: &state)
        let assignment = established.tunnel
        if created || state.tunnelID != assignment.tunnelID {
            if state.creatingSlot == slot { state.creatingSlot = nil }
            if let previous = state.tunnelID, previous != assignment.tunnelID {
                // The server replaced our old tunnel: sessions of the other uplinks belong to it; rejoin.
                for other in state.uplinks.indices where other != slot {
                    state.uplinks[other]?.resetSessions()
                    state.uplinks[other]?.lastAttempt = 0
                }
            }
            state.tunnelID = assignment.tunnelID
            state.joinToken = assignment.joinToken
            tunnel.log(info: "tunnel \(String(assignment.tunnelID, radix: 16)) established via \(uplink.interface)")
        }
        let addresses = TunnelAddresses(ipv4: assignment.ipv4, ipv6: assignment.ipv6)
        guard state.assignment != addresses else { return nil }
        state.assignment = addresses
        return addresses
    }

    /// Handshake starts and retries, rekeys, probes, keepalives, dead-uplink detection, socket reopening.
    private func runTimers(now: Nanoseconds) {
        let configuration = tunnel.configuration
        let retry = configuration.handshakeRetryInterval.nanoseconds
        let timeout = configuration.uplinkTimeout.nanoseconds
        let probeInterval = configuration.probeInterval.nanoseconds
        let keepalive = configuration.keepaliveInterval.nanoseconds
        var missingSockets: [Int] = []
        tunnel.withState { state in
            // A create that isn't answered soon is abandoned so another uplink can try.
            if let creator = state.creatingSlot,
               state.uplinks[creator]?.initiator == nil || now &- (state.uplinks[creator]?.lastAttempt ?? 0) >= 2 * retry {
                state.uplinks[creator]?.initiator = nil
                state.creatingSlot = nil
            }
            for slot in 0..<ClientTunnel.maximumUplinks {
                guard var uplink = state.uplinks[slot] else { continue }
                defer { state.uplinks[slot] = uplink }
                guard uplink.socket != nil else {
                    if now &- uplink.lastAttempt >= retry {
                        uplink.lastAttempt = now
                        missingSockets.append(slot)
                    }
                    continue
                }
                for index in uplink.keyring.removeExpired(now: now) { _ = index }
                if uplink.isEstablished && now &- uplink.lastReceive >= timeout {
                    tunnel.log(debug: "uplink \(uplink.interface) silent for \(configuration.uplinkTimeout); handshaking again")
                    uplink.resetSessions()
                    uplink.lastAttempt = 0
                }
                if uplink.isEstablished {
                    let probeDue = probeInterval > 0 && now &- uplink.lastProbe >= probeInterval
                    if probeDue || now &- max(uplink.lastSend, uplink.lastProbe) >= keepalive {
                        uplink.lastProbe = now
                        uplink.probeID &+= 1
                        sendControl(.probe(ProbeBody(id: uplink.probeID, timestamp: now)), &uplink, now: now, state: &state)
                    }
                }
                driveHandshake(&uplink, slot: slot, now: now, retry: retry, state: &state)
            }
        }
        for slot in missingSockets { tunnel.openSocket(slot: slot) }
    }

    /// Starts, retransmits or (for rekeys) begins this uplink's handshake as due.
    private func driveHandshake(_ uplink: inout ClientUplink, slot: Int, now: Nanoseconds, retry: UInt64, state: inout ClientState) {
        if var initiator = uplink.initiator {
            do {
                if let retransmission = try initiator.handleDeadline(now: now) {
                    send(retransmission, uplink: uplink, state: &state)
                    uplink.lastAttempt = now
                }
                uplink.initiator = initiator
            } catch {
                uplink.initiator = nil
                if state.creatingSlot == slot { state.creatingSlot = nil }
            }
            return
        }
        let rekeyDue = uplink.keyring.current?.isRekeyDue(now: now) ?? false
        guard (!uplink.isEstablished || rekeyDue), now &- uplink.lastAttempt >= retry else { return }
        let request: TunnelRequest
        if let token = state.joinToken {
            request = .join(token, replacing: rekeyDue ? uplink.keyring.current?.remoteIndex : nil)
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
        uplink.lastAttempt = now
        send(initiation, uplink: uplink, state: &state)
    }

    private func sendKeepalive(_ uplink: inout ClientUplink, now: Nanoseconds, state: inout ClientState) {
        sendControl(.keepalive, &uplink, now: now, state: &state)
    }

    private func sendControl(_ frame: ControlFrame, _ uplink: inout ClientUplink, now: Nanoseconds, state: inout ClientState) {
        guard let socket = uplink.socket,
              let length = try? controlBuffer.withUnsafeMutableBytes({ (raw) throws(ProtocolError) in
                  try uplink.keyring.sealControl(frame, in: raw, now: now)
              }) else { return }
        withUnsafePointer(to: &state.serverAddress) { address in
            controlBuffer.withUnsafeBytes { bytes in
                socket.sendOne(UnsafeRawBufferPointer(rebasing: bytes[0..<length]), to: address, length: state.serverAddressLength)
            }
        }
    }

    private func send(_ bytes: [UInt8], uplink: ClientUplink, state: inout ClientState) {
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
