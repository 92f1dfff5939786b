import TriglavCore

/// The uplinks chosen for one packet: up to `MultipathLimits.maxUplinks` IDs stored inline, so the
/// per-packet call never allocates. Empty means "no usable uplink; drop the packet".
public struct UplinkSelection: Sendable, Equatable, Sequence {
    // 16 inline slots (MultipathLimits.maxUplinks); a tuple keeps the value on the stack.
    private var storage: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32,
                          UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32)
        = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    public private(set) var count: Int = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }
    /// The first (best) uplink, if any.
    public var first: UplinkID? { count > 0 ? self[0] : nil }

    public subscript(index: Int) -> UplinkID {
        precondition(index >= 0 && index < count, "UplinkSelection index \(index) out of range 0..<\(count)")
        return withUnsafeBytes(of: storage) { UplinkID($0.load(fromByteOffset: index * 4, as: UInt32.self)) }
    }

    /// Appends `id` unless full or already present.
    mutating func append(_ id: UplinkID) {
        guard count < MultipathLimits.maxUplinks, !contains(id) else { return }
        let index = count
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: id.rawValue, toByteOffset: index * 4, as: UInt32.self) }
        count += 1
    }

    public func contains(_ id: UplinkID) -> Bool {
        for index in 0..<count where self[index] == id { return true }
        return false
    }

    public static func == (lhs: UplinkSelection, rhs: UplinkSelection) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for index in 0..<lhs.count where lhs[index] != rhs[index] { return false }
        return true
    }

    public struct Iterator: IteratorProtocol {
        let selection: UplinkSelection
        var index = 0
        public mutating func next() -> UplinkID? {
            guard index < selection.count else { return nil }
            defer { index += 1 }
            return selection[index]
        }
    }

    public func makeIterator() -> Iterator { Iterator(selection: self) }
}
