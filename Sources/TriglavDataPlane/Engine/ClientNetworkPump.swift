internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif
import Logging
import TriglavCore

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
    private var controlBuffer = [UInt8](repeating: 0, count: 64)

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
        var newAssignment: TunnelAssignment?
        tunnel.withState { state in
            guard var uplink = state.uplinks[slot] else { return }
            defer { state.uplinks[slot] = uplink }
            for index in 0..<count {
                let datagram = batch.received(index)
                switch InterimWire.messageType(UnsafeRawBufferPointer(datagram)) {
                case .response:
                    guard uplink.session == nil, !uplink.pendingSignature.isEmpty,
                          let response = InterimWire.parseResponse(UnsafeRawBufferPointer(datagram), serverKey: tunnel.configuration.serverKey,
                                                                   initiationSignature: uplink.pendingSignature),
                          response.receiverIndex == uplink.pendingIndex else { continue }
                    uplink.session = TransportSession(localIndex: uplink.pendingIndex, peerIndex: response.senderIndex)
                    uplink.pendingSignature = []
                    uplink.lastReceive = now
                    uplink.lastProbe = 0
                    uplink.statistics.handshakes &+= 1
                    if state.assignment != response.assignment {
                        state.assignment = response.assignment
                        newAssignment = response.assignment
                    }
                case .transport:
                    guard var session = uplink.session,
                          InterimWire.transportReceiver(UnsafeRawBufferPointer(datagram)) == session.localIndex,
                          let opened = session.open(datagram) else { continue }
                    uplink.session = session
                    uplink.lastReceive = now
                    switch opened.kind {
                    case .data:
                        uplink.statistics.receivedPackets &+= 1
                        uplink.statistics.receivedBytes &+= UInt64(opened.payload.count)
                        pendingData.append((index, opened.sequence, opened.payload))
                    case .probeReply:
                        if opened.payload.count == 8 {
                            let sentAt: UInt64 = UnsafeRawBufferPointer(rebasing: datagram[opened.payload]).loadBigEndian(at: 0)
                            if now >= sentAt { uplink.rtt.add(now - sentAt) }
                        }
                    case .close:
                        // The server dropped the session (restart, expiry): handshake again at once.
                        uplink.session = nil
                        uplink.lastInitiation = 0
                    case .probe:
                        break
                    }
                case .initiation, .none:
                    continue
                }
            }
        }
        if let newAssignment, let name = tunnel.withState({ $0.tun?.name }) {
            tunnel.assignmentChanged(newAssignment, tun: name)
        }
    }

    /// Handshake retries, probes, keepalives, dead-uplink detection and socket reopening.
    private func runTimers(now: Nanoseconds) {
        let configuration = tunnel.configuration
        let retry = configuration.handshakeRetryInterval.nanoseconds
        let timeout = configuration.uplinkTimeout.nanoseconds
        let probeInterval = configuration.probeInterval.nanoseconds
        let keepalive = configuration.keepaliveInterval.nanoseconds
        var missingSockets: [Int] = []
        tunnel.withState { state in
            for slot in 0..<ClientTunnel.maximumUplinks {
                guard var uplink = state.uplinks[slot] else { continue }
                defer { state.uplinks[slot] = uplink }
                guard let socket = uplink.socket else {
                    if now &- uplink.lastInitiation >= retry {
                        uplink.lastInitiation = now
                        missingSockets.append(slot)
                    }
                    continue
                }
                if var session = uplink.session {
                    if now &- uplink.lastReceive >= timeout {
                        uplink.session = nil
                        uplink.lastInitiation = 0
                        tunnel.log(debug: "uplink \(uplink.interface) silent for \(configuration.uplinkTimeout); handshaking again")
                    } else {
                        let probeDue = probeInterval > 0 && now &- uplink.lastProbe >= probeInterval
                        let keepaliveDue = now &- max(uplink.lastSend, uplink.lastProbe) >= keepalive
                        if probeDue || keepaliveDue {
                            uplink.lastProbe = now
                            let length = controlBuffer.withUnsafeMutableBytes { buffer in
                                buffer.storeBigEndian(now, at: TransportSession.payloadOffset)
                                return session.seal(buffer, payloadLength: 8, kind: .probe, sequence: 0)
                            }
                            uplink.session = session
                            send(length: length, socket: socket, state: &state)
                        }
                        continue
                    }
                }
                if uplink.session == nil, now &- uplink.lastInitiation >= retry {
                    uplink.lastInitiation = now
                    uplink.pendingIndex = UInt32.random(in: 1...UInt32.max)
                    let initiation = tunnel.makeInitiation(localIndex: uplink.pendingIndex)
                    uplink.pendingSignature = Array(initiation[InterimWire.initiationSignedLength...])
                    withUnsafePointer(to: &state.serverAddress) { address in
                        initiation.withUnsafeBytes { socket.sendOne($0, to: address, length: state.serverAddressLength) }
                    }
                }
            }
        }
        for slot in missingSockets { tunnel.openSocket(slot: slot) }
    }

    private func send(length: Int, socket: UDPSocket, state: inout ClientState) {
        withUnsafePointer(to: &state.serverAddress) { address in
            controlBuffer.withUnsafeBytes { bytes in
                socket.sendOne(UnsafeRawBufferPointer(rebasing: bytes[0..<length]), to: address, length: state.serverAddressLength)
            }
        }
    }
}

extension ClientTunnel {
    func log(debug message: @autoclosure () -> String) {
        logger.debug("\(message())")
    }
}
