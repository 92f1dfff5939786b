import Foundation
import Testing
import TriglavTestSupport

private let packagedUdevRules = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("udev/90-triglav.rules").path

/// udev finishing with an interface after it became an uplink, and rules changing under a running daemon
/// (root only). The client namespace gets its own udevd: triglavd runs in a private mount namespace with
/// tmpfs over /run/udev and /etc/udev/rules.d (the packaged rules plus a local one the test rewrites), and
/// udevd is started in that same mount and network namespace. Nothing outside the lab changes.
@Suite("triglavd and udev events", .serialized,
       .enabled(if: DaemonLab.isRoot && FileManager.default.isExecutableFile(atPath: "/lib/systemd/systemd-udevd"),
                "needs root and systemd-udevd"))
struct DaemonUdevTests {
    @Test("TRIGLAV_TIER/METERED set by udev after the uplink appeared, then changed, then ignore, reach the bus")
    func lateAndChangedUdevPropertiesAreApplied() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try lab.startBus()
        try lab.write("client-udev.toml", """
            private_key = "\(lab.directory)/client.key"
            log_level = "debug"
            [tunnel]
            interface = "tgc0"
            [uplinks]
            include = ["tgu*"]
            """)
        try FileManager.default.createDirectory(atPath: lab.directory + "/rules", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: packagedUdevRules, toPath: lab.directory + "/rules/90-triglav.rules")
        try lab.write("rules/91-triglav-test.rules", #"SUBSYSTEM=="net", KERNEL=="tgu0", ENV{TRIGLAV_TIER}="backup", ENV{TRIGLAV_METERED}="1""#)
        try lab.exec(lab.client, "ip link add tgu0 type veth peer name tgp0")
        try lab.exec(lab.client, "ip address add 10.203.0.2/24 dev tgu0")
        try lab.exec(lab.client, "ip link set tgp0 up")
        try lab.exec(lab.client, "ip link set tgu0 up")

        let notify = try NotifyListener(path: "\(lab.directory)/client.notify")
        defer { notify.close() }
        let setup = "set -e\n" + PrivateUdev.mountCommands
            + "cp \(lab.directory)/rules/* /etc/udev/rules.d/\nexec \(DaemonLab.triglavd) --config \(lab.directory)/client-udev.toml"
            + " --profile-dir \(lab.directory)/profiles"
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify.path
        environment["DBUS_SYSTEM_BUS_ADDRESS"] = try #require(lab.busAddress)
        environment["TRIGLAV_UDEV_DATABASE"] = "1"
        let daemon = try lab.spawn(namespace: lab.client, "unshare --mount --propagation private -- /bin/sh -c '\(setup)'",
                                   logName: "client", environment: environment)
        try notify.waitFor("READY=1", timeout: 15)
        let uplink = "org.triglav /org/triglav/uplink/1 org.triglav.Uplink1"
        #expect(try lab.busctl("get-property \(uplink) Interface") == "s \"tgu0\"\n")
        // No udevd yet, so no database entry: the defaults.
        #expect(try lab.busctl("get-property \(uplink) Tier") == "s \"primary\"\n")
        #expect(try lab.busctl("get-property \(uplink) Metered") == "b false\n")

        // udev initialises the device only now (as when udevd is slow at boot): no netlink event follows.
        let inside = "nsenter -t \(daemon.processIdentifier) -m -n"
        // In the foreground, tracked by the lab (killed at tearDown): a daemonizing udevd upsets Process.waitUntilExit.
        _ = try lab.spawn(namespace: lab.client, "\(inside) /lib/systemd/systemd-udevd", logName: "udevd")
        try waitForFile(lab, daemon: daemon.processIdentifier, "/run/udev/control")
        try lab.sh("\(inside) udevadm trigger --action=add /sys/class/net/tgu0 && \(inside) udevadm settle -t 10")
        #expect(try waitFor(lab, "get-property \(uplink) Tier", "s \"backup\"\n"), "client log:\n\(lab.log("client"))")
        #expect(try waitFor(lab, "get-property \(uplink) Metered", "b true\n"))

        // A changed rule and a change event (udevadm trigger), as an administrator would do.
        try lab.sh("\(inside) /bin/sh -c 'echo SUBSYSTEM==\\\"net\\\", KERNEL==\\\"tgu0\\\", ENV{TRIGLAV_TIER}=\\\"secondary\\\""
                   + " > /etc/udev/rules.d/91-triglav-test.rules'")
        try lab.sh("\(inside) udevadm control --reload && \(inside) udevadm trigger --action=change /sys/class/net/tgu0"
                   + " && \(inside) udevadm settle -t 10")
        #expect(try waitFor(lab, "get-property \(uplink) Tier", "s \"secondary\"\n"), "client log:\n\(lab.log("client"))")
        #expect(try waitFor(lab, "get-property \(uplink) Metered", "b false\n"))

        // TRIGLAV_UPLINK=ignore takes the uplink away.
        try lab.sh("\(inside) /bin/sh -c 'echo SUBSYSTEM==\\\"net\\\", KERNEL==\\\"tgu0\\\", ENV{TRIGLAV_UPLINK}=\\\"ignore\\\""
                   + " > /etc/udev/rules.d/91-triglav-test.rules'")
        try lab.sh("\(inside) udevadm control --reload && \(inside) udevadm trigger --action=change /sys/class/net/tgu0"
                   + " && \(inside) udevadm settle -t 10")
        #expect(try waitFor(lab, "get-property org.triglav /org/triglav org.triglav.Manager1 Uplinks", "ao 0\n"),
                "client log:\n\(lab.log("client"))")

        _ = try? lab.sh("\(inside) udevadm control --exit")
        lab.terminate(daemon)
        #expect(!daemon.isRunning, "did not exit within 10 s of SIGTERM")
        if !daemon.isRunning { #expect(daemon.terminationStatus == 0, "client log:\n\(lab.log("client"))") }
    }

    /// Waits (bounded) until `path` exists in the daemon's mount namespace.
    private func waitForFile(_ lab: DaemonLab, daemon: pid_t, _ path: String) throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if (try? lab.sh("test -e /proc/\(daemon)/root\(path)")) != nil { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        Issue.record("\(path) never appeared:\n\(lab.log("udevd"))")
    }

    private func waitFor(_ lab: DaemonLab, _ query: String, _ expected: String) throws -> Bool {
        let deadline = Date().addingTimeInterval(15)
        var last = ""
        while Date() < deadline {
            last = try lab.busctl(query)
            if last == expected { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        Issue.record("\(query): last answer \(last)")
        return false
    }
}
