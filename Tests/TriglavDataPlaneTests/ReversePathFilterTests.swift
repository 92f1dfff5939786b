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
        #expect(guardian.currentChanges.keys.sorted() == ["up1", "up2"])
        let recorded = try String(contentsOfFile: system.stateFile, encoding: .utf8)
        #expect(recorded.contains("boot boot-1\n") && recorded.contains("up1 0 2\n") && recorded.contains("up2 1 2\n"), "\(recorded)")

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
        try ReversePathFilterGuard.serialize([.init(interface: "up1", previous: 1, written: 2)], boot: "boot-1")
            .write(toFile: system.stateFile, atomically: true, encoding: .utf8)
        system.guardian().restoreLeftovers()
        #expect(try system.value("up1") == 2, "the reboot reset it; the old record must not apply")
        #expect(!FileManager.default.fileExists(atPath: system.stateFile))

        try "boot boot-2\nup1 1 2\n\u{0}garbage\nup2 7 2\nup3 1\ngone0 1 2\n".write(toFile: system.stateFile, atomically: true, encoding: .utf8)
        system.guardian().restoreLeftovers()
        #expect(try system.value("up1") == 1)
        #expect(try system.value("up2") == 2, "value 7 is no rp_filter mode: the line is ignored")
        #expect(!FileManager.default.fileExists(atPath: system.stateFile))
        let parsed = ReversePathFilterGuard.parse("boot b\nup1 1 2\n\u{0}garbage\nup2 7 2\nup3 1\n")
        #expect(parsed.boot == "b" && parsed.changes.map(\.interface) == ["up1"] && parsed.problems.count == 3)
    }

    @Test("serialize and parse are a round trip")
    func roundTrip() {
        let changes: [ReversePathFilterGuard.Change] = [.init(interface: "eth0.100", previous: 0, written: 2),
                                                        .init(interface: "wwan0", previous: 1, written: 2)]
        let parsed = ReversePathFilterGuard.parse(ReversePathFilterGuard.serialize(changes, boot: "abc"))
        #expect(parsed.boot == "abc" && parsed.changes == changes && parsed.problems.isEmpty)
    }
}
