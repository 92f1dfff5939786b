/// Project-wide constants. Every limit that more than one module needs lives here, with where it comes from.

/// Release version of Triglav (semantic versioning).
public let VERSION = "0.1.0"

/// Wire protocol version. Bound into the Noise prologue, so peers of different versions fail the handshake
/// (and say so) instead of misparsing each other. Bump on any incompatible wire change.
public let PROTOCOL_VERSION: UInt8 = 1

/// UDP and TCP port the server listens on unless configured otherwise.
public let DEFAULT_PORT: UInt16 = 7443

/// Largest link MTU Triglav plans for; the tunnel MTU is derived from the smallest uplink MTU.
public let MAX_MTU = 1500

/// Per-packet cost of carrying one inner IP packet, outer headers included. The protocol module owns
/// the frame layout; these numbers are checked against it by a test in TriglavProtocolTests.
public enum WireOverhead {
    /// Outer IPv4 header (no options).
    public static let outerIPv4Header = 20
    /// Outer IPv6 header (the worst case).
    public static let outerIPv6Header = 40
    /// Outer UDP header.
    public static let udpHeader = 8
    /// Cleartext transport header: type (1) + reserved (3) + receiver index (4) + counter (8).
    public static let transportHeader = 16
    /// Poly1305 authentication tag.
    public static let aeadTag = 16
    /// Encrypted inner header: frame type (1) + flags (1) + reserved (2) + tunnel sequence (4).
    public static let innerHeader = 8
    /// Everything the protocol adds to an inner packet on the wire, excluding IP/UDP.
    public static var protocolOverhead: Int { transportHeader + aeadTag + innerHeader }
    /// Everything added including the outer IPv6 and UDP headers.
    public static var total: Int { outerIPv6Header + udpHeader + protocolOverhead }
}

/// Largest inner IP packet that fits into one MAX_MTU outer packet over IPv6 (the worst case).
public let MAX_PAYLOAD = MAX_MTU - WireOverhead.total
