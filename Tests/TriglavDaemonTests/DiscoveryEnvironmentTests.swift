import Foundation
import Testing
import TriglavNetlink
@testable import TriglavDaemon

@Suite("System interface environment: whose udev database")
struct DiscoveryEnvironmentTests {
    typealias Identity = SystemInterfaceEnvironment.NamespaceIdentity

    @Test func trustsTheDatabaseOnlyInPid1sNamespace() {
        let initial = Identity(device: 4, inode: 4026531840)
        let other = Identity(device: 4, inode: 4026532999)
        for sysctl in [true, false] {  // the inodes decide when both are known
            #expect(SystemInterfaceEnvironment.trustsDeviceDatabase(own: initial, initial: initial, seesInitialOnlySysctl: sysctl))
            #expect(!SystemInterfaceEnvironment.trustsDeviceDatabase(own: other, initial: initial, seesInitialOnlySysctl: sysctl))
            // Same inode on another nsfs device is another namespace.
            #expect(!SystemInterfaceEnvironment.trustsDeviceDatabase(
                own: Identity(device: 5, inode: 4026531840), initial: initial, seesInitialOnlySysctl: sysctl))
        }
    }

    @Test func unreadablePid1NamespaceFallsBackToTheInitialOnlySysctl() {
        // CAP_NET_ADMIN-only daemons (the systemd units) can't stat /proc/1/ns/net, nor can root in some sandboxes.
        #expect(SystemInterfaceEnvironment.trustsDeviceDatabase(own: Identity(device: 4, inode: 1), initial: nil, seesInitialOnlySysctl: true))
        #expect(!SystemInterfaceEnvironment.trustsDeviceDatabase(own: Identity(device: 4, inode: 1), initial: nil, seesInitialOnlySysctl: false))
        #expect(!SystemInterfaceEnvironment.trustsDeviceDatabase(own: nil, initial: nil, seesInitialOnlySysctl: false))
    }

    @Test func untrustedEnvironmentReadsOnlyTheKernelsUevent() {
        let environment = SystemInterfaceEnvironment(trustsDeviceDatabase: false)
        let loopback = environment.udevProperties(name: "lo", index: 1)
        #expect(loopback["INTERFACE"] == "lo")
        #expect(loopback["IFINDEX"] == "1")
        #expect(loopback.keys.allSatisfy { ["INTERFACE", "IFINDEX", "DEVTYPE"].contains($0) }, "\(loopback)")
        #expect(environment.udevProperties(name: "lo", index: 2).isEmpty)  // index mismatch: not this device
        #expect(environment.udevProperties(name: "../lo", index: 1).isEmpty)
    }

    private struct Seen: Sendable { let trusts: Bool; let loopback: [String: String] }

    @Test(.enabled(if: getuid() == 0, "needs root to create a network namespace"))
    func anotherNamespaceDistrustsTheHostDatabase() throws {
        #expect(SystemInterfaceEnvironment().trustsDeviceDatabase)
        let name = "tg-netlink-env-\(UInt32.random(in: 0...UInt32.max))"
        try ip(["netns", "add", name])
        defer { try? ip(["netns", "delete", name]) }
        // Like `ip netns exec` for the whole daemon, but for one thread (without remounting /sys).
        let seen = try NetworkNamespace.run(in: NetworkNamespace.path(named: name)) { () throws(NetlinkError) -> Seen in
            let environment = SystemInterfaceEnvironment()
            return Seen(trusts: environment.trustsDeviceDatabase, loopback: environment.udevProperties(name: "lo", index: 1))
        }
        #expect(!seen.trusts)
        // The host's /run/udev/data/n1 (e.g. TRIGLAV_UPLINK=ignore for its lo or a veth) must not leak in.
        #expect(seen.loopback["TRIGLAV_UPLINK"] == nil && seen.loopback["USEC_INITIALIZED"] == nil, "\(seen.loopback)")
        #expect(seen.loopback["INTERFACE"] == "lo")
    }

    private func ip(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "ip \(arguments)")
    }
}
