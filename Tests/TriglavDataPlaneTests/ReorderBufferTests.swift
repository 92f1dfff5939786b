import Testing
@testable import TriglavDataPlane

/// Feeds sequence-numbered one-byte packets and records what comes out.
private final class Recorder {
    var delivered: [UInt8] = []
    func deliver(_ packet: UnsafeRawBufferPointer) { delivered.append(packet[0]) }
}

private func insert(_ buffer: ReorderBuffer, _ sequence: UInt32, at now: UInt64, into recorder: Recorder) {
    var byte = UInt8(truncatingIfNeeded: sequence)
    withUnsafeBytes(of: &byte) { packet in
        buffer.insert(sequence: sequence, packet: packet, now: now) { recorder.deliver($0) }
    }
}

@Suite("ReorderBuffer")
struct ReorderBufferTests {
    @Test("in-order packets pass straight through")
    func inOrder() {
        let buffer = ReorderBuffer(window: 16, slotSize: 16, maxHold: 1000)
        let recorder = Recorder()
        for sequence in UInt32(5)..<15 { insert(buffer, sequence, at: 0, into: recorder) }
        #expect(recorder.delivered == Array(5..<15))
        #expect(!buffer.isHolding)
    }

    @Test("a swapped pair is released in order")
    func swappedPair() {
        let buffer = ReorderBuffer(window: 16, slotSize: 16, maxHold: 1000)
        let recorder = Recorder()
        for sequence: UInt32 in [0, 2, 1, 3, 5, 4] { insert(buffer, sequence, at: 0, into: recorder) }
        #expect(recorder.delivered == [0, 1, 2, 3, 4, 5])
    }

    @Test("a gap is skipped after maxHold, and the late packet is still delivered once")
    func gapSkippedAfterHold() {
        let buffer = ReorderBuffer(window: 16, slotSize: 16, maxHold: 100)
        let recorder = Recorder()
        insert(buffer, 0, at: 0, into: recorder)
        insert(buffer, 2, at: 10, into: recorder)
        insert(buffer, 3, at: 20, into: recorder)
        #expect(recorder.delivered == [0])
        #expect(buffer.deadline == 110)
        buffer.flushExpired(now: 109) { recorder.deliver($0) }
        #expect(recorder.delivered == [0])
        buffer.flushExpired(now: 110) { recorder.deliver($0) }
        #expect(recorder.delivered == [0, 2, 3])
        insert(buffer, 1, at: 120, into: recorder)
        insert(buffer, 1, at: 121, into: recorder)
        #expect(recorder.delivered == [0, 2, 3, 1])
        #expect(buffer.duplicates == 1)
    }

    @Test("duplicates of held and of delivered packets are dropped")
    func duplicates() {
        let buffer = ReorderBuffer(window: 16, slotSize: 16, maxHold: 1000)
        let recorder = Recorder()
        for sequence: UInt32 in [0, 0, 2, 2, 1, 1, 2] { insert(buffer, sequence, at: 0, into: recorder) }
        #expect(recorder.delivered == [0, 1, 2])
        #expect(buffer.duplicates == 4)
    }

    @Test("a jump beyond the window releases what is held and stays bounded")
    func jumpBeyondWindow() {
        let buffer = ReorderBuffer(window: 8, slotSize: 16, maxHold: 1000)
        let recorder = Recorder()
        insert(buffer, 0, at: 0, into: recorder)
        insert(buffer, 3, at: 0, into: recorder)
        insert(buffer, 100, at: 0, into: recorder)
        #expect(recorder.delivered == [0, 3])
        #expect(buffer.isHolding)
        buffer.flushExpired(now: 1000) { recorder.deliver($0) }
        #expect(recorder.delivered == [0, 3, 100])
    }

    @Test("sequence numbers wrap around 2^32")
    func wrapAround() {
        let buffer = ReorderBuffer(window: 16, slotSize: 16, maxHold: 1000)
        let recorder = Recorder()
        for sequence: UInt32 in [UInt32.max - 1, 0, UInt32.max, 1] { insert(buffer, sequence, at: 0, into: recorder) }
        #expect(recorder.delivered == [254, 255, 0, 1])
    }

    @Test("a flood of random sequences never holds more than the window")
    func floodStaysBounded() {
        let buffer = ReorderBuffer(window: 32, slotSize: 16, maxHold: 1_000_000)
        let recorder = Recorder()
        var generator = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            insert(buffer, UInt32.random(in: 0...UInt32.max, using: &generator), at: UInt64(step), into: recorder)
        }
        buffer.flushExpired(now: .max) { recorder.deliver($0) }
        #expect(!buffer.isHolding)
        #expect(recorder.delivered.count <= 20_000)
    }

    @Test("a packet larger than a slot is not stored")
    func oversizedPacketIsDropped() {
        let buffer = ReorderBuffer(window: 8, slotSize: 4, maxHold: 10)
        var delivered = 0
        buffer.insert(sequence: 0, packet: UnsafeRawBufferPointer(start: nil, count: 0), now: 0) { _ in delivered += 1 }
        let big = [UInt8](repeating: 1, count: 8)
        big.withUnsafeBytes { buffer.insert(sequence: 2, packet: $0, now: 0) { _ in delivered += 1 } }
        #expect(!buffer.isHolding)
        #expect(delivered == 1)
    }
}
