#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor owned by exactly one object: closed once, on `close()` or deinit, whichever is first.
/// Sendable because the raw value never changes; concurrent I/O on one fd is the kernel's business.
final class OwnedDescriptor: @unchecked Sendable {
    let raw: Int32
    private let closed = AtomicFlag()

    init(_ raw: Int32) {
        precondition(raw >= 0, "negative file descriptor \(raw)")
        self.raw = raw
    }

    func close() {
        if closed.setOnce() { _ = Glibc.close(raw) }
    }

    deinit { close() }
}
