import Testing
import TriglavCore
@testable import TriglavMultipath

/// The short-horizon prediction (`RTTEstimator.predicted`: SRTT moved one SRTT along the smoothed RTT slope) is what
/// `lowest-latency` ranks by: an uplink whose queue is building loses the choice before its SRTT says so.
@Suite struct PredictionTests {
    static let ms = Nanoseconds.millisecond
    let steady = UplinkID(1), building = UplinkID(2)

    /// `steady` answers in 200 ms throughout; `building` in 100 ms, and from 1 s on its queue builds (RTT +300 ms/s).
    /// While the smoothed RTTs cross, `building`'s SRTT is still the lower one, but its prediction (rising) is higher:
    /// lowest-latency must take `steady`. Without the slope (prediction = SRTT) it took `building`.
    @Test func aRisingRTTSlopeLosesLowestLatencyBeforeTheSRTTShowsIt() throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .lowestLatency
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(steady, now: 0)
        try driver.engine.addUplink(building, now: 0)
        var buildingRTT = 100 * Self.ms
        var overruled = 0
        while driver.now < 4 * Nanoseconds.second {
            if driver.now >= Nanoseconds.second { buildingRTT = 100 * Self.ms + 3 * (driver.now - Nanoseconds.second) / 10 }
            driver.run(until: driver.now + Self.ms,
                       rtt: { [steady] id in id == steady ? 200 * Self.ms : buildingRTT })
            guard let fixed = driver.engine.statistics(for: steady), let rising = driver.engine.statistics(for: building),
                  fixed.state == .ready, rising.state == .ready else { continue }
            if rising.smoothedRTT > fixed.smoothedRTT + 50 * Self.ms { break }
            let chosen = driver.engine.schedule(packetLength: 100, flowKey: nil, now: driver.now)
            if driver.now < Nanoseconds.second {
                // Before the ramp the faster uplink wins, as it should.
                #expect(Array(chosen) == [building])
            } else if rising.smoothedRTT < fixed.smoothedRTT, Array(chosen) == [steady] {
                overruled += 1
                #expect(rising.predictedRTT > fixed.predictedRTT)
            }
        }
        // `building`'s SRTT was the lower one, yet `steady` was chosen: the trend decided (with the slope forced to 0
        // `building` is chosen until its SRTT passes `steady`'s).
        #expect(overruled > 0)
        #expect(driver.engine.statistics(for: building).map { $0.smoothedRTT > 200 * Self.ms } == true)
    }
}
