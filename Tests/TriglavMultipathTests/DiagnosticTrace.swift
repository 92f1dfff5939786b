import Foundation
import Testing
import TriglavCore
@testable import TriglavMultipath

/// A timeline of one throughput scenario for finding out where goodput goes: per 250 ms the goodput, the
/// TCP sender's window, RTT and RTO, each link's queue and the reorder buffer. Diagnostic only; run with
/// `TRIGLAV_MULTIPATH_TRACE=<scenario>[,seed] swift test --skip-build --filter DiagnosticTrace`.
@Suite struct DiagnosticTrace {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_TRACE"] != nil))
    func printTimeline() throws {
        let argument = ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_TRACE"] ?? ""
        let parts = argument.split(separator: ",")
        let scenario = ThroughputScenario(rawValue: parts.first.map(String.init) ?? "") ?? .threeLinks
        let seed = parts.count > 1 ? UInt64(parts[1]) ?? 1 : 1
        let seconds = parts.count > 2 ? UInt64(parts[2]) ?? 8 : 8
        // TRIGLAV_MULTIPATH_TRACE_LOSS=<fraction>: override every link's random loss (e.g. 0 for an upper bound).
        // "blackhole": the links of ScenarioTests.blackholingTheBestLink…, uplink 1 blackholed 1.5 s into the flow.
        let blackholeScenario = parts.first == "blackhole"
        let scenarioLinks = blackholeScenario
            ? [LinkSpec(rateMbit: 15, delayMs: 20, loss: 0.005), LinkSpec(rateMbit: 10, delayMs: 40, loss: 0.005),
               LinkSpec(rateMbit: 5, delayMs: 10, loss: 0.005)]
            : scenario.links
        let links = scenarioLinks.map { spec -> LinkSpec in
            var spec = spec
            if let loss = ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_TRACE_LOSS"].flatMap(Double.init) { spec.loss = loss }
            return spec
        }
        let env = ProcessInfo.processInfo.environment
        var configuration = MultipathConfiguration()
        // TRIGLAV_MULTIPATH_TRACE_PACING=<ms>: sender-side pacing queues with this network allowance.
        configuration.pacingQueueAllowance = ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_TRACE_PACING"]
            .flatMap(UInt64.init).map { $0 * Nanoseconds.millisecond }
        // TRIGLAV_MULTIPATH_TRACE_INGRESS_TARGET=<ms>: the tunnel's ingress queue target.
        if let target = ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_TRACE_INGRESS_TARGET"].flatMap(UInt64.init) {
            configuration.ingressQueueTarget = target * Nanoseconds.millisecond
        }
        let network = try Network(links: links, seed: seed, configuration: configuration)
        let startAt = 300 * Nanoseconds.millisecond
        // TRIGLAV_MULTIPATH_TRACE_DATAPLANE_DROPS=1: ingress-refused packets get no sequence (as in the data plane).
        network.client.ingressDropsKeepSequence = ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_TRACE_DATAPLANE_DROPS"] == nil
        // The blackhole scenario numbers like `BlackholeRun`: both ends (the throughput scenarios: the client only).
        if blackholeScenario { network.server.ingressDropsKeepSequence = network.client.ingressDropsKeepSequence }
        // TRIGLAV_MULTIPATH_TRACE_ACKS_UNORDERED=1: pure ACKs bypass the reorder buffer (`receive(ordered: false)`).
        let acksUnordered = ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_TRACE_ACKS_UNORDERED"] != nil
        network.client.bypassReorderForAcks = acksUnordered
        network.server.bypassReorderForAcks = acksUnordered
        let blackholeAfter = (env["TRIGLAV_MULTIPATH_TRACE_BLACKHOLE_AFTER"].flatMap(UInt64.init) ?? 1500) * Nanoseconds.millisecond
        let flow = network.addFlow(1, segments: blackholeScenario ? Int(env["TRIGLAV_MULTIPATH_TRACE_SEGMENTS"].flatMap(Int.init) ?? 6000) : Int.max, at: startAt)
        if blackholeScenario { network.blackhole(UplinkID(1), from: startAt + blackholeAfter) }
        // TRIGLAV_MULTIPATH_TRACE_MIN_WINDOW=<segments>: the sender's window never drops below this.
        flow.debugLog = env["TRIGLAV_MULTIPATH_TRACE_TCP_DEBUG"] != nil
        flow.minimumWindow = ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_TRACE_MIN_WINDOW"].flatMap(Double.init) ?? 0
        // Per data sequence at the server: first arrival, delivery; per requested sequence: request time.
        var arrivedAt: [UInt32: UInt64] = [:]
        var segmentArrival: [Int: UInt64] = [:]
        var holds: [UInt64] = []
        var requestedAt: [UInt32: UInt64] = [:]
        var repairTimes: [UInt64] = []
        var spuriousRequests = 0
        var declined = 0
        var sequenceOfSegment: [Int: UInt32] = [:]
        var highestDeliveredSegment = -1
        var lateDeliveries: [(segment: Int, sequence: UInt32, at: UInt64)] = []
        network.server.onDataArrival = { [unowned network] sequence, packet, _ in
            let now = network.loop.now
            if case .segment(let segment) = packet.kind, sequenceOfSegment[segment] == nil { sequenceOfSegment[segment] = sequence }
            if case .segment(let segment) = packet.kind, segmentArrival[segment] == nil { segmentArrival[segment] = now }
            if arrivedAt[sequence] == nil {
                arrivedAt[sequence] = now
                if let asked = requestedAt[sequence] {
                    if packet.isResend { repairTimes.append(now - asked) } else { spuriousRequests += 1 }
                }
            }
        }
        var requestLog: [UInt32: [UInt64]] = [:]
        var resendLog: [UInt32: [UInt64]] = [:]
        let printRequests = env["TRIGLAV_MULTIPATH_TRACE_REQUESTS"] != nil
        network.server.onResendRequest = { [unowned network] first, count in
            if printRequests { print("REQ \(network.loop.now / 1000) first \(first) count \(count)") }
            for offset in 0..<count where requestedAt[first &+ offset] == nil { requestedAt[first &+ offset] = network.loop.now }
            for offset in 0..<min(count, 64) { requestLog[first &+ offset, default: []].append(network.loop.now) }
        }
        // Resend duties by what the original was doing when the request arrived: still queued on our side (never
        // sent), sent but not yet due at the receiver (sent less than its uplink's one-way delay before), or due.
        var firstSend: [UInt32: (at: UInt64, uplink: UplinkID)] = [:]
        var sendLogScanned = 0
        var dutyKinds = (unsent: 0, notDue: 0, due: 0)
        network.client.onResendDuty = { [unowned network] sequence, performed in
            let log = network.client.dataSentLog
            while sendLogScanned < log.count {
                let entry = log[sendLogScanned]
                if !entry.isResend && firstSend[entry.sequence] == nil { firstSend[entry.sequence] = (entry.time, entry.uplink) }
                sendLogScanned += 1
            }
            if let original = firstSend[sequence] {
                let oneWay = UInt64(scenarioLinks[Int(original.uplink.rawValue) - 1].delayMs * 1e6)
                if network.loop.now < original.at + 2 * oneWay { dutyKinds.notDue += 1 } else { dutyKinds.due += 1 }
            } else {
                dutyKinds.unsent += 1
            }
            if printRequests { print("RSD \(network.loop.now / 1000) \(sequence) \(performed)") }
            if !performed { declined += 1 }
            resendLog[sequence, default: []].append(performed ? network.loop.now : 0)
        }
        var highestSegmentSent = -1
        var refusedRetransmissions: [(segment: Int, at: UInt64)] = []
        var refusedCount = 0
        var refusalsOfSegment: [Int: [UInt64]] = [:]
        var shedsOfSegment: [Int: [UInt64]] = [:]
        network.client.onShed = { [unowned network] packet in
            if case .segment(let segment) = packet.kind { shedsOfSegment[segment, default: []].append(network.loop.now) }
        }
        network.client.onRefused = { [unowned network] packet in
            refusedCount += 1
            if case .segment(let segment) = packet.kind { refusalsOfSegment[segment, default: []].append(network.loop.now) }
            if case .segment(let segment) = packet.kind, segment <= highestSegmentSent - 1, refusedRetransmissions.count < 12 {
                refusedRetransmissions.append((segment, network.loop.now))
            }
        }
        let originalSend = flow.sendSegment
        flow.sendSegment = { segment, timestamp in
            highestSegmentSent = max(highestSegmentSent, segment)
            originalSend(segment, timestamp)
        }
        let originalDeliver = network.server.deliver
        network.server.deliver = { [unowned network] packet in
            if case .segment(let segment) = packet.kind, let at = segmentArrival[segment] { holds.append(network.loop.now - at) }
            if case .segment(let segment) = packet.kind {
                if segment < highestDeliveredSegment, lateDeliveries.count < 8, network.loop.now > startAt + 800 * Nanoseconds.millisecond {
                    lateDeliveries.append((segment, sequenceOfSegment[segment] ?? 0, network.loop.now))
                }
                highestDeliveredSegment = max(highestDeliveredSegment, segment)
            }
            originalDeliver(packet)
        }
        network.client.logSends = true
        network.server.logArrivals = true
        // Every tunnel sequence a segment entered with (TCP transmissions that passed ingress), for the stall report.
        var ingressOfSegment: [Int: [(sequence: UInt32, at: UInt64)]] = [:]
        network.client.onNumbered = { [unowned network] sequence, packet in
            if case .segment(let segment) = packet.kind { ingressOfSegment[segment, default: []].append((sequence, network.loop.now)) }
        }
        let step = (ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_STEP"].flatMap(UInt64.init) ?? 250) * Nanoseconds.millisecond
        var time = startAt
        var lastDelivered = 0
        var maxHold: UInt64 = 0
        print("t(ms) goodput(Mb/s) cwnd ssthr flight rec srtt(ms) rto(ms) | link queues fwd (ms) | reorderBuf waitBound reqDelay ingressDrops | packets waiting on our side")
        while time < startAt + seconds * Nanoseconds.second {
            time += step
            network.loop.run(until: time)
            let delivered = flow.delivered(by: time)
            let goodput = Double((delivered - lastDelivered) * segmentBytes * 8) / (Double(step) / 1e9) / 1e6
            lastDelivered = delivered
            let queues = network.uplinkIDs.map { id in
                String(format: "%5.1f/%5.1f@%4.1f", Double(network.forward[id]!.queueDelay(at: time)) / 1e6,
                       Double(network.client.engine.modelQueueDelay(for: id, now: time) ?? 0) / 1e6,
                       Double(network.client.engine.statistics(for: id)?.capacityBitsPerSecond ?? 0) / 1e6)
            }.joined(separator: " ")
            let engine = network.client.engine
            maxHold = max(maxHold, network.server.engine.reorderWaitBound)
            print(String(format: "%5d %6.1f %6.0f %6.0f %5d %d %6.1f %6.0f | %@ | %4d %6.1f %6.1f %d | ours %d",
                         Int((time - startAt) / Nanoseconds.millisecond), goodput, flow.cwnd,
                         min(flow.ssthresh, 99999), flow.sndNxt - flow.sndUna, flow.inRecovery ? 1 : 0,
                         Double(flow.srtt) / 1e6, Double(flow.rto) / 1e6, queues,
                         network.server.engine.reorderBufferedCount,
                         Double(network.server.engine.reorderWaitBound) / 1e6,
                         Double(network.server.engine.reorderResendRequestDelay) / 1e6, engine.ingressDrops,
                         network.client.pacedBacklog))
        }
        for event in flow.congestionLog {
            print("  \((event.time - startAt) / Nanoseconds.millisecond) ms: \(event.event)")
        }
        func percentile(_ values: [UInt64], _ p: Double) -> Double {
            let sorted = values.sorted()
            guard !sorted.isEmpty else { return 0 }
            return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6
        }
        let heldCount = holds.filter { $0 > Nanoseconds.millisecond }.count
        print(String(format: "holds: %d packets, %.1f%% held >1 ms, mean %.2f ms, p50 %.1f p90 %.1f p99 %.1f max %.1f ms",
                     holds.count, Double(heldCount) * 100 / Double(max(holds.count, 1)),
                     Double(holds.reduce(0, +)) / Double(max(holds.count, 1)) / 1e6,
                     percentile(holds, 0.5), percentile(holds, 0.9), percentile(holds, 0.99), percentile(holds, 1)))
        print(String(format: "repairs (request→resend arrival): %d, p50 %.1f p90 %.1f max %.1f ms; spurious requests %d; declined %d",
                     repairTimes.count, percentile(repairTimes, 0.5), percentile(repairTimes, 0.9), percentile(repairTimes, 1),
                     spuriousRequests, declined))
        // Arrival order vs sequence order for first arrivals of data (the scheduler's prediction quality).
        var firstArrival: [UInt32: (time: UInt64, uplink: UplinkID)] = [:]
        for entry in network.server.arrivalLog where !entry.isResend && firstArrival[entry.sequence] == nil {
            firstArrival[entry.sequence] = (entry.time, entry.uplink)
        }
        var lateBy: [UplinkID: (count: Int, total: UInt64)] = [:]
        var maxSoFar: (time: UInt64, uplink: UplinkID)?
        let sequences = firstArrival.keys.sorted()
        for sequence in sequences {
            let arrival = firstArrival[sequence]!
            if let m = maxSoFar, m.time > arrival.time + Nanoseconds.millisecond {
                lateBy[m.uplink, default: (0, 0)].count += 1
                lateBy[m.uplink, default: (0, 0)].total += m.time - arrival.time
            }
            if maxSoFar == nil || arrival.time > maxSoFar!.time { maxSoFar = arrival }
        }
        for (id, value) in lateBy.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            print("waiting >1 ms behind a packet on \(id): \(value.count) packets, mean \(Double(value.total) / Double(value.count) / 1e6) ms")
        }
        var sentAt: [UInt32: UInt64] = [:]
        for entry in network.client.dataSentLog where !entry.isResend && sentAt[entry.sequence] == nil { sentAt[entry.sequence] = entry.time }
        var incidents = 0
        for (position, sequence) in sequences.enumerated() where position > 10 && position + 3 < sequences.count && incidents < 6 {
            let arrival = firstArrival[sequence]!
            let next = firstArrival[sequences[position + 1]]!
            guard arrival.time > next.time + 5 * Nanoseconds.millisecond, arrival.time > startAt + 2 * Nanoseconds.second else { continue }
            incidents += 1
            print("incident:")
            for other in sequences[(position - 6)...(position + 3)] {
                let a = firstArrival[other]!
                print(String(format: "  seq %d on %@ sent %.3f arrived %.3f (transit %.3f)", other, a.uplink.description,
                             Double((sentAt[other] ?? 0) &- startAt) / 1e6, Double(a.time - startAt) / 1e6,
                             Double(a.time &- (sentAt[other] ?? 0)) / 1e6))
            }
        }
        if let dumpAt = ProcessInfo.processInfo.environment["TRIGLAV_MULTIPATH_DUMP"].flatMap(UInt32.init) {
            for sequence in sequences where sequence >= dumpAt && sequence < dumpAt + 60 {
                let arrival = firstArrival[sequence]!
                print("seq \(sequence) uplink \(arrival.uplink) arrival \(Double(arrival.time - startAt) / 1e6)")
            }
        }
        // Repairs that took long (or never arrived): request times, resend times, arrival.
        var slowRepairs = 0
        for (sequence, requests) in requestLog.sorted(by: { $0.key < $1.key }) where slowRepairs < 8 {
            let arrival = arrivedAt[sequence]
            guard arrival == nil || arrival! > requests[0] + 60 * Nanoseconds.millisecond else { continue }
            slowRepairs += 1
            func ms(_ t: UInt64) -> String { t == 0 ? "declined" : String(format: "%.1f", Double(t &- startAt) / 1e6) }
            let sends = network.client.dataSentLog.filter { $0.sequence == sequence }
                .map { String(format: "%.1f on %@%@", Double($0.time &- startAt) / 1e6, $0.uplink.description, $0.isResend ? " (resend)" : "") }
            print("slow repair seq \(sequence): requests \(requests.map(ms)) resends \((resendLog[sequence] ?? []).map(ms)) arrival \(arrival.map(ms) ?? "never"); sent \(sends)")
        }
        print("refused at ingress: \(refusedCount); TCP retransmissions among them: " + refusedRetransmissions
            .map { "\($0.segment)@\(Double($0.at &- startAt) / 1e6)" }.joined(separator: " "))
        for late in lateDeliveries {
            let sequence = late.sequence
            let sends = network.client.dataSentLog.filter { $0.sequence == sequence }
                .map { String(format: "%.1f on %@%@", Double($0.time &- startAt) / 1e6, $0.uplink.description, $0.isResend ? " (resend)" : "") }
            let arrivals = network.server.arrivalLog.filter { $0.sequence == sequence }
                .map { String(format: "%.1f on %@", Double($0.time &- startAt) / 1e6, $0.uplink.description) }
            print(String(format: "late delivery seg %d seq %d at %.1f: sent %@ arrived %@ requests %@", late.segment, sequence,
                         Double(late.at &- startAt) / 1e6, sends.description, arrivals.description,
                         (requestLog[sequence] ?? []).map { Double($0 &- startAt) / 1e6 }.description))
        }
        let stats = network.server.engine.reorderStatistics
        print("reorder: \(stats)")
        print("client resends performed: \(network.client.resendsPerformed), unscheduled: \(network.client.unscheduled)")
        print("resend duties: original unsent \(dutyKinds.unsent), sent < 2 one-way delays before \(dutyKinds.notDue), older \(dutyKinds.due)")
        for id in network.uplinkIDs {
            let link = network.forward[id]!
            let s = network.client.engine.statistics(for: id)!
            if id == network.uplinkIDs.first { print("client state changes: \(network.client.stateLog.map { "\($0.time / Nanoseconds.millisecond):\($0.uplink):\($0.to)" })") }
            print("uplink \(id): carried \(link.carriedPackets) queue-full drops \(link.droppedQueueFull) capacity est \(s.capacityBitsPerSecond / 1000) kbit/s srtt \(s.smoothedRTT / 1000) us minRTT \(s.minimumRTT / 1000) us state \(s.state)")
        }
        if blackholeScenario {
            let from = startAt + blackholeAfter - 200 * Nanoseconds.millisecond
            let gap = flow.longestDeliveryGap(from: from, to: flow.completedAt ?? time)
            var previous = from
            var worst = (start: from, end: from)
            for delivery in flow.deliveries where delivery.time >= from {
                if delivery.time - previous > worst.end - worst.start { worst = (previous, delivery.time) }
                previous = delivery.time
            }
            print("blackhole gap: \(gap / Nanoseconds.millisecond) ms, completed: \(flow.completedAt.map { ($0 - startAt) / Nanoseconds.millisecond } ?? 0) ms; longest stall \((worst.start - startAt) / Nanoseconds.millisecond)–\((worst.end - startAt) / Nanoseconds.millisecond) ms")
            // The segment the receiver waited for during the longest stall: each time it entered the tunnel (or was
            // refused), and each tunnel transmission and arrival of those sequences.
            let waitedFor = flow.deliveries.last { $0.time <= worst.start }?.rcvNxt ?? 0
            func rel(_ t: UInt64) -> String { String(format: "%.1f", Double(t &- startAt) / 1e6) }
            print("stalled on segment \(waitedFor): ingress \((ingressOfSegment[waitedFor] ?? []).map { "seq \($0.sequence)@\(rel($0.at))" }) "
                  + "refused \((refusalsOfSegment[waitedFor] ?? []).map(rel)) shed \((shedsOfSegment[waitedFor] ?? []).map(rel))")
            for entry in ingressOfSegment[waitedFor] ?? [] {
                let sends = network.client.dataSentLog.filter { $0.sequence == entry.sequence }
                    .map { "\(rel($0.time)) on \($0.uplink)\($0.isResend ? " (resend)" : "")" }
                let arrivals = network.server.arrivalLog.filter { $0.sequence == entry.sequence }.map { "\(rel($0.time)) on \($0.uplink)" }
                print("  seq \(entry.sequence): sent \(sends) arrived \(arrivals) requests \((requestLog[entry.sequence] ?? []).map(rel))")
                // Arrived before the stall ended but held: the tunnel sequences still missing below it when it arrived.
                guard let arrived = network.server.arrivalLog.first(where: { $0.sequence == entry.sequence })?.time,
                      arrived < worst.end else { continue }
                let present = Set(network.server.arrivalLog.filter { $0.time <= arrived }.map(\.sequence))
                let missing = (entry.sequence >= 3000 ? entry.sequence - 3000 : 0)..<entry.sequence
                for sequence in missing.filter({ !present.contains($0) }).suffix(4) {
                    let sends = network.client.dataSentLog.filter { $0.sequence == sequence }
                        .map { "\(rel($0.time)) on \($0.uplink)\($0.isResend ? " (resend)" : "")" }
                    let later = network.server.arrivalLog.filter { $0.sequence == sequence }.map { "\(rel($0.time))" }
                    print("    held behind seq \(sequence): sent \(sends) arrived \(later) requests \((requestLog[sequence] ?? []).map(rel)) resends \((resendLog[sequence] ?? []).map { $0 == 0 ? "declined" : rel($0) })")
                }
            }
        }
        print("goodput 1 s..end: \(network.goodput(from: startAt + Nanoseconds.second, to: time) / Double(network.summedRate) * 100) %")
    }
}
