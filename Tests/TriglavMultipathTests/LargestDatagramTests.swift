import Testing
import TriglavCore
@testable import TriglavMultipath

/// An uplink whose path is smaller than the others' gets only the packets that fit it
/// (`MultipathEngine.setLargestDatagram`): the rest go where they fit instead of being refused by its socket. In `flow`
/// and `failover` mode only the packet goes elsewhere: flows stay pinned, the active uplink stays active.
@Suite struct LargestDatagramTests {
    static let ms = Nanoseconds.millisecond
    let small = UplinkID(1), large = UplinkID(2)

    /// Two ready uplinks, the small one faster (so the scheduler would prefer it), its path 1252 bytes of datagram.
    func engine(_ scheduler: SchedulerMode, pacing: Bool = false) throws -> EngineDriver {
        var configuration = MultipathConfiguration()
        configuration.scheduler = scheduler
        if pacing { configuration.pacingQueueAllowance = 5 * Self.ms }
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(small, now: 0)
        try driver.engine.addUplink(large, now: 0)
        driver.run(until: 500 * Self.ms, rtt: { $0 == self.small ? 10 * Self.ms : 40 * Self.ms })
        try driver.engine.setLargestDatagram(1252, for: small)
        return driver
    }

    @Test("every mode: a packet above the small path's room never goes on it; smaller ones still do",
          arguments: [SchedulerMode.aggregate, .lowestLatency, .redundant, .flow, .failover])
    func largePacketsAvoidTheSmallPath(scheduler: SchedulerMode) throws {
        var driver = try engine(scheduler)
        var smallCarriedLarge = 0, smallCarriedFitting = 0, unscheduled = 0
        for step in 0..<200 {
            let now = driver.now + UInt64(step) * 100_000
            let length = step.isMultiple(of: 2) ? 1300 : 600
            let selection = driver.engine.schedule(packetLength: length, flowKey: FlowKey(rawValue: UInt64(step)), now: now)
            if selection.isEmpty { unscheduled += 1 }
            if selection.contains(small) {
                if length > 1252 { smallCarriedLarge += 1 } else { smallCarriedFitting += 1 }
            }
        }
        #expect(smallCarriedLarge == 0)
        #expect(smallCarriedFitting > 0, "the small path still carries what fits")
        #expect(unscheduled == 0)
    }

    @Test("a resend and the late-binding queue's head above the small path's room go on the large one")
    func resendsAndLateBindingAvoidTheSmallPath() throws {
        var driver = try engine(.aggregate, pacing: true)
        let resend = driver.engine.scheduleResend(packetLength: 1300, originalUplink: nil, now: driver.now)
        #expect(Array(resend) == [large])
        var boundToSmall = 0, bound = 0
        for step in 0..<50 {
            let now = driver.now + UInt64(step) * 10 * Self.ms
            if case .send(let id) = driver.engine.dequeueShared(packetLength: 1300, backlogBytes: 1300, now: now) {
                bound += 1
                if id == small { boundToSmall += 1 }
                driver.engine.handle(.packetSent(id, counter: UInt64(step), sequence: UInt32(step), bytes: 1300, at: now))
            }
        }
        #expect(bound > 0 && boundToSmall == 0)
    }

    @Test("flow and failover: after a large packet went elsewhere, the flow's and the mode's uplink is still the small one",
          arguments: [SchedulerMode.flow, .failover])
    func pinsAndTheActiveUplinkStay(scheduler: SchedulerMode) throws {
        var driver = try engine(scheduler)
        // A flow key whose pin is the small uplink (rendezvous hashing spreads keys over both).
        var key: FlowKey?
        for candidate in UInt64(0)..<64 where key == nil {
            if driver.engine.schedule(packetLength: 600, flowKey: FlowKey(rawValue: candidate), now: driver.now).contains(small) {
                key = FlowKey(rawValue: candidate)
            }
        }
        let flow = try #require(key)
        #expect(Array(driver.engine.schedule(packetLength: 1300, flowKey: flow, now: driver.now)) == [large])
        #expect(Array(driver.engine.schedule(packetLength: 600, flowKey: flow, now: driver.now)) == [small])
    }

    @Test("no uplink fits: the packet goes where it would have gone (its socket refuses it); nil lifts the limit")
    func nothingFitsOrNoLimit() throws {
        var driver = try engine(.aggregate)
        try driver.engine.setLargestDatagram(1000, for: large)
        #expect(!driver.engine.schedule(packetLength: 1300, flowKey: nil, now: driver.now).isEmpty)
        try driver.engine.setLargestDatagram(nil, for: small)
        try driver.engine.setLargestDatagram(nil, for: large)
        var sawSmall = false
        for step in 0..<50 where driver.engine.schedule(packetLength: 1300, flowKey: nil,
                                                        now: driver.now + UInt64(step) * 100_000).contains(small) {
            sawSmall = true
        }
        #expect(sawSmall, "without a limit the faster path carries large packets too")
        #expect(throws: MultipathError.unknownUplink(UplinkID(9))) { try driver.engine.setLargestDatagram(1, for: UplinkID(9)) }
    }
}
