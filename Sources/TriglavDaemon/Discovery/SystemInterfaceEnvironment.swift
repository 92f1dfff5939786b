import TriglavSystemd
#if canImport(Glibc)
import Glibc
#endif

/// The real environment: udev properties through sd-device and 802.11 detection through sysfs.
/// Both look at the network namespace /sys was mounted for, so every answer is checked against the
/// interface index; an interface of another namespace simply has no properties.
public struct SystemInterfaceEnvironment: InterfaceEnvironment {
    public init() {}

    public func udevProperties(name: String, index: Int32) -> [String: String] {
        guard let properties = try? DeviceDatabase.properties(interfaceName: name),
              properties["IFINDEX"] == String(index) else { return [:] }
        return properties.values
    }

    public func isWireless(name: String, index: Int32) -> Bool {
        guard !name.contains("/"), sysfsIndex(name) == index else { return false }
        return access("/sys/class/net/\(name)/wireless", F_OK) == 0 || access("/sys/class/net/\(name)/phy80211", F_OK) == 0
    }

    private func sysfsIndex(_ name: String) -> Int32? {
        guard let file = fopen("/sys/class/net/\(name)/ifindex", "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 32)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Int32(text.filter { $0.isNumber })
    }
}
