import Foundation
import TriglavCore
import TriglavDBus

/// `--fake-resolved LOG`: owns org.freedesktop.resolve1 and answers the four per-link calls triglavd makes
/// (`ResolvedLinkDNS`), appending one line per call to LOG, e.g. `SetLinkDNS 7 10.77.0.1 fd77::1`,
/// `SetLinkDomains 7 corp.example ~.`, `SetLinkDefaultRoute 7 true`, `RevertLink 7`. Arguments are checked as
/// resolved checks them (address family against length, a positive index); a bad call gets
/// org.freedesktop.DBus.Error.InvalidArgs and the line `REFUSED …`.
func runFakeResolved(address: String, log: String) -> Never {
    guard FileManager.default.createFile(atPath: log, contents: nil) else { fail("cannot create \(log)") }
    let connection: BusConnection
    do { connection = try BusConnection(address: address) } catch { fail("triglav-bus-fixture: \(error)") }
    @Sendable func record(_ line: String) {
        guard let handle = FileHandle(forWritingAtPath: log) else { return }
        handle.seekToEndOfFile()
        handle.write(Data((line + "\n").utf8))
        try? handle.close()
    }
    func method(_ name: String, _ arguments: [DBusArgument], _ describe: @escaping @Sendable ([DBusValue]) -> String?) -> DBusMethod {
        DBusMethod(name, in: arguments) { call in
            guard case .int32(let index) = call.arguments.first, index > 0, let text = describe(call.arguments) else {
                record("REFUSED \(name)")
                return call.replyError(name: "org.freedesktop.DBus.Error.InvalidArgs", message: "bad arguments to \(name)")
            }
            record("\(name) \(index)\(text.isEmpty ? "" : " " + text)")
            call.reply()
        }
    }
    let manager = DBusInterface(name: "org.freedesktop.resolve1.Manager", methods: [
        method("SetLinkDNS", [DBusArgument("ifindex", "i"), DBusArgument("addresses", "a(iay)")]) { arguments in
            var words: [String] = []
            for server in arguments.last?.arrayValue ?? [] {
                guard case .structure(let fields) = server, fields.count == 2, case .int32(let family) = fields[0],
                      let bytes = fields[1].arrayValue?.compactMap({ value -> UInt8? in if case .byte(let b) = value { b } else { nil } }),
                      (family == 2 && bytes.count == 4) || (family == 10 && bytes.count == 16),
                      let address = IPAddress(bytes: bytes) else { return nil }
                words.append(address.description)
            }
            return words.joined(separator: " ")
        },
        method("SetLinkDomains", [DBusArgument("ifindex", "i"), DBusArgument("domains", "a(sb)")]) { arguments in
            var words: [String] = []
            for domain in arguments.last?.arrayValue ?? [] {
                guard case .structure(let fields) = domain, fields.count == 2, let name = fields[0].stringValue,
                      let routingOnly = fields[1].boolValue else { return nil }
                words.append((routingOnly ? "~" : "") + name)
            }
            return words.joined(separator: " ")
        },
        method("SetLinkDefaultRoute", [DBusArgument("ifindex", "i"), DBusArgument("enable", "b")]) { arguments in
            arguments.last?.boolValue.map { "\($0)" }
        },
        method("RevertLink", [DBusArgument("ifindex", "i")]) { _ in "" },
    ])
    connection.onDisconnect { exit(0) }
    Task {
        do {
            _ = try connection.export(DBusObjectPath(checked: "/org/freedesktop/resolve1"), interfaces: [manager])
            try await connection.requestName("org.freedesktop.resolve1")
            print("READY \(connection.uniqueName)")
            fflush(nil)
        } catch {
            fail("triglav-bus-fixture: \(error)")
        }
    }
    dispatchMain()
}
