// Seal+open of 1400-byte data frames through TransportSession versus raw libsodium
// ChaCha20-Poly1305 (detached, in place) on the same buffers, in one run. Built and run by
// `make protocol-bench` (release modules, swiftc -O); see docs/BENCHMARKS.md.
import CAllocCounter
import CSodium
import TriglavCrypto
import TriglavProtocol

#if canImport(Glibc)
import Glibc
#endif

let packetSize = 1400
let packets = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 200_000
let rounds = 5

func nanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

// A real handshake gives the session pair.
let server = IdentityKey.generate()
let client = IdentityKey.generate()
var responder = HandshakeResponder(identity: server, authorizedClients: [
    AuthorizedClient(publicKey: client.publicKey, ipv4: nil, ipv6: nil)])
var initiator = try HandshakeInitiator(configuration: InitiatorConfiguration(identity: client, serverPublicKey: server.publicKey))
let initiation = try initiator.start(now: 0, wallClock: 1)
guard case .accept(let accepted) = responder.handleInitiation(initiation, from: "bench", now: 0),
      var established = try initiator.receive(accepted.reply, now: 0) else {
    fatalError("benchmark handshake failed")
}
var sender = established.session
var receiver = accepted.session

let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 64)
defer { buffer.deallocate() }
for index in 0..<buffer.count { buffer[index] = UInt8(truncatingIfNeeded: index) }
// Raw side gets plain pointers, allocated once, so it pays no array overhead at all.
let key = UnsafeMutablePointer<UInt8>.allocate(capacity: 32)
key.initialize(repeating: 7, count: 32)
let nonce = UnsafeMutableRawPointer.allocate(byteCount: 12, alignment: 8)
nonce.initializeMemory(as: UInt8.self, repeating: 0, count: 12)
let noncePointer = nonce.assumingMemoryBound(to: UInt8.self)
let setupAllocations = tg_bench_allocations()

/// Raw AEAD on the same layout the session uses: 16-byte header as AD, payload, tag after it.
@MainActor func rawRound() -> UInt64 {
    let base = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
    let start = nanoseconds()
    for counter in 0..<packets {
        nonce.storeBytes(of: UInt64(counter).littleEndian, toByteOffset: 4, as: UInt64.self)
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(base + 16, base + 16 + packetSize, nil, base + 16, UInt64(packetSize),
                                                           base, 16, nil, noncePointer, key)
        let rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(base + 16, nil, base + 16, UInt64(packetSize),
                                                                    base + 16 + packetSize, base, 16, noncePointer, key)
        precondition(rc == 0)
    }
    return nanoseconds() - start
}

@MainActor func sessionRound(_ now: UInt64) throws -> UInt64 {
    let start = nanoseconds()
    for sequence in 0..<packets {
        let length = try sender.seal(.data, tunnelSequence: UInt32(truncatingIfNeeded: sequence), bodyLength: packetSize,
                                     in: buffer, now: now)
        let frame = try receiver.open(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]), now: now)
        precondition(frame.body.count == packetSize)
    }
    return nanoseconds() - start
}

// Warm up both, then alternate rounds and keep the best of each (the machine is shared).
_ = rawRound()
_ = try sessionRound(1)
var bestRaw = UInt64.max, bestSession = UInt64.max
var sessionAllocations: UInt64 = 0
for round in 0..<rounds {
    bestRaw = min(bestRaw, rawRound())
    let before = tg_bench_allocations()
    bestSession = min(bestSession, try sessionRound(UInt64(round + 2)))
    sessionAllocations += tg_bench_allocations() - before
}

/// Fixed-point text without Foundation: `value` with `digits` decimals.
func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = Int((value * scale).rounded())
    let whole = scaled / Int(scale)
    var fraction = String(scaled % Int(scale))
    while fraction.count < digits { fraction = "0" + fraction }
    return digits == 0 ? "\(whole)" : "\(whole).\(fraction)"
}

func gbps(_ elapsed: UInt64) -> Double { Double(packets * packetSize * 8) / Double(elapsed) }
let ratio = Double(bestRaw) / Double(bestSession)
let perPacketAllocations = Double(sessionAllocations) / Double(packets * rounds)
print("packets per round: \(packets) x \(packetSize) B, seal+open, best of \(rounds) alternating rounds")
print("raw libsodium ChaCha20-Poly1305: \(bestRaw / UInt64(packets)) ns/packet, \(fixed(gbps(bestRaw), 2)) Gbit/s")
print("TransportSession seal+open:      \(bestSession / UInt64(packets)) ns/packet, \(fixed(gbps(bestSession), 2)) Gbit/s")
print("session / raw throughput: \(fixed(ratio * 100, 1)) %")
print("allocation counter self-check: \(setupAllocations) allocations counted during setup (must be > 0)")
print("heap allocations during session rounds: \(sessionAllocations) (\(fixed(perPacketAllocations, 4)) per packet)")
