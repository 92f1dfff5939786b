import Foundation
import TriglavCore
@testable import TriglavMultipath

/// The throughput scenarios of the issue, shared by the tests and the benchmark printout.
enum ThroughputScenario: String, CaseIterable {
    /// 30/20/10 Mbit/s, 20/40/10 ms one-way, 0.5% loss each way.
    case threeLinks
    /// Two 10 Mbit/s links, 1 ms and 50 ms one-way.
    case twoLinksSkewed

    var links: [LinkSpec] {
        switch self {
        case .threeLinks:
            return [LinkSpec(rateMbit: 30, delayMs: 20, loss: 0.005),
                    LinkSpec(rateMbit: 20, delayMs: 40, loss: 0.005),
                    LinkSpec(rateMbit: 10, delayMs: 10, loss: 0.005)]
        case .twoLinksSkewed:
            return [LinkSpec(rateMbit: 10, delayMs: 1), LinkSpec(rateMbit: 10, delayMs: 50)]
        }
    }

    struct Result {
        var goodput: Double
        var summedRate: Double
        var ratio: Double { goodput / summedRate }
        var fastRetransmits: Int
        var timeouts: Int
        var reorderSkipped: UInt64
        var resends: Int
        /// Packets the receiving tunnel end got twice (a resend whose original arrived too, or the other way round).
        var duplicates: UInt64
    }

    /// Runs one bulk TCP flow for `seconds` after the tunnel has been up 300 ms (probes have measured
    /// the uplinks) and measures goodput after a 1 s warm-up (slow start).
    /// `rateScale` scales every link rate (delays and loss stay): the tests run at reduced rates so a
    /// Reno sender reaches steady state within seconds of simulated time; the ratios are what is asserted.
    /// `paced`: the engine and both tunnel ends as deployed with a pacing data plane (`Network.pacedDeployment`:
    /// sender-side pacing queues, 120 ms ingress target, refused packets unnumbered, pure ACKs unordered);
    /// false: the engine handing every packet to its uplink at once (the figures before pacing, BENCHMARKS.md).
    /// `lateBinding` (paced only): one shared queue, uplinks bound at dequeue (`TunnelNode.lateBinding`).
    /// `tcp`: the TCP sender model (default: the run's, `TRIGLAV_MULTIPATH_TCP`, else Reno).
    func run(seed: UInt64, roundRobin: Bool = false, seconds: UInt64 = 6, rateScale: Double = 1,
             requestsResends: Bool = true, acksBypassReorder: Bool = false, paced: Bool = true,
             lateBinding: Bool = TunnelNode.defaultLateBinding,
             tcp: TCPSenderModel = Network.defaultTCPSenderModel) throws -> Result {
        let scaled = links.map { spec -> LinkSpec in
            var spec = spec
            spec.rateMbit *= rateScale
            return spec
        }
        var configuration = Network.engineConfiguration(paced: paced, lateBinding: lateBinding)
        configuration.requestsResends = requestsResends
        // Measurement knobs (docs/BENCHMARKS.md, "Holds, modes and goodput"): receiver delay equalisation and the
        // maximum hold, as the daemon configures them (100 ms and 50 ms); the tests run without either.
        let env = ProcessInfo.processInfo.environment
        if let equalize = env["TRIGLAV_MULTIPATH_EQUALIZE_MS"].flatMap(UInt64.init) {
            configuration.maxEqualizationDelay = equalize * Nanoseconds.millisecond
        }
        if let hold = env["TRIGLAV_MULTIPATH_MAX_HOLD_MS"].flatMap(UInt64.init) {
            configuration.maxReorderHold = hold * Nanoseconds.millisecond
        }
        let network = try Network(links: scaled, seed: seed, configuration: configuration)
        network.tcpSenderModel = tcp
        network.client.lateBinding = paced && lateBinding
        network.server.lateBinding = paced && lateBinding
        network.client.roundRobin = roundRobin
        network.client.bypassReorderForAcks = acksBypassReorder || paced
        network.server.bypassReorderForAcks = acksBypassReorder || paced
        if paced { network.client.ingressDropsKeepSequence = false }
        let startAt = 300 * Nanoseconds.millisecond
        let flow = network.addFlow(1, at: startAt)
        let end = startAt + seconds * Nanoseconds.second
        network.loop.run(until: end)
        let goodput = network.goodput(from: startAt + Nanoseconds.second, to: end)
        return Result(goodput: goodput, summedRate: Double(network.summedRate), fastRetransmits: flow.fastRetransmits,
                      timeouts: flow.timeouts, reorderSkipped: network.server.engine.reorderStatistics.skippedSequences,
                      resends: network.client.resendsPerformed,
                      duplicates: network.server.engine.reorderStatistics.duplicates)
    }
}
