import Foundation
import Testing
import TriglavTestSupport
import TriglavCore
import TriglavMultipath
import TriglavNetlink
import TriglavSystemd
@testable import TriglavDaemon

private let packagedUdevRulesPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("udev/90-triglav.rules").path

/// Feeds the repository's real `udev/90-triglav.rules` through udev's rule engine (`udevadm test`) and
/// the resulting properties through discovery. Nothing on the system changes: each run happens under
/// `unshare --mount --net` with a fresh sysfs and tmpfs over /etc/udev/rules.d and /run/udev, so the
/// devices, the rules copy and udev's database entries vanish with the process.
@Suite("Discovery with the packaged udev rules",
       .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/udevadm")
                    && FileManager.default.fileExists(atPath: packagedUdevRulesPath),
                "needs root, udevadm and udev/90-triglav.rules"))
struct DiscoveryUdevRulesTests {
    /// `udevadm test` output for each of `devices` (veth pairs created in the private namespace).
    private func udevProperties(devices: [String]) throws -> [String: [String: String]] {
        var script = """
        set -e
        mount -t sysfs sysfs /sys
        \(PrivateUdev.mountCommands)cp '\(packagedUdevRulesPath)' /etc/udev/rules.d/

        """
        for (index, device) in devices.enumerated() {
            script += "ip link add name \(device) type veth peer name tgpeer\(index)\n"
        }
        for device in devices {
            script += "echo '@@@ \(device)'\nudevadm test --action=add /sys/class/net/\(device) 2>/dev/null\n"
        }
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
        var result: [String: [String: String]] = [:]
        for section in String(decoding: data, as: UTF8.self).components(separatedBy: "@@@ ").dropFirst() {
            let name = String(section.prefix { !$0.isNewline })
            result[name] = DeviceProperties.parse(propertyLines: String(section.drop { !$0.isNewline })).values
        }
        return result
    }

    @Test func packagedRulesDriveTierMeteredAndIgnore() throws {
        let names = ["wwtg0", "vethtg0", "entg0", "wltg0", "xtg0"]
        let properties = try udevProperties(devices: names)
        #expect(properties["wwtg0"]?["TRIGLAV_METERED"] == "1")
        #expect(properties["vethtg0"]?["TRIGLAV_UPLINK"] == "ignore")
        #expect(properties["entg0"]?["TRIGLAV_TIER"] == "primary")
        #expect(properties["xtg0"]?["TRIGLAV_UPLINK"] == nil)

        struct Recorded: InterfaceEnvironment {
            let properties: [String: [String: String]]
            func udevProperties(name: String, index: Int32) -> [String: String] { properties[name] ?? [:] }
            func isWireless(name: String, index: Int32) -> Bool { false }
        }
        // Allow veths so that only udev decides (the test devices are all veths to the kernel).
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(virtualInterfaces: ["*"]),
                                        environment: Recorded(properties: properties))
        for (offset, name) in names.enumerated() {
            let index = Int32(10 + offset)
            _ = discovery.handle(.linkAdded(LinkInfo(index: index, name: name, flags: [.up, .lowerUp], hasCarrier: true,
                                                     kind: "veth")))
            _ = discovery.handle(.addressAdded(AddressInfo(interfaceIndex: index, local: try IPPrefix("10.\(offset).0.2/24"))))
            _ = discovery.handle(.routeAdded(Route(destination: try IPPrefix("10.\(offset).0.0/24"), outputInterface: index)))
        }
        let byName = Dictionary(uniqueKeysWithValues: discovery.uplinks.values.map { ($0.name, $0) })
        #expect(byName["wwtg0"]?.isMetered == true)
        #expect(byName["wwtg0"]?.kind == .wwan)
        #expect(byName["vethtg0"] == nil)
        #expect(byName["entg0"]?.tier == .primary)
        #expect(byName["entg0"]?.isMetered == false)
        #expect(byName["wltg0"]?.tier == .primary)
        #expect(byName["xtg0"] != nil)
    }
}
