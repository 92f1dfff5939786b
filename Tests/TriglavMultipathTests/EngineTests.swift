import Testing
import TriglavCore
@testable import TriglavMultipath

/// Drives an engine by hand: every probe it asks for is answered after `rtt(id)` unless `silent(id)`.
struct EngineDriver {
    var engine: MultipathEngine<Int>
    var now: UInt64 = 0
    var pendingReplies: [(at: UInt64, id: UplinkID, probeID: UInt32)] = []
    var probesSent: [UplinkID: Int] = [:]
    var notices: [Duty] = []

    init(configuration: MultipathConfiguration = MultipathConfiguration()) throws {
        engine = try MultipathEngine(configuration: configuration)
    }

    mutating func run(until end: UInt64, step: UInt64 = Nanoseconds.millisecond,
                      rtt: (UplinkID) -> UInt64 = { _ in 20 * Nanoseconds.millisecond },
                      silent: (UplinkID, UInt64) -> Bool = { _, _ in false }) {
        while now < end {
            now += step
            let due = pendingReplies.filter { $0.at <= now }
            pendingReplies.removeAll { $0.at <= now }
            for reply in due { engine.handle(.probeReplied(reply.id, probeID: reply.probeID, at: now)) }
            while let duty = engine.nextDuty(now: now) {
                switch duty {
                case .sendProbe(let id, let probeID, _):
                    probesSent[id, default: 0] += 1
                    if !silent(id, now) { pendingReplies.append((now + rtt(id), id, probeID)) }
                default:
                    notices.append(duty)
                }
            }
        }
    }

    func state(_ id: UplinkID) -> UplinkState? { engine.statistics(for: id)?.state }
}

@Suite struct EngineTests {
    static let ms = Nanoseconds.millisecond
    let a = UplinkID(1), b = UplinkID(2), c = UplinkID(3)

    @Test func probesBringUplinksUpAndEstimateRTT() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        #expect(driver.state(a) == .probing)
        driver.run(until: 500 * Self.ms, rtt: { _ in 30 * Self.ms })
        let stats = try #require(driver.engine.statistics(for: a))
        #expect(stats.state == .ready)
        #expect(stats.smoothedRTT >= 29 * Self.ms && stats.smoothedRTT <= 31 * Self.ms)
        #expect(stats.minimumRTT == 30 * Self.ms)
        #expect(stats.jitter < Self.ms)
        #expect(driver.notices.contains(.stateChanged(a, from: .probing, to: .ready)))
        // Idle heartbeats: about one per 100 ms.
        #expect((4...6).contains(driver.probesSent[a] ?? 0))
    }

    @Test func neverLinksGetNoProbesAndNoData() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, policy: UplinkPolicy(tier: .never), now: 0)
        driver.run(until: Nanoseconds.second)
        #expect(driver.probesSent[b] == nil)
        for _ in 0..<100 {
            #expect(!driver.engine.schedule(packetLength: 1400, flowKey: nil, now: driver.now).contains(b))
        }
    }

    @Test func silentLinkGoesDownAndComesBackOnlyAfterHoldDown() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        driver.run(until: 500 * Self.ms)
        #expect(driver.state(a) == .ready)
        driver.run(until: 1500 * Self.ms, silent: { _, now in now < 1500 * Self.ms })
        #expect(driver.state(a) == .down)
        let downAt = try #require(driver.engine.statistics(for: a)?.stateSince)
        #expect(downAt <= 1500 * Self.ms && downAt >= 500 * Self.ms)
        // Replies again: probing first, ready only after the hold-down (500 ms for the first flap).
        driver.run(until: 1800 * Self.ms)
        #expect(driver.state(a) == .probing)
        driver.run(until: 2600 * Self.ms)
        #expect(driver.state(a) == .ready)
    }

    @Test func systemLinkDownTakesTheLinkOutAtOnce() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, now: 0)
        driver.run(until: 300 * Self.ms)
        driver.engine.handle(.systemLinkDown(a, at: driver.now))
        #expect(driver.state(a) == .down)
        for _ in 0..<50 { #expect(driver.engine.schedule(packetLength: 1400, flowKey: nil, now: driver.now).first == b) }
        let probesBefore = driver.probesSent[a] ?? 0
        driver.run(until: 800 * Self.ms)
        #expect(driver.probesSent[a] ?? 0 == probesBefore, "no probes on a link the system reports down")
        driver.engine.handle(.systemLinkUp(a, at: driver.now))
        driver.run(until: 2 * Nanoseconds.second)
        #expect(driver.state(a) == .ready)
    }

    @Test func rendezvousMovesOnlyTheRemovedUplinksFlows() throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .flow
        var driver = try EngineDriver(configuration: configuration)
        for id in [a, b, c] { try driver.engine.addUplink(id, now: 0) }
        driver.run(until: 300 * Self.ms)
        func assignment() -> [UplinkID] {
            (0..<3000).map { key in
                driver.engine.schedule(packetLength: 100, flowKey: FlowKey(rawValue: mix64(UInt64(key))), now: driver.now).first!
            }
        }
        let before = assignment()
        for id in [a, b, c] {
            let share = before.filter { $0 == id }.count
            #expect(share > 800 && share < 1200, "\(id) got \(share) of 3000 flows")
        }
        try driver.engine.removeUplink(b, now: driver.now)
        let after = assignment()
        for (old, new) in zip(before, after) {
            if old == b { #expect(new != b) } else { #expect(new == old) }
        }
    }

    @Test func backupOnlyWhenNothingElseAndSecondaryOnlyUnderLoad() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, policy: UplinkPolicy(tier: .secondary), now: 0)
        try driver.engine.addUplink(c, policy: UplinkPolicy(tier: .backup), now: 0)
        driver.run(until: 300 * Self.ms)
        // Light load: primary only.
        for step in 0..<200 {
            let selection = driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now + UInt64(step) * Self.ms)
            #expect(selection.first == a)
        }
        // Heavy load (far above the primary's 10 Mbit/s initial capacity): the secondary joins, backup never.
        var used = Set<UplinkID>()
        for step in 0..<20_000 {
            used.formUnion(driver.engine.schedule(packetLength: 1400, flowKey: nil,
                                                  now: driver.now + 200 * Self.ms + UInt64(step) * 50_000))
        }
        #expect(used == [a, b])
        // Primary and secondary gone: the backup carries.
        driver.engine.handle(.systemLinkDown(a, at: driver.now))
        driver.engine.handle(.systemLinkDown(b, at: driver.now))
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now + Nanoseconds.second).first == c)
    }

    /// Before any probe is answered every uplink is probing; the fallback to probing uplinks keeps the tiers, so a
    /// backup still carries nothing beside a primary (it did: the fallback took every probing uplink).
    @Test(arguments: [SchedulerMode.aggregate, .lowestLatency, .redundant, .failover, .flow])
    func probingBackupCarriesNothingBesideAProbingPrimary(scheduler: SchedulerMode) throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = scheduler
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(c, policy: UplinkPolicy(tier: .backup), now: 0)
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, policy: UplinkPolicy(tier: .never), now: 0)
        #expect(driver.state(a) == .probing && driver.state(c) == .probing)
        var used = Set<UplinkID>()
        for step in 0..<500 {
            used.formUnion(driver.engine.schedule(packetLength: 1400, flowKey: nil, now: UInt64(step) * 100_000))
        }
        #expect(used == [a])
        // With the primary gone the probing backup is what is left.
        driver.engine.handle(.systemLinkDown(a, at: 60 * Self.ms))
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: 60 * Self.ms).first == c)
    }

    @Test func redundantSendsOnEveryUsableOrBestN() throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .redundant
        var driver = try EngineDriver(configuration: configuration)
        for id in [a, b, c] { try driver.engine.addUplink(id, now: 0) }
        driver.run(until: 300 * Self.ms, rtt: { $0 == UplinkID(2) ? 10 * Self.ms : 40 * Self.ms })
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).count == 3)
        try driver.engine.setScheduler(.redundant, redundantCopies: 2)
        let two = driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now)
        #expect(two.count == 2 && two.first == b)
        try driver.engine.setScheduler(.lowestLatency)
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now) == {
            var s = UplinkSelection(); s.append(b); return s }())
        #expect(throws: MultipathError.self) { try driver.engine.setScheduler(.redundant, redundantCopies: 0) }
        #expect(throws: MultipathError.unknownScheduler("fastest")) { _ = try SchedulerMode(name: "fastest") }
        #expect(try SchedulerMode(name: "lowest-latency") == .lowestLatency)
    }

    /// The control API switches schedulers by name only (ClientTunnel.setScheduler): the configured
    /// `redundant_copies` must survive a switch away and back, and only an explicit value changes them.
    @Test func schedulerSwitchKeepsTheConfiguredRedundantCopies() throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .redundant
        configuration.redundantCopies = 2
        var driver = try EngineDriver(configuration: configuration)
        for id in [a, b, c] { try driver.engine.addUplink(id, now: 0) }
        driver.run(until: 300 * Self.ms, rtt: { $0 == UplinkID(2) ? 10 * Self.ms : 40 * Self.ms })
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).count == 2)
        try driver.engine.setScheduler(.aggregate)
        #expect(driver.engine.configuration.redundantCopies == 2)
        try driver.engine.setScheduler(.redundant)
        #expect(driver.engine.configuration.redundantCopies == 2)
        let two = driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now)
        #expect(two.count == 2 && two.first == b)
        try driver.engine.setScheduler(.redundant, redundantCopies: nil)
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).count == 3)
    }

    @Test func failoverKeepsOneActiveUplinkUntilItFails() throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .failover
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, now: 0)
        driver.run(until: 300 * Self.ms)
        let active = try #require(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).first)
        for _ in 0..<100 { #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).first == active) }
        driver.engine.handle(.systemLinkDown(active, at: driver.now))
        let next = driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).first
        #expect(next != nil && next != active)
    }

    @Test func failoverKeepsItsUplinkWhenOnlyTheAllowanceChanges() throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = .failover
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(a, policy: UplinkPolicy(dataCapBytes: 20_000_000), now: 0)
        try driver.engine.addUplink(b, now: 0)
        driver.run(until: 300 * Self.ms, rtt: { $0 == self.a ? 20 * Self.ms : 40 * Self.ms })
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).first == a)
        // b becomes the faster one; failover stays on a while it works.
        driver.run(until: 3000 * Self.ms, rtt: { $0 == self.a ? 60 * Self.ms : 10 * Self.ms })
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).first == a)
        // The daemon re-sends a capped uplink's allowance every second: no re-pick.
        for allowance in [10_000_000, 9_000_000] as [UInt64] {
            try driver.engine.updatePolicy(UplinkPolicy(dataCapBytes: allowance), for: a)
            try driver.engine.updatePolicy(UplinkPolicy(heartbeatInterval: 5_000 * Self.ms), for: b)
            #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).first == a)
        }
        // A tier or metered change does re-pick.
        try driver.engine.updatePolicy(UplinkPolicy(isMetered: true, dataCapBytes: 9_000_000), for: a)
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).first == b)
    }

    @Test func managementErrorsNameTheUplink() throws {
        var engine = try MultipathEngine<Int>()
        try engine.addUplink(a, now: 0)
        #expect(throws: MultipathError.duplicateUplink(a)) { try engine.addUplink(a, now: 0) }
        #expect(throws: MultipathError.unknownUplink(b)) { try engine.removeUplink(b, now: 0) }
        for raw in 2...16 { try engine.addUplink(UplinkID(UInt32(raw)), now: 0) }
        #expect(throws: MultipathError.tooManyUplinks(limit: 16)) { try engine.addUplink(UplinkID(99), now: 0) }
        var bad = MultipathConfiguration()
        bad.reorderCapacity = 1000
        #expect(throws: MultipathError.self) { try MultipathEngine<Int>(configuration: bad) }
        #expect(MultipathError.unknownUplink(b).description.contains("uplink#2"))
    }

    @Test func perUplinkStateIsBoundedUnderTotalLoss() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        driver.run(until: 300 * Self.ms)
        let trackerFootprint = driver.engine.uplinkStorageFootprint
        var counter: UInt64 = 0
        // 200k packets into a black hole, no feedback ever; plus a flood of resend requests.
        for step in 0..<200_000 {
            counter += 1
            let now = driver.now + UInt64(step) * 10_000
            driver.engine.handle(.packetSent(a, counter: counter, sequence: UInt32(truncatingIfNeeded: counter), bytes: 1400, at: now))
            if step % 100 == 0 {
                driver.engine.handle(.resendRequested(firstSequence: UInt32(step), count: 10_000, at: now))
                while driver.engine.nextDuty(now: now) != nil {}
            }
        }
        #expect(driver.engine.uplinkStorageFootprint == trackerFootprint)
        #expect(driver.state(a) == .down)
    }
}

@Suite struct EstimatorTests {
    @Test func windowedMaxForgetsOldPeaks() {
        var filter = WindowedFilter(keepsMaximum: true, window: 1000)
        filter.update(100, at: 0)
        filter.update(50, at: 500)
        #expect(filter.best == 100)
        filter.update(40, at: 1200)
        #expect(filter.best == 50 || filter.best == 40)
        filter.update(30, at: 2600)
        #expect(filter.best == 30)
    }

    @Test func lossWindowSlides() {
        var window = LossWindow()
        window.record(expected: 100, lost: 10, at: 0)
        #expect(window.percent(at: 0) == 10)
        window.record(expected: 100, lost: 0, at: Nanoseconds.second)
        #expect(window.percent(at: Nanoseconds.second) == 5)
        #expect(window.percent(at: 5 * Nanoseconds.second) == nil)
    }

    @Test func rttTrendPredictsARisingQueue() {
        var rtt = RTTEstimator()
        for step in 0..<40 { rtt.add(sample: UInt64(20 + step) * Nanoseconds.millisecond, at: UInt64(step) * 50 * Nanoseconds.millisecond) }
        #expect(rtt.slope > 0)
        #expect(rtt.predicted(horizon: 100 * Nanoseconds.millisecond) > rtt.smoothed)
        #expect(rtt.windowedMinimum == 20 * Nanoseconds.millisecond)
    }
}

@Suite struct EnginePolicyTests {
    static let ms = Nanoseconds.millisecond
    let a = UplinkID(1), b = UplinkID(2)

    @Test func meteredLinksStayOutUnderLightLoadAndCappedLinksCarryNothing() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, policy: UplinkPolicy(tier: .primary, isMetered: true), now: 0)
        driver.run(until: 300 * Self.ms)
        for step in 0..<200 {
            #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now + UInt64(step) * Self.ms).first == a)
        }
        // The unmetered link hits its cap: the metered one is all that is left, so it carries.
        try driver.engine.updatePolicy(UplinkPolicy(tier: .primary, dataCapBytes: 10_000), for: a)
        driver.engine.handle(.packetSent(a, counter: 1, sequence: 1, bytes: 10_000, at: driver.now + 300 * Self.ms))
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now + 300 * Self.ms).first == b)
        try driver.engine.resetDataCap(for: a)
        #expect(driver.engine.statistics(for: a)?.txBytes == 0)
        #expect(driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now + 300 * Self.ms).first == a,
                "a new billing period: the unmetered link carries again")
    }

    /// `failover` and `lowest-latency` carry data on the best level only, however high the load: a repair of a packet
    /// sent on the active uplink never goes to a metered one, while in `aggregate` the same load
    /// spills onto the metered uplink (so the load is high enough to spill).
    @Test(arguments: [SchedulerMode.failover, .lowestLatency, .aggregate])
    func repairsStayOnTheSchedulersLevelUnderHighLoad(scheduler: SchedulerMode) throws {
        var configuration = MultipathConfiguration()
        configuration.scheduler = scheduler
        var driver = try EngineDriver(configuration: configuration)
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, policy: UplinkPolicy(tier: .primary, isMetered: true), now: 0)
        driver.run(until: 300 * Self.ms)
        // 24 Mbit/s offered for 300 ms: far above what the unmetered uplink is believed to carry.
        var now = driver.now
        var dataOnMetered = 0
        for _ in 0..<750 {
            now += 400 * Nanoseconds.microsecond
            if driver.engine.schedule(packetLength: 1200, flowKey: nil, now: now).contains(b) { dataOnMetered += 1 }
        }
        let repair = driver.engine.scheduleResend(packetLength: 1200, originalUplink: a, alsoAvoiding: nil, now: now)
        if scheduler == .aggregate {
            #expect(dataOnMetered > 0, "the load never spilled onto the metered uplink")
        } else {
            #expect(dataOnMetered == 0)
            // On the active uplink or declined (its queue is full at this load), never on the metered one.
            #expect(!repair.contains(b), "repair went on the metered uplink")
        }
    }

    /// A new billing period doesn't bring back a link the system reported down: probe replies still in flight
    /// must not make it ready again before `systemLinkUp`.
    @Test func resettingADataCapKeepsASystemDownLinkDown() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 0)
        try driver.engine.addUplink(b, policy: UplinkPolicy(dataCapBytes: 10_000), now: 0)
        driver.run(until: 300 * Self.ms)
        #expect(driver.state(b) == .ready)
        driver.engine.handle(.systemLinkDown(b, at: driver.now))
        try driver.engine.resetDataCap(for: b)
        driver.run(until: driver.now + 1000 * Self.ms)
        #expect(driver.state(b) == .down, "came back without the system reporting it up")
        for _ in 0..<20 {
            #expect(!driver.engine.schedule(packetLength: 1000, flowKey: nil, now: driver.now).contains(b))
        }
    }

    @Test func timestampsGoingBackwardsNeverTrap() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(a, now: 5 * Nanoseconds.second)
        driver.run(until: 300 * Self.ms) // the driver's clock starts at 0: every call is "in the past"
        var rng = SplitMix64(seed: 5)
        for step in 0..<2000 {
            let t = rng.next() % (10 * Nanoseconds.second)
            switch step % 6 {
            case 0: driver.engine.handle(.packetSent(a, counter: UInt64(step), sequence: UInt32(step), bytes: 1400, at: t))
            case 1: driver.engine.handle(.feedbackReceived(a, FeedbackReport(highestCounter: UInt64(step), receivedPackets: UInt64(step / 2),
                                                                              receivedBytes: UInt64(step * 700)), at: t))
            case 2: driver.engine.handle(.probeReceived(a, senderTimestamp: rng.next(), at: t))
            case 3: _ = driver.engine.receive(step, sequence: UInt32(truncatingIfNeeded: rng.next()), uplink: a,
                                              counter: UInt64(step), bytes: 100, now: t)
            case 4: _ = driver.engine.schedule(packetLength: 1400, flowKey: nil, now: t)
            default: while driver.engine.nextDuty(now: t) != nil {}; while driver.engine.nextDelivery(now: t) != nil {}
            }
        }
        #expect(driver.engine.statistics(for: a) != nil)
    }
}

@Suite struct EngineRobustnessTests {
    @Test func longIdleGapsAndAbsurdLengthsNeverTrap() throws {
        var driver = try EngineDriver()
        try driver.engine.addUplink(UplinkID(1), now: 0)
        driver.run(until: 300 * Nanoseconds.millisecond)
        let later = driver.now + 2 * 3600 * Nanoseconds.second
        for length in [Int.max, -5, 0, 1 << 30] {
            _ = driver.engine.schedule(packetLength: length, flowKey: nil, now: later)
            driver.engine.handle(.packetSent(UplinkID(1), counter: UInt64(length.magnitude), sequence: 1, bytes: length, at: later))
        }
        driver.engine.handle(.feedbackReceived(UplinkID(1), FeedbackReport(highestCounter: .max, receivedPackets: .max,
                                                                           receivedBytes: .max, reportedAt: 0), at: later))
        while driver.engine.nextDuty(now: later) != nil {}
        #expect(driver.engine.nextDeadline() != nil)
    }

    @Test func configurationRejectsAbsurdTimes() {
        var configuration = MultipathConfiguration()
        configuration.maxReorderHold = .max
        #expect(throws: MultipathError.self) { try configuration.validate() }
        configuration = MultipathConfiguration()
        configuration.minReorderWait = configuration.maxReorderHold + 1
        #expect(throws: MultipathError.self) { try configuration.validate() }
        #expect(throws: Never.self) { try MultipathConfiguration().validate() }
    }
}
