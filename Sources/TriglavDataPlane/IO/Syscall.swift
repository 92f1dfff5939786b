#if canImport(Glibc)
import Glibc
#endif

/// The data plane's one syscall layer. Shims and libc calls return -errno (or -1 with `errno`); this maps
/// them to `TriglavDataPlaneError`, retries EINTR, and traps on EBADF/EFAULT, which are bugs, not conditions.
enum Syscall {
    static let wouldBlock: Int32 = EAGAIN

    /// Runs a shim call that returns >= 0 or -errno.
    @discardableResult
    static func shim(_ operation: @autoclosure () -> String, _ call: () -> Int32) throws(TriglavDataPlaneError) -> Int32 {
        while true {
            let result = call()
            if result >= 0 { return result }
            let code = -result
            if code == EINTR { continue }
            precondition(code != EBADF && code != EFAULT, "\(operation()): \(errnoName(code)) \(code) is a bug")
            throw .systemCall(operation: operation(), errno: code)
        }
    }

    /// Runs a libc call that returns -1 and sets errno.
    @discardableResult
    static func libc<T: BinaryInteger>(_ operation: @autoclosure () -> String, _ call: () -> T) throws(TriglavDataPlaneError) -> T {
        while true {
            let result = call()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            precondition(code != EBADF && code != EFAULT, "\(operation()): \(errnoName(code)) \(code) is a bug")
            throw .systemCall(operation: operation(), errno: code)
        }
    }
}
