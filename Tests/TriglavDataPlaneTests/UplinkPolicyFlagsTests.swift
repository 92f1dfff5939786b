import Testing
@testable import TriglavDataPlane
import TriglavCore
import TriglavMultipath

@Suite("Uplink policy flags")
struct UplinkPolicyFlagsTests {
    static let millisecond: UInt64 = 1_000_000

    @Test("tier, metered and heartbeat class round-trip through the flags byte", arguments: [false, true])
    func roundTrip(metered: Bool) {
        for tier in [UplinkTier.primary, .secondary, .backup, .never] {
            for heartbeatClass: UInt8 in 1...15 {
                let interval = 100 * Self.millisecond << UInt64(heartbeatClass - 1)
                let flags = UplinkPolicyFlags.encode(UplinkPolicy(tier: tier, isMetered: metered), heartbeatInterval: interval)
                #expect(flags & 0x80 != 0)
                #expect(UplinkPolicyFlags.decode(flags) == UplinkPolicy(tier: tier, isMetered: metered))
                #expect(UplinkPolicyFlags.heartbeatInterval(in: flags) == interval)
            }
        }
    }

    @Test("exact bytes: bit 7 present, bits 0-1 tier, bit 2 metered, bits 3-6 heartbeat class")
    func exactBytes() {
        #expect(UplinkPolicyFlags.encode(UplinkPolicy()) == 0x80)
        #expect(UplinkPolicyFlags.encode(UplinkPolicy(tier: .backup, isMetered: true)) == 0x86)
        #expect(UplinkPolicyFlags.encode(UplinkPolicy(), heartbeatInterval: 100 * Self.millisecond) == 0x88)
        // 30 s rounds down to class 9 (25.6 s): the server never probes less often than the client.
        #expect(UplinkPolicyFlags.encode(UplinkPolicy(tier: .secondary, isMetered: true), heartbeatInterval: 30_000 * Self.millisecond) == 0x80 | 0x01 | 0x04 | (9 << 3))
    }

    @Test("intervals round down to a class; below 200 ms is class 1, beyond the largest class saturates")
    func classes() {
        #expect(UplinkPolicyFlags.heartbeatClass(of: 10 * Self.millisecond) == 1)
        #expect(UplinkPolicyFlags.heartbeatClass(of: 199 * Self.millisecond) == 1)
        #expect(UplinkPolicyFlags.heartbeatClass(of: 200 * Self.millisecond) == 2)
        #expect(UplinkPolicyFlags.heartbeatClass(of: 1_000 * Self.millisecond) == 4)  // 800 ms
        #expect(UplinkPolicyFlags.heartbeatClass(of: 60_000 * Self.millisecond) == 10)  // 51.2 s
        #expect(UplinkPolicyFlags.heartbeatClass(of: .max) == 15)
    }

    @Test("an older peer's flags (no heartbeat bits, or no policy at all) say no heartbeat")
    func olderPeers() {
        #expect(UplinkPolicyFlags.heartbeatInterval(in: 0x85) == nil)
        #expect(UplinkPolicyFlags.decode(0x85) == UplinkPolicy(tier: .secondary, isMetered: true))
        #expect(UplinkPolicyFlags.heartbeatInterval(in: 0x00) == nil)
        #expect(UplinkPolicyFlags.heartbeatInterval(in: 0x78) == nil, "heartbeat bits without the present bit")
        #expect(UplinkPolicyFlags.decode(0x00) == nil)
        // An older server reads only bits 0-2 and 7, so the heartbeat bits don't change what it sees.
        let flags = UplinkPolicyFlags.encode(UplinkPolicy(tier: .backup), heartbeatInterval: 5_000 * Self.millisecond)
        #expect(flags & 0x87 == UplinkPolicyFlags.encode(UplinkPolicy(tier: .backup)))
    }

    @Test("the server's policy for a client uplink: its tier and metered setting, and the longer of both heartbeats, per uplink")
    func serverPolicyPerUplink() {
        let own = 100 * Self.millisecond
        let metered = UplinkPolicyFlags.encode(UplinkPolicy(tier: .backup, isMetered: true), heartbeatInterval: 3_200 * Self.millisecond)
        #expect(UplinkPolicyFlags.serverPolicy(from: metered, ownHeartbeat: own)
                == UplinkPolicy(tier: .backup, isMetered: true, heartbeatInterval: 3_200 * Self.millisecond))
        // The same client's unmetered uplink announces the tunnel's 100 ms: the server keeps its own (nil).
        let wired = UplinkPolicyFlags.encode(UplinkPolicy(), heartbeatInterval: 100 * Self.millisecond)
        #expect(UplinkPolicyFlags.serverPolicy(from: wired, ownHeartbeat: own) == UplinkPolicy())
        // A server whose own heartbeat is longer keeps it; an older client (no heartbeat bits) gets the server's.
        #expect(UplinkPolicyFlags.serverPolicy(from: metered, ownHeartbeat: 5_000 * Self.millisecond)?.heartbeatInterval == nil)
        #expect(UplinkPolicyFlags.serverPolicy(from: 0x86, ownHeartbeat: own) == UplinkPolicy(tier: .backup, isMetered: true))
        #expect(UplinkPolicyFlags.serverPolicy(from: 0x00, ownHeartbeat: own) == nil)
    }

    @Test("a server's client uplink is a metered backup until its first control frame, which gives it the client's policy")
    func serverUpdatesFromTheFirstControlFrame() {
        let own = 100 * Self.millisecond
        let backup = UplinkPolicyFlags.encode(UplinkPolicy(tier: .backup))
        let primary = UplinkPolicyFlags.encode(UplinkPolicy())
        #expect(UplinkPolicyFlags.unannounced == UplinkPolicy(tier: .backup, isMetered: true))
        #expect(UplinkPolicyFlags.serverUpdate(flags: backup, applied: nil, ownHeartbeat: own) == UplinkPolicy(tier: .backup))
        #expect(UplinkPolicyFlags.serverUpdate(flags: primary, applied: nil, ownHeartbeat: own) == UplinkPolicy())
        // An older client's first control frame (no policy): a primary, as before tiers existed.
        #expect(UplinkPolicyFlags.serverUpdate(flags: 0, applied: nil, ownHeartbeat: own) == UplinkPolicy())
        #expect(UplinkPolicyFlags.serverUpdate(flags: 0, applied: 0, ownHeartbeat: own) == nil)
        // Repeats change nothing; a change is followed; a frame without a policy keeps the one applied.
        #expect(UplinkPolicyFlags.serverUpdate(flags: backup, applied: backup, ownHeartbeat: own) == nil)
        #expect(UplinkPolicyFlags.serverUpdate(flags: primary, applied: backup, ownHeartbeat: own) == UplinkPolicy())
        #expect(UplinkPolicyFlags.serverUpdate(flags: 0, applied: backup, ownHeartbeat: own) == nil)
    }

    @Test("an unannounced uplink carries no downloads while an announced primary works, and carries when it is the only path")
    func unannouncedUplinkIsHeldBack() throws {
        let ms = Self.millisecond
        var configuration = ClientTunnelConfiguration.defaultMultipath
        configuration.scheduler = .aggregate
        var engine = try MultipathEngine<Int>(configuration: configuration)
        try engine.addUplink(UplinkID(1), policy: UplinkPolicy(), now: 0)
        try engine.addUplink(UplinkID(2), policy: UplinkPolicyFlags.unannounced, now: 0)
        // Both answer probes (10 ms) until ready; the unannounced one is faster, so only its tier can keep it out.
        var replies: [(at: UInt64, uplink: UplinkID, probe: UInt32)] = []
        var now: UInt64 = 0
        func run(until end: UInt64, answering: Set<UplinkID>) {
            while now < end {
                now += ms
                for reply in replies where reply.at <= now { engine.handle(.probeReplied(reply.uplink, probeID: reply.probe, at: now)) }
                replies.removeAll { $0.at <= now }
                while let duty = engine.nextDuty(now: now) {
                    if case .sendProbe(let uplink, let probe, _) = duty, answering.contains(uplink) {
                        replies.append((now + (uplink == UplinkID(1) ? 20 : 5) * ms, uplink, probe))
                    }
                }
            }
        }
        run(until: 2_000 * ms, answering: [UplinkID(1), UplinkID(2)])
        #expect(engine.allStatistics().map(\.state) == [.ready, .ready])
        var carriers: Set<UplinkID> = []
        for _ in 0..<200 {
            carriers.formUnion(engine.schedule(packetLength: 1200, flowKey: FlowKey(rawValue: 7), now: now))
        }
        #expect(carriers == [UplinkID(1)])
        // The primary goes silent: the unannounced uplink is the only path left and carries.
        run(until: 12_000 * ms, answering: [UplinkID(2)])
        #expect(engine.statistics(for: UplinkID(1))?.state == .down)
        #expect(Set(engine.schedule(packetLength: 1200, flowKey: FlowKey(rawValue: 7), now: now)) == [UplinkID(2)])
    }
}

@Suite("Uplink receive rate")
struct UplinkReceiveRateTests {
    static let second: UInt64 = 1_000_000_000

    @Test("bytes received over each closed one-second window, as bits/s; idle windows read 0")
    func windows() throws {
        var uplink = ClientUplink(id: UplinkID(1), interface: try InterfaceName("up1"))
        uplink.status.receivedBytes = 5_000  // before the first window: not counted
        uplink.updateReceiveRate(now: 10 * Self.second)
        #expect(uplink.status.receiveRateBitsPerSecond == 0)
        uplink.status.receivedBytes += 1_250_000
        uplink.updateReceiveRate(now: 10 * Self.second + Self.second / 2)
        #expect(uplink.status.receiveRateBitsPerSecond == 0, "the window isn't closed before a second")
        uplink.updateReceiveRate(now: 11 * Self.second)
        #expect(uplink.status.receiveRateBitsPerSecond == 10_000_000)
        // A late timer: the rate is over the real length of the window (1.25 MB in 1.25 s = 8 Mbit/s).
        uplink.status.receivedBytes += 1_250_000
        uplink.updateReceiveRate(now: 12 * Self.second + Self.second / 4)
        #expect(uplink.status.receiveRateBitsPerSecond == 8_000_000)
        uplink.updateReceiveRate(now: 13 * Self.second + Self.second / 4)
        #expect(uplink.status.receiveRateBitsPerSecond == 0)
    }
}

@Suite("Uplink engine counts across resets")
struct UplinkEngineCountTests {
    @Test("a reset's path counts carry over, and the cap left for the new path is what they didn't send")
    func cumulative() throws {
        var uplink = ClientUplink(id: UplinkID(1), interface: try InterfaceName("up1"),
                                  policy: UplinkPolicy(isMetered: true, dataCapBytes: 1_000))
        #expect(uplink.enginePolicy.dataCapBytes == 1_000)
        uplink.retirePath(transmitted: 300, received: 50)
        #expect(uplink.enginePolicy.dataCapBytes == 700)
        #expect(uplink.engineCounts(transmitted: 0, received: 0) == (300, 50))
        #expect(uplink.engineCounts(transmitted: 20, received: 5) == (320, 55))
        uplink.retirePath(transmitted: 800, received: 0)
        #expect(uplink.enginePolicy.dataCapBytes == 0, "a spent cap stays spent on the next path")
        #expect(uplink.enginePolicy.isMetered)
        uplink.retirePath(transmitted: .max, received: .max)
        #expect(uplink.engineCounts(transmitted: 1, received: 1) == (.max, .max))
    }
}
