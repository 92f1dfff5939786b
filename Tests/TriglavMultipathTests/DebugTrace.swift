import Testing
@testable import TriglavMultipath

@Suite struct DebugTrace {
    @Test func trace() throws {
        var configuration = MultipathConfiguration()
        configuration.degradedLossPercent = 99
        configuration.recoveredLossPercent = 98
        let network = try Network(links: ThroughputScenario.threeLinks.links, seed: 1, configuration: configuration)
        let flow = network.addFlow(1, at: 300 * Nanoseconds.millisecond)
        for step in 1...24 {
            let t = UInt64(step) * 250 * Nanoseconds.millisecond
            network.loop.run(until: t)
            var line = "t=\(t / 1_000_000)ms del=\(flow.delivered(by: t)) cwnd=\(Int(flow.cwnd)) fr=\(flow.fastRetransmits) to=\(flow.timeouts) wait=\(network.server.engine.reorderWaitBound / 1000)us"
            let r = network.server.engine.reorderStatistics
            line += " skip=\(r.skippedSequences) late=\(r.deliveredLate) dup=\(r.duplicates) nack=\(r.resendRequests) resent=\(network.client.resendsPerformed) qdrop=\(network.uplinkIDs.map { network.forward[$0]!.droppedQueueFull })"
            for s in network.client.engine.allStatistics() {
                line += " | \(s.id) \(s.state) srtt=\(s.smoothedRTT / 1000) min=\(s.minimumRTT / 1000) cap=\(s.capacityBitsPerSecond / 1000)k loss=\(s.lossPercent ?? -1) tx=\(s.txPackets)"
            }
            print(line)
        }
        print(network.server.engine.reorderStatistics, "unscheduled", network.client.unscheduled)
        for entry in flow.congestionLog { print("tcp", entry) }
        for entry in network.client.stateLog { print("client", entry) }
        for entry in network.server.stateLog { print("server", entry) }
    }
}
