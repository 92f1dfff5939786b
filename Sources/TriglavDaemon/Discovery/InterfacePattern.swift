#if canImport(Glibc)
import Glibc
#endif

/// Interface-name globs with fnmatch(3) semantics (`*`, `?`, `[a-z]`, `[!0-9]`).
enum InterfacePattern {
    static func matches(_ pattern: String, _ name: String) -> Bool {
        fnmatch(pattern, name, 0) == 0
    }

    static func matchesAny(_ patterns: [String], _ name: String) -> Bool {
        patterns.contains { matches($0, name) }
    }
}
