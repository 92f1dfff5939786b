import Testing
import TriglavCore
@testable import TriglavMultipath

/// A per-uplink idle heartbeat (`UplinkPolicy.heartbeatInterval`, what the daemon gives metered uplinks):
/// one probe per relaxed interval while idle, the active interval as soon as data flows, and the idle
/// blackhole rule scaled to the relaxed interval (not falsely down on the configuration's 100 ms rule, and
/// still down within `idleLostHeartbeatsForDown` intervals plus the loss deadline). Virtual clock.
@Suite struct RelaxedHeartbeatTests {
    static let ms = Nanoseconds.millisecond
    static let second = Nanoseconds.second
    let metered = UplinkID(1), wired = UplinkID(2)

    /// A peer whose `metered` uplink probes every `interval` when idle; `wired` keeps the 100 ms default.
    func peer(interval: UInt64, seed: UInt64 = 1) throws -> ScriptedPeer {
        var peer = try ScriptedPeer(uplinks: [metered, wired], seed: seed)
        try peer.engine.updatePolicy(UplinkPolicy(isMetered: true, heartbeatInterval: interval), for: metered)
        return peer
    }

    @Test(arguments: [1 * Nanoseconds.second, 3200 * Nanoseconds.millisecond])
    func idleRelaxedLinkSendsOneHeartbeatPerInterval(interval: UInt64) throws {
        var peer = try peer(interval: interval)
        peer.run(until: 2 * Self.second)
        #expect(peer.state(metered) == .ready && peer.state(wired) == .ready)
        let before = (peer.probesSent[metered] ?? 0, peer.probesSent[wired] ?? 0)
        let span = 32 * Self.second
        peer.run(until: peer.now + span)
        let relaxed = (peer.probesSent[metered] ?? 0) - before.0
        let standard = (peer.probesSent[wired] ?? 0) - before.1
        let expected = Int(span / interval)
        #expect(relaxed >= expected - 1 && relaxed <= expected + 1, "\(relaxed) heartbeats in 32 s at \(interval / Self.ms) ms")
        #expect(standard >= 310 && standard <= 330, "the unmetered link's 100 ms heartbeat changed: \(standard) in 32 s")
        #expect(peer.transitions(of: metered).map(\.to) == [.ready], "\(peer.transitions(of: metered))")
    }

    @Test func relaxedLinkProbesFastOnceDataFlowsAndRelaxesAfter() throws {
        var peer = try ScriptedPeer(uplinks: [metered])
        try peer.engine.updatePolicy(UplinkPolicy(isMetered: true, heartbeatInterval: 3200 * Self.ms), for: metered)
        peer.run(until: 2 * Self.second)
        #expect(peer.state(metered) == .ready)
        // Data starts just after an idle heartbeat: the next probe may not wait for the rest of the 3.2 s.
        let idleProbes = peer.probesSent[metered] ?? 0
        let waitLimit = peer.now + 4 * Self.second
        while peer.probesSent[metered] == idleProbes, peer.now < waitLimit { peer.run(until: peer.now + Self.ms) }
        #expect(peer.probesSent[metered] != idleProbes, "no idle heartbeat within 4 s")
        let dataStart = peer.now + 10 * Self.ms
        peer.run(until: dataStart)
        let atStart = peer.probesSent[metered] ?? 0
        peer.dataInterval = 10 * Self.ms
        peer.run(until: dataStart + 60 * Self.ms)
        #expect((peer.probesSent[metered] ?? 0) > atStart, "no probe within 60 ms of data on a relaxed link")
        peer.run(until: dataStart + Self.second)
        let active = (peer.probesSent[metered] ?? 0) - atStart
        #expect(active >= 17 && active <= 22, "\(active) probes in the first second of data (50 ms active interval)")

        // A metered link carrying data still fails over fast: its data goes unconfirmed.
        var cut = peer
        let cutAt = cut.now
        cut.blackholed = [metered]
        cut.run(until: cutAt + Self.second)
        let down = try #require(cut.firstEntry(of: metered, into: .down, since: cutAt))
        #expect(down.at - cutAt <= 300 * Self.ms, "down \((down.at - cutAt) / Self.ms) ms after a blackhole under traffic")

        // Idle again: back to one heartbeat per 3.2 s once the activity window has passed.
        peer.dataInterval = nil
        peer.run(until: peer.now + Self.second)
        let quiet = peer.probesSent[metered] ?? 0
        peer.run(until: peer.now + 16 * Self.second)
        let relaxed = (peer.probesSent[metered] ?? 0) - quiet
        #expect(relaxed >= 4 && relaxed <= 6, "\(relaxed) probes in 16 idle seconds")
        #expect(!peer.transitions(of: metered).contains { $0.to == .down })
    }

    /// Three relaxed heartbeats lost in a row (a short outage or a loss burst) are past the configuration's rule
    /// (`idleLostHeartbeatsForDown` × 100 ms) long before the relaxed one: the link must stay up.
    @Test func shortIdleOutageOfARelaxedLinkIsNotDown() throws {
        var peer = try peer(interval: Self.second)
        peer.run(until: 3 * Self.second)
        for offset in [0, 300, 700] as [UInt64] {
            var trial = peer
            trial.run(until: peer.now + offset * Self.ms)
            let cutAt = trial.now
            trial.blackholed = [metered]
            trial.run(until: cutAt + 3500 * Self.ms)  // three or four heartbeats lost
            trial.blackholed = []
            trial.run(until: cutAt + 6 * Self.second)
            #expect(trial.transitions(of: metered).map(\.to) == [.ready],
                    "outage at +\(offset) ms: \(trial.transitions(of: metered))")
            #expect(trial.state(metered) == .ready)
        }
    }

    @Test(arguments: [1 * Nanoseconds.second, 3200 * Nanoseconds.millisecond])
    func blackholedRelaxedIdleLinkIsDownWithinItsBound(interval: UInt64) throws {
        var peer = try peer(interval: interval)
        peer.run(until: 3 * Self.second)
        let bound = Tuning.idleLostHeartbeatsForDown * interval + peer.engine.configuration.maxLossDeadline
        for offset in [0, 37, 510] as [UInt64] {
            var trial = peer
            trial.run(until: peer.now + offset * Self.ms)
            let cutAt = trial.now
            trial.blackholed = [metered]
            trial.run(until: cutAt + bound + Self.second)
            let down = try #require(trial.firstEntry(of: metered, into: .down, since: cutAt), "never down (cut at +\(offset) ms)")
            // Not before six relaxed intervals of silence, and within seven plus the loss deadline.
            #expect(down.at - cutAt >= 6 * interval && down.at - cutAt <= bound,
                    "down \((down.at - cutAt) / Self.ms) ms after the blackhole (bound \(bound / Self.ms) ms)")
            #expect(trial.transitions(of: wired).map(\.to) == [.ready])
            // Down, it re-probes at the relaxed interval too, and comes back when the link does.
            let probesWhenDown = trial.probesSent[metered] ?? 0
            trial.run(until: trial.now + 4 * interval)
            let reprobes = (trial.probesSent[metered] ?? 0) - probesWhenDown
            #expect(reprobes >= 3 && reprobes <= 5, "\(reprobes) probes in 4 intervals while down \(trial.transitions(of: metered).map { "\($0.at / Self.ms):\($0.to)" }) now \(trial.now / Self.ms) down \(down.at / Self.ms)")
            // Its next heartbeat gets a reply; the replies that make it ready follow at the probing pace (50 ms)
            // and the hold-down after one flap (500 ms), not one relaxed interval later each.
            trial.blackholed = []
            let liftedAt = trial.now
            trial.run(until: liftedAt + interval + 2 * Self.second)
            let back = try #require(trial.firstEntry(of: metered, into: .ready, since: liftedAt))
            let probing = try #require(trial.firstEntry(of: metered, into: .probing, since: liftedAt))
            #expect(back.at - probing.at <= 700 * Self.ms, "ready \((back.at - probing.at) / Self.ms) ms after the first reply")
            #expect(trial.state(metered) == .ready, "\(trial.transitions(of: metered).map { "\($0.at / Self.ms):\($0.to)" }) now \(trial.now / Self.ms) down \(down.at / Self.ms)")
        }
    }

    /// A metered link that answers once after an outage and falls silent again probes at the fast probing pace only
    /// until the fast rule takes it down again (it can't count its probing probes in relaxed heartbeats: that would
    /// be ~20 probes/s for 7 relaxed intervals), then back to one probe per relaxed interval.
    @Test func relaxedLinkThatAnswersOnceAndFallsSilentAgainIsDownFast() throws {
        var peer = try peer(interval: 3200 * Self.ms)
        peer.run(until: 3 * Self.second)
        peer.blackholed = [metered]
        peer.run(until: peer.now + 30 * Self.second)
        let down = try #require(peer.firstEntry(of: metered, into: .down))
        // Let one heartbeat through, then silence again.
        peer.blackholed = []
        let limit = peer.now + 4 * Self.second
        while peer.state(metered) == .down, peer.now < limit { peer.run(until: peer.now + Self.ms) }
        let probing = try #require(peer.firstEntry(of: metered, into: .probing, since: down.at))
        peer.blackholed = [metered]
        let probesAtReply = peer.probesSent[metered] ?? 0
        peer.run(until: probing.at + 10 * Self.second)
        let again = try #require(peer.firstEntry(of: metered, into: .down, since: probing.at))
        #expect(again.at - probing.at <= 1500 * Self.ms, "down again \((again.at - probing.at) / Self.ms) ms after the one reply")
        let probes = (peer.probesSent[metered] ?? 0) - probesAtReply
        #expect(probes <= 40, "\(probes) probes in the 10 s after the one reply")
    }

    @Test func policyChangesApplyAtOnceAndAreValidated() throws {
        var peer = try peer(interval: 20 * Self.second)
        peer.run(until: 3 * Self.second)
        let relaxed = peer.probesSent[metered] ?? 0
        // Back to the configuration's heartbeat: the probe scheduled 20 s ahead is brought forward.
        try peer.engine.updatePolicy(UplinkPolicy(isMetered: true), for: metered)
        peer.run(until: peer.now + Self.second)
        let after = (peer.probesSent[metered] ?? 0) - relaxed
        #expect(after >= 9 && after <= 11, "\(after) probes in the second after dropping the relaxed heartbeat")

        #expect(throws: MultipathError.self) {
            try peer.engine.updatePolicy(UplinkPolicy(heartbeatInterval: 0), for: metered)
        }
        #expect(throws: MultipathError.self) {
            try peer.engine.addUplink(UplinkID(9), policy: UplinkPolicy(heartbeatInterval: 7200 * Self.second), now: peer.now)
        }
        #expect(!peer.engine.uplinkIDs.contains(UplinkID(9)))
    }
}
