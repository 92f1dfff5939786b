#if canImport(Glibc)
import Glibc
#endif

/// The data plane's diagnostic switches in the environment (`TRIGLAV_PACING`, `TRIGLAV_RESEND_REQUESTS`,
/// `TRIGLAV_TUN_OFFLOADS`, …): each is on unless its variable is `0`.
enum EnvironmentSwitch {
    static func isOn(_ name: String) -> Bool {
        guard let value = getenv(name) else { return true }
        return String(cString: value) != "0"
    }
}
