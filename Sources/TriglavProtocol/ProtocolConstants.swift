import TriglavCore

/// Every limit and timer of the wire protocol, in one place, with where it comes from. Times are
/// nanoseconds of the injected monotonic clock. docs/PROTOCOL.md §7 lists the same values.
public enum ProtocolConstants {
    static let second: UInt64 = 1_000_000_000

    /// The Noise protocol name of the handshake (PROTOCOL.md §3).
    public static let noiseProtocolName = "Noise_NK_25519_ChaChaPoly_BLAKE2b"
    /// First bytes of the prologue; the initiation's 8-byte header (which holds PROTOCOL_VERSION) follows.
    public static let prologueLabel = Array("triglav".utf8)
    /// Domain separation for the client's identity signature (PROTOCOL.md §4).
    public static let clientAuthLabel = Array("triglav client auth v1".utf8)
    /// WireGuard's labels for the MAC and cookie keys (WireGuard paper §5.4.4).
    public static let mac1Label = Array("mac1----".utf8)
    public static let cookieLabel = Array("cookie--".utf8)

    // Session lifetime, after WireGuard (paper §6.1): the initiator rekeys after REKEY_AFTER_TIME or
    // REKEY_AFTER_MESSAGES; nobody uses a session past REJECT_AFTER_TIME or REJECT_AFTER_MESSAGES.
    public static let rekeyAfterTime: UInt64 = 120 * second
    public static let rejectAfterTime: UInt64 = 180 * second
    public static let rekeyAfterMessages: UInt64 = 1 << 60
    /// 2^64 - 2^13 - 1: leaves room for the replay window so a counter never wraps.
    public static let rejectAfterMessages: UInt64 = UInt64.max - (1 << 13)
    /// A peer that has heard nothing for this long should send a keepalive (WireGuard's KEEPALIVE_TIMEOUT).
    public static let keepaliveTimeout: UInt64 = 10 * second

    // Handshake retransmission: exponential backoff from `initialRetransmitTimeout`, capped at
    // `maxRetransmitTimeout`, plus uniform jitter of up to a quarter of the timeout; give up after
    // `rekeyAttemptTime` (WireGuard's REKEY_ATTEMPT_TIME). Shorter first timeout than WireGuard's 5 s
    // because a multipath client brings up several uplinks and a lossy one should not stall for long.
    public static let initialRetransmitTimeout: UInt64 = 1 * second
    public static let maxRetransmitTimeout: UInt64 = 8 * second
    public static let rekeyAttemptTime: UInt64 = 90 * second

    /// Cookie secrets rotate this often, so a cookie is valid for at most two periods (WireGuard: 120 s).
    public static let cookieSecretLifetime: UInt64 = 120 * second
    /// A client stops using a received cookie a little before the server rotates it away.
    public static let cookieUsableFor: UInt64 = 120 * second - 5 * second
    /// Initiations per second (server-wide) above which the server demands cookies.
    public static let defaultLoadThreshold = 128
    /// Per-source token bucket: sustained initiations per second and burst (WireGuard: 20/s, burst 5).
    public static let perSourceHandshakesPerSecond = 20
    public static let perSourceBurst = 5
    /// Bounded memory of the per-source rate limiter (entries); beyond it new sources are refused
    /// until idle entries age out.
    public static let rateLimiterCapacity = 4096
    /// Live sessions one tunnel may hold (uplinks × the rekey overlap); more means misuse.
    public static let maxSessionsPerTunnel = 32

    /// Replay window (RFC 6479): 256 blocks of 64 bits; one block is the moving slack, so
    /// (256 - 1) × 64 = 16320 counters behind the highest are accepted out of order (≥ 8192 required).
    public static let replayBlockCount = 256
    public static let replayWindowSize: UInt64 = UInt64(replayBlockCount - 1) * 64

    /// Most sequences one resend request or resend-declined frame may name (PROTOCOL.md §5.2): the multipath
    /// reorder buffer asks in runs of at most 256, and a bound per frame keeps a peer's one frame from costing
    /// more than that many retransmit-store lookups.
    public static let maxResendRun: UInt32 = 256
}

/// Byte layouts of the five message types (PROTOCOL.md §2). All integers little-endian except IP
/// addresses, which are in network order as on the wire everywhere else.
public enum WireLayout {
    /// First byte of every datagram.
    public enum MessageType: UInt8, Sendable {
        case handshakeInitiation = 1
        case handshakeResponse = 2
        case cookieReply = 3
        case transport = 4
        case versionMismatch = 5
    }

    public static let initiationSize = 216
    public static let initiationPayloadSize = 128
    public static let responseSize = 112
    public static let responsePayloadSize = 52
    public static let cookieReplySize = 64
    public static let versionMismatchSize = 8
    /// mac1 and mac2 are the last 32 bytes of an initiation in every protocol version, so a server of
    /// any version can check mac1 and answer a version mismatch.
    public static let macSize = 16

    /// Cleartext transport header: type, 3 reserved, receiver index, counter.
    public static let transportHeaderSize = WireOverhead.transportHeader
    /// Encrypted inner header: frame type, flags, tunnel flags, 1 reserved, tunnel sequence.
    public static let innerHeaderSize = WireOverhead.innerHeader
    public static let tagSize = WireOverhead.aeadTag
    /// Where a frame body starts in a transport datagram (and in a seal buffer).
    public static let bodyOffset = transportHeaderSize + innerHeaderSize
    /// Smallest transport datagram: headers and tag around an empty body.
    public static let minimumTransportSize = bodyOffset + tagSize
    /// Bytes a seal buffer needs beyond the body: headroom before it, tag after it.
    public static let transportOverhead = bodyOffset + tagSize
}
