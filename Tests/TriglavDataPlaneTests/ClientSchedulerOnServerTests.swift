import Testing
import TriglavCore
import TriglavCrypto
import TriglavMultipath
import TriglavProtocol
@testable import TriglavDataPlane

/// The client's scheduler governs its tunnel's downloads too: the client seals it into the tunnel flags of every
/// frame (`SchedulerFlags`, inner header byte 2), and the server applies it to that client's engine only
/// (`ServerClientTunnel.followClientScheduler`, called by the server's network pump for every authentic frame).
@Suite("client scheduler on the server")
struct ClientSchedulerOnServerTests {
    static let ms = TriglavMultipath.Nanoseconds.millisecond

    @Test("every mode and copy count survives the flags byte; 16 copies (the uplink limit) mean every uplink")
    func flagsRoundTrip() {
        for mode in SchedulerMode.allCases {
            for copies in [nil] + Array(1...SchedulerFlags.largestEncodedCopies) {
                let decoded = SchedulerFlags.decode(SchedulerFlags.encode(mode, redundantCopies: copies))
                #expect(decoded?.mode == mode && decoded?.redundantCopies == copies, "\(mode) \(String(describing: copies))")
            }
        }
        #expect(SchedulerFlags.decode(SchedulerFlags.encode(.redundant, redundantCopies: MultipathLimits.maxUplinks))?.redundantCopies == nil)
    }

    @Test("an older client's zero byte and a newer client's unknown mode say nothing")
    func silentFlags() {
        #expect(SchedulerFlags.decode(0) == nil)
        for unknown: UInt8 in 5...7 { #expect(SchedulerFlags.decode(SchedulerFlags.present | unknown) == nil) }
        #expect(SchedulerFlags.encode(.aggregate, redundantCopies: nil) != 0, "aggregate must be told apart from silence")
    }

    @Test("the tunnel flags ride authenticated in every frame an uplink keyring seals, data and control alike")
    func flagsOnTheWire() throws {
        let server = IdentityKey.generate(), client = IdentityKey.generate()
        var responder = HandshakeResponder(identity: server, authorizedClients: [
            AuthorizedClient(publicKey: client.publicKey, ipv4: try IPPrefix("10.77.0.2/24"), ipv6: nil)])
        var initiator = try HandshakeInitiator(configuration: InitiatorConfiguration(
            identity: client, serverPublicKey: server.publicKey, request: .create))
        let initiation = try initiator.start(now: 0, wallClock: 1_800_000_000 * TriglavMultipath.Nanoseconds.second)
        guard case .accept(let accepted) = responder.handleInitiation(initiation, from: "198.51.100.7:40000", now: 0) else {
            Issue.record("handshake refused")
            return
        }
        let established = try #require(try initiator.receive(accepted.reply, now: 0))
        let flags = SchedulerFlags.encode(.redundant, redundantCopies: 2)
        var sender = UplinkKeyring(tunnelFlags: flags)
        sender.install(established.session)
        var receiver = UplinkKeyring()
        receiver.install(accepted.session)

        var buffer = [UInt8](repeating: 0, count: 256)
        for (index, frame) in [ControlFrame.keepalive, .probe(ProbeBody(id: 1, timestamp: 2))].enumerated() {
            let length = try buffer.withUnsafeMutableBytes { raw in
                try Result { () throws(ProtocolError) in try sender.sealControl(frame, flags: 0x81, in: raw, now: UInt64(index)) }.get()
            }
            let opened = try buffer.withUnsafeMutableBytes { raw in
                try Result { () throws(ProtocolError) in
                    try receiver.open(UnsafeMutableRawBufferPointer(rebasing: raw[0..<length]), now: UInt64(index))
                }.get()
            }
            #expect(opened.tunnelFlags == flags && opened.flags == 0x81)
        }
        let length = try buffer.withUnsafeMutableBytes { raw in
            try Result { () throws(ProtocolError) in try sender.seal(.data, tunnelSequence: 9, bodyLength: 20, in: raw, now: 3) }.get()
        }
        // Tampering with the encrypted byte breaks the tag: the flags can't be forged on the path.
        var tampered = Array(buffer[0..<length])
        tampered[WireLayout.transportHeaderSize + 2] ^= 0x01
        var tamperedReceiver = receiver
        #expect(throws: ProtocolError.self) {
            _ = try tampered.withUnsafeMutableBytes { raw in
                try Result { () throws(ProtocolError) in try tamperedReceiver.open(raw, now: 3) }.get()
            }
        }
        let opened = try buffer.withUnsafeMutableBytes { raw in
            try Result { () throws(ProtocolError) in try receiver.open(UnsafeMutableRawBufferPointer(rebasing: raw[0..<length]), now: 3) }.get()
        }
        #expect(opened.type == .data && opened.tunnelFlags == flags)
    }

    @Test("a runtime scheduler switch reaches every uplink's frames, and uplinks added later carry it too")
    func clientAnnouncesRuntimeSwitch() throws {
        var configuration = ClientTunnelConfiguration(identity: IdentityKey.generate(), serverKey: IdentityKey.generate().publicKey,
                                                      server: try IPEndpoint("198.51.100.1:7443"),
                                                      tunnelInterface: try InterfaceName("tg-sched0"))
        configuration.multipath.redundantCopies = 2
        let tunnel = try ClientTunnel(configuration: configuration)
        defer { tunnel.stop() }
        // Interfaces that don't exist: the uplinks wait for them (no socket), which is all this test needs.
        try tunnel.addUplink(interface: try InterfaceName("tg-absent1"))
        try tunnel.addUplink(interface: try InterfaceName("tg-absent2"))
        let flags = { tunnel.withState { state in state.uplinks.compactMap { $0?.keyring.tunnelFlags } } }
        #expect(flags() == Array(repeating: SchedulerFlags.encode(.aggregate, redundantCopies: 2), count: 2))

        tunnel.setScheduler(SchedulerMode.redundant)
        #expect(flags() == Array(repeating: SchedulerFlags.encode(.redundant, redundantCopies: 2), count: 2))
        try tunnel.addUplink(interface: try InterfaceName("tg-absent3"))
        #expect(flags() == Array(repeating: SchedulerFlags.encode(.redundant, redundantCopies: 2), count: 3))
        // A session reset (silence, link loss) keeps them: the next session's frames announce the scheduler too.
        tunnel.withState { state in state.resetUplink(0, now: 1) }
        #expect(flags() == Array(repeating: SchedulerFlags.encode(.redundant, redundantCopies: 2), count: 3))
    }

    /// A server tunnel for one client whose engine has two uplinks, both brought to `ready` by answered probes.
    static func serverTunnel(id: UInt64, address: String) throws -> ServerClientTunnel {
        var configuration = ClientTunnelConfiguration.defaultMultipath  // the server's default scheduler: aggregate
        configuration.scheduler = .aggregate
        var engine = try MultipathEngine<Int>(configuration: configuration)
        for uplink in [UplinkID(1), UplinkID(2)] { try engine.addUplink(uplink, now: 0) }
        var replies: [(at: UInt64, uplink: UplinkID, probe: UInt32)] = []
        var now: UInt64 = 0
        while now < 2 * TriglavMultipath.Nanoseconds.second {
            now += ms
            for reply in replies where reply.at <= now { engine.handle(.probeReplied(reply.uplink, probeID: reply.probe, at: now)) }
            replies.removeAll { $0.at <= now }
            while let duty = engine.nextDuty(now: now) {
                if case .sendProbe(let uplink, let probe, _) = duty { replies.append((now + 10 * ms, uplink, probe)) }
            }
        }
        #expect(engine.allStatistics().map(\.state) == [.ready, .ready])
        return ServerClientTunnel(tunnelID: id, key: IdentityKey.generate().publicKey,
                                  addresses: TunnelAddresses(ipv4: try IPPrefix(address)), engine: engine)
    }

    /// The uplinks the engine picks for one download packet.
    static func downloadUplinks(_ tunnel: inout ServerClientTunnel) -> Set<UplinkID> {
        Set(tunnel.engine.schedule(packetLength: 1200, flowKey: FlowKey(rawValue: 7), now: 2 * TriglavMultipath.Nanoseconds.second + ms))
    }

    @Test("a client flipping its scheduler on every packet gets one log line per 10 s, counting the switches")
    func schedulerSwitchesAreLoggedAtMostEveryTenSeconds() throws {
        let tunnel = try Self.serverTunnel(id: 1, address: "10.77.0.2/24")
        let second = TriglavMultipath.Nanoseconds.second
        #expect(tunnel.shouldLogSchedulerSwitch(at: 5 * second) == 1)
        for step in 1...1000 as ClosedRange<UInt64> {
            #expect(tunnel.shouldLogSchedulerSwitch(at: 5 * second + step * Self.ms) == nil)
        }
        #expect(tunnel.shouldLogSchedulerSwitch(at: 15 * second) == 1001)
        #expect(tunnel.shouldLogSchedulerSwitch(at: 15 * second + Self.ms) == nil)
    }

    @Test("the client that switched to redundant gets its downloads on both uplinks; another client keeps the default")
    func serverFollowsEachClient() throws {
        var state = ServerState(responder: HandshakeResponder(identity: IdentityKey.generate(), authorizedClients: []))
        state.addTunnel(try Self.serverTunnel(id: 1, address: "10.77.0.2/24"))
        state.addTunnel(try Self.serverTunnel(id: 2, address: "10.77.0.3/24"))

        // Client 1 announces redundant; client 2 is an older peer (tunnel flags 0).
        #expect(state.tunnels[1]?.followClientScheduler(SchedulerFlags.encode(.redundant, redundantCopies: nil)) == .redundant)
        #expect(state.tunnels[2]?.followClientScheduler(0) == nil)
        #expect(state.tunnels[1]?.engine.scheduler == .redundant)
        #expect(state.tunnels[2]?.engine.scheduler == .aggregate)
        var first = try #require(state.tunnels[1]), second = try #require(state.tunnels[2])
        #expect(Self.downloadUplinks(&first) == [UplinkID(1), UplinkID(2)])
        #expect(Self.downloadUplinks(&second).count == 1)

        // The same announcement again changes nothing; a later switch (failover, best two copies) is followed.
        #expect(state.tunnels[1]?.followClientScheduler(SchedulerFlags.encode(.redundant, redundantCopies: nil)) == nil)
        #expect(state.tunnels[1]?.followClientScheduler(SchedulerFlags.encode(.failover, redundantCopies: 2)) == .failover)
        #expect(state.tunnels[1]?.engine.configuration.redundantCopies == 2)
        // Silence from then on (0) keeps what was announced last rather than falling back.
        #expect(state.tunnels[1]?.followClientScheduler(0) == nil)
        #expect(state.tunnels[1]?.engine.scheduler == .failover)
    }
}
