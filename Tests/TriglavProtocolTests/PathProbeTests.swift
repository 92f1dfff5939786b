import Testing
import TriglavCore
@testable import TriglavProtocol

/// Path-MTU probe frames (10, 11; PROTOCOL.md §5) and the search over them (`PathMTUSearch`), driven by a scripted
/// path on a virtual clock.
@Suite struct PathProbeTests {
    @Test func probesArePaddedToTheirSizeAndAcknowledgementsAreSmall() throws {
        let probe = ControlFrame.pathProbe(PathProbe(id: 0x0403_0201, size: 1472))
        #expect(probe.bodyLength == 1472 - WireLayout.transportOverhead)
        #expect(Array(probe.body.prefix(8)) == [1, 2, 3, 4, 0xc0, 0x05, 0, 0] && probe.body.dropFirst(8).allSatisfy { $0 == 0 })
        let ack = ControlFrame.pathProbeAck(PathProbe(id: 0x0403_0201, size: 1472))
        #expect(ack.body == [1, 2, 3, 4, 0xc0, 0x05, 0, 0])
        #expect(FrameType.pathProbe.rawValue == 10 && FrameType.pathProbeAck.rawValue == 11)

        var (client, server) = try TransportTests.sessionPair()
        let datagram = try client.seal(probe, now: 1)
        #expect(datagram.count == 1472, "the whole datagram is the probed size")
        let (opened, body) = try server.open(datagram, now: 1)
        #expect(opened.type == .pathProbe)
        #expect(try ControlFrame.parse(type: opened.type, body: body) == probe)
        let answer = try server.seal(ack, now: 2)
        let (openedAck, ackBody) = try client.open(answer, now: 2)
        #expect(openedAck.type == .pathProbeAck)
        #expect(try ControlFrame.parse(type: openedAck.type, body: ackBody) == ack)
    }

    @Test func malformedProbesAreRefused() {
        let body = ControlFrame.pathProbe(PathProbe(id: 7, size: 100)).body  // 60 bytes
        var reserved = body
        reserved[6] = 1
        // A probe must be as long as it says; an acknowledgement exactly its header.
        for bad in [Array(body.dropLast()), body + [0], reserved, Array(body.prefix(7))] {
            #expect(throws: ProtocolError.malformedFrame(type: .pathProbe, length: bad.count)) {
                try ControlFrame.parse(type: .pathProbe, body: bad)
            }
        }
        for bad in [Array(body.prefix(8)) + [0], Array(body.prefix(7)), Array(reserved.prefix(8))] {
            #expect(throws: ProtocolError.malformedFrame(type: .pathProbeAck, length: bad.count)) {
                try ControlFrame.parse(type: .pathProbeAck, body: bad)
            }
        }
    }

    /// A path that carries datagrams up to `passes` bytes (nil: nothing), answering after `rtt`.
    struct ScriptedPath {
        var passes: Int?
        var rtt: UInt64 = 20 * Self.ms
        static let ms: UInt64 = 1_000_000

        /// Runs `search` from `start` for at most `seconds`, in 10 ms steps; returns the probes it sent (sizes).
        func run(_ search: inout PathMTUSearch, from start: UInt64 = 0, seconds: UInt64) -> [Int] {
            var sent: [Int] = []
            var pending: [(at: UInt64, ack: PathProbe)] = []
            var lastProbeAt: UInt64 = 0
            var now = start
            while now <= start + seconds * 1000 * Self.ms {
                for (index, entry) in pending.enumerated().reversed() where entry.at <= now {
                    search.acknowledge(entry.ack, now: now)
                    pending.remove(at: index)
                }
                // Other traffic (heartbeats) got through since the probe whenever the path carries anything.
                if let probe = search.poll(now: now, deliveredSinceProbe: passes != nil && now > lastProbeAt + rtt) {
                    sent.append(Int(probe.size))
                    lastProbeAt = now
                    if let passes, Int(probe.size) <= passes { pending.append((now + rtt, probe)) }
                }
                now += 10 * Self.ms
            }
            return sent
        }
    }

    static let configuration = PathMTUSearch.Configuration.forServer(ipv6: false)  // base 1252

    @Test("no blackhole: the base and the kernel's bound are acknowledged, two probes, no limit")
    func cleanPathTakesTwoProbes() {
        var search = PathMTUSearch(configuration: Self.configuration)
        search.setUpperBound(1472, now: 0)
        let sent = ScriptedPath(passes: 1472).run(&search, seconds: 5)
        #expect(sent == [1252, 1472])
        #expect(search.phase == .complete && search.blackholeLimit == nil)
    }

    @Test("a hop that drops datagrams above 1372 bytes without ICMP: the search finds 1368 (granularity 8) within 20 s")
    func blackholeIsFound() {
        var search = PathMTUSearch(configuration: Self.configuration)
        search.setUpperBound(1472, now: 0)
        let sent = ScriptedPath(passes: 1372).run(&search, seconds: 20)
        #expect(search.phase == .complete, "probes: \(sent)")
        let limit = search.blackholeLimit ?? 0
        #expect(limit <= 1372 && limit > 1372 - Self.configuration.granularity, "limit \(limit), probes \(sent)")
        #expect(sent.filter { $0 > 1372 }.count % 3 == 0, "each lost size is tried three times: \(sent)")
        // The next search keeps the limit until it has its own answer, then finds the same.
        let again = ScriptedPath(passes: 1372).run(&search, from: 601 * 1000 * ScriptedPath.ms, seconds: 20)
        #expect(again.first == 1252 && search.blackholeLimit == limit)
    }

    @Test("a peer that never answers (an older version) or a dead path: no verdict, and probing pauses for the research interval")
    func unansweredBaseGivesNoVerdict() {
        var search = PathMTUSearch(configuration: Self.configuration)
        search.setUpperBound(1472, now: 0)
        let sent = ScriptedPath(passes: nil).run(&search, seconds: 30)
        // A silent path counts no losses, so the base is retried every timeout; it never concludes a blackhole.
        #expect(search.phase == .confirmingBase && search.blackholeLimit == nil && sent.allSatisfy { $0 == 1252 })
        var old = PathMTUSearch(configuration: Self.configuration)
        old.setUpperBound(1472, now: 0)
        // Heartbeats pass but probes get no answer: three losses of the base, then quiet.
        let probes = ScriptedPath(passes: 0).run(&old, seconds: 30)
        #expect(old.phase == .unanswered && old.blackholeLimit == nil && probes == [1252, 1252, 1252])
    }

    @Test("a change of the kernel's bound restarts the search; a bound at or below the base means nothing to search")
    func upperBoundChangesRestart() {
        var search = PathMTUSearch(configuration: Self.configuration)
        search.setUpperBound(1472, now: 0)
        _ = ScriptedPath(passes: 1400).run(&search, seconds: 20)
        #expect((search.blackholeLimit ?? 0) > 1392)
        // ICMP told the kernel 1380: its bound is lower than the limit, which no longer matters.
        search.setUpperBound(1380, now: 30_000 * ScriptedPath.ms)
        #expect(search.blackholeLimit == nil && search.phase == .confirmingBase)
        let sent = ScriptedPath(passes: 1400).run(&search, from: 30_000 * ScriptedPath.ms, seconds: 5)
        #expect(sent == [1252, 1380] && search.blackholeLimit == nil)
        search.setUpperBound(1200, now: 40_000 * ScriptedPath.ms)
        #expect(search.phase == .idle && search.poll(now: 41_000 * ScriptedPath.ms, deliveredSinceProbe: true) == nil)
    }

    @Test("searching again (another address, a new session) keeps the limit until the new search has its answer")
    func searchAgainKeepsTheLimitUntilAnswered() {
        var search = PathMTUSearch(configuration: Self.configuration)
        search.setUpperBound(1472, now: 0)
        _ = ScriptedPath(passes: 1372).run(&search, seconds: 20)
        let limit = search.blackholeLimit
        #expect(limit != nil)
        let start = 30_000 * ScriptedPath.ms
        search.searchAgain(now: start)
        #expect(search.phase == .confirmingBase && search.blackholeLimit == limit)
        // The new path carries everything: two probes, and the limit is gone.
        let sent = ScriptedPath(passes: 1472).run(&search, from: start, seconds: 5)
        #expect(sent == [1252, 1472] && search.blackholeLimit == nil && search.phase == .complete)
        var unknown = PathMTUSearch(configuration: Self.configuration)
        unknown.searchAgain(now: 0)
        #expect(unknown.phase == .idle, "nothing to search without a bound")
    }

    @Test("acknowledgements of unknown ids, of earlier searches or above the bound change nothing")
    func strayAcknowledgementsAreIgnored() {
        var search = PathMTUSearch(configuration: Self.configuration)
        search.setUpperBound(1472, now: 0)
        let base = search.poll(now: 0, deliveredSinceProbe: false)
        #expect(base == PathProbe(id: 1, size: 1252))
        search.acknowledge(PathProbe(id: 9, size: 1252), now: 1)
        search.acknowledge(PathProbe(id: 1, size: 9000), now: 1)
        #expect(search.phase == .confirmingBase && search.confirmed == nil)
        search.setUpperBound(1400, now: 2)  // a new search: id 1 is from the old one
        search.acknowledge(PathProbe(id: 1, size: 1252), now: 3)
        #expect(search.confirmed == nil)
    }
}
