/// An fnmatch(3)-style pattern over interface names: `*`, `?`, and bracket sets `[abc]`, `[a-z]`,
/// `[!0-9]`. Validated on creation, so matching never fails.
public struct InterfaceGlob: Hashable, Sendable, CustomStringConvertible {
    public let pattern: String
    private let tokens: [Token]

    private enum Token: Hashable, Sendable {
        case literal(Unicode.Scalar)
        case anyOne
        case anyRun
        case set(negated: Bool, ranges: [ClosedRange<Unicode.Scalar>])
    }

    public init(_ pattern: String) throws(TriglavConfigValueError) {
        guard !pattern.isEmpty else {
            throw TriglavConfigValueError("interface pattern must not be empty")
        }
        let scalars = Array(pattern.unicodeScalars)
        var tokens: [Token] = []
        var index = 0
        var literalCount = 0
        while index < scalars.count {
            let scalar = scalars[index]
            guard scalar.isASCII, scalar.value > 0x20, scalar.value != 0x7f, scalar != "/" else {
                throw TriglavConfigValueError("'\(pattern)' contains a character interface names can't have (space, '/', control or non-ASCII)")
            }
            switch scalar {
            case "*":
                if tokens.last != .anyRun { tokens.append(.anyRun) }
            case "?":
                tokens.append(.anyOne)
                literalCount += 1
            case "[":
                var cursor = index + 1
                var negated = false
                if cursor < scalars.count, scalars[cursor] == "!" || scalars[cursor] == "^" {
                    negated = true
                    cursor += 1
                }
                var ranges: [ClosedRange<Unicode.Scalar>] = []
                var first = true
                while cursor < scalars.count, scalars[cursor] != "]" || first {
                    first = false
                    let low = scalars[cursor]
                    if cursor + 2 < scalars.count, scalars[cursor + 1] == "-", scalars[cursor + 2] != "]" {
                        let high = scalars[cursor + 2]
                        guard low <= high else {
                            throw TriglavConfigValueError("'\(pattern)' has a reversed range '\(low)-\(high)'")
                        }
                        ranges.append(low...high)
                        cursor += 3
                    } else {
                        ranges.append(low...low)
                        cursor += 1
                    }
                }
                guard cursor < scalars.count else {
                    throw TriglavConfigValueError("'\(pattern)' has '[' without a closing ']'")
                }
                tokens.append(.set(negated: negated, ranges: ranges))
                literalCount += 1
                index = cursor
            case "]":
                throw TriglavConfigValueError("'\(pattern)' has ']' without an opening '['")
            default:
                tokens.append(.literal(scalar))
                literalCount += 1
            }
            index += 1
        }
        guard literalCount <= 15 else {
            throw TriglavConfigValueError("'\(pattern)' can never match: interface names are at most 15 characters")
        }
        self.pattern = pattern
        self.tokens = tokens
    }

    public var description: String { pattern }

    /// Whether `name` matches the whole pattern.
    public func matches(_ name: String) -> Bool {
        let scalars = Array(name.unicodeScalars)
        // Iterative wildcard matching with a single backtrack point (the last '*').
        var tokenIndex = 0, nameIndex = 0
        var starToken = -1, starName = 0
        while nameIndex < scalars.count {
            if tokenIndex < tokens.count, tokens[tokenIndex] != .anyRun,
               Self.token(tokens[tokenIndex], matches: scalars[nameIndex]) {
                tokenIndex += 1
                nameIndex += 1
            } else if tokenIndex < tokens.count, tokens[tokenIndex] == .anyRun {
                starToken = tokenIndex
                starName = nameIndex
                tokenIndex += 1
            } else if starToken >= 0 {
                tokenIndex = starToken + 1
                starName += 1
                nameIndex = starName
            } else {
                return false
            }
        }
        while tokenIndex < tokens.count, tokens[tokenIndex] == .anyRun { tokenIndex += 1 }
        return tokenIndex == tokens.count
    }

    private static func token(_ token: Token, matches scalar: Unicode.Scalar) -> Bool {
        switch token {
        case .literal(let literal): return literal == scalar
        case .anyOne: return true
        case .anyRun: return true
        case .set(let negated, let ranges): return ranges.contains { $0.contains(scalar) } != negated
        }
    }
}

/// Why a single configuration value was rejected; becomes the reason of a `ConfigDiagnostic`.
public struct TriglavConfigValueError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
