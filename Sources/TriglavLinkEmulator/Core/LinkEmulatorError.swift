/// Everything that can go wrong configuring or running the link emulator. Each case carries the
/// offending value; `description` says what was wrong and what to do.
public enum LinkEmulatorError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidRate(String)
    case invalidDuration(String)
    case invalidLoss(String)
    case invalidQueueLimit(String)
    case queueLimitTooSmall(bytes: Int, minimum: Int)
    case jitterWithoutDelay(jitterNanoseconds: UInt64, delayNanoseconds: UInt64)
    case unknownInterface(String)
    case sameInterfaceTwice(String)
    case systemCall(String, interface: String, errno: Int32)

    public var description: String {
        switch self {
        case .invalidRate(let text):
            return "invalid rate '\(text)': use a number with bit, kbit, mbit or gbit (e.g. 30mbit), or 'unlimited'"
        case .invalidDuration(let text):
            return "invalid duration '\(text)': use a number with us, ms or s (e.g. 20ms)"
        case .invalidLoss(let text):
            return "invalid loss '\(text)': use a percentage from 0% to 100% (e.g. 1% or 0.5%)"
        case .invalidQueueLimit(let text):
            return "invalid queue limit '\(text)': use bytes (b, kb, mb; e.g. 64kb) or packets (e.g. 100p)"
        case .queueLimitTooSmall(let bytes, let minimum):
            return "queue limit of \(bytes) bytes cannot hold one full frame; use at least \(minimum) bytes"
        case .jitterWithoutDelay(let jitter, let delay):
            return "jitter \(jitter / 1000) us exceeds the delay \(delay / 1000) us; a packet can't leave before it "
                + "arrived, so raise the delay or lower the jitter"
        case .unknownInterface(let name):
            return "no interface named '\(name)' in this network namespace (start the emulator with ip netns exec NS)"
        case .sameInterfaceTwice(let name):
            return "--a and --b are both '\(name)'; the emulator bridges two different interfaces"
        case .systemCall(let call, let interface, let errno):
            return "\(call) on \(interface) failed with errno \(errno)"
                + (errno == 1 ? " (operation not permitted: run as root or with CAP_NET_RAW)" : "")
        }
    }
}
