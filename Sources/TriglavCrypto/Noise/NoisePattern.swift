/// A Noise message token (spec §7.1). PSK tokens are not supported.
public enum NoiseToken: String, Sendable {
    case e, s, ee, es, se, ss
}

/// A handshake pattern: pre-messages and the token lists of each message, in the spec's own notation.
/// Messages alternate starting with the initiator (`->`), which every pattern here does.
public struct NoisePattern: Sendable, Equatable {
    public let name: String
    /// Keys known before the handshake: the initiator's (`-> s`) and the responder's (`<- s`).
    public let initiatorPreMessage: [NoiseToken]
    public let responderPreMessage: [NoiseToken]
    /// One token list per message; even indices are sent by the initiator.
    public let messages: [[NoiseToken]]

    /// Whether only the initiator ever sends (one-way patterns N, K, X); transport messages then all flow
    /// initiator → responder.
    public var isOneWay: Bool { messages.count == 1 }

    /// Parses a pattern written like the spec: lines "<- s", "...", "-> e, es".
    init(name: String, notation: String) {
        var initiatorPre: [NoiseToken] = [], responderPre: [NoiseToken] = [], messages: [[NoiseToken]] = []
        var inPreMessages = notation.contains("...")
        for rawLine in notation.split(separator: "\n") {
            let line = rawLine.trimmingCharacters(in: " ")
            if line == "..." { inPreMessages = false; continue }
            let fromInitiator = line.hasPrefix("->")
            let tokens = line.dropFirst(2).split(separator: ",").map { part -> NoiseToken in
                guard let token = NoiseToken(rawValue: String(part).trimmingCharacters(in: " ")) else {
                    preconditionFailure("bad token in built-in pattern \(name): \(part)")
                }
                return token
            }
            if inPreMessages {
                if fromInitiator { initiatorPre += tokens } else { responderPre += tokens }
            } else {
                precondition(fromInitiator == (messages.count % 2 == 0), "pattern \(name) must alternate")
                messages.append(tokens)
            }
        }
        self.name = name
        self.initiatorPreMessage = initiatorPre
        self.responderPreMessage = responderPre
        self.messages = messages
    }

    /// Looks up a pattern by name ("NK", "XX", "I1K1"…).
    public static func named(_ name: String) -> NoisePattern? { all[name] }

    /// The one-way, fundamental interactive (§7.4, §7.5) and deferred (§18) patterns.
    public static let all: [String: NoisePattern] = {
        let table: [(String, String)] = [
            ("N", "<- s\n...\n-> e, es"),
            ("K", "-> s\n<- s\n...\n-> e, es, ss"),
            ("X", "<- s\n...\n-> e, es, s, ss"),
            ("NN", "-> e\n<- e, ee"),
            ("NK", "<- s\n...\n-> e, es\n<- e, ee"),
            ("NX", "-> e\n<- e, ee, s, es"),
            ("XN", "-> e\n<- e, ee\n-> s, se"),
            ("XK", "<- s\n...\n-> e, es\n<- e, ee\n-> s, se"),
            ("XX", "-> e\n<- e, ee, s, es\n-> s, se"),
            ("KN", "-> s\n...\n-> e\n<- e, ee, se"),
            ("KK", "-> s\n<- s\n...\n-> e, es, ss\n<- e, ee, se"),
            ("KX", "-> s\n...\n-> e\n<- e, ee, se, s, es"),
            ("IN", "-> e, s\n<- e, ee, se"),
            ("IK", "<- s\n...\n-> e, es, s, ss\n<- e, ee, se"),
            ("IX", "-> e, s\n<- e, ee, se, s, es"),
            ("NK1", "<- s\n...\n-> e\n<- e, ee, es"),
            ("NX1", "-> e\n<- e, ee, s\n-> es"),
            ("X1N", "-> e\n<- e, ee\n-> s\n<- se"),
            ("X1K", "<- s\n...\n-> e, es\n<- e, ee\n-> s\n<- se"),
            ("XK1", "<- s\n...\n-> e\n<- e, ee, es\n-> s, se"),
            ("X1K1", "<- s\n...\n-> e\n<- e, ee, es\n-> s\n<- se"),
            ("X1X", "-> e\n<- e, ee, s, es\n-> s\n<- se"),
            ("XX1", "-> e\n<- e, ee, s\n-> es, s, se"),
            ("X1X1", "-> e\n<- e, ee, s\n-> es, s\n<- se"),
            ("K1N", "-> s\n...\n-> e\n<- e, ee\n-> se"),
            ("K1K", "-> s\n<- s\n...\n-> e, es\n<- e, ee\n-> se"),
            ("KK1", "-> s\n<- s\n...\n-> e\n<- e, ee, se, es"),
            ("K1K1", "-> s\n<- s\n...\n-> e\n<- e, ee, es\n-> se"),
            ("K1X", "-> s\n...\n-> e\n<- e, ee, s, es\n-> se"),
            ("KX1", "-> s\n...\n-> e\n<- e, ee, se, s\n-> es"),
            ("K1X1", "-> s\n...\n-> e\n<- e, ee, s\n-> se, es"),
            ("I1N", "-> e, s\n<- e, ee\n-> se"),
            ("I1K", "<- s\n...\n-> e, es, s\n<- e, ee\n-> se"),
            ("IK1", "<- s\n...\n-> e, s\n<- e, ee, se, es"),
            ("I1K1", "<- s\n...\n-> e, s\n<- e, ee, es\n-> se"),
            ("I1X", "-> e, s\n<- e, ee, s, es\n-> se"),
            ("IX1", "-> e, s\n<- e, ee, se, s\n-> es"),
            ("I1X1", "-> e, s\n<- e, ee, s\n-> se, es"),
        ]
        return Dictionary(uniqueKeysWithValues: table.map { ($0.0, NoisePattern(name: $0.0, notation: $0.1)) })
    }()
}

/// A parsed protocol name "Noise_<pattern>_25519_ChaChaPoly_<hash>".
public struct NoiseProtocol: Sendable, Equatable {
    public let name: String
    public let pattern: NoisePattern
    public let hash: NoiseHash

    public init(name: String) throws(TriglavCryptoError) {
        let parts = name.split(separator: "_", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, parts[0] == "Noise", parts[2] == "25519", parts[3] == "ChaChaPoly",
              let pattern = NoisePattern.named(parts[1]), let hash = NoiseHash(rawValue: parts[4]) else {
            throw .unsupportedProtocol(name)
        }
        self.name = name
        self.pattern = pattern
        self.hash = hash
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in character: Character) -> String {
        String(drop { $0 == character }.reversed().drop { $0 == character }.reversed())
    }
}

extension String {
    fileprivate func trimmingCharacters(in character: Character) -> String {
        Substring(self).trimmingCharacters(in: character)
    }
}
