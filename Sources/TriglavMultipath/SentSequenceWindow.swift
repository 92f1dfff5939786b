/// Which recent tunnel sequences the data plane has reported sent (`UplinkEvent.packetSent`), as a bitmap over
/// the `span` sequences up to the highest one reported. With sender-side pacing a numbered packet can wait on our
/// side for up to the ingress target (120 ms) before it is handed to the network; a resend request for it is then
/// spurious (the receiver saw later sequences arrive on a less loaded uplink), and a resend would only duplicate
/// it — worse, go ahead of the data queued on another uplink and make that data late in turn (the spurious-repair
/// loop, docs/MULTIPATH.md). Fixed memory (`span` bits), nothing allocated after `init`.
struct SentSequenceWindow {
    /// Sequences covered below and including `highest`; a power of two.
    let span: Int
    private var bits: [UInt64]
    private var highest: UInt32 = 0
    private var started = false

    init(span: Int) {
        precondition(span >= 64 && span & (span - 1) == 0, "span must be a power of two ≥ 64")
        self.span = span
        bits = Array(repeating: 0, count: span / 64)
    }

    @inline(__always) private func bit(_ sequence: UInt32) -> (word: Int, mask: UInt64) {
        let index = Int(sequence) & (span - 1)
        return (index >> 6, 1 << UInt64(index & 63))
    }

    /// Records that `sequence` went out (first send or resend).
    mutating func noteSent(_ sequence: UInt32) {
        if !started {
            started = true
            highest = sequence
        }
        let ahead = Int32(bitPattern: sequence &- highest)
        if ahead > 0 {
            // Sequences skipped over on the way up are not sent (yet): clear their bits, which last meant
            // `span` sequences earlier.
            if Int(ahead) >= span {
                for index in bits.indices { bits[index] = 0 }
            } else {
                var position = highest &+ 1
                for _ in 0..<ahead {
                    let (word, mask) = bit(position)
                    bits[word] &= ~mask
                    position &+= 1
                }
            }
            highest = sequence
        } else if Int(-ahead) >= span {
            return
        }
        let (word, mask) = bit(sequence)
        bits[word] |= mask
    }

    /// True when `sequence` lies within the window below a sequence already sent and was not itself sent: it is
    /// numbered and still waiting on our side. False when it was sent, is newer than anything sent (nothing says
    /// it exists), or is too old to tell (the caller then treats it as sent).
    func isWaiting(_ sequence: UInt32) -> Bool {
        guard started else { return false }
        let behind = Int32(bitPattern: highest &- sequence)
        guard behind > 0, Int(behind) < span else { return false }
        let (word, mask) = bit(sequence)
        return bits[word] & mask == 0
    }

    var storageFootprint: Int { bits.capacity * 8 }
}
