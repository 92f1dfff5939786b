import Testing
import TriglavCore
@testable import TriglavMultipath

/// Sender-side suspicion (`MultipathConfiguration.suspectsUplinksFromRequests`, an experiment, off by default): the
/// receiver asks for several packets an uplink carried after the last send it confirmed while its confirmations have
/// stopped — what a blackhole looks like one request round trip after it starts, ~40 ms before the probes' loss
/// deadline — and the uplink takes no new data until a later send is confirmed.
@Suite struct SuspectUplinkTests {
    static let ms = Nanoseconds.millisecond
    let a = UplinkID(1), b = UplinkID(2), c = UplinkID(3)

    /// a: 10 ms RTT (the best), b: 20 ms, c: 30 ms; all ready. `sent` records the sequences sent on a.
    struct Harness {
        var driver: EngineDriver
        var sequence: UInt32 = 0
        var counter: UInt64 = 0

        init(suspects: Bool = true) throws {
            var configuration = MultipathConfiguration()
            configuration.suspectsUplinksFromRequests = suspects
            driver = try EngineDriver(configuration: configuration)
            for id in [UplinkID(1), UplinkID(2), UplinkID(3)] { try driver.engine.addUplink(id, now: 0) }
            advance(to: 300 * SuspectUplinkTests.ms)
        }

        mutating func advance(to end: UInt64, silent: UplinkID? = nil) {
            driver.run(until: end, rtt: { UInt64($0.rawValue) * 10 * SuspectUplinkTests.ms },
                       silent: { id, _ in id == silent })
        }

        /// One 1000-byte packet on `id` a millisecond, `count` of them; returns their sequences.
        mutating func send(_ count: Int, on id: UplinkID) -> [UInt32] {
            var sequences: [UInt32] = []
            for _ in 0..<count {
                sequence &+= 1
                counter += 1
                driver.engine.handle(.packetSent(id, counter: counter, sequence: sequence, bytes: 1000, at: driver.now))
                sequences.append(sequence)
                advance(to: driver.now + SuspectUplinkTests.ms)
            }
            return sequences
        }

        /// The peer confirms the packets on `id` up to counter `highest`, `received` of them.
        mutating func confirm(on id: UplinkID, highest: UInt64, received: UInt64) {
            let report = FeedbackReport(highestCounter: highest, receivedPackets: received, receivedBytes: received * 1000,
                                        reportedAt: driver.now)
            driver.engine.handle(.feedbackReceived(id, report, at: driver.now))
        }

        mutating func request(_ sequence: UInt32) {
            driver.engine.handle(.resendRequested(firstSequence: sequence, count: 1, at: driver.now))
        }

        mutating func scheduled() -> UplinkID? {
            driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).first
        }
    }

    @Test func requestsForThreeUnconfirmedPacketsOfTheBestUplinkMoveDataOffItUntilALaterSendIsConfirmed() throws {
        var harness = try Harness()
        #expect(harness.scheduled() == a)
        let sent = harness.send(10, on: a)
        harness.confirm(on: a, highest: 4, received: 4)
        for index in [5, 6, 8] { harness.request(sent[index]) }
        #expect(harness.scheduled() == a, "asked for within a round trip of their send: late, not lost")
        // Nothing confirmed on a for two feedback intervals (its probes unanswered).
        harness.advance(to: harness.driver.now + 50 * Self.ms, silent: a)
        harness.request(sent[5])
        harness.request(sent[6])
        #expect(harness.scheduled() == a, "two requested packets are not yet a pattern")
        harness.request(sent[8])
        #expect(harness.driver.state(a) == .ready, "the probes have not noticed anything")
        #expect(harness.scheduled() == b, "a is suspect: new data goes to the next best")
        let resend = harness.driver.engine.scheduleResend(packetLength: 1000, originalUplink: c, now: harness.driver.now)
        #expect(resend.first == b, "resends avoid a suspect uplink too: \(resend)")
        // The peer confirms a send later than every requested one: a works, the losses were random.
        harness.confirm(on: a, highest: 10, received: 7)
        #expect(harness.scheduled() == a, "a confirmed a later send")
    }

    @Test func aSuspectUplinkThatStaysSilentIsStillDeclaredDownByTheProbes() throws {
        var harness = try Harness()
        let sent = harness.send(10, on: a)
        harness.confirm(on: a, highest: 2, received: 2)
        harness.advance(to: harness.driver.now + 50 * Self.ms, silent: a)
        for index in 4..<7 { harness.request(sent[index]) }
        #expect(harness.scheduled() == b)
        #expect(harness.driver.state(a) == .ready)
        harness.advance(to: harness.driver.now + 300 * Self.ms, silent: a)
        #expect(harness.driver.state(a) == .down, "the probes still decide when it is down")
    }

    @Test func requestsForPacketsSentBeforeTheLastConfirmedSendAreRandomLossNotSuspicion() throws {
        var harness = try Harness()
        let sent = harness.send(10, on: a)
        // The peer already confirmed later packets of a when it asks for the lost ones (its feedback comes every
        // 20 ms, its requests after the reorder wait).
        harness.confirm(on: a, highest: 10, received: 7)
        harness.advance(to: harness.driver.now + 50 * Self.ms, silent: a)
        for index in [2, 5, 8] { harness.request(sent[index]) }
        #expect(harness.scheduled() == a)
    }

    @Test func suspicionIsOffByDefault() throws {
        #expect(!MultipathConfiguration().suspectsUplinksFromRequests)
        var harness = try Harness(suspects: false)
        let sent = harness.send(10, on: a)
        harness.advance(to: harness.driver.now + 50 * Self.ms, silent: a)
        for index in 4..<9 { harness.request(sent[index]) }
        #expect(harness.scheduled() == a)
    }
}
