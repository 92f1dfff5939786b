internal import CTriglavShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How to bridge two interfaces: one profile per direction.
public struct BridgeConfiguration: Equatable, Sendable {
    public var interfaceA: String
    public var interfaceB: String
    public var aToB: LinkProfile
    public var bToA: LinkProfile
    /// Seed of the loss and jitter generators (each direction derives its own from it).
    public var seed: UInt64
    /// Packets one direction can hold at once (queued + in propagation); beyond that input waits
    /// in the socket buffer.
    public var packetsInFlight: Int

    /// 8192 full frames: a second at 100 Mbit/s.
    public static let defaultPacketsInFlight = 8192

    public init(interfaceA: String, interfaceB: String, aToB: LinkProfile, bToA: LinkProfile, seed: UInt64,
                packetsInFlight: Int = BridgeConfiguration.defaultPacketsInFlight) {
        self.interfaceA = interfaceA
        self.interfaceB = interfaceB
        self.aToB = aToB
        self.bToA = bToA
        self.seed = seed
        self.packetsInFlight = packetsInFlight
    }
}

/// An emulated link between two interfaces of this network namespace: every frame arriving on A
/// leaves on B shaped by `aToB`, and the other way round. Owns the two packet sockets and the two
/// pump threads; `stop()` joins the threads (call it before dropping the bridge).
public final class LinkBridge: Sendable {
    public let configuration: BridgeConfiguration
    private let pumps: [DirectionPump]
    private let stopFlag = Atomic<Bool>(false)
    private let threads = Mutex<[pthread_t]>([])
    /// Size of one packet slot: the larger MTU plus Ethernet and VLAN headers.
    public let slotSize: Int

    public init(configuration: BridgeConfiguration) throws(LinkEmulatorError) {
        guard configuration.interfaceA != configuration.interfaceB else {
            throw .sameInterfaceTwice(configuration.interfaceA)
        }
        try configuration.aToB.validate()
        try configuration.bToA.validate()
        let socketA = try PacketSocket(interface: configuration.interfaceA)
        let socketB = try PacketSocket(interface: configuration.interfaceB)
        let largestMTU = max(try socketA.mtu(), try socketB.mtu())
        slotSize = ((largestMTU + 14 + 8) + 63) / 64 * 64
        self.configuration = configuration
        let slots = max(configuration.packetsInFlight, 64)
        pumps = [
            DirectionPump(name: "\(configuration.interfaceA)->\(configuration.interfaceB)", from: socketA, to: socketB,
                          profile: configuration.aToB, seed: configuration.seed, slotSize: slotSize, slotCount: slots),
            DirectionPump(name: "\(configuration.interfaceB)->\(configuration.interfaceA)", from: socketB, to: socketA,
                          profile: configuration.bToA, seed: configuration.seed ^ 0x5DEE_CE66_D1CE_F00D,
                          slotSize: slotSize, slotCount: slots),
        ]
    }

    /// Starts one thread per direction.
    public func start() throws(LinkEmulatorError) {
        for pump in pumps {
            let context = Unmanaged.passRetained(PumpContext(pump: pump, bridge: self)).toOpaque()
            var thread = pthread_t()
            let result = pthread_create(&thread, nil, { raw in
                guard let raw else { return nil }
                let context = Unmanaged<PumpContext>.fromOpaque(raw).takeRetainedValue()
                context.bridge.runPump(context.pump)
                return nil
            }, context)
            guard result == 0 else {
                Unmanaged<PumpContext>.fromOpaque(context).release()
                throw .systemCall("pthread_create", interface: pump.name, errno: result)
            }
            threads.withLock { $0.append(thread) }
        }
    }

    private func runPump(_ pump: DirectionPump) {
        pump.run(until: stopFlag)
        // One direction failing ends the link: a half-working link would mislead measurements.
        stopFlag.store(true, ordering: .relaxed)
    }

    /// True once a pump stopped (asked to, or failed).
    public var isStopping: Bool { stopFlag.load(ordering: .relaxed) }

    /// Asks both pumps to stop and waits for their threads.
    public func stop() {
        stopFlag.store(true, ordering: .relaxed)
        let started = threads.withLock { threads in
            defer { threads.removeAll() }
            return threads
        }
        for thread in started { pthread_join(thread, nil) }
    }

    /// Counters of A→B and B→A.
    public var counters: (aToB: DirectionCounters, bToA: DirectionCounters) { (pumps[0].counters, pumps[1].counters) }

    /// The first fatal error of a pump, if one failed.
    public var failure: LinkEmulatorError? { pumps.lazy.compactMap(\.failure).first }
}

private final class PumpContext: Sendable {
    let pump: DirectionPump
    let bridge: LinkBridge
    init(pump: DirectionPump, bridge: LinkBridge) {
        self.pump = pump
        self.bridge = bridge
    }
}
