/// Catches input that the TOML parser inside TOMLKit (toml++ 3.4) can't take safely. In two places it
/// only *asserts* what it should check: that the first key character of a table header (after `[` or
/// `[[`) is a bare-key character or a quote, and that an array element doesn't start with `}`. Debug
/// builds abort on `[=]`, `[[[` or `x = [}`; release builds hit undefined behaviour. A configuration
/// checker must never crash on a typo, so these are found here first and reported as syntax errors.
/// Everything else is left to the real parser. (The header case is fixed upstream in toml++ by
/// marzer/tomlplusplus#301, after the toml++ that TOMLKit 0.6.0 bundles; drop this when TOMLKit updates.)
enum TOMLPreflight {
    struct Problem: Equatable {
        let message: String
        let location: SourceLocation
    }

    static func check(_ text: String) -> Problem? {
        let scalars = Array(text.unicodeScalars)
        var index = 0
        var line = 1, lineStart = 0
        var atLineStart = true
        var openBrackets: [Unicode.Scalar] = []   // '[' and '{' of values, innermost last

        func location(_ position: Int) -> SourceLocation {
            SourceLocation(line: line, column: position - lineStart + 1)
        }
        func skipBlanks(_ position: inout Int) {
            while position < scalars.count, scalars[position] == " " || scalars[position] == "\t" { position += 1 }
        }
        /// Advances past a string starting at `index`; newlines inside multi-line strings are counted.
        func skipString() {
            let quote = scalars[index]
            let multiLine = index + 2 < scalars.count && scalars[index + 1] == quote && scalars[index + 2] == quote
            index += multiLine ? 3 : 1
            while index < scalars.count {
                let scalar = scalars[index]
                if scalar == "\\" && quote == "\"" {
                    index += 2
                    continue
                }
                if scalar == "\n" {
                    guard multiLine else { return }
                    line += 1
                    lineStart = index + 1
                } else if scalar == quote {
                    if !multiLine {
                        index += 1
                        return
                    }
                    if index + 2 < scalars.count, scalars[index + 1] == quote, scalars[index + 2] == quote {
                        index += 3
                        return
                    }
                }
                index += 1
            }
        }

        while index < scalars.count {
            let scalar = scalars[index]
            switch scalar {
            case "\n":
                index += 1
                line += 1
                lineStart = index
                atLineStart = true
            case " ", "\t", "\r":
                index += 1
            case "#":
                while index < scalars.count, scalars[index] != "\n" { index += 1 }
            case "[" where atLineStart && openBrackets.isEmpty:
                var position = index + 1
                skipBlanks(&position)
                if position < scalars.count, scalars[position] == "[" {
                    position += 1
                    skipBlanks(&position)
                }
                if position < scalars.count, scalars[position] != "]", !isKeyStart(scalars[position]) {
                    let seen = scalars[position] == "\n" || scalars[position] == "\r" ? "end of line" : "'\(scalars[position])'"
                    return Problem(message: "a table header must start with a key (bare or quoted), saw \(seen)",
                                   location: location(position))
                }
                // The header ends on this line; the parser itself checks the rest of it.
                while index < scalars.count, scalars[index] != "\n" { index += 1 }
            case "\"", "'":
                atLineStart = false
                skipString()
            case "[", "{":
                atLineStart = false
                openBrackets.append(scalar)
                index += 1
            case "}" where openBrackets.last == "[":
                return Problem(message: "'}' inside an array; arrays close with ']'", location: location(index))
            case "]", "}":
                atLineStart = false
                _ = openBrackets.popLast()
                index += 1
            default:
                atLineStart = false
                index += 1
            }
        }
        return nil
    }

    /// TOML 1.0 bare-key characters and the two string delimiters.
    private static func isKeyStart(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
            || scalar == "_" || scalar == "-" || scalar == "\"" || scalar == "'"
    }
}
