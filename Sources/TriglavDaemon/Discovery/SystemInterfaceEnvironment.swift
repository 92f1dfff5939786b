import TriglavSystemd
#if canImport(Glibc)
import Glibc
#endif

/// The real environment: udev properties through sd-device and 802.11 detection through sysfs.
///
/// sysfs (`ip netns exec` remounts it) shows the daemon's own network namespace, but udev's database
/// (/run/udev/data/n<ifindex>) only describes the initial namespace's devices, keyed by interface
/// index. Inside another namespace, sd-device would merge the host device's properties with ours
/// whenever the indexes coincide (a host veth with TRIGLAV_UPLINK=ignore would hide a namespace
/// uplink), so the database is only consulted in the initial namespace; elsewhere only the sysfs
/// `uevent` of the interface is read (DEVTYPE, which is the kernel's own and namespace-correct).
/// Every answer is checked against the interface index.
public struct SystemInterfaceEnvironment: InterfaceEnvironment {
    /// Whether the udev database describes our interfaces (decided once, at creation).
    public let trustsDeviceDatabase: Bool

    public init() {
        // A container or namespace with its own udevd and /run/udev (tests, some containers) says so.
        if let text = getenv(Self.trustOverrideVariable), String(cString: text) == "1" {
            self.init(trustsDeviceDatabase: true)
            return
        }
        self.init(trustsDeviceDatabase: Self.trustsDeviceDatabase(
            own: NamespaceIdentity(path: "/proc/thread-self/ns/net"), initial: NamespaceIdentity(path: "/proc/1/ns/net"),
            seesInitialOnlySysctl: access(Self.initialOnlySysctl, F_OK) == 0))
    }

    /// `TRIGLAV_UDEV_DATABASE=1`: the udev database in /run/udev describes this network namespace although it
    /// isn't the initial one (a udevd runs inside it, with its own /run/udev).
    public static let trustOverrideVariable = "TRIGLAV_UDEV_DATABASE"

    public init(trustsDeviceDatabase: Bool) {
        self.trustsDeviceDatabase = trustsDeviceDatabase
    }

    /// The identity (device and inode) of a namespace file, as stat(2) reports it.
    public struct NamespaceIdentity: Sendable, Hashable {
        public var device: UInt64
        public var inode: UInt64

        public init(device: UInt64, inode: UInt64) {
            self.device = device
            self.inode = inode
        }

        /// nil when the file can't be stat'ed: /proc/1/ns/net needs ptrace access to pid 1.
        public init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            self.init(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        }
    }

    /// A sysctl the kernel registers for the initial network namespace only (net_core_table, not
    /// the per-namespace table), so it exists in /proc/sys exactly when the reading thread is there.
    public static let initialOnlySysctl = "/proc/sys/net/core/netdev_max_backlog"

    /// Whether the udev database describes this namespace's interfaces: our namespace is pid 1's (both
    /// stat'ed); when pid 1's can't be read (no ptrace access to it: a CAP_NET_ADMIN-only daemon under
    /// systemd, or root inside `ip netns exec` in some sandboxes), whether an initial-namespace-only
    /// sysctl is visible.
    public static func trustsDeviceDatabase(own: NamespaceIdentity?, initial: NamespaceIdentity?,
                                            seesInitialOnlySysctl: Bool) -> Bool {
        if let own, let initial { return own == initial }
        return seesInitialOnlySysctl
    }

    public func udevProperties(name: String, index: Int32) -> [String: String] {
        guard trustsDeviceDatabase else { return sysfsUevent(name: name, index: index) }
        guard let properties = try? DeviceDatabase.properties(interfaceName: name),
              properties["IFINDEX"] == String(index) else { return [:] }
        return properties.values
    }

    public func isWireless(name: String, index: Int32) -> Bool {
        guard Self.isPlainName(name), sysfsIndex(name) == index else { return false }
        return access("/sys/class/net/\(name)/wireless", F_OK) == 0 || access("/sys/class/net/\(name)/phy80211", F_OK) == 0
    }

    /// The kernel's uevent variables of the interface (INTERFACE, IFINDEX, DEVTYPE), when it is `name` with `index`.
    private func sysfsUevent(name: String, index: Int32) -> [String: String] {
        guard Self.isPlainName(name), let text = readSmallFile("/sys/class/net/\(name)/uevent") else { return [:] }
        let properties = DeviceProperties.parse(propertyLines: text)
        guard properties["IFINDEX"] == String(index), properties["INTERFACE"] == name else { return [:] }
        return properties.values
    }

    private static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && !name.contains("/") && name != "." && name != ".."
    }

    private func sysfsIndex(_ name: String) -> Int32? {
        guard let text = readSmallFile("/sys/class/net/\(name)/ifindex") else { return nil }
        return Int32(text.filter { $0.isNumber })
    }

    private func readSmallFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [CChar](repeating: 0, count: 512)
        while bytes.count < 8192, fgets(&buffer, Int32(buffer.count), file) != nil {
            bytes += buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
