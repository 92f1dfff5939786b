import TriglavCore

/// Errors of the data plane. Each case names the operation and the offending value; `errno` is the
/// kernel's reason where there is one.
public enum TriglavDataPlaneError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed with `errno` while doing `operation` (e.g. "bind udp socket to wlan0").
    case systemCall(operation: String, errno: Int32)
    /// Opening or configuring the TUN device failed.
    case tunDevice(name: String, errno: Int32)
    /// The uplink interface does not exist (or vanished).
    case noSuchInterface(String)
    /// The uplink interface has no address of the family the server needs.
    case noSourceAddress(interface: String, family: String)
    /// An address could not be turned into a socket address.
    case invalidAddress(String)
    /// A TCP fallback frame announced a length outside 1...maxFrameLength.
    case invalidFrameLength(Int)
    /// A netlink operation on addresses, routes or rules failed.
    case routing(operation: String, reason: String)
    /// A routing or NAT command failed; `output` is what the tool printed.
    case routingCommand(command: String, status: Int32, output: String)
    /// A sysctl under /proc/sys could not be read or written, or holds something unexpected.
    case sysctl(path: String, reason: String)
    /// A setting is invalid (the reason names it).
    case invalidConfiguration(String)
    /// The tunnel was already started or already stopped.
    case invalidState(String)
    /// An uplink with this interface name is already part of the tunnel.
    case duplicateUplink(String)
    /// No uplink with this interface name is part of the tunnel.
    case unknownUplink(String)

    public var description: String {
        switch self {
        case .systemCall(let operation, let errno):
            return "\(operation) failed: \(errnoName(errno)) (\(errno))"
        case .tunDevice(let name, let errno):
            let hint = errno == 1 || errno == 13 ? "; run as root or grant CAP_NET_ADMIN" :
                errno == 2 || errno == 19 ? "; load the tun module (modprobe tun) and check /dev/net/tun" : ""
            return "cannot create TUN device '\(name)': \(errnoName(errno)) (\(errno))\(hint)"
        case .noSuchInterface(let name):
            return "interface '\(name)' does not exist; check `ip link` and the uplink configuration"
        case .noSourceAddress(let interface, let family):
            return "interface '\(interface)' has no \(family) address to send from; wait for DHCP/SLAAC or configure one"
        case .invalidAddress(let text):
            return "'\(text)' is not a usable socket address"
        case .invalidFrameLength(let length):
            return "TCP fallback frame length \(length) is out of range; the peer is not speaking Triglav framing"
        case .routing(let operation, let reason):
            return "cannot \(operation): \(reason)"
        case .routingCommand(let command, let status, let output):
            return "'\(command)' exited with status \(status): \(output)"
        case .sysctl(let path, let reason):
            return "sysctl \(path): \(reason); check that /proc/sys is writable (CAP_NET_ADMIN, ReadWritePaths=/proc/sys/net)"
        case .invalidConfiguration(let reason):
            return "invalid data-plane configuration: \(reason)"
        case .invalidState(let reason):
            return reason
        case .duplicateUplink(let name):
            return "uplink '\(name)' is already part of the tunnel; remove it first"
        case .unknownUplink(let name):
            return "uplink '\(name)' is not part of the tunnel"
        }
    }
}

/// Short symbolic names for the errnos the data plane meets; the number is always printed too.
func errnoName(_ code: Int32) -> String {
    switch code {
    case 1: "EPERM"
    case 2: "ENOENT"
    case 11: "EAGAIN"
    case 13: "EACCES"
    case 16: "EBUSY"
    case 19: "ENODEV"
    case 22: "EINVAL"
    case 24: "EMFILE"
    case 90: "EMSGSIZE"
    case 97: "EAFNOSUPPORT"
    case 98: "EADDRINUSE"
    case 99: "EADDRNOTAVAIL"
    case 100: "ENETDOWN"
    case 101: "ENETUNREACH"
    case 104: "ECONNRESET"
    case 105: "ENOBUFS"
    case 110: "ETIMEDOUT"
    case 111: "ECONNREFUSED"
    case 113: "EHOSTUNREACH"
    default: "errno"
    }
}
