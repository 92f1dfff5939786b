import Testing
import TriglavCore
@testable import TriglavMultipath

/// Packets older than the reorder window: never delivered (they may have been delivered already).
@Suite struct ReorderStaleTests {
    static let ms = Nanoseconds.millisecond

    /// The redundant copies of an uplink lagging more than the window arrive after the fast uplink's: every one
    /// was delivered already. A run of them (64 and more, nothing buffered) once resynchronised the buffer
    /// backwards and delivered them all a second time.
    @Test func aLongRunOfStaleCopiesIsNeverDeliveredAgain() throws {
        var buffer = try ReorderBuffer<UInt32>(capacity: 64, waitBound: 50 * Self.ms)
        for sequence in UInt32(0)..<200 {
            #expect(buffer.insert(sequence, sequence: sequence, now: UInt64(sequence) * Self.ms) == .deliverNow)
        }
        var verdicts: [ReorderVerdict] = []
        for sequence in UInt32(0)...135 {
            verdicts.append(buffer.insert(sequence, sequence: sequence, now: 200 * Self.ms + UInt64(sequence) * Self.ms))
            while let released = buffer.nextReleasable(now: 200 * Self.ms + UInt64(sequence) * Self.ms) {
                Issue.record("released \(released) again")
            }
        }
        let redelivered = verdicts.indices.filter { verdicts[$0] == .deliverNow }
        #expect(redelivered.isEmpty, "delivered again: \(redelivered)")
        // 0…135 lie more than 64 behind the release point (200): stale; 136…199 would be duplicates.
        #expect(verdicts.allSatisfy { $0 == .stale })
        #expect(buffer.head == 200 && buffer.statistics.stale == 136)
        // The stream goes on where it was.
        #expect(buffer.insert(200, sequence: 200, now: Nanoseconds.second) == .deliverNow)
        #expect(buffer.insert(150, sequence: 150, now: Nanoseconds.second) == .duplicate)
    }
}
