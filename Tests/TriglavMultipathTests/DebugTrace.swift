import TriglavCore
import Foundation
import Testing
@testable import TriglavMultipath

@Suite struct DebugTrace {
    @Test func trace() throws {
        let network = try Network(links: ThroughputScenario.threeLinks.links, seed: 1)
        if let w = ProcessInfo.processInfo.environment["WATCH"].flatMap(Int.init) { network.client.watch = w; network.server.watch = w }
        network.server.logArrivals = true
        network.server.engine.debugTiming = false
        let flow = network.addFlow(1, at: 300 * Nanoseconds.millisecond)
        for step in 1...24 {
            let t = UInt64(step) * 250 * Nanoseconds.millisecond
            network.loop.run(until: t)
            var line = "t=\(t / 1_000_000)ms una=\(flow.sndUna) nxt=\(flow.sndNxt) del=\(flow.delivered(by: t)) cwnd=\(Int(flow.cwnd)) fr=\(flow.fastRetransmits) to=\(flow.timeouts) wait=\(network.server.engine.reorderWaitBound / 1000)us req=\(network.server.engine.reorderResendRequestDelay / 1000)us held=\(network.server.engine.reorderBufferedCount)"
            let r = network.server.engine.reorderStatistics
            line += " skip=\(r.skippedSequences) late=\(r.deliveredLate) dup=\(r.duplicates) nack=\(r.resendRequests) resent=\(network.client.resendsPerformed) qdrop=\(network.uplinkIDs.map { network.forward[$0]!.droppedQueueFull })"
            for s in network.client.engine.allStatistics() {
                line += " | \(s.id) \(s.state) srtt=\(s.smoothedRTT / 1000) min=\(s.minimumRTT / 1000) cap=\(s.capacityBitsPerSecond / 1000)k loss=\(String(format: "%.1f", s.lossPercent ?? -1)) tx=\(s.txPackets)"
            }
            print(line)
        }
        // Reordering depth per uplink: how long after some later sequence each packet arrived.
        let log = network.server.arrivalLog.filter { !$0.isResend && $0.time > 2_000_000_000 }
        var firstArrival: [UInt32: UInt64] = [:]
        for entry in log where firstArrival[entry.sequence] == nil { firstArrival[entry.sequence] = entry.time }
        var buckets: [UplinkID: [Int]] = [:]
        for entry in log {
            var earliestLater = UInt64.max
            for d in 1...60 { if let t = firstArrival[entry.sequence &+ UInt32(d)] { earliestLater = min(earliestLater, t) } }
            let late = entry.time > earliestLater ? Int((entry.time - earliestLater) / 1_000_000) : 0
            buckets[entry.uplink, default: []].append(late)
        }
        for (id, values) in buckets.sorted(by: { $0.key < $1.key }) {
            let sorted = values.sorted()
            print("reorder depth \(id): n=\(sorted.count) p50=\(sorted[sorted.count/2])ms p90=\(sorted[sorted.count*9/10])ms p99=\(sorted[sorted.count*99/100])ms max=\(sorted.last!)ms")
        }
        print(network.server.engine.reorderStatistics, "unscheduled", network.client.unscheduled)
        for entry in flow.congestionLog { print("tcp", entry) }
        for entry in network.client.stateLog { print("client", entry) }
        for entry in network.server.stateLog { print("server", entry) }
    }
}
