/// Sliding anti-replay window after RFC 6479: a ring of 64-bit blocks, so advancing costs O(blocks
/// skipped) and checking O(1). Accepts each counter at most once, and counters up to
/// `ProtocolConstants.replayWindowSize` behind the highest seen in any order. Only ever updated
/// after a packet authenticated, so forged counters can't move it.
public struct ReplayWindow: Sendable {
    private var blocks: [UInt64]
    /// Highest counter accepted so far (0 before any).
    public private(set) var highest: UInt64 = 0
    private static let blockMask = UInt64(ProtocolConstants.replayBlockCount - 1)

    public init() {
        blocks = [UInt64](repeating: 0, count: ProtocolConstants.replayBlockCount)
    }

    /// Records `counter` if it is new and inside the window; otherwise throws and changes nothing.
    public mutating func accept(_ counter: UInt64) throws(ProtocolError) {
        if counter > highest {
            let currentBlock = highest >> 6
            let newBlock = counter >> 6
            let advance = min(newBlock - currentBlock, UInt64(ProtocolConstants.replayBlockCount))
            var step: UInt64 = 1
            while step <= advance {
                blocks[Int((currentBlock &+ step) & Self.blockMask)] = 0
                step += 1
            }
            highest = counter
        } else if highest - counter >= ProtocolConstants.replayWindowSize {
            throw .packetTooOld(counter: counter, highest: highest)
        }
        let index = Int((counter >> 6) & Self.blockMask)
        let bit = UInt64(1) << (counter & 63)
        guard blocks[index] & bit == 0 else { throw .replayedPacket(counter: counter) }
        blocks[index] |= bit
    }
}
