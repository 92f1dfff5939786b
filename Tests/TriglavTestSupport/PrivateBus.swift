import Foundation

/// A throwaway dbus-daemon for one test: own directory, own socket, `<pidfile>`, killed by `stop()`.
/// Forked, so the address is the configured socket and the pid comes from the pidfile.
public final class PrivateBus: Sendable {
    public let directory: String
    public let address: String
    public let pid: pid_t

    public enum Failure: Error, CustomStringConvertible {
        case daemonFailed(String)
        public var description: String {
            switch self { case .daemonFailed(let why): return "dbus-daemon did not start: \(why)" }
        }
    }

    /// `policy` is inserted into `<busconfig>` (default: allow everything). `type` is "session" or
    /// "system" (the latter also applies system-bus limits). The directory is created under
    /// `directoryPrefix` + a random suffix with `directoryMode`, so other users can reach the socket.
    public init(type: String = "session", policy: String = PrivateBus.permissivePolicy,
                directoryPrefix: String = FileManager.default.temporaryDirectory.path + "/tg-dbus-test-",
                directoryMode: Int = 0o700, socketName: String = "bus") throws {
        let base = directoryPrefix + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: directoryMode])
        directory = base
        let socket = "unix:path=\(base)/\(socketName)"
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>\(type)</type>
              <listen>\(socket)</listen>
              <pidfile>\(base)/pid</pidfile>
              <auth>EXTERNAL</auth>
              \(policy)
            </busconfig>
            """
        try config.write(toFile: base + "/bus.conf", atomically: true, encoding: .utf8)
        // The forked daemon keeps inherited descriptors open, so its output goes to /dev/null.
        let result = try runCommand(["dbus-daemon", "--config-file=\(base)/bus.conf", "--fork"], captureOutput: false)
        guard result.status == 0,
              let pidText = try? String(contentsOfFile: base + "/pid", encoding: .utf8),
              let pid = pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            try? FileManager.default.removeItem(atPath: base)
            throw Failure.daemonFailed("exit \(result.status) for \(socket)")
        }
        self.pid = pid
        address = socket
    }

    public func stop() {
        kill(pid, SIGKILL)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Lets anyone own any name and call anything (a session-like bus).
    public static let permissivePolicy = """
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
