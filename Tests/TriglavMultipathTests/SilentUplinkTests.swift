import Testing
import TriglavCore
@testable import TriglavMultipath

/// Where a receiver's resend requests and a sender's repairs go while the best uplink may be blackholing unnoticed
/// (the probes declare it down only ~100 ms later): `scheduleControl` avoids an uplink on which nothing arrived for
/// much longer than usual; `scheduleResend(alsoAvoiding:)` keeps a second repair off the uplink the original was
/// lost on.
@Suite struct SilentUplinkTests {
    static let ms = Nanoseconds.millisecond
    let a = UplinkID(1), b = UplinkID(2), c = UplinkID(3)

    /// a: 10 ms RTT (the best), b: 20 ms, c: 30 ms; all ready.
    struct Harness {
        var driver: EngineDriver
        var sequence: UInt32 = 0
        var counters: [UplinkID: UInt64] = [:]

        init() throws {
            driver = try EngineDriver()
            for id in [UplinkID(1), UplinkID(2), UplinkID(3)] { try driver.engine.addUplink(id, now: 0) }
            advance(to: 300 * SilentUplinkTests.ms)
        }

        mutating func advance(to end: UInt64) {
            driver.run(until: end, rtt: { UInt64($0.rawValue) * 10 * SilentUplinkTests.ms })
        }

        /// One data packet a millisecond arrives on each of `uplinks` for `duration`.
        mutating func receive(on uplinks: [UplinkID], for duration: UInt64) {
            let end = driver.now + duration
            while driver.now < end {
                for id in uplinks {
                    sequence &+= 1
                    counters[id, default: 0] += 1
                    _ = driver.engine.receive(0, sequence: sequence, uplink: id, counter: counters[id, default: 0], bytes: 1000,
                                              now: driver.now)
                }
                advance(to: driver.now + SilentUplinkTests.ms)
            }
        }
    }

    @Test func resendRequestsAvoidTheUplinkOnWhichDataStoppedArrivingUnlessEveryUplinkIsSilent() throws {
        var harness = try Harness()
        for id in [a, b, c] { #expect(harness.driver.state(id) == .ready) }
        harness.receive(on: [a, b, c], for: 100 * Self.ms)
        let whileAllArrive = harness.driver.engine.scheduleControl(packetLength: 60, now: harness.driver.now)
        #expect(whileAllArrive.first == a, "the best uplink while data arrives on all: \(whileAllArrive)")
        // Nothing on a for 30 ms (a packet a millisecond before): a request goes on the next best instead.
        harness.receive(on: [b, c], for: 30 * Self.ms)
        #expect(harness.driver.state(a) == .ready, "the probes have not noticed yet")
        let afterSilence = harness.driver.engine.scheduleControl(packetLength: 60, now: harness.driver.now)
        #expect(afterSilence.first == b, "a silent for 30 ms: \(afterSilence)")
        let plain = harness.driver.engine.schedule(packetLength: 60, flowKey: nil, now: harness.driver.now)
        #expect(plain.first == a, "ordinary scheduling still picks a: \(plain)")
        // Nothing anywhere (an idle sender, not a dying uplink): the best again.
        harness.advance(to: harness.driver.now + 30 * Self.ms)
        let allSilent = harness.driver.engine.scheduleControl(packetLength: 60, now: harness.driver.now)
        #expect(allSilent.first == a, "every uplink silent: \(allSilent)")
    }

    @Test func aShortPauseAtTheUsualPaceIsNotSilence() throws {
        var harness = try Harness()
        harness.receive(on: [a, b, c], for: 100 * Self.ms)
        harness.receive(on: [b, c], for: 5 * Self.ms)
        let selection = harness.driver.engine.scheduleControl(packetLength: 60, now: harness.driver.now)
        #expect(selection.first == a, "a paused 5 ms: \(selection)")
    }

    @Test func aRepairAvoidsTheUplinkTheOriginalWasSentOnWhenAnotherIsUsable() throws {
        var harness = try Harness()
        let now = harness.driver.now
        let plain = harness.driver.engine.scheduleResend(packetLength: 1250, originalUplink: c, now: now)
        #expect(plain.first == a, "the best other than the last copy's uplink: \(plain)")
        let avoiding = harness.driver.engine.scheduleResend(packetLength: 1250, originalUplink: c, alsoAvoiding: a, now: now)
        #expect(avoiding.first == b, "first sent on a, repaired on c: \(avoiding)")
        harness.driver.engine.handle(.systemLinkDown(b, at: now))
        let onlyA = harness.driver.engine.scheduleResend(packetLength: 1250, originalUplink: c, alsoAvoiding: a, now: now)
        #expect(onlyA.first == a, "a is the only other usable uplink: \(onlyA)")
    }
}
