import Foundation
import Logging
import Synchronization
import Testing
import TriglavCore
@testable import TriglavNetlink

private func link(_ index: Int32, _ name: String, up: Bool = true, carrier: Bool = true) -> LinkInfo {
    LinkInfo(index: index, name: name, flags: up ? [.up, .lowerUp] : [], hasCarrier: carrier)
}

private func route(_ destination: String, dev: Int32, table: UInt32 = RouteTable.main, metric: UInt32 = 0) throws -> Route {
    Route(destination: try IPPrefix(destination), outputInterface: dev, table: table, metric: metric)
}

@Suite("NetlinkStateTracker")
struct NetlinkStateTrackerTests {
    @Test func repeatedNotificationsYieldNothing() throws {
        var tracker = NetlinkStateTracker()
        #expect(tracker.apply(.newLink(link(2, "eth0"))) == [.linkAdded(link(2, "eth0"))])
        #expect(tracker.apply(.newLink(link(2, "eth0"))).isEmpty)
        let address = AddressInfo(interfaceIndex: 2, local: try IPPrefix("192.168.1.5/24"))
        #expect(tracker.apply(.newAddress(address)) == [.addressAdded(address)])
        #expect(tracker.apply(.newAddress(address)).isEmpty)
        let r = try route("192.168.1.0/24", dev: 2)
        #expect(tracker.apply(.newRoute(r)) == [.routeAdded(r)])
        #expect(tracker.apply(.newRoute(r)).isEmpty)
        #expect(tracker.apply(.deleteRoute(r)) == [.routeRemoved(r)])
        #expect(tracker.apply(.deleteRoute(r)).isEmpty)
    }

    @Test func linkChangesAndRemovalPurgeDependents() throws {
        var tracker = NetlinkStateTracker()
        _ = tracker.apply(.newLink(link(3, "wlan0")))
        let address = AddressInfo(interfaceIndex: 3, local: try IPPrefix("10.0.0.7/8"))
        _ = tracker.apply(.newAddress(address))
        let connected = try route("10.0.0.0/8", dev: 3)
        let other = try route("0.0.0.0/0", dev: 9)
        _ = tracker.apply(.newRoute(connected))
        _ = tracker.apply(.newRoute(other))
        // Carrier loss alone keeps routes (the kernel keeps them, flagged linkdown).
        #expect(tracker.apply(.newLink(link(3, "wlan0", carrier: false))) == [.linkChanged(link(3, "wlan0", carrier: false))])
        // Administrative down: the kernel flushes routes silently, so the tracker does.
        let down = link(3, "wlan0", up: false, carrier: false)
        #expect(tracker.apply(.newLink(down)) == [.routeRemoved(connected), .linkChanged(down)])
        _ = tracker.apply(.newRoute(connected))
        #expect(tracker.apply(.deleteLink(down)) == [.addressRemoved(address), .routeRemoved(connected), .linkRemoved(down)])
        #expect(tracker.links.isEmpty && tracker.addresses.isEmpty)
        #expect(tracker.routes.count == 1)
        #expect(tracker.apply(.deleteLink(down)).isEmpty)
    }

    @Test func replacedRouteIsRemovedThenAdded() throws {
        var tracker = NetlinkStateTracker()
        let first = try route("0.0.0.0/0", dev: 2, metric: 100)
        var second = first
        second.gateway = IPAddress("192.168.1.1")
        _ = tracker.apply(.newRoute(first))
        #expect(tracker.apply(.newRoute(second)) == [.routeRemoved(first), .routeAdded(second)])
        #expect(tracker.apply(.newRoute(try route("1.2.3.0/24", dev: 2, table: RouteTable.local))).isEmpty)
    }

    @Test func resynchronizationDeliversOnlyDifferences() throws {
        var tracker = NetlinkStateTracker()
        let kept = link(1, "lo"), gone = link(2, "eth0"), changed = link(3, "wlan0")
        let goneAddress = AddressInfo(interfaceIndex: 2, local: try IPPrefix("192.168.1.5/24"))
        _ = tracker.resynchronize(links: [kept, gone, changed], addresses: [goneAddress], routes: [])
        let changedNow = link(3, "wlan1")
        let added = link(4, "wwan0")
        let events = tracker.resynchronize(links: [kept, changedNow, added], addresses: [], routes: [])
        #expect(events == [.addressRemoved(goneAddress), .linkRemoved(gone), .linkChanged(changedNow), .linkAdded(added)])
        #expect(tracker.links.count == 3)
    }
}

@Suite("NetlinkMonitor in a namespace", .enabled(if: runningAsRoot, "needs root to create network namespaces"))
struct NetlinkMonitorTests {
    @Test func dumpsThenFollowsLinksAddressesAndRoutes() throws {
        let ns = try TestNamespace()
        defer { ns.close() }
        try ns.ip(["link", "add", "name", "pre0", "type", "veth", "peer", "name", "pre1"])
        let recorder = EventRecorder()
        let monitor = NetlinkMonitor(networkNamespacePath: ns.path)
        try monitor.start { recorder.record($0) }
        defer { monitor.stop() }

        #expect(recorder.wait { $0.contains(.synchronized) })
        let initial = recorder.events
        let synchronizedAt = try #require(initial.firstIndex(of: .synchronized))
        let dumpedNames = initial[..<synchronizedAt].compactMap { if case .linkAdded(let l) = $0 { l.name } else { nil } }
        #expect(Set(dumpedNames) == ["lo", "pre0", "pre1"])
        // links come before addresses in the dump
        let firstAddress = initial.firstIndex { if case .addressAdded = $0 { true } else { false } }
        let lastLink = initial.lastIndex { if case .linkAdded = $0 { true } else { false } }
        if let firstAddress, let lastLink { #expect(lastLink < firstAddress) }

        try ns.ip(["link", "add", "name", "tgm0", "type", "veth", "peer", "name", "tgm1"])
        try ns.ip(["addr", "add", "10.66.0.1/24", "dev", "tgm0"])
        try ns.ip(["link", "set", "tgm1", "up"])
        try ns.ip(["link", "set", "tgm0", "up"])
        let prefix = try IPPrefix("10.66.0.0/24")
        #expect(recorder.wait { events in
            events.contains { if case .routeAdded(let r) = $0 { r.destination == prefix } else { false } }
                && events.contains { if case .linkChanged(let l) = $0 { l.name == "tgm0" && l.isOperational } else { false } }
        }, "\(recorder.events)")
        let index = try #require(recorder.events.lazy.compactMap { if case .linkAdded(let l) = $0, l.name == "tgm0" { l.index } else { nil } }.first)
        #expect(recorder.events.contains(.addressAdded(AddressInfo(interfaceIndex: index, local: try IPPrefix("10.66.0.1/24"),
                                                                  scope: Scope.universe, flags: .permanent))))

        try ns.ip(["link", "del", "tgm0"])
        #expect(recorder.wait { events in
            events.contains { if case .linkRemoved(let l) = $0 { l.name == "tgm0" } else { false } }
                && events.contains { if case .routeRemoved(let r) = $0 { r.destination == prefix } else { false } }
                && events.contains { if case .addressRemoved(let a) = $0 { a.interfaceIndex == index } else { false } }
        }, "\(recorder.events)")

        monitor.stop()
        let countAfterStop = recorder.events.count
        try ns.ip(["link", "add", "name", "late0", "type", "veth", "peer", "name", "late1"])
        Thread.sleep(forTimeInterval: 0.1)
        #expect(recorder.events.count == countAfterStop)
        #expect(throws: NetlinkError.self) { try monitor.start { _ in } }
    }

    @Test func asyncStreamDeliversEvents() async throws {
        let ns = try TestNamespace()
        defer { ns.close() }
        let monitor = NetlinkMonitor(networkNamespacePath: ns.path)
        let stream = try monitor.events()
        var sawLoopback = false
        for await event in stream {
            if case .linkAdded(let link) = event, link.isLoopback { sawLoopback = true }
            if event == .synchronized { break }
        }
        #expect(sawLoopback)
        // stop() ends the sequence instead of leaving the consumer waiting forever
        let consumer = Task { for await _ in stream {}; return true }
        monitor.stop()
        #expect(await consumer.value)
    }

    @Test func resynchronizesAfterLosingNotifications() throws {
        let ns = try TestNamespace()
        defer { ns.close() }
        let recorder = EventRecorder()
        let gate = DispatchSemaphore(value: 0)
        let blocked = Atomic<Bool>(false)
        // A tiny receive buffer and a handler that stalls: the kernel must drop notifications.
        let monitor = NetlinkMonitor(networkNamespacePath: ns.path, receiveBufferBytes: 2048, logger: Logger(label: "test"))
        try monitor.start { event in
            recorder.record(event)
            if event == .synchronized, !blocked.exchange(true, ordering: .sequentiallyConsistent) { gate.wait() }
        }
        defer { monitor.stop() }
        #expect(recorder.wait { $0.contains(.synchronized) })
        let names = (0..<40).map { "tgo\($0)" }
        try ns.ip(["-batch", "-"] , input: names.map { "link add name \($0) type veth peer name \($0)p" }.joined(separator: "\n") + "\n")
        gate.signal()
        #expect(recorder.wait(timeout: .seconds(5)) { $0.filter { $0 == .synchronized }.count >= 2 },
                "no resynchronization after overflow")
        // Every link is known exactly once in the end, however the events were split.
        #expect(recorder.wait(timeout: .seconds(5)) { events in
            let added = events.compactMap { if case .linkAdded(let l) = $0 { l.name } else { nil } }
            return names.allSatisfy { added.contains($0) }
        })
        let added = recorder.events.compactMap { if case .linkAdded(let l) = $0 { l.name } else { nil } }
        #expect(added.count == Set(added).count, "duplicate linkAdded: \(added)")
    }

    @Test func startFailsForMissingNamespace() {
        let monitor = NetlinkMonitor(networkNamespacePath: "/run/netns/tg-netlink-missing")
        #expect(throws: NetlinkError.self) { try monitor.start { _ in } }
    }
}
