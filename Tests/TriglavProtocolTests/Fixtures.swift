import Testing
import TriglavCore
import TriglavCrypto
@testable import TriglavProtocol

/// A server with one authorized client, and helpers to run handshakes between them on a virtual clock.
struct Fixture {
    static let second: UInt64 = 1_000_000_000
    static let wallClockBase: UInt64 = 1_800_000_000 * second

    let server: IdentityKey
    let client: IdentityKey
    var responder: HandshakeResponder
    let clientRecord: AuthorizedClient

    init(configuration: ResponderConfiguration = ResponderConfiguration()) throws {
        server = IdentityKey.generate()
        client = IdentityKey.generate()
        clientRecord = AuthorizedClient(publicKey: client.publicKey, ipv4: try IPPrefix("10.77.0.2/24"),
                                        ipv6: try IPPrefix("fd77::2/64"))
        responder = HandshakeResponder(identity: server, authorizedClients: [clientRecord], configuration: configuration)
    }

    func initiator(_ request: TunnelRequest = .create, identity: IdentityKey? = nil) throws -> HandshakeInitiator {
        try HandshakeInitiator(configuration: InitiatorConfiguration(identity: identity ?? client,
                                                                     serverPublicKey: server.publicKey, request: request))
    }

    /// Runs a full handshake; returns both sides' sessions and what the server decided.
    mutating func handshake(_ request: TunnelRequest = .create, now: UInt64, source: String = "198.51.100.7:40000")
        throws -> (client: EstablishedSession, server: AcceptedInitiation) {
        var initiator = try initiator(request)
        let initiation = try initiator.start(now: now, wallClock: Self.wallClockBase + now)
        guard case .accept(let accepted) = responder.handleInitiation(initiation, from: source, now: now) else {
            throw FixtureError.notAccepted
        }
        let established = try #require(try initiator.receive(accepted.reply, now: now))
        return (established, accepted)
    }
}

enum FixtureError: Error { case notAccepted }

extension ResponderDecision {
    var rejection: ProtocolError? {
        if case .reject(let error, _) = self { return error }
        return nil
    }
    var accepted: AcceptedInitiation? {
        if case .accept(let accepted) = self { return accepted }
        return nil
    }
}
