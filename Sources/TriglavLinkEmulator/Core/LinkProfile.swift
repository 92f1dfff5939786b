/// What one direction of an emulated link does to the packets crossing it. Value type; validated
/// by `validate()` (the parsers below produce valid values only).
///
/// The model, in order: random loss at the entrance (a lost packet costs no capacity), a tail-drop
/// queue in front of a transmitter of `rateBitsPerSecond`, then propagation `delay` ± `jitter`.
/// Rates count the IP packet (the frame without its Ethernet header), as a link's advertised
/// capacity does.
public struct LinkProfile: Equatable, Sendable {
    public enum JitterDistribution: String, Equatable, Sendable, CaseIterable {
        /// Every offset in [-jitter, +jitter] equally likely (netem's default).
        case uniform
        /// Approximately normal with standard deviation `jitter`, bounded at ±6 jitter.
        case normal
    }

    public enum QueueLimit: Equatable, Sendable {
        case bytes(Int)
        case packets(Int)
    }

    /// Transmitter rate in bits per second; nil means infinitely fast (no queue ever builds).
    public var rateBitsPerSecond: UInt64?
    public var delayNanoseconds: UInt64
    public var jitterNanoseconds: UInt64
    public var jitterDistribution: JitterDistribution
    /// Probability that a packet is dropped at random, 0...1.
    public var lossProbability: Double
    public var queueLimit: QueueLimit
    /// When false (the default, as netem behaves with a rate), a packet never overtakes the one
    /// before it: jitter can only hold a packet back until its predecessor has left.
    public var allowsReordering: Bool

    /// netem's default queue: 1000 packets.
    public static let defaultQueueLimit = QueueLimit.packets(1000)
    /// Smallest byte queue accepted: one full frame must fit.
    public static let minimumQueueBytes = 1518

    public init(rateBitsPerSecond: UInt64? = nil, delayNanoseconds: UInt64 = 0, jitterNanoseconds: UInt64 = 0,
                jitterDistribution: JitterDistribution = .uniform, lossProbability: Double = 0,
                queueLimit: QueueLimit = LinkProfile.defaultQueueLimit, allowsReordering: Bool = false) {
        self.rateBitsPerSecond = rateBitsPerSecond
        self.delayNanoseconds = delayNanoseconds
        self.jitterNanoseconds = jitterNanoseconds
        self.jitterDistribution = jitterDistribution
        self.lossProbability = lossProbability
        self.queueLimit = queueLimit
        self.allowsReordering = allowsReordering
    }

    /// Checks the combinations the parsers can't see alone.
    public func validate() throws(LinkEmulatorError) {
        if jitterNanoseconds > delayNanoseconds {
            throw .jitterWithoutDelay(jitterNanoseconds: jitterNanoseconds, delayNanoseconds: delayNanoseconds)
        }
        switch queueLimit {
        case .bytes(let bytes) where bytes < Self.minimumQueueBytes:
            throw .queueLimitTooSmall(bytes: bytes, minimum: Self.minimumQueueBytes)
        case .packets(let packets) where packets < 1:
            throw .invalidQueueLimit("\(packets)p")
        default:
            break
        }
    }
}

// MARK: - Parsing tc-style quantities (the units `tc` uses, so lab configs read like netem's)

extension LinkProfile {
    /// "30mbit", "1.5gbit", "800kbit", "1000000bit" or "unlimited" (nil). Like tc, bit rates use
    /// powers of 1000.
    public static func parseRate(_ text: String) throws(LinkEmulatorError) -> UInt64? {
        let lowered = text.lowercased()
        if lowered == "unlimited" || lowered == "0" { return nil }
        let units: [(String, Double)] = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1)]
        guard let (number, scale) = splitNumber(lowered, units: units), number > 0 else {
            throw .invalidRate(text)
        }
        let bits = number * scale
        guard bits >= 1, bits <= 1e12 else { throw .invalidRate(text) }
        return UInt64(bits.rounded())
    }

    /// "20ms", "500us", "1.5s", "0". Returns nanoseconds.
    public static func parseDuration(_ text: String) throws(LinkEmulatorError) -> UInt64 {
        let lowered = text.lowercased()
        if lowered == "0" { return 0 }
        let units: [(String, Double)] = [("ms", 1e6), ("us", 1e3), ("ns", 1), ("s", 1e9)]
        guard let (number, scale) = splitNumber(lowered, units: units), number >= 0 else {
            throw .invalidDuration(text)
        }
        let nanoseconds = number * scale
        guard nanoseconds <= 3600e9 else { throw .invalidDuration(text) }
        return UInt64(nanoseconds.rounded())
    }

    /// "1%", "0.5%", "0". Returns a probability in 0...1.
    public static func parseLoss(_ text: String) throws(LinkEmulatorError) -> Double {
        if text == "0" { return 0 }
        guard let (number, _) = splitNumber(text, units: [("%", 0.01)]), number >= 0, number <= 100 else {
            throw .invalidLoss(text)
        }
        return number / 100
    }

    /// "64kb" (65536 bytes: like tc, sizes use powers of 1024), "1mb", "1500b", "100p" (packets).
    public static func parseQueueLimit(_ text: String) throws(LinkEmulatorError) -> QueueLimit {
        let lowered = text.lowercased()
        let units: [(String, Double)] = [("kb", 1024), ("mb", 1024 * 1024), ("b", 1), ("p", -1)]
        guard let (number, scale) = splitNumber(lowered, units: units), number >= 1,
              number == number.rounded(), number * abs(scale) <= 1e9 else {
            throw .invalidQueueLimit(text)
        }
        return scale < 0 ? .packets(Int(number)) : .bytes(Int(number * scale))
    }

    /// Splits "12.5mbit" into (12.5, scale of "mbit"); nil unless the whole text is a plain
    /// decimal number followed by exactly one of `units`.
    private static func splitNumber(_ text: String, units: [(String, Double)]) -> (Double, Double)? {
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let digits = text.dropLast(suffix.count)
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  let number = Double(digits) else { return nil }
            return (number, scale)
        }
        return nil
    }
}
