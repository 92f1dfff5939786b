import Foundation
import TriglavTestSupport

/// A throwaway dbus-daemon for one test: own directory, own socket, `<pidfile>`, killed by `stop()`.
final class PrivateBus: Sendable {
    let directory: String
    let address: String
    let pid: pid_t

    enum Failure: Error, CustomStringConvertible {
        case daemonFailed(String)
        var description: String {
            switch self { case .daemonFailed(let why): return "dbus-daemon did not start: \(why)" }
        }
    }

    /// `policy` is inserted into `<busconfig>`; the default allows everything (a session-like bus).
    init(policy: String = PrivateBus.permissivePolicy) throws {
        let base = FileManager.default.temporaryDirectory.path + "/tg-dbus-test-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        directory = base
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>session</type>
              <listen>unix:path=\(base)/bus</listen>
              <pidfile>\(base)/pid</pidfile>
              <auth>EXTERNAL</auth>
              \(policy)
            </busconfig>
            """
        try config.write(toFile: base + "/bus.conf", atomically: true, encoding: .utf8)
        // The forked daemon keeps inherited descriptors open, so its output goes to /dev/null:
        // the address is the configured socket and the pid comes from the pidfile.
        let result = try runCommand(["dbus-daemon", "--config-file=\(base)/bus.conf", "--fork"], captureOutput: false)
        let printed = "unix:path=\(base)/bus"
        guard result.status == 0,
              let pidText = try? String(contentsOfFile: base + "/pid", encoding: .utf8),
              let pid = pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            try? FileManager.default.removeItem(atPath: base)
            throw Failure.daemonFailed("exit \(result.status) for \(printed)")
        }
        self.pid = pid
        address = printed
    }

    func stop() {
        kill(pid, SIGKILL)
        try? FileManager.default.removeItem(atPath: directory)
    }

    static let permissivePolicy = """
        <policy context="default">
          <allow user="*"/>
          <allow own="*"/>
          <allow send_type="method_call"/>
          <allow send_type="signal"/>
          <allow send_requested_reply="true" send_type="method_return"/>
          <allow send_requested_reply="true" send_type="error"/>
          <allow receive_type="method_call"/>
          <allow receive_type="method_return"/>
          <allow receive_type="error"/>
          <allow receive_type="signal"/>
          <allow send_destination="org.freedesktop.DBus"/>
        </policy>
        """
}
