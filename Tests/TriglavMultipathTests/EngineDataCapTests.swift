import Testing
import TriglavCore
@testable import TriglavMultipath

/// A link past its data cap is treated as `never`: nothing at all is sent on it, not even probes or feedback.
@Suite struct EngineDataCapTests {
    static let ms = Nanoseconds.millisecond
    let a = UplinkID(1), capped = UplinkID(2)

    private func feedbacks(on id: UplinkID, in duties: [Duty]) -> Int {
        duties.filter { if case .sendFeedback(id, _) = $0 { true } else { false } }.count
    }

    /// Data arriving on both uplinks for `duration`, one packet a millisecond each; runs the driver meanwhile.
    private func receiveData(_ driver: inout EngineDriver, for duration: UInt64, counter: inout UInt64) {
        let end = driver.now + duration
        while driver.now < end {
            for id in [a, capped] {
                counter += 1
                _ = driver.engine.receive(0, sequence: UInt32(truncatingIfNeeded: counter), uplink: id, counter: counter,
                                          bytes: 500, now: driver.now, ordered: false)
            }
            driver.run(until: driver.now + Self.ms)
        }
    }

    @Test func aLinkPastItsCapSendsNoProbesAndNoFeedback() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(capped, policy: UplinkPolicy(dataCapBytes: 100_000), now: 0)
        var counter: UInt64 = 0
        receiveData(&driver, for: 500 * Self.ms, counter: &counter)
        #expect(driver.state(capped) == .ready)
        let probesWithinCap = driver.probesSent[capped] ?? 0
        #expect(probesWithinCap > 3 && feedbacks(on: capped, in: driver.notices) > 10, "a link within its cap probes and reports")

        // The cap is spent: from now on nothing goes out on that link, while the other keeps probing and reporting.
        driver.engine.handle(.packetSent(capped, counter: 1, sequence: 1, bytes: 100_000, at: driver.now))
        driver.notices.removeAll()
        let probesOfA = driver.probesSent[a] ?? 0
        receiveData(&driver, for: 2 * Nanoseconds.second, counter: &counter)
        #expect(driver.probesSent[capped] ?? 0 == probesWithinCap, "probes sent past the cap")
        #expect(feedbacks(on: capped, in: driver.notices) == 0, "feedback sent past the cap")
        #expect(driver.probesSent[a] ?? 0 > probesOfA + 10 && feedbacks(on: a, in: driver.notices) > 50)
        for _ in 0..<20 {
            #expect(!driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).contains(capped))
        }

        // A new billing period: the link probes again.
        try driver.engine.resetDataCap(for: capped)
        receiveData(&driver, for: 500 * Self.ms, counter: &counter)
        #expect(driver.probesSent[capped] ?? 0 > probesWithinCap)
        #expect(feedbacks(on: capped, in: driver.notices) > 0)
    }
}
