import Testing
@testable import TriglavLinkEmulator

private let millisecond: UInt64 = 1_000_000
private let second: UInt64 = 1_000_000_000

/// Offers `count` packets of `size` bytes at a fixed `interval` starting at `start`; returns the
/// admissions in order.
private func offer(_ shaper: inout LinkShaper, count: Int, size: Int, interval: UInt64,
                   start: UInt64 = second) -> [LinkShaper.Admission] {
    (0..<count).map { index in shaper.admit(byteCount: size, now: start + UInt64(index) * interval) }
}

private func releaseTimes(_ admissions: [LinkShaper.Admission]) -> [UInt64] {
    admissions.compactMap { if case .release(let time) = $0 { time } else { nil } }
}

@Suite struct RateTests {
    /// Saturates the link (150% offered load) for two seconds and counts the bytes that finish
    /// within the measurement window: the achieved rate must match the configured one within 1%.
    @Test(arguments: [1_000_000, 10_000_000, 30_000_000, 100_000_000] as [UInt64])
    func saturatedRateMatchesConfiguration(rate: UInt64) {
        let size = 1500
        var shaper = LinkShaper(profile: LinkProfile(rateBitsPerSecond: rate, queueLimit: .bytes(64 << 10)), seed: 1)
        let packetInterval = UInt64(size * 8) * second / (rate * 3 / 2)
        let start = second
        let duration = 2 * second
        let admissions = offer(&shaper, count: Int(duration / packetInterval), size: size, interval: packetInterval,
                               start: start)
        let delivered = releaseTimes(admissions).filter { $0 <= start + duration }.count
        let achieved = Double(delivered * size * 8) / 2.0
        #expect(abs(achieved / Double(rate) - 1) < 0.01, "achieved \(achieved) bit/s of \(rate)")
        let queueDrops = shaper.statistics.queueDroppedPackets
        #expect(queueDrops > 0, "150% load must overflow the queue eventually")
    }

    @Test func serializationTimeIsExactAndCarriesRemainders() {
        // 1000 bytes at 3 Mbit/s = 2666666.67 ns: three packets must take exactly 8 ms in total.
        var shaper = LinkShaper(profile: LinkProfile(rateBitsPerSecond: 3_000_000), seed: 1)
        let times = releaseTimes(offer(&shaper, count: 3, size: 1000, interval: 0))
        #expect(times == [second + 2_666_666, second + 5_333_333, second + 8_000_000])
    }

    @Test func idleTransmitterStartsAtArrivalAndSavesNoCredit() {
        var shaper = LinkShaper(profile: LinkProfile(rateBitsPerSecond: 8_000_000), seed: 1)
        // 1000 bytes at 8 Mbit/s = 1 ms.
        let first = shaper.admit(byteCount: 1000, now: second)
        // Long idle period: the next packet still takes its full serialization time.
        let afterIdle = shaper.admit(byteCount: 1000, now: 5 * second)
        // Back-to-back: waits for the transmitter.
        let backToBack = shaper.admit(byteCount: 1000, now: 5 * second)
        #expect(first == .release(at: second + millisecond))
        #expect(afterIdle == .release(at: 5 * second + millisecond))
        #expect(backToBack == .release(at: 5 * second + 2 * millisecond))
    }

    @Test func unlimitedRateOnlyDelays() {
        var shaper = LinkShaper(profile: LinkProfile(delayNanoseconds: 7 * millisecond), seed: 1)
        let times = releaseTimes(offer(&shaper, count: 100, size: 1500, interval: 0))
        #expect(times == Array(repeating: second + 7 * millisecond, count: 100))
    }
}

@Suite struct QueueTests {
    @Test func packetLimitTailDrops() {
        var shaper = LinkShaper(profile: LinkProfile(rateBitsPerSecond: 12_000_000, queueLimit: .packets(10)), seed: 1)
        // A burst of 100 at one instant: 10 fit (the one in transmission counts), 90 are dropped.
        let admissions = offer(&shaper, count: 100, size: 1500, interval: 0)
        #expect(releaseTimes(admissions).count == 10)
        #expect(admissions.prefix(10).allSatisfy { if case .release = $0 { true } else { false } })
        #expect(admissions.suffix(90).allSatisfy { $0 == .queueFull })
        let queueDrops = shaper.statistics.queueDroppedPackets
        #expect(queueDrops == 90)
        // 1500 B at 12 Mbit/s = 1 ms each: after 3.5 ms three have left, so three fit again.
        let later = offer(&shaper, count: 5, size: 1500, interval: 0, start: second + 3_500_000)
        let queuedPackets = shaper.queuedPackets
        #expect(releaseTimes(later).count == 3)
        #expect(queuedPackets == 10)
    }

    @Test func byteLimitTailDrops() {
        var shaper = LinkShaper(profile: LinkProfile(rateBitsPerSecond: 12_000_000, queueLimit: .bytes(15_000)),
                                seed: 1)
        let admissions = offer(&shaper, count: 20, size: 1500, interval: 0)
        let queuedBytes = shaper.queuedBytes
        // A small packet still fits where a large one doesn't.
        let oneMore = shaper.admit(byteCount: 1500, now: second + 500_000)
        #expect(releaseTimes(admissions).count == 10)
        #expect(queuedBytes == 15_000)
        #expect(oneMore == .queueFull)
        var small = LinkShaper(profile: LinkProfile(rateBitsPerSecond: 12_000_000, queueLimit: .bytes(15_000)), seed: 1)
        _ = offer(&small, count: 9, size: 1500, interval: 0)
        let fits = small.admit(byteCount: 1499, now: second)
        let overflows = small.admit(byteCount: 2, now: second)
        #expect(fits != .queueFull)
        #expect(overflows == .queueFull)
    }

    @Test func queueLimitCountsOnlyWaitingPacketsNotPropagation() {
        // A long delay must not shrink the queue: packets in propagation are on the wire, not queued.
        var shaper = LinkShaper(profile: LinkProfile(rateBitsPerSecond: 12_000_000, delayNanoseconds: 500 * millisecond,
                                                     queueLimit: .packets(2)), seed: 1)
        let admissions = offer(&shaper, count: 100, size: 1500, interval: millisecond)
        #expect(admissions.allSatisfy { if case .release = $0 { true } else { false } })
    }
}

@Suite struct LossTests {
    @Test(arguments: [0.01, 0.1, 0.5])
    func lossRatioMatchesProbability(probability: Double) {
        var shaper = LinkShaper(profile: LinkProfile(lossProbability: probability), seed: 42)
        let count = 200_000
        let admissions = offer(&shaper, count: count, size: 100, interval: 1000)
        let lost = admissions.filter { $0 == .lost }.count
        let counted = Int(shaper.statistics.lostPackets)
        #expect(lost == counted)
        // Binomial standard deviation at 1% is 0.022%; 0.2% absolute is far outside chance.
        #expect(abs(Double(lost) / Double(count) - probability) < 0.002, "lost \(lost) of \(count)")
    }

    @Test func sameSeedSamePatternDifferentSeedDifferentPattern() {
        func pattern(seed: UInt64) -> [Bool] {
            var shaper = LinkShaper(profile: LinkProfile(lossProbability: 0.3), seed: seed)
            return offer(&shaper, count: 1000, size: 100, interval: 1000).map { $0 == .lost }
        }
        #expect(pattern(seed: 7) == pattern(seed: 7))
        #expect(pattern(seed: 7) != pattern(seed: 8))
    }

    @Test func noLossConfiguredLosesNothing() {
        var shaper = LinkShaper(profile: LinkProfile(), seed: 3)
        #expect(!offer(&shaper, count: 10_000, size: 100, interval: 10).contains(.lost))
    }
}

@Suite struct DelayJitterTests {
    @Test func fixedDelayAddsToSerialization() {
        var shaper = LinkShaper(profile: LinkProfile(rateBitsPerSecond: 8_000_000, delayNanoseconds: 20 * millisecond),
                                seed: 1)
        let admission = shaper.admit(byteCount: 1000, now: second)
        #expect(admission == .release(at: second + 21 * millisecond))
    }

    /// Sparse packets (further apart than the jitter span) see the configured distribution:
    /// bounded by delay ± jitter, mean at the delay, quarters equally filled.
    @Test func uniformJitterDistribution() {
        let delay = 20 * millisecond, jitter = 5 * millisecond
        var shaper = LinkShaper(profile: LinkProfile(delayNanoseconds: delay, jitterNanoseconds: jitter), seed: 9)
        let count = 20_000
        let interval = 20 * millisecond
        let delays = releaseTimes(offer(&shaper, count: count, size: 100, interval: interval)).enumerated().map {
            Double($0.element - (second + UInt64($0.offset) * interval)) - Double(delay)
        }
        #expect(delays.allSatisfy { abs($0) <= Double(jitter) })
        let mean = delays.reduce(0, +) / Double(count)
        #expect(abs(mean) < 0.02 * Double(jitter), "mean offset \(mean) ns")
        for quarter in 0..<4 {
            let low = -Double(jitter) + Double(quarter) * Double(jitter) / 2
            let share = Double(delays.filter { $0 >= low && $0 < low + Double(jitter) / 2 }.count) / Double(count)
            #expect(abs(share - 0.25) < 0.02, "quarter \(quarter) holds \(share)")
        }
    }

    @Test func normalJitterHasConfiguredStandardDeviation() {
        let delay = 50 * millisecond, jitter = 5 * millisecond
        var shaper = LinkShaper(profile: LinkProfile(delayNanoseconds: delay, jitterNanoseconds: jitter,
                                                     jitterDistribution: .normal, allowsReordering: true), seed: 5)
        let count = 20_000
        let interval = 100 * millisecond
        let offsets = releaseTimes(offer(&shaper, count: count, size: 100, interval: interval)).enumerated().map {
            Double($0.element - (second + UInt64($0.offset) * interval)) - Double(delay)
        }
        let mean = offsets.reduce(0, +) / Double(count)
        let variance = offsets.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(count)
        #expect(abs(mean) < 0.03 * Double(jitter))
        #expect(abs(variance.squareRoot() / Double(jitter) - 1) < 0.05, "sigma \(variance.squareRoot())")
        // About 68% within one standard deviation.
        let within = Double(offsets.filter { abs($0) <= Double(jitter) }.count) / Double(count)
        #expect(abs(within - 0.683) < 0.02)
    }

    @Test func denseJitteredPacketsStayInOrderByDefault() {
        var shaper = LinkShaper(profile: LinkProfile(rateBitsPerSecond: 30_000_000, delayNanoseconds: 20 * millisecond,
                                                     jitterNanoseconds: 5 * millisecond), seed: 2)
        let times = releaseTimes(offer(&shaper, count: 5000, size: 1500, interval: 400_000))
        #expect(times.count == 5000)
        #expect(zip(times, times.dropFirst()).allSatisfy { $0 <= $1 })
        // Never earlier than delay - jitter after transmission.
        #expect(times.enumerated().allSatisfy { $0.element >= second + UInt64($0.offset) * 400_000 + 15 * millisecond })
    }

    @Test func reorderingHappensOnlyWhenAllowed() {
        var shaper = LinkShaper(profile: LinkProfile(delayNanoseconds: 20 * millisecond, jitterNanoseconds: 5 * millisecond,
                                                     allowsReordering: true), seed: 2)
        let times = releaseTimes(offer(&shaper, count: 5000, size: 1500, interval: 400_000))
        let inversions = zip(times, times.dropFirst()).filter { $0 > $1 }.count
        #expect(inversions > 100)
    }
}

@Suite struct ReleaseQueueTests {
    @Test func popsInTimeOrderWithArrivalOrderOnTies() {
        var queue = ReleaseQueue(capacity: 1000)
        var random = RandomSource(seed: 11)
        var expected: [(UInt64, Int32)] = []
        for slot in 0..<1000 {
            let time = random.next() % 50
            let pushed = queue.push(slot: Int32(slot), releaseTime: time)
            #expect(pushed)
            expected.append((time, Int32(slot)))
        }
        let isFull = queue.isFull
        let pushedBeyondCapacity = queue.push(slot: 1000, releaseTime: 0)
        #expect(isFull)
        #expect(!pushedBeyondCapacity)
        expected.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        let first = queue.popDue(now: 0)
        #expect(first?.releaseTime == 0)
        var popped: [(UInt64, Int32)] = [(0, expected[0].1)]
        while let entry = queue.popDue(now: 49) { popped.append((entry.releaseTime, entry.slot)) }
        #expect(popped.map(\.0) == expected.map(\.0))
        #expect(popped.map(\.1) == expected.map(\.1))
        let isEmpty = queue.isEmpty
        #expect(isEmpty)
    }

    @Test func holdsBackWhatIsNotDue() {
        var queue = ReleaseQueue(capacity: 4)
        _ = queue.push(slot: 1, releaseTime: 100)
        _ = queue.push(slot: 2, releaseTime: 50)
        let next = queue.nextReleaseTime
        let early = queue.popDue(now: 49)
        let due = queue.popDue(now: 50)
        let stillEarly = queue.popDue(now: 99)
        let last = queue.popDue(now: 1000)
        #expect(next == 50)
        #expect(early == nil)
        #expect(due?.slot == 2)
        #expect(stillEarly == nil)
        #expect(last?.slot == 1)
    }
}

@Suite struct ProfileParsingTests {
    @Test func parsesTcStyleUnits() throws {
        #expect(try LinkProfile.parseRate("30mbit") == 30_000_000)
        #expect(try LinkProfile.parseRate("1.5Gbit") == 1_500_000_000)
        #expect(try LinkProfile.parseRate("800kbit") == 800_000)
        #expect(try LinkProfile.parseRate("unlimited") == nil)
        #expect(try LinkProfile.parseDuration("20ms") == 20 * millisecond)
        #expect(try LinkProfile.parseDuration("250us") == 250_000)
        #expect(try LinkProfile.parseDuration("1.5s") == 1_500_000_000)
        #expect(try LinkProfile.parseDuration("0") == 0)
        #expect(try LinkProfile.parseLoss("1%") == 0.01)
        #expect(try LinkProfile.parseLoss("0.5%") == 0.005)
        #expect(try LinkProfile.parseQueueLimit("64kb") == .bytes(65536))
        #expect(try LinkProfile.parseQueueLimit("1mb") == .bytes(1 << 20))
        #expect(try LinkProfile.parseQueueLimit("3000b") == .bytes(3000))
        #expect(try LinkProfile.parseQueueLimit("100p") == .packets(100))
    }

    @Test func rejectsGarbageNamingTheValue() {
        #expect(throws: LinkEmulatorError.invalidRate("30")) { try LinkProfile.parseRate("30") }
        #expect(throws: LinkEmulatorError.invalidRate("-3mbit")) { try LinkProfile.parseRate("-3mbit") }
        #expect(throws: LinkEmulatorError.invalidRate("mbit")) { try LinkProfile.parseRate("mbit") }
        #expect(throws: LinkEmulatorError.invalidDuration("20")) { try LinkProfile.parseDuration("20") }
        #expect(throws: LinkEmulatorError.invalidDuration("1e3ms")) { try LinkProfile.parseDuration("1e3ms") }
        #expect(throws: LinkEmulatorError.invalidLoss("101%")) { try LinkProfile.parseLoss("101%") }
        #expect(throws: LinkEmulatorError.invalidLoss("0.01")) { try LinkProfile.parseLoss("0.01") }
        #expect(throws: LinkEmulatorError.invalidQueueLimit("1.5p")) { try LinkProfile.parseQueueLimit("1.5p") }
        #expect(throws: LinkEmulatorError.invalidQueueLimit("64")) { try LinkProfile.parseQueueLimit("64") }
        #expect(LinkEmulatorError.invalidRate("30").description.contains("'30'"))
    }

    @Test func validationCatchesImpossibleCombinations() {
        #expect(throws: LinkEmulatorError.jitterWithoutDelay(jitterNanoseconds: 5 * millisecond, delayNanoseconds: 0)) {
            try LinkProfile(jitterNanoseconds: 5 * millisecond).validate()
        }
        #expect(throws: LinkEmulatorError.queueLimitTooSmall(bytes: 1000, minimum: 1518)) {
            try LinkProfile(queueLimit: .bytes(1000)).validate()
        }
        #expect(throws: Never.self) { try LinkProfile(rateBitsPerSecond: 1, queueLimit: .packets(1)).validate() }
    }
}
