#if canImport(Glibc)
import Glibc
#endif
import TriglavControlAPI
import TriglavDBus

/// Who may change the daemon's state through the bus, checked by the adaptor on every method call and
/// property write. The bus policy (dbus/org.triglav.conf) already refuses other callers; this is the
/// second line for a missing or edited policy file, and it gives a named `org.triglav.Error.AccessDenied`.
public enum CallerAuthorization: Sendable, Equatable {
    /// uid 0, or a user whose group list (as the user database says, like dbus-daemon) contains `group`.
    case rootOrGroup(String)
    /// Everyone (test fixtures on private buses).
    case anyone

    /// The policy the installed bus configuration also enforces.
    public static let standard = CallerAuthorization.rootOrGroup(TriglavBus.controlGroup)

    /// Asks the bus for the caller's uid and checks it. Throws `accessDenied` with what to do.
    func authorize(sender: String, on connection: BusConnection) async throws(ControlError) {
        guard case .rootOrGroup(let group) = self else { return }
        let uid: UInt32
        do {
            let reply = try await connection.call(destination: DBusStandardInterface.bus, path: DBusObjectPath(checked: "/org/freedesktop/DBus"),
                                                  interface: DBusStandardInterface.bus, member: "GetConnectionUnixUser",
                                                  arguments: [.string(sender)], timeout: .seconds(5))
            guard case .uint32(let value)? = reply.first else { throw ControlError.failed("the bus did not tell who \(sender) is") }
            uid = value
        } catch let error as ControlError {
            throw error
        } catch {
            throw .failed("cannot identify caller \(sender): \(error)")
        }
        if uid == 0 || Self.user(uid, isMemberOf: group) { return }
        throw .accessDenied("only root and members of group \(group) may control triglavd; add the user to group \(group)")
    }

    /// True when the user database lists `uid` (primary or supplementary) in `group`.
    static func user(_ uid: UInt32, isMemberOf group: String) -> Bool {
        var passwordEntry = passwd()
        var passwordResult: UnsafeMutablePointer<passwd>?
        var passwordBuffer = [CChar](repeating: 0, count: 16_384)
        guard getpwuid_r(uid_t(uid), &passwordEntry, &passwordBuffer, passwordBuffer.count, &passwordResult) == 0,
              passwordResult != nil, let name = passwordEntry.pw_name else { return false }
        var groupEntry = Glibc.group()
        var groupResult: UnsafeMutablePointer<Glibc.group>?
        var groupBuffer = [CChar](repeating: 0, count: 65_536)
        guard getgrnam_r(group, &groupEntry, &groupBuffer, groupBuffer.count, &groupResult) == 0, groupResult != nil else {
            return false
        }
        let wanted = groupEntry.gr_gid
        if passwordEntry.pw_gid == wanted { return true }
        var count: Int32 = 256
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, passwordEntry.pw_gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(name, passwordEntry.pw_gid, &groups, &count) >= 0 else { return false }
        }
        return groups.prefix(Int(count)).contains(wanted)
    }
}
