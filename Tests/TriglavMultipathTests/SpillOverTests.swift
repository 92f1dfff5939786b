import Testing
import TriglavCore
@testable import TriglavMultipath

/// Spill-over in the simulator, with the capacity estimates the probes and feedback really produce (not the 10 Mbit/s
/// initial guess): secondaries and metered uplinks carry data only while the load exceeds what the better level
/// carries, and leave again when it falls (docs/MULTIPATH.md, "Tiers").
@Suite struct SpillOverTests {
    static let ms = Nanoseconds.millisecond
    let primaryA = UplinkID(1), primaryB = UplinkID(2), secondary = UplinkID(3), meteredPrimary = UplinkID(4)
    let meteredSecondary = UplinkID(5)

    /// Two unmetered primaries of 20 Mbit/s (40 together, twice the initial guess), an unmetered secondary and a metered
    /// primary (level 1), and a metered secondary (level 2); the level-1 and 2 uplinks are the fastest by delay, so
    /// only the tiers keep them out. `paced`: the pacing deployment with late binding; otherwise immediate send.
    func network(paced: Bool, seed: UInt64 = 51) throws -> Network {
        let configuration = Network.engineConfiguration(paced: paced)
        let network = try Network(links: [LinkSpec(rateMbit: 20, delayMs: 20),
                                          LinkSpec(rateMbit: 20, delayMs: 30),
                                          LinkSpec(rateMbit: 20, delayMs: 5, policy: UplinkPolicy(tier: .secondary)),
                                          LinkSpec(rateMbit: 20, delayMs: 5, policy: UplinkPolicy(isMetered: true)),
                                          LinkSpec(rateMbit: 20, delayMs: 5,
                                                   policy: UplinkPolicy(tier: .secondary, isMetered: true))],
                                  seed: seed, configuration: configuration)
        if paced {
            network.client.ingressDropsKeepSequence = false
            network.client.bypassReorderForAcks = true
            network.server.bypassReorderForAcks = true
        }
        network.client.logSends = true
        return network
    }

    /// Data frames (originals and resends) sent on `uplink` in [start, end).
    func sent(_ network: Network, on uplink: UplinkID, from start: UInt64 = 0, to end: UInt64 = .max) -> Int {
        network.client.dataSentLog.filter { $0.uplink == uplink && $0.time >= start && $0.time < end }.count
    }

    /// A constant-rate stream of `mbit` Mbit/s (1000-byte packets) from `start` for `seconds`.
    func stream(_ network: Network, flow: Int, mbit: Double, from start: UInt64, seconds: Double) {
        let interval = UInt64(8_000.0 / mbit * 1_000)  // ns per 1000-byte packet
        network.addConstantStream(flow, packets: Int(seconds * 1e9) / Int(interval), every: interval, from: start)
    }

    /// 25 Mbit/s: above the initial guess for the two primaries (2 × 10 Mbit/s, so 85 % is 17) but well within what
    /// they carry (40). Nothing goes on the secondary or the metered uplinks, and the stream arrives whole.
    @Test(arguments: [false, true])
    func aLoadThePrimariesCarryStaysOffSecondaryAndMeteredUplinks(paced: Bool) throws {
        let network = try network(paced: paced)
        stream(network, flow: 100, mbit: 25, from: 300 * Self.ms, seconds: 4)
        network.loop.run(until: 5 * Nanoseconds.second)
        for uplink in [secondary, meteredPrimary, meteredSecondary] {
            #expect(sent(network, on: uplink) == 0, "\(uplink) carried \(sent(network, on: uplink)) data frames")
        }
        let delivered = network.streamDelivered[100]?.count ?? 0
        let expected = Int(4e9) / Int(UInt64(8_000.0 / 25 * 1_000))
        #expect(delivered >= expected * 99 / 100, "delivered \(delivered) of \(expected)")
    }

    /// A bulk TCP flow fills whatever it is given: it needs more than the primaries, so it spills onto the secondary
    /// and the metered primary (level 1), and then onto the metered secondary (level 2) — a flow that fills the links
    /// is what "needed" means for metered uplinks.
    @Test(arguments: [false, true])
    func aBulkFlowSpillsOntoSecondaryAndMeteredUplinks(paced: Bool) throws {
        let network = try network(paced: paced)
        network.addFlow(1, at: 300 * Self.ms)
        network.loop.run(until: 5 * Nanoseconds.second)
        for uplink in [secondary, meteredPrimary, meteredSecondary] {
            #expect(sent(network, on: uplink) > 100, "\(uplink) carried \(sent(network, on: uplink)) data frames")
        }
    }

    /// 15 Mbit/s, then 25 Mbit/s more for 2 s (40: beyond 85 % of the primaries' 40, within levels 0–1), then 15
    /// again. During the surge the level-1 uplinks join and the metered secondary (level 2) stays out; once the load
    /// is back below 60 % of the primaries' capacity they leave again (hysteresis), and the streams arrive whole.
    @Test(arguments: [false, true])
    func level1UplinksJoinWhileTheLoadNeedsThemAndLeaveAfterwards(paced: Bool) throws {
        let network = try network(paced: paced)
        let surgeStart = 2 * Nanoseconds.second, surgeEnd = 4 * Nanoseconds.second
        stream(network, flow: 100, mbit: 15, from: 300 * Self.ms, seconds: 6)
        stream(network, flow: 101, mbit: 25, from: surgeStart, seconds: 2)
        network.loop.run(until: 7 * Nanoseconds.second)
        #expect(sent(network, on: secondary, to: surgeStart) == 0 && sent(network, on: meteredPrimary, to: surgeStart) == 0)
        let during = sent(network, on: secondary, from: surgeStart, to: surgeEnd)
            + sent(network, on: meteredPrimary, from: surgeStart, to: surgeEnd)
        #expect(during > 1_000, "level 1 carried \(during) frames during the surge")
        #expect(sent(network, on: meteredSecondary) == 0, "the metered secondary carried data")
        let after = sent(network, on: secondary, from: surgeEnd + Nanoseconds.second)
            + sent(network, on: meteredPrimary, from: surgeEnd + Nanoseconds.second)
        #expect(after == 0, "level 1 still carried \(after) frames a second after the surge")
        #expect((network.streamDelivered[101]?.count ?? 0) >= Int(2e9) / Int(UInt64(8_000.0 / 25 * 1_000)) * 95 / 100)
    }
}
