import Testing
import TriglavCore
@testable import TriglavMultipath

/// A heartbeat lost while an uplink idles, just before data starts on it again, must not take the uplink down before
/// that data could be confirmed: the strict under-traffic deadline counts from when the data resumed, the lost
/// heartbeat only by the idle rule (docs/MULTIPATH.md, "Quality per uplink"). Seen on the paced three-link run,
/// seed 7: data resumed on the 40 ms uplink 89 ms after a lost heartbeat and the uplink went down 57 ms later.
@Suite struct LostHeartbeatBeforeDataTests {
    static let ms = Nanoseconds.millisecond
    let link = UplinkID(1)

    /// Idles `link` (80 ms RTT) for 2 s, loses the one heartbeat sent in the 99 ms after that, starts data
    /// `resumeAfter` after the loss window opened and sends a packet every millisecond for 400 ms, with feedback
    /// every 20 ms for what arrived (40 ms each way). Returns when (after the loss window opened) the uplink went
    /// down, if it did. `blackholeData`: nothing gets through from the loss window on.
    private func downAfterLoss(resumeAfter: UInt64, blackholeData: Bool = false) throws -> UInt64? {
        var driver = try EngineDriver()
        try driver.engine.addUplink(link, now: 0)
        let rtt: (UplinkID) -> UInt64 = { _ in 80 * Self.ms }
        driver.run(until: 2000 * Self.ms, rtt: rtt)
        let lossStart = driver.now
        let lossEnd = lossStart + 99 * Self.ms
        let silent: (UplinkID, UInt64) -> Bool = { _, time in
            (time >= lossStart && time < lossEnd) || (blackholeData && time >= lossStart)
        }
        driver.run(until: lossStart + resumeAfter, rtt: rtt, silent: silent)
        var sent: [(at: UInt64, counter: UInt64)] = []
        var received: UInt64 = 0
        var highest: UInt64 = 0
        let end = driver.now + 400 * Self.ms
        while driver.now < end {
            let counter = UInt64(sent.count + 1)
            driver.engine.handle(.packetSent(link, counter: counter, sequence: UInt32(counter), bytes: 1400, at: driver.now))
            sent.append((driver.now, counter))
            if !blackholeData, driver.now % (20 * Self.ms) == 0 {
                // Everything sent at least a round trip ago has arrived and is reported now.
                for packet in sent where packet.at + 80 * Self.ms <= driver.now && packet.counter > highest {
                    highest = packet.counter
                    received += 1
                }
                driver.engine.handle(.feedbackReceived(link, FeedbackReport(highestCounter: highest, receivedPackets: received,
                                                                             receivedBytes: received * 1400), at: driver.now))
            }
            driver.run(until: driver.now + Self.ms, rtt: rtt, silent: silent)
            if driver.state(link) == .down { return driver.now - lossStart }
        }
        return nil
    }

    @Test(arguments: [UInt64(10), 50, 89])
    func aLostHeartbeatJustBeforeDataDoesNotTakeTheUplinkDown(resumeAfter: UInt64) throws {
        let down = try downAfterLoss(resumeAfter: resumeAfter * Self.ms)
        #expect(down == nil, "down \(down.map { $0 / Self.ms } ?? 0) ms after the lost heartbeat")
    }

    /// The same start into a real blackhole is still found within the 300 ms bound.
    @Test(arguments: [UInt64(10), 89])
    func aBlackholeWhenDataResumesIsStillFoundInTime(resumeAfter: UInt64) throws {
        let down = try #require(try downAfterLoss(resumeAfter: resumeAfter * Self.ms, blackholeData: true))
        #expect(down <= 300 * Self.ms, "down \(down / Self.ms) ms after the blackhole began")
    }
}
