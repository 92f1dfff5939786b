import Foundation
import Logging
import Testing
@testable import TriglavDataPlane
import TriglavCore

/// `ReversePathFilterGuard` against a fake /proc/sys (a temporary directory): which uplinks it loosens, what it
/// records, and what it restores after a clean stop and after a crash. The namespace test
/// IntegrationTests.DataPlaneReversePathFilterTests checks the same against a kernel.
@Suite("Reverse-path filter: strict uplinks loosened and restored")
struct ReversePathFilterTests {
    /// A fake sysctl tree with `all` and the given interfaces' rp_filter, and a boot ID; removed by `remove()`.
    struct FakeSystem {
        let root = NSTemporaryDirectory() + "tg-rpf-\(UInt32.random(in: 0..<UInt32.max))"
        var tree: SysctlTree { SysctlTree(root: root + "/sys") }
        var stateDirectory: String { root + "/state" }

        init(all: Int, interfaces: [String: Int], boot: String = "boot-1") throws {
            try set("all", all)
            for (name, value) in interfaces { try set(name, value) }
            try FileManager.default.createDirectory(atPath: root + "/sys/kernel/random", withIntermediateDirectories: true)
            try boot.write(toFile: root + "/sys/kernel/random/boot_id", atomically: false, encoding: .utf8)
        }

        func set(_ interface: String, _ value: Int) throws {
            let directory = root + "/sys/net/ipv4/conf/\(interface)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try "\(value)\n".write(toFile: directory + "/rp_filter", atomically: false, encoding: .utf8)
        }

        func value(_ interface: String) throws -> Int? {
            Int(try tree.read("net/ipv4/conf/\(interface)/rp_filter"))
        }

        func guardian() -> ReversePathFilterGuard {
            ReversePathFilterGuard(stateDirectory: stateDirectory, sysctl: tree, logger: Logger(label: "test"))
        }

        var stateFile: String { stateDirectory + "/" + ReversePathFilterGuard.stateFileName }

        func remove() { try? FileManager.default.removeItem(atPath: root) }
    }

    static func name(_ text: String) throws -> InterfaceName { try InterfaceName(text) }

    @Test("strict uplinks (own value or conf/all) become loose, others stay; a clean stop restores and removes the record")
    func loosensOnlyStrictAndRestores() throws {
        let system = try FakeSystem(all: 1, interfaces: ["up1": 0, "up2": 1, "up3": 2, "up4": 1])
        defer { system.remove() }
        let guardian = system.guardian()
        for interface in ["up1", "up2", "up3"] { guardian.loosen(try Self.name(interface)) }
        #expect(try system.value("up1") == 2)  // effective max(1, 0) = 1: strict through conf/all
        #expect(try system.value("up2") == 2)
        #expect(try system.value("up3") == 2)
        #expect(try system.value("up4") == 1, "an interface that is no uplink stays strict")
        #expect(try system.value("all") == 1, "conf/all is never touched")
        #expect(guardian.loosenedInterfaces == ["up1", "up2"])
        let recorded = try String(contentsOfFile: system.stateFile, encoding: .utf8)
        #expect(recorded.contains("boot boot-1\n") && recorded.contains("net/ipv4/conf/up1/rp_filter 0 2\n")
                && recorded.contains("net/ipv4/conf/up2/rp_filter 1 2\n"), "\(recorded)")

        guardian.restore(try Self.name("up2"))
        #expect(try system.value("up2") == 1)
        #expect(!(try String(contentsOfFile: system.stateFile, encoding: .utf8)).contains("up2"))
        guardian.restoreAll()
        #expect(try system.value("up1") == 0)
        #expect(try system.value("up3") == 2)
        #expect(!FileManager.default.fileExists(atPath: system.stateFile), "nothing changed any more: no record")
    }

    @Test("not strict anywhere: nothing changes and nothing is recorded")
    func leavesNonStrictAlone() throws {
        let system = try FakeSystem(all: 0, interfaces: ["up1": 0, "up2": 2])
        defer { system.remove() }
        let guardian = system.guardian()
        guardian.loosen(try Self.name("up1"))
        guardian.loosen(try Self.name("up2"))
        #expect(try system.value("up1") == 0 && system.value("up2") == 2)
        #expect(!FileManager.default.fileExists(atPath: system.stateFile))
    }

    @Test("after a crash the next start restores what the record says, unless someone changed the value since")
    func restoresLeftoversOfACrash() throws {
        let system = try FakeSystem(all: 0, interfaces: ["up1": 1, "up2": 1])
        defer { system.remove() }
        let crashed = system.guardian()
        crashed.loosen(try Self.name("up1"))
        crashed.loosen(try Self.name("up2"))
        // The process dies here (no restore); the admin sets up2 to 0 by hand meanwhile.
        try system.set("up2", 0)
        system.guardian().restoreLeftovers()
        #expect(try system.value("up1") == 1)
        #expect(try system.value("up2") == 0, "a value someone else set since is theirs")
        #expect(!FileManager.default.fileExists(atPath: system.stateFile))
    }

    @Test("a record from an earlier boot restores nothing; a garbled one restores its good lines; both are removed")
    func staleOrGarbledRecords() throws {
        let system = try FakeSystem(all: 0, interfaces: ["up1": 2, "up2": 2], boot: "boot-2")
        defer { system.remove() }
        try FileManager.default.createDirectory(atPath: system.stateDirectory, withIntermediateDirectories: true)
        try SysctlJournal.serialize([.init(key: "net/ipv4/conf/up1/rp_filter", previous: "1", written: "2")], boot: "boot-1",
                                    subject: "test").write(toFile: system.stateFile, atomically: true, encoding: .utf8)
        system.guardian().restoreLeftovers()
        #expect(try system.value("up1") == 2, "the reboot reset it; the old record must not apply")
        #expect(!FileManager.default.fileExists(atPath: system.stateFile))

        try """
            boot boot-2
            net/ipv4/conf/up1/rp_filter 1 2
            \u{0}garbage
            ../../etc/passwd 1 2
            net/ipv4/conf/up2/rp_filter 1
            net/ipv4/conf/gone0/rp_filter 1 2

            """.write(toFile: system.stateFile, atomically: true, encoding: .utf8)
        system.guardian().restoreLeftovers()
        #expect(try system.value("up1") == 1)
        #expect(try system.value("up2") == 2, "a line without the written value is ignored")
        #expect(!FileManager.default.fileExists(atPath: system.stateFile))
    }
}

/// `SysctlJournal`'s state file format.
@Suite struct SysctlJournalFormatTests {
    @Test("serialize and parse are a round trip")
    func roundTrip() {
        let changes: [SysctlJournal.Change] = [.init(key: "net/ipv4/conf/eth0.100/rp_filter", previous: "0", written: "2"),
                                               .init(key: "net/ipv4/ip_forward", previous: "0", written: "1")]
        let parsed = SysctlJournal.parse(SysctlJournal.serialize(changes, boot: "abc", subject: "test"))
        #expect(parsed.boot == "abc" && parsed.changes == changes && parsed.problems.isEmpty)
    }

    @Test("keys are relative sysctl paths and values single words; everything else is a reported problem")
    func parseRejectsWhatIsNoSysctl() {
        let parsed = SysctlJournal.parse("""
            boot b
            net/ipv6/conf/eth0/accept_ra 1 2
            \u{0}garbage
            /proc/sys/net/ipv4/ip_forward 0 1
            net/../../etc/shadow 0 1
            ip_forward 0 1
            net/ipv4/ip_forward 0 1 extra
            net/ipv4/ip_forward 0 $(reboot)
            """)
        #expect(parsed.boot == "b")
        #expect(parsed.changes.map(\.key) == ["net/ipv6/conf/eth0/accept_ra"])
        #expect(parsed.problems.count == 6, "\(parsed.problems)")
    }
}
