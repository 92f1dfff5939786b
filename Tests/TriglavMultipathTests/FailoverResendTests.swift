import Testing
import TriglavCore
@testable import TriglavMultipath

/// Failover re-sends: when an uplink goes down or is removed, exactly its unacknowledged packets sent within the
/// resend horizon are queued as `Duty.resend`, and each goes out on another uplink, never the one that failed.
@Suite struct FailoverResendTests {
    static let ms = Nanoseconds.millisecond
    let a = UplinkID(1), b = UplinkID(2), c = UplinkID(3)

    private func readyDriver() throws -> EngineDriver {
        var driver = try EngineDriver()
        for id in [a, b, c] { try driver.engine.addUplink(id, now: 0) }
        driver.run(until: 300 * Self.ms)
        for id in [a, b, c] { #expect(driver.state(id) == .ready) }
        driver.notices.removeAll()
        return driver
    }

    /// Sends `count` packets on `id`, counters from `firstCounter`, sequences from `firstSequence`, one every
    /// 2 ms from `start`.
    private func send(_ engine: inout MultipathEngine<Int>, on id: UplinkID, count: Int, firstCounter: UInt64,
                      firstSequence: UInt32, from start: UInt64) {
        for offset in 0..<count {
            engine.handle(.packetSent(id, counter: firstCounter + UInt64(offset), sequence: firstSequence + UInt32(offset),
                                      bytes: 1000, at: start + UInt64(offset) * 2 * Self.ms))
        }
    }

    private func queuedResends(_ engine: inout MultipathEngine<Int>, now: UInt64) -> [UInt32] {
        var sequences: [UInt32] = []
        while let duty = engine.nextDuty(now: now) {
            if case .resend(let sequence) = duty { sequences.append(sequence) }
        }
        return sequences
    }

    @Test func aDownTransitionResendsExactlyTheUnacknowledgedPacketsOnOtherUplinks() throws {
        var driver = try readyDriver()
        let start = driver.now
        send(&driver.engine, on: a, count: 30, firstCounter: 1, firstSequence: 1000, from: start)
        send(&driver.engine, on: b, count: 10, firstCounter: 1, firstSequence: 2000, from: start)
        // The peer confirmed a's first 12 packets.
        driver.engine.handle(.feedbackReceived(a, FeedbackReport(highestCounter: 12, receivedPackets: 12, receivedBytes: 12_000),
                                               at: start + 62 * Self.ms))
        let downAt = start + 64 * Self.ms
        driver.engine.handle(.systemLinkDown(a, at: downAt))
        #expect(driver.state(a) == .down)
        let resends = queuedResends(&driver.engine, now: downAt)
        #expect(resends == Array(UInt32(1012)..<1030), "resends \(resends)")
        for _ in resends {
            let selection = driver.engine.scheduleResend(packetLength: 1000, originalUplink: a, now: downAt)
            #expect(selection.count == 1 && !selection.contains(a), "resent on \(selection)")
        }
        // A resend of a packet that b carried goes on another uplink than b too.
        let other = driver.engine.scheduleResend(packetLength: 1000, originalUplink: b, now: downAt)
        #expect(other.count == 1 && other.first == c)
    }

    @Test func removingAnUplinkResendsItsUnacknowledgedPacketsWithinTheHorizonOnly() throws {
        var driver = try readyDriver()
        let start = driver.now
        let horizon = driver.engine.configuration.resendHorizon
        // Ten packets long before the removal (past the horizon: the peer's reorder buffer gave up on them),
        // then twenty recent ones, of which the peer confirmed none. The engine isn't ticked meanwhile, so the
        // silence can't take the uplink down first.
        send(&driver.engine, on: a, count: 10, firstCounter: 1, firstSequence: 500, from: start)
        let recent = start + horizon + 50 * Self.ms
        send(&driver.engine, on: a, count: 20, firstCounter: 11, firstSequence: 510, from: recent)
        let removeAt = recent + 40 * Self.ms
        try driver.engine.removeUplink(a, now: removeAt)
        let resends = queuedResends(&driver.engine, now: removeAt)
        #expect(resends == Array(UInt32(510)..<530), "resends \(resends)")
        for _ in resends {
            let selection = driver.engine.scheduleResend(packetLength: 1000, originalUplink: a, now: removeAt)
            #expect(selection.count == 1 && (selection.first == b || selection.first == c), "resent on \(selection)")
        }
    }

    /// Pacing: a resend the receiver asked for (its original's uplink is up) goes ahead of the failover backlog, so
    /// it is taken even when that backlog is already too long for another failover resend (`maxReorderHold`). In the
    /// blackhole scenario a random loss right after the failover was repaired only behind the dead uplink's resends
    /// (74 ms on the 5 Mbit/s survivor), lost again, and cost 337 ms (docs/BENCHMARKS.md, "Repairs ahead").
    @Test func aRepairGoesAheadOfTheFailoverBacklog() throws {
        var configuration = MultipathConfiguration()
        configuration.pacingQueueAllowance = 5 * Self.ms
        var driver = try EngineDriver(configuration: configuration)
        for id in [a, b, c] { try driver.engine.addUplink(id, now: 0) }
        driver.run(until: 300 * Self.ms)
        let now = driver.now
        driver.engine.handle(.systemLinkDown(a, at: now))
        var failoverResends = 0
        while !driver.engine.scheduleResend(packetLength: 1250, originalUplink: a, now: now).isEmpty {
            failoverResends += 1
            if failoverResends > 100_000 { break }
        }
        #expect(failoverResends > 10 && failoverResends <= 100_000, "\(failoverResends) failover resends taken")
        // The backlog on b and c now reaches maxReorderHold: no more failover resends, but a repair still goes.
        #expect(driver.engine.scheduleResend(packetLength: 1250, originalUplink: a, now: now).isEmpty)
        let repair = driver.engine.scheduleResend(packetLength: 1250, originalUplink: b, now: now)
        #expect(repair.count == 1 && !repair.contains(a), "repair on \(repair)")
    }
}
