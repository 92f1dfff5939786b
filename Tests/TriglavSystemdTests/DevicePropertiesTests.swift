import Foundation
import Testing
import TriglavTestSupport
@testable import TriglavSystemd

@Suite("udev device properties")
struct DevicePropertiesTests {
    @Test func parsesPropertyLinesAndIgnoresLogOutput() {
        let text = """
        tgudev0: /etc/udev/rules.d/90-t.rules:1 ENV{TRIGLAV_TIER}='backup'
        This program is for debugging only, it does not run any program
        DEVPATH=/devices/virtual/net/tgudev0
        INTERFACE=tgudev0
        TRIGLAV_TIER=backup
        ID_NET_NAME_PATH=wlp2s0
        lower=case
        EMPTY=
        run: '/lib/systemd/systemd-sysctl --prefix=/net/ipv4/conf/tgudev0'
        """
        let properties = DeviceProperties.parse(propertyLines: text)
        #expect(properties.values == ["DEVPATH": "/devices/virtual/net/tgudev0", "INTERFACE": "tgudev0",
                                      "TRIGLAV_TIER": "backup", "ID_NET_NAME_PATH": "wlp2s0", "EMPTY": ""])
    }

    @Test func readsTheLoopbackDeviceThroughSdDevice() throws {
        guard FileManager.default.fileExists(atPath: "/sys/class/net/lo") else { return }
        let byName = try DeviceDatabase.properties(interfaceName: "lo")
        #expect(byName["INTERFACE"] == "lo")
        #expect(byName["IFINDEX"] == "1")
        let byIndex = try DeviceDatabase.properties(interfaceIndex: 1)
        #expect(byIndex["INTERFACE"] == "lo")
        #expect(throws: SystemdError.self) { try DeviceDatabase.properties(interfaceName: "tg-no-such-if") }
        #expect(throws: SystemdError.self) { try DeviceDatabase.properties(interfaceIndex: 999_999) }
    }
}

/// Feeds properties through a real udev rules file and udev's own rule engine (`udevadm test`), without
/// touching the system: everything runs under `unshare --mount --net` with tmpfs over
/// /etc/udev/rules.d and /run/udev and a fresh sysfs, so the throwaway network namespace, the rules file
/// and the udev database entry vanish with the process.
@Suite("udev rules", .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/udevadm"),
                              "needs root (mount/network namespaces) and udevadm"))
struct UdevRulesTests {
    static let rules = """
    # What a packager's rule looks like: pin one device as metered backup, ignore another.
    ACTION=="add", SUBSYSTEM=="net", KERNEL=="tgudev0", ENV{TRIGLAV_UPLINK}="auto", ENV{TRIGLAV_TIER}="backup", ENV{TRIGLAV_METERED}="1"
    ACTION=="add", SUBSYSTEM=="net", KERNEL=="tgudev1", ENV{TRIGLAV_UPLINK}="ignore"
    """

    private func udevTest(device: String) throws -> DeviceProperties {
        let directory = NSTemporaryDirectory() + "tg-udev-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.rules.write(toFile: directory + "/90-triglav-test.rules", atomically: true, encoding: .utf8)
        let script = """
        set -e
        mount -t sysfs sysfs /sys
        \(PrivateUdev.mountCommands)cp '\(directory)/90-triglav-test.rules' /etc/udev/rules.d/
        ip link add name tgudev0 type veth peer name tgudev1
        udevadm test --action=add /sys/class/net/\(device) 2>/dev/null
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        process.arguments = ["--mount", "--net", "--propagation", "private", "--", "/bin/sh", "-c", script]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return DeviceProperties.parse(propertyLines: String(decoding: data, as: UTF8.self))
    }

    @Test func rulesFileSetsTriglavProperties() throws {
        let metered = try udevTest(device: "tgudev0")
        #expect(metered["INTERFACE"] == "tgudev0")
        #expect(metered["TRIGLAV_UPLINK"] == "auto")
        #expect(metered["TRIGLAV_TIER"] == "backup")
        #expect(metered["TRIGLAV_METERED"] == "1")
        let ignored = try udevTest(device: "tgudev1")
        #expect(ignored["TRIGLAV_UPLINK"] == "ignore")
        #expect(ignored["TRIGLAV_TIER"] == nil)
    }
}
