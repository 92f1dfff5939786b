import Foundation
import Testing
import TriglavTestSupport

/// Paths of the package and of the executables built next to the test bundle.
enum BusTestPaths {
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let buildDirectory: String = {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: executable)
        // .build/<triple>/debug/TriglavPackageTests.xctest
        url.deleteLastPathComponent()
        return url.path
    }()

    static var fixture: String { buildDirectory + "/triglav-bus-fixture" }
    static var cli: String { buildDirectory + "/triglav" }
    static var contractXML: String { repositoryRoot + "/dbus/org.triglav.xml" }
    static var policy: String { repositoryRoot + "/dbus/org.triglav.conf" }
}

/// A private bus configured like the system bus (deny method calls by default, EXTERNAL auth,
/// root may monitor) that includes dbus/org.triglav.conf. Started with `--fork` and a `<pidfile>`;
/// `stop()` kills it and removes its directory.
final class SystemLikeBus: Sendable {
    private let bus: PrivateBus
    var directory: String { bus.directory }
    var address: String { bus.address }
    var pid: pid_t { bus.pid }

    /// With `triglavPolicy` false, dbus/org.triglav.conf is replaced by a policy that lets anyone call
    /// org.triglav (to test the daemon's own caller check). `extraPolicy` goes last (e.g. `resolvedPolicy`).
    init(triglavPolicy: Bool = true, extraPolicy: String = "") throws {
        // Under /tmp with mode 0755 so the unprivileged users of the access tests reach the socket.
        bus = try PrivateBus(type: "system", policy: """
            <policy context="default">
              <allow user="*"/>
              <deny own="*"/>
              <deny send_type="method_call"/>
              <allow send_type="signal"/>
              <allow send_requested_reply="true" send_type="method_return"/>
              <allow send_requested_reply="true" send_type="error"/>
              <allow receive_type="method_call"/>
              <allow receive_type="method_return"/>
              <allow receive_type="error"/>
              <allow receive_type="signal"/>
              <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
              <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
              <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
            </policy>
            <policy user="root">
              <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
            </policy>
            \(triglavPolicy ? "<include>\(BusTestPaths.policy)</include>" : SystemLikeBus.openPolicy)
            \(extraPolicy)
            """, directoryPrefix: "/tmp/tg-dbus-sys-", directoryMode: 0o755, socketName: "system_bus_socket")
    }

    func stop() { bus.stop() }

    /// What systemd-resolved's own bus policy allows, for root as its owner (the fixture's `--fake-resolved`).
    static let resolvedPolicy = """
        <policy user="root"><allow own="org.freedesktop.resolve1"/></policy>
        <policy context="default"><allow send_destination="org.freedesktop.resolve1"/></policy>
        """

    static let openPolicy = """
        <policy user="root"><allow own="org.triglav"/></policy>
        <policy context="default"><allow send_destination="org.triglav"/></policy>
        """
}

/// The bus plus the fixture daemon (fake controller) owning org.triglav on it.
final class BusAPIEnvironment: Sendable {
    let bus: SystemLikeBus
    let fixture: BackgroundProcess

    init(clients: Int = 1, tickMilliseconds: Int = 0, triglavPolicy: Bool = true, fixtureArguments: [String] = []) async throws {
        bus = try SystemLikeBus(triglavPolicy: triglavPolicy)
        do {
            fixture = try BackgroundProcess([BusTestPaths.fixture, "--address", bus.address, "--clients", String(clients),
                                             "--tick-ms", String(tickMilliseconds)] + fixtureArguments,
                                            outputPrefix: bus.directory + "/fixture")
        } catch {
            bus.stop()
            throw error
        }
        guard await fixture.waitForOutput("READY") else {
            let why = fixture.errorOutput
            fixture.stop()
            bus.stop()
            throw SubprocessError.spawnFailed(["triglav-bus-fixture (not ready): \(why)"], -1)
        }
    }

    var address: String { bus.address }

    func tearDown() {
        fixture.stop()
        bus.stop()
    }

    /// Real busctl against the private bus. With `as user`, runs it as that user via runuser.
    /// Debug logging makes busctl print the D-Bus error name of a failed call ("error-name=…").
    func busctl(_ arguments: [String], as user: String? = nil) throws -> BusctlResult {
        var argv = ["busctl", "--address=\(address)"] + arguments
        if let user { argv = ["runuser", "-u", user, "--", "env", "SYSTEMD_LOG_LEVEL=debug"] + argv }
        let result = try runCommand(argv, environment: ["SYSTEMD_LOG_LEVEL": "debug"])
        return BusctlResult(result)
    }

    /// The triglav CLI against the private bus, optionally as another user.
    func cli(_ arguments: [String], as user: String? = nil) throws -> CommandResult {
        var argv = [BusTestPaths.cli, "--bus-address", address] + arguments
        if let user { argv = ["runuser", "-u", user, "--"] + argv }
        return try runCommand(argv, environment: ["NO_COLOR": "1"])
    }
}

struct BusctlResult: CustomStringConvertible {
    let status: Int32
    let stdout: String
    let stderr: String
    /// The D-Bus error name of a failed call, from busctl's debug log.
    let errorName: String?

    init(_ result: CommandResult) {
        status = result.status
        stdout = result.stdout
        stderr = result.stderr
        // Every message busctl logs has an error-name field ("n/a" for non-errors); keep the real one.
        errorName = result.stderr.components(separatedBy: "error-name=").dropFirst()
            .map { String($0.prefix { !$0.isWhitespace }) }
            .last { $0 != "n/a" }
    }

    /// busctl's "Call failed: …" / "Failed to …: …" line.
    var failureLine: String {
        stderr.split(separator: "\n").last { $0.hasPrefix("Call failed:") || $0.hasPrefix("Failed to") }.map(String.init) ?? ""
    }
    var description: String { "exit \(status) error \(errorName ?? "-")\nstdout: \(stdout)\nstderr(last): \(failureLine)" }
}

/// Two throwaway users: one in group `triglav`, one outside it. Created idempotently; `remove()`
/// deletes the users, and the group only if this helper created it.
struct TestUsers {
    static let member = "tg-dbus-member"
    static let outsider = "tg-dbus-outsider"
    static let group = "triglav"
    let createdGroup: Bool

    static func create() throws -> TestUsers {
        let groupExists = try runCommand(["getent", "group", group]).status == 0
        if !groupExists {
            let made = try runCommand(["groupadd", "--system", group])
            guard made.status == 0 || made.status == 9 else { throw SubprocessError.spawnFailed(["groupadd", made.stderr], made.status) }
        }
        for user in [member, outsider] where try runCommand(["id", "-u", user]).status != 0 {
            let made = try runCommand(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user])
            guard made.status == 0 || made.status == 9 else { throw SubprocessError.spawnFailed(["useradd", made.stderr], made.status) }
        }
        _ = try runCommand(["usermod", "-aG", group, member])
        _ = try runCommand(["gpasswd", "-d", outsider, group])
        return TestUsers(createdGroup: !groupExists)
    }

    func remove() {
        _ = try? runCommand(["userdel", TestUsers.member])
        _ = try? runCommand(["userdel", TestUsers.outsider])
        if createdGroup { _ = try? runCommand(["groupdel", TestUsers.group]) }
    }
}

/// One member of an interface, as introspection describes it.
struct ContractMember: Hashable, CustomStringConvertible {
    let interface: String
    let name: String
    let kind: String
    /// Input signature (methods, signals) or type (properties); "-" when empty.
    let signature: String
    /// Output signature of methods; "-" otherwise.
    let result: String
    let writable: Bool

    var description: String { "\(interface).\(name) \(kind) \(signature) \(result)\(writable ? " writable" : "")" }
}

enum Contract {
    /// Members of every interface in an introspection XML document whose name starts with `prefix`.
    static func members(fromXML xml: String, prefix: String = "org.triglav.") -> Set<ContractMember> {
        var members: Set<ContractMember> = []
        let interfacePattern = try! NSRegularExpression(pattern: #"<interface name="([^"]+)">(.*?)</interface>"#,
                                                         options: [.dotMatchesLineSeparators])
        let memberPattern = try! NSRegularExpression(
            pattern: #"<(method|signal) name="([^"]+)"\s*(/>|>(.*?)</\1>)|<property name="([^"]+)" type="([^"]+)" access="([^"]+)"\s*/>"#,
            options: [.dotMatchesLineSeparators])
        let argPattern = try! NSRegularExpression(pattern: #"<arg(?: name="[^"]*")? type="([^"]+)"(?: direction="(in|out)")?"#)
        let text = xml as NSString
        for match in interfacePattern.matches(in: xml, range: NSRange(location: 0, length: text.length)) {
            let interface = text.substring(with: match.range(at: 1))
            guard interface.hasPrefix(prefix) else { continue }
            let body = text.substring(with: match.range(at: 2))
            let bodyText = body as NSString
            for member in memberPattern.matches(in: body, range: NSRange(location: 0, length: bodyText.length)) {
                if member.range(at: 5).location != NSNotFound {
                    members.insert(ContractMember(interface: interface, name: bodyText.substring(with: member.range(at: 5)),
                                                  kind: "property", signature: bodyText.substring(with: member.range(at: 6)),
                                                  result: "-", writable: bodyText.substring(with: member.range(at: 7)) == "readwrite"))
                    continue
                }
                let kind = bodyText.substring(with: member.range(at: 1))
                let name = bodyText.substring(with: member.range(at: 2))
                var inputs = "", outputs = ""
                if member.range(at: 4).location != NSNotFound {
                    let args = bodyText.substring(with: member.range(at: 4))
                    let argsText = args as NSString
                    for arg in argPattern.matches(in: args, range: NSRange(location: 0, length: argsText.length)) {
                        let type = argsText.substring(with: arg.range(at: 1))
                        let direction = arg.range(at: 2).location != NSNotFound ? argsText.substring(with: arg.range(at: 2)) : "in"
                        if direction == "out" && kind == "method" { outputs += type } else { inputs += type }
                    }
                }
                members.insert(ContractMember(interface: interface, name: name, kind: kind, signature: inputs.isEmpty ? "-" : inputs,
                                              result: kind == "method" ? (outputs.isEmpty ? "-" : outputs) : "-", writable: false))
            }
        }
        return members
    }

    /// Members from `busctl introspect` table output (NAME TYPE SIGNATURE RESULT/VALUE FLAGS).
    static func members(fromBusctlTable table: String, prefix: String = "org.triglav.") -> Set<ContractMember> {
        var members: Set<ContractMember> = []
        var current = ""
        for line in table.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard fields.count >= 4 else { continue }
            if fields[1] == "interface" {
                current = fields[0]
                continue
            }
            guard current.hasPrefix(prefix), fields[0].hasPrefix(".") else { continue }
            let name = String(fields[0].dropFirst())
            switch fields[1] {
            case "method":
                members.insert(ContractMember(interface: current, name: name, kind: "method", signature: fields[2], result: fields[3], writable: false))
            case "signal":
                members.insert(ContractMember(interface: current, name: name, kind: "signal", signature: fields[2], result: "-", writable: false))
            case "property":
                members.insert(ContractMember(interface: current, name: name, kind: "property", signature: fields[2], result: "-",
                                              writable: fields.last == "writable"))
            default:
                break
            }
        }
        return members
    }
}

/// JSON helpers for comparing busctl --json output with the CLI's.
enum BusJSON {
    static func parse(_ text: String) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
    }

    /// busctl's {"type":…,"data":…} → plain JSON value (variants unwrapped).
    static func plain(_ typed: Any?) -> Any? {
        guard let object = typed as? [String: Any], let data = object["data"] else { return typed }
        return data
    }

    static func equal(_ a: Any?, _ b: Any?) -> Bool {
        switch (a, b) {
        case (let x as [String: Any], let y as [String: Any]):
            return x.count == y.count && x.allSatisfy { key, value in y[key] != nil && equal(value, y[key]) }
        case (let x as [Any], let y as [Any]):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (let x as NSNumber, let y as NSNumber):
            return x == y
        case (let x as String, let y as String):
            return x == y
        case (nil, nil):
            return true
        default:
            return false
        }
    }
}
