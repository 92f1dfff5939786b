import Testing
import TriglavCore
@testable import TriglavMultipath

/// `flow` mode: a flow keeps its uplink while that uplink is usable. Uplinks that come back or are added take
/// new flows only, so no existing flow moves (or sees reordering) because of them.
@Suite struct FlowPinningTests {
    static let ms = Nanoseconds.millisecond

    @Test func aReturningUplinkTakesNoExistingFlowBackAndNoFlowIsReordered() throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .flow
        let network = try Network(links: [LinkSpec(rateMbit: 10, delayMs: 5, jitterMs: 2),
                                          LinkSpec(rateMbit: 10, delayMs: 25, jitterMs: 4),
                                          LinkSpec(rateMbit: 10, delayMs: 45, jitterMs: 2)],
                                  seed: 32, configuration: configuration)
        network.client.logSends = true
        for flow in 1...12 { network.addFlow(flow, at: 300 * Self.ms + UInt64(flow) * 10 * Self.ms) }
        let removeAt = 2 * Nanoseconds.second, readdAt = 4 * Nanoseconds.second, end = 8 * Nanoseconds.second
        let flaky = UplinkID(2)
        network.blackhole(flaky, from: removeAt, to: readdAt)
        network.loop.at(removeAt) { [unowned network] in try? network.client.engine.removeUplink(flaky, now: network.loop.now) }
        network.loop.at(readdAt) { [unowned network] in
            try? network.client.engine.addUplink(flaky, now: network.loop.now)
            network.client.pump()
        }
        // New flows once the uplink is back: it takes its share of those.
        for flow in 13...24 { network.addFlow(flow, at: readdAt + Nanoseconds.second + UInt64(flow) * 10 * Self.ms) }
        network.loop.run(until: end)

        #expect(network.reorderedAtEgress.values.reduce(0, +) == 0, "reordered: \(network.reorderedAtEgress)")
        // At arrival too (resends included): only the flows moved off the removed uplink, around the removal.
        let movedFlows = Set(network.client.dataSentLog.filter { $0.time < removeAt && $0.uplink == flaky }.map(\.flow))
        let reordered = network.reorderedAtArrivalBesidesRepairs.filter {
            !(movedFlows.contains($0.flow) && $0.time >= removeAt && $0.time <= removeAt + Nanoseconds.second)
        }
        #expect(reordered.isEmpty, "reordered at arrival: \(reordered.prefix(10))")
        var before: [Int: Set<UplinkID>] = [:], between: [Int: Set<UplinkID>] = [:], after: [Int: Set<UplinkID>] = [:]
        for entry in network.client.dataSentLog where !entry.isResend {
            if entry.time < removeAt { before[entry.flow, default: []].insert(entry.uplink) }
            else if entry.time < readdAt { between[entry.flow, default: []].insert(entry.uplink) }
            else { after[entry.flow, default: []].insert(entry.uplink) }
        }
        var movedOff = 0
        for flow in 1...12 {
            let old = try #require(before[flow]), outage = try #require(between[flow]), later = try #require(after[flow])
            #expect(old.count == 1 && outage.count == 1, "flow \(flow): \(old) then \(outage)")
            if old == [flaky] { movedOff += 1; #expect(!outage.contains(flaky)) } else { #expect(outage == old) }
            // The uplink came back: nothing moves, neither back onto it nor elsewhere.
            #expect(later == outage, "flow \(flow) moved from \(outage) to \(later) when \(flaky) came back")
        }
        #expect(movedOff > 0, "some flow lived on the uplink that went away (12 flows over 3 uplinks)")
        let newFlowsOnIt = (13...24).filter { after[$0] == [flaky] }.count
        #expect(newFlowsOnIt > 0, "the returned uplink takes new flows")
        for flow in 13...24 { #expect(after[flow]?.count == 1, "new flow \(flow) used \(after[flow] ?? [])") }
    }

    /// An uplink that dies without the system noticing (a blackhole): the probes declare it down, and only its flows
    /// move, each to one other uplink. Order is checked where the scheduler makes it, at the receiver's arrival
    /// (before the reorder buffer, which would restore it anyway), resends included: no flow ever sees reordering
    /// there except the dead uplink's flows during their failover.
    @Test(arguments: [UInt64(32), 33, 34])
    func aDetectedDeathMovesOnlyItsFlowsAndNoOtherFlowIsReorderedAtArrival(seed: UInt64) throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .flow
        let network = try Network(links: [LinkSpec(rateMbit: 10, delayMs: 5, jitterMs: 2),
                                          LinkSpec(rateMbit: 10, delayMs: 25, jitterMs: 4),
                                          LinkSpec(rateMbit: 10, delayMs: 45, jitterMs: 2)],
                                  seed: seed, configuration: configuration)
        network.client.logSends = true
        for flow in 1...12 { network.addFlow(flow, segments: 600, at: 300 * Self.ms + UInt64(flow) * 10 * Self.ms) }
        let dieAt = 2 * Nanoseconds.second, end = 8 * Nanoseconds.second
        let dying = UplinkID(2)
        network.blackhole(dying, from: dieAt)
        network.loop.run(until: end)

        let downAt = try #require(network.client.stateLog.first { $0.uplink == dying && $0.to == .down }?.time)
        #expect(downAt > dieAt && downAt <= dieAt + 300 * Self.ms, "down \((downAt - dieAt) / Self.ms) ms after the blackhole")
        var before: [Int: Set<UplinkID>] = [:], after: [Int: Set<UplinkID>] = [:]
        for entry in network.client.dataSentLog where !entry.isResend {
            if entry.time < dieAt { before[entry.flow, default: []].insert(entry.uplink) }
            else if entry.time > downAt { after[entry.flow, default: []].insert(entry.uplink) }
        }
        var moved: Set<Int> = []
        for flow in 1...12 {
            let old = try #require(before[flow])
            #expect(old.count == 1, "flow \(flow) used \(old) before the death")
            guard let later = after[flow] else { continue }
            #expect(later.count == 1 && !later.contains(dying), "flow \(flow) used \(later) after the death")
            if old == [dying] { moved.insert(flow) } else { #expect(later == old, "flow \(flow) moved from \(old) to \(later)") }
        }
        #expect(!moved.isEmpty, "some flow lived on the uplink that died (12 flows over 3 uplinks)")
        // Reordering at arrival, resends included (only a repair of a lost packet may come in late): none, except for
        // the moved flows from the death until their failover settled (resends of what the dead uplink held).
        let outsideFailover = network.reorderedAtArrivalBesidesRepairs.filter {
            !(moved.contains($0.flow) && $0.time >= dieAt && $0.time <= downAt + Nanoseconds.second)
        }
        #expect(outsideFailover.isEmpty, "reordered at arrival: \(outsideFailover.prefix(10))")
        #expect(network.reorderedAtEgress.values.reduce(0, +) == 0, "reordered at egress: \(network.reorderedAtEgress)")
        for flow in network.flows.values { #expect(flow.completedAt != nil) }
    }

    @Test func theTableIsBoundedAndForgetsTheLeastRecentlyUsedFlowOfASet() {
        var table = FlowTable(capacity: 64)
        let first = UplinkID(1), second = UplinkID(2)
        for key in UInt64(0)..<10_000 { table.pin(FlowKey(rawValue: key), to: key % 2 == 0 ? first : second) }
        #expect(table.count == 64)
        // The most recent 8 keys of any set are remembered; a key used again survives newer ones of its set.
        #expect(table.uplink(for: FlowKey(rawValue: 9_999)) == second)
        #expect(table.uplink(for: FlowKey(rawValue: 9_998)) == first)
        #expect(table.uplink(for: FlowKey(rawValue: 0)) == nil)
        let kept = FlowKey(rawValue: 9_998)
        for key in UInt64(20_000)..<30_000 {
            table.pin(FlowKey(rawValue: key), to: second)
            _ = table.uplink(for: kept)
        }
        #expect(table.uplink(for: kept) == first)
        #expect(table.count == 64)
    }
}
