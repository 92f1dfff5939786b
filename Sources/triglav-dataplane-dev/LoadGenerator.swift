import ArgumentParser
import Foundation
import TriglavCore
import TriglavCrypto
import TriglavProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Test-only load: many clients with several uplink sessions each, in one process, speaking the real
/// protocol (Noise handshakes with distinct authorized keys, sealed data frames, probe replies) through
/// the sans-IO API. A client's tunnel counts as working when an ICMP echo sent through it to the server's
/// tunnel address comes back through it. Keys are derived from `--seed` and the client number, so the
/// server's authorized list can be printed first (`loadgen keys`); they are test keys, never real ones.
struct LoadGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen", abstract: "Test load: many protocol clients in one process (integration tests).",
        subcommands: [LoadGenKeys.self, LoadGenRun.self, LoadGenFlood.self])
}

/// The deterministic test identity of client `index` for `seed`.
func loadIdentity(seed: UInt8, index: Int) throws -> IdentityKey {
    var bytes = [UInt8](repeating: seed, count: 28)
    withUnsafeBytes(of: UInt32(index).littleEndian) { bytes += $0 }
    return try IdentityKey(seed: SecureBytes(bytes))
}

struct LoadGenKeys: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", abstract: "Print the public keys of the load clients, one a line.")
    @Option(help: "Number of clients.") var count: Int
    @Option(help: "Key seed byte (distinct per load group).") var seed: UInt8 = 1

    func run() throws {
        for index in 0..<count { print(try loadIdentity(seed: seed, index: index).publicKey.base64) }
    }
}

/// One UDP socket bound to a local address (one uplink of one load client).
final class LoadSocket {
    let fd: Int32

    init(bindAddress: String) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        guard inet_pton(AF_INET, bindAddress, &address.sin_addr) == 1 else { throw ValidationError("bad address \(bindAddress)") }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw ValidationError("bind \(bindAddress): errno \(errno) (too many open files? raise ulimit -n)") }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8], to target: sockaddr_in) {
        var target = target
        _ = bytes.withUnsafeBytes { buffer in
            withUnsafePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buffer.baseAddress, buffer.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    /// The next datagram, or nil when none is waiting.
    func receive(into buffer: inout [UInt8]) -> [UInt8]? {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return count > 0 ? Array(buffer[0..<count]) : nil
    }
}

func loadNow() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

func loadWallClock() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

func loadEndpoint(_ text: String) throws -> sockaddr_in {
    let endpoint = try IPEndpoint(text)
    guard case .v4 = endpoint.address else { throw ValidationError("loadgen speaks IPv4 only: \(text)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = endpoint.port.bigEndian
    let octets = endpoint.address.bytes
    address.sin_addr.s_addr = UInt32(octets[0]) | UInt32(octets[1]) << 8 | UInt32(octets[2]) << 16 | UInt32(octets[3]) << 24
    return address
}

/// An IPv4 ICMP echo request (or any packet with a valid header checksum) from `source` to `destination`.
func echoRequest(from source: [UInt8], to destination: [UInt8], identifier: UInt16, sequence: UInt16) -> [UInt8] {
    var icmp: [UInt8] = [8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), UInt8(sequence >> 8), UInt8(sequence & 0xff)]
    icmp += [UInt8](repeating: 0x5a, count: 56)
    let icmpSum = internetChecksum(icmp)
    icmp[2] = UInt8(icmpSum >> 8); icmp[3] = UInt8(icmpSum & 0xff)
    let total = 20 + icmp.count
    var header: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0x40, 0, 64, 1, 0, 0]
    header += source + destination
    let headerSum = internetChecksum(header)
    header[10] = UInt8(headerSum >> 8); header[11] = UInt8(headerSum & 0xff)
    return header + icmp
}

func internetChecksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index + 1 < bytes.count { sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1]); index += 2 }
    if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
    return ~UInt16(sum)
}

/// One uplink session of a load client: its socket, its handshake in flight or its transport session.
struct LoadUplink {
    let socket: LoadSocket
    var initiator: HandshakeInitiator?
    var session: TransportSession?
}

/// One load client: its identity, its tunnel (after the first handshake) and its uplinks.
struct LoadClient {
    let identity: IdentityKey
    var uplinks: [LoadUplink]
    var tunnel: TunnelAssignment?
    var sequence: UInt32 = 0
    var echoesSent = 0
    var echoReplies = 0
    var rejected = 0
}

struct LoadGenRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Connect every load client over several uplinks, ping through each tunnel, print a summary.")
    @Option(help: "Number of clients.") var count: Int
    @Option(help: "Key seed byte (as given to 'loadgen keys').") var seed: UInt8 = 1
    @Option(help: "Local IPv4 address per uplink (repeatable; each client opens one session per address).") var bind: [String]
    @Option(help: "The server's public key.") var serverKey: String
    @Option(help: "Server endpoint, e.g. 198.18.0.1:7443.") var server: String
    @Option(help: "The server's tunnel address to ping through each tunnel.") var ping: String = "10.77.0.1"
    @Option(help: "Seconds to spend on handshakes before giving up.") var connectTimeout: Double = 20
    @Option(help: "Seconds of traffic after the handshakes (one echo per client uplink every 200 ms).") var duration: Double = 5

    func run() throws {
        let serverPublicKey = try IdentityPublicKey(base64: serverKey)
        let target = try loadEndpoint(server)
        guard let pingAddress = IPAddress(ping)?.bytes, pingAddress.count == 4 else { throw ValidationError("--ping needs an IPv4 address, got '\(ping)'") }
        var clients: [LoadClient] = []
        for index in 0..<count {
            clients.append(LoadClient(identity: try loadIdentity(seed: seed, index: index),
                                      uplinks: try bind.map { LoadUplink(socket: try LoadSocket(bindAddress: $0)) }))
        }
        var buffer = [UInt8](repeating: 0, count: 2048)
        let start = loadNow()
        // Handshakes: each client's first uplink creates the tunnel; the others join it once it exists.
        let connectDeadline = start + UInt64(connectTimeout * 1e9)
        var establishedAt: UInt64?
        while loadNow() < connectDeadline {
            let now = loadNow()
            var pending = 0
            for client in clients.indices {
                for uplink in clients[client].uplinks.indices where clients[client].uplinks[uplink].session == nil {
                    pending += 1
                    startOrRetransmit(&clients[client], uplink: uplink, serverKey: serverPublicKey, target: target, now: now)
                }
            }
            if pending == 0 { establishedAt = now; break }
            receiveAll(&clients, buffer: &buffer, target: target, pingAddress: pingAddress)
        }
        let connectSeconds = Double((establishedAt ?? loadNow()) - start) / 1e9
        // Traffic: an echo request per uplink session every 200 ms, probes answered.
        let trafficEnd = loadNow() + UInt64(duration * 1e9)
        var nextRound: UInt64 = 0
        while loadNow() < trafficEnd {
            let now = loadNow()
            if now >= nextRound {
                nextRound = now + 200_000_000
                for client in clients.indices { sendEchoes(&clients[client], pingAddress: pingAddress, target: target) }
            }
            receiveAll(&clients, buffer: &buffer, target: target, pingAddress: pingAddress)
        }
        // Late replies.
        let drainEnd = loadNow() + 500_000_000
        while loadNow() < drainEnd {
            receiveAll(&clients, buffer: &buffer, target: target, pingAddress: pingAddress)
        }
        let tunnels = clients.filter { $0.tunnel != nil }.count
        let sessions = clients.reduce(0) { $0 + $1.uplinks.filter { $0.session != nil }.count }
        let working = clients.filter { $0.echoReplies > 0 }.count
        let sent = clients.reduce(0) { $0 + $1.echoesSent }
        let replies = clients.reduce(0) { $0 + $1.echoReplies }
        print("loadgen: clients \(count) tunnels \(tunnels) sessions \(sessions)/\(count * bind.count) "
              + "working \(working) echoes \(replies)/\(sent) connect-seconds \(String(format: "%.2f", connectSeconds))")
    }

    private func startOrRetransmit(_ client: inout LoadClient, uplink: Int, serverKey: IdentityPublicKey,
                                   target: sockaddr_in, now: UInt64) {
        if client.uplinks[uplink].initiator == nil {
            let request: TunnelRequest
            if uplink == 0 {
                request = .create
            } else if let tunnel = client.tunnel {
                request = .join(tunnel.joinToken, replacing: nil)
            } else {
                return  // joins wait for the tunnel
            }
            guard var initiator = try? HandshakeInitiator(configuration: InitiatorConfiguration(
                identity: client.identity, serverPublicKey: serverKey, request: request)),
                  let initiation = try? initiator.start(now: now, wallClock: loadWallClock()) else { return }
            client.uplinks[uplink].socket.send(initiation, to: target)
            client.uplinks[uplink].initiator = initiator
        } else if let deadline = client.uplinks[uplink].initiator?.nextDeadline, now >= deadline {
            if let again = try? client.uplinks[uplink].initiator?.handleDeadline(now: now) {
                client.uplinks[uplink].socket.send(again, to: target)
            }
        }
    }

    private func sendEchoes(_ client: inout LoadClient, pingAddress: [UInt8], target: sockaddr_in) {
        guard let tunnel = client.tunnel, let source = tunnel.ipv4?.address.bytes else { return }
        for uplink in client.uplinks.indices where client.uplinks[uplink].session != nil {
            let packet = echoRequest(from: source, to: pingAddress, identifier: UInt16(truncatingIfNeeded: uplink + 1),
                                     sequence: UInt16(truncatingIfNeeded: client.echoesSent))
            guard let sealed = try? client.uplinks[uplink].session?.seal(.data, tunnelSequence: client.sequence, body: packet,
                                                                          now: loadNow()) else { continue }
            client.sequence &+= 1
            client.echoesSent += 1
            client.uplinks[uplink].socket.send(sealed, to: target)
        }
    }

    /// Waits up to 5 ms for datagrams (poll over every socket, `uplinks` per client) and handles them.
    private func receiveAll(_ clients: inout [LoadClient], buffer: inout [UInt8], target: sockaddr_in, pingAddress: [UInt8]) {
        let perClient = bind.count
        var descriptors = clients.flatMap { $0.uplinks.map { pollfd(fd: $0.socket.fd, events: Int16(POLLIN), revents: 0) } }
        guard poll(&descriptors, nfds_t(descriptors.count), 5) > 0 else { return }
        for (position, descriptor) in descriptors.enumerated() where descriptor.revents != 0 {
            let client = position / perClient, uplink = position % perClient
            var budget = 32
            while budget > 0, let datagram = clients[client].uplinks[uplink].socket.receive(into: &buffer) {
                budget -= 1
                handle(datagram, client: &clients[client], uplink: uplink, target: target, pingAddress: pingAddress)
            }
        }
    }

    private func handle(_ datagram: [UInt8], client: inout LoadClient, uplink: Int, target: sockaddr_in, pingAddress: [UInt8]) {
        let now = loadNow()
        if client.uplinks[uplink].session == nil {
            do {
                guard let established = try client.uplinks[uplink].initiator?.receive(datagram, now: now) else { return }
                client.uplinks[uplink].session = established.session
                client.uplinks[uplink].initiator = nil
                if uplink == 0 { client.tunnel = established.tunnel }
                // Confirm the session at once (the server installs the uplink on its first authentic packet).
                if let keepalive = try? client.uplinks[uplink].session?.seal(.keepalive, body: [], now: now) {
                    client.uplinks[uplink].socket.send(keepalive, to: target)
                }
            } catch {
                client.rejected += 1
            }
            return
        }
        guard let (frame, body) = try? client.uplinks[uplink].session?.open(datagram, now: now) else { return }
        switch frame.type {
        case .data:
            // An echo reply (ICMP type 0) from the pinged address.
            if body.count >= 28, body[9] == 1, body[20] == 0, Array(body[12..<16]) == pingAddress { client.echoReplies += 1 }
        case .probe:
            if case .probe(let probe)? = try? ControlFrame.parse(type: .probe, body: body),
               let reply = try? client.uplinks[uplink].session?.seal(.probeReply(probe), now: now) {
                client.uplinks[uplink].socket.send(reply, to: target)
            }
        default:
            break
        }
    }
}

/// The misbehaving client: an authorized identity that opens far more uplink sessions than allowed, replays
/// its own authentic packets, and sprays garbage, forged transport headers and junk handshakes (unauthorized
/// keys with a valid mac1, and random bytes) from many source ports, for `--duration` seconds.
struct LoadGenFlood: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "flood", abstract: "Misbehave at the server (integration tests).")
    @Option(help: "Key seed byte of the flooder's authorized identity (client 0 of this seed).") var seed: UInt8 = 9
    @Option(help: "Local IPv4 address to send from.") var bind: String
    @Option(help: "The server's public key.") var serverKey: String
    @Option(help: "Server endpoint.") var server: String
    @Option(help: "Uplink sessions to open on the flooder's tunnel (the server allows 16 per client).") var sessions = 24
    @Option(help: "Source sockets (ports) to spray from.") var ports = 32
    @Option(help: "Seconds to flood.") var duration: Double = 10

    func run() throws {
        let serverPublicKey = try IdentityPublicKey(base64: serverKey)
        let target = try loadEndpoint(server)
        let identity = try loadIdentity(seed: seed, index: 0)
        let intruder = IdentityKey.generate()
        let sprayers = try (0..<ports).map { _ in try LoadSocket(bindAddress: bind) }
        var buffer = [UInt8](repeating: 0, count: 2048)
        // 1. Its own tunnel, then many joins on separate sockets (more uplinks than the server allows).
        var uplinks: [LoadUplink] = try (0..<sessions).map { _ in LoadUplink(socket: try LoadSocket(bindAddress: bind)) }
        var tunnel: TunnelAssignment?
        let setupEnd = loadNow() + 5_000_000_000
        while loadNow() < setupEnd, uplinks.contains(where: { $0.session == nil }) {
            let now = loadNow()
            for index in uplinks.indices where uplinks[index].session == nil {
                if uplinks[index].initiator == nil {
                    let request: TunnelRequest
                    if index == 0 { request = .create } else if let tunnel { request = .join(tunnel.joinToken, replacing: nil) } else { continue }
                    guard var initiator = try? HandshakeInitiator(configuration: InitiatorConfiguration(
                        identity: identity, serverPublicKey: serverPublicKey, request: request)),
                          let initiation = try? initiator.start(now: now, wallClock: loadWallClock()) else { continue }
                    uplinks[index].socket.send(initiation, to: target)
                    uplinks[index].initiator = initiator
                } else if let deadline = uplinks[index].initiator?.nextDeadline, now >= deadline,
                          let again = try? uplinks[index].initiator?.handleDeadline(now: now) {
                    uplinks[index].socket.send(again, to: target)
                }
                while let datagram = uplinks[index].socket.receive(into: &buffer) {
                    if let established = try? uplinks[index].initiator?.receive(datagram, now: now) {
                        uplinks[index].session = established.session
                        if index == 0 { tunnel = established.tunnel }
                        if let keepalive = try? uplinks[index].session?.seal(.keepalive, body: [], now: now) {
                            uplinks[index].socket.send(keepalive, to: target)
                        }
                    }
                }
            }
            usleep(5_000)
        }
        let opened = uplinks.filter { $0.session != nil }.count
        // 2. One authentic data packet (an echo request from its own tunnel address) to replay.
        var replay: [UInt8] = []
        if let source = tunnel?.ipv4?.address.bytes, let sealed = try? uplinks[0].session?.seal(
            .data, tunnelSequence: 0, body: echoRequest(from: source, to: [10, 77, 0, 1], identifier: 7, sequence: 0), now: loadNow()) {
            replay = sealed
            uplinks[0].socket.send(sealed, to: target)
        }
        // 3. The flood.
        var sent = 0
        var handshakes = 0
        let end = loadNow() + UInt64(duration * 1e9)
        var round = 0
        while loadNow() < end {
            round += 1
            for (number, socket) in sprayers.enumerated() {
                if !replay.isEmpty { socket.send(replay, to: target) }
                var garbage = [UInt8](repeating: 0, count: Int.random(in: 1...1400))
                for index in garbage.indices { garbage[index] = UInt8.random(in: 0...255) }
                socket.send(garbage, to: target)
                // A transport header with a random receiver index (type 4) and a random body.
                garbage[0] = 4
                if garbage.count < 64 { garbage += [UInt8](repeating: 0, count: 64) }
                socket.send(garbage, to: target)
                // A random-bytes initiation of the right size (fails mac1: cheap to refuse).
                var junk = [UInt8](repeating: 0, count: WireLayout.initiationSize)
                for index in junk.indices { junk[index] = UInt8.random(in: 0...255) }
                junk[0] = WireLayout.MessageType.handshakeInitiation.rawValue
                junk[1] = PROTOCOL_VERSION
                junk[2] = 0; junk[3] = 0
                socket.send(junk, to: target)
                sent += 4
                // A real initiation from an unauthorized key (valid mac1: the server pays for the Noise message),
                // every round from a rotating subset of ports.
                if (round + number) % 4 == 0,
                   var initiator = try? HandshakeInitiator(configuration: InitiatorConfiguration(identity: intruder, serverPublicKey: serverPublicKey)),
                   let initiation = try? initiator.start(now: loadNow(), wallClock: loadWallClock()) {
                    socket.send(initiation, to: target)
                    handshakes += 1
                    sent += 1
                }
                while socket.receive(into: &buffer) != nil {}
            }
            for index in uplinks.indices { while uplinks[index].socket.receive(into: &buffer) != nil {} }
            usleep(1_000)
        }
        print("flood: tunnel \(tunnel != nil) sessions \(opened)/\(sessions) datagrams \(sent) junk-handshakes \(handshakes)")
    }
}
