import Testing
@testable import TriglavMultipath

@Suite struct SimulationTests {
    @Test func probe() throws {
        for scenario in ThroughputScenario.allCases {
            for rr in [false, true] {
              for (scale, secs) in [(1.0, UInt64(8))] {
                let r = try scenario.run(seed: 1, roundRobin: rr, seconds: secs, rateScale: scale)
                print("scale \(scale)", "\(scenario) rr=\(rr): \(r.goodput / 1e6) Mbit/s ratio \(r.ratio) fr=\(r.fastRetransmits) to=\(r.timeouts) skipped=\(r.reorderSkipped) resends=\(r.resends)")
              }
            }
        }
    }
}
