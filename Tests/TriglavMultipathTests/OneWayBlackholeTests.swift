import Testing
import TriglavCore
@testable import TriglavMultipath

/// A blackhole in one direction only: the client's packets on its best uplink vanish while the server's (the TCP ACKs
/// of an upload) still arrive on it.
@Suite struct OneWayBlackholeTests {
    static let ms = Nanoseconds.millisecond

    /// The arrivals still coming on the uplink may postpone its detection (`UplinkTracker.waitingForArrivals`, for
    /// feedback delayed behind a download), but not past the 300 ms under traffic. `paced`: the simulator's
    /// default deployment (late binding); otherwise the engine's defaults.
    @Test(arguments: [UInt64(11), 12, 13], [false, true])
    func anOutboundBlackholeUnderTrafficIsDetectedWithinThreeHundredMilliseconds(seed: UInt64, paced: Bool) throws {
        let network = try Network(links: [LinkSpec(rateMbit: 15, delayMs: 20, loss: 0.005),
                                          LinkSpec(rateMbit: 10, delayMs: 40, loss: 0.005),
                                          LinkSpec(rateMbit: 5, delayMs: 10, loss: 0.005)],
                                  seed: seed, configuration: Network.engineConfiguration(paced: paced))
        if paced {
            for node in [network.client!, network.server!] {
                node.ingressDropsKeepSequence = false
                node.bypassReorderForAcks = true
                node.lateBinding = true
            }
        }
        let start = 300 * Self.ms
        let flow = network.addFlow(1, segments: 6000, at: start)
        let blackholeAt = start + 1500 * Self.ms
        network.forward[UplinkID(1)]?.outages.append((blackholeAt, .max))
        network.loop.run(until: start + 20 * Nanoseconds.second)
        let down = try #require(network.client.stateLog.first { $0.uplink == UplinkID(1) && $0.to == .down && $0.time >= blackholeAt })
        #expect(down.time - blackholeAt <= 300 * Self.ms, "detected after \((down.time - blackholeAt) / Self.ms) ms")
        #expect(flow.completedAt != nil, "transfer did not complete")
    }
}
