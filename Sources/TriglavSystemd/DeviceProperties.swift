internal import CSystemd

/// The udev properties of a network interface (`udevadm info /sys/class/net/X`): what udev rules set,
/// e.g. TRIGLAV_UPLINK, TRIGLAV_TIER, TRIGLAV_METERED, plus DEVTYPE and ID_NET_* hints.
public struct DeviceProperties: Sendable, Hashable {
    public var values: [String: String]

    public init(_ values: [String: String] = [:]) { self.values = values }

    public subscript(key: String) -> String? { values[key] }

    /// DEVTYPE (e.g. "wlan", "wwan", "bridge", "vlan").
    public var deviceType: String? { values["DEVTYPE"] }

    /// Parses `KEY=value` lines, as printed by `udevadm info --query=property` and at the end of
    /// `udevadm test`; lines that are not property assignments (log output) are ignored.
    public static func parse(propertyLines text: String) -> DeviceProperties {
        var values: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals]
            guard !key.isEmpty, key.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isUppercase || $0.isNumber)) }),
                  key.first?.isNumber == false else { continue }
            values[String(key)] = String(line[line.index(after: equals)...])
        }
        return DeviceProperties(values)
    }
}

/// Reads udev properties of network interfaces through libsystemd's sd-device (sysfs + the udev
/// database in /run/udev/data). Sees the interfaces of the network namespace /sys was mounted for.
public enum DeviceDatabase {
    /// Properties of the interface with kernel index `interfaceIndex`.
    public static func properties(interfaceIndex: Int32) throws(SystemdError) -> DeviceProperties {
        var device: OpaquePointer?
        let rc = sd_device_new_from_ifindex(&device, interfaceIndex)
        return try read(device, rc: rc, interface: "#\(interfaceIndex)")
    }

    /// Properties of the interface called `name`.
    public static func properties(interfaceName name: String) throws(SystemdError) -> DeviceProperties {
        var device: OpaquePointer?
        let rc = sd_device_new_from_ifname(&device, name)
        return try read(device, rc: rc, interface: name)
    }

    private static func read(_ device: OpaquePointer?, rc: Int32, interface: String) throws(SystemdError) -> DeviceProperties {
        guard rc >= 0, let device else { throw .deviceNotFound(interface: interface, errno: -rc) }
        defer { sd_device_unref(device) }
        var values = DeviceProperties.propertyValues(of: device)
        var devtype: UnsafePointer<CChar>?
        if values["DEVTYPE"] == nil, sd_device_get_devtype(device, &devtype) >= 0, let devtype {
            values["DEVTYPE"] = String(cString: devtype)
        }
        return DeviceProperties(values)
    }
}

extension DeviceProperties {
    /// Every udev property of `device` (borrowed, not released here) as key → value.
    static func propertyValues(of device: OpaquePointer) -> [String: String] {
        var values: [String: String] = [:]
        var value: UnsafePointer<CChar>?
        var key = sd_device_get_property_first(device, &value)
        while let currentKey = key {
            if let value { values[String(cString: currentKey)] = String(cString: value) }
            key = sd_device_get_property_next(device, &value)
        }
        return values
    }
}
