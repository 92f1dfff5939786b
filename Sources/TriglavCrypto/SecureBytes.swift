internal import CSodium

/// Secret key material. Owns its bytes and wipes them with `sodium_memzero` when the last
/// reference goes away; never printed (`description` is redacted).
public final class SecureBytes: @unchecked Sendable, CustomStringConvertible {
    // Immutable after init (only read or wiped in deinit), which is what makes @unchecked Sendable sound.
    private let storage: UnsafeMutableRawBufferPointer

    public init(_ bytes: [UInt8]) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        storage = buffer
        count = bytes.count
    }

    /// Fills `count` bytes through `initializer`, so secrets never pass through an unwiped array.
    public init(count: Int, initializer: (UnsafeMutablePointer<UInt8>) -> Void) {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        self.count = count
        initializer(pointer)
    }

    /// Start of the secret; always valid (storage is never empty) for `count` bytes.
    private var pointer: UnsafeMutablePointer<UInt8> {
        // allocate() never returns an empty buffer for byteCount >= 1.
        storage.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: UInt8.self)
    }

    /// Gives `body` read access to the secret's `count` bytes.
    public func withUnsafePointer<R, E: Error>(_ body: (UnsafePointer<UInt8>) throws(E) -> R) throws(E) -> R {
        try body(pointer)
    }

    public let count: Int

    deinit {
        sodium_memzero(storage.baseAddress, storage.count)
        storage.deallocate()
    }

    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// A copy of the secret as an ordinary array, for tests and vectors. Callers own wiping it.
    public var unprotectedBytes: [UInt8] { Array(UnsafeRawBufferPointer(rebasing: storage[0..<count])) }

    public var description: String { "SecureBytes(\(count) bytes, redacted)" }
}
