/// Collects diagnostics for one file while it is decoded. Owned by one decoding call; not shared.
final class DiagnosticCollector {
    let file: String
    private(set) var diagnostics: [ConfigDiagnostic] = []

    init(file: String) {
        self.file = file
    }

    func report(_ path: ConfigKeyPath, _ reason: String) {
        diagnostics.append(ConfigDiagnostic(file: file, keyPath: path.description, reason: reason))
    }
}

/// Typed, diagnosing access to one TOML table. Every accessor records the key it was asked for, so
/// `finishReading()` can name each key nobody asked for (with the closest known key as a hint).
/// A wrong value is reported and read as nil: callers keep their default and carry on, so one run
/// reports every problem in the file.
final class TableReader {
    let path: ConfigKeyPath
    let entries: [String: TOMLNode]
    let diagnostics: DiagnosticCollector
    private var knownKeys: [String] = []

    init(path: ConfigKeyPath, entries: [String: TOMLNode], diagnostics: DiagnosticCollector) {
        self.path = path
        self.entries = entries
        self.diagnostics = diagnostics
    }

    func report(_ key: String, _ reason: String) {
        diagnostics.report(path.appending(key), reason)
    }

    /// The raw value of `key`, recording it as known.
    func node(_ key: String) -> TOMLNode? {
        if !knownKeys.contains(key) { knownKeys.append(key) }
        return entries[key]
    }

    func string(_ key: String) -> String? {
        guard let value = node(key) else { return nil }
        guard case .string(let text) = value else {
            report(key, "expected a string, got \(value.kindDescription)")
            return nil
        }
        return text
    }

    func bool(_ key: String) -> Bool? {
        guard let value = node(key) else { return nil }
        guard case .boolean(let flag) = value else {
            report(key, "expected a boolean (true or false), got \(value.kindDescription)")
            return nil
        }
        return flag
    }

    /// An integer within `range`; `unit` (e.g. "ms") makes the range message self-explanatory.
    func integer(_ key: String, in range: ClosedRange<Int>, unit: String = "") -> Int? {
        guard let value = node(key) else { return nil }
        guard case .integer(let number) = value else {
            report(key, "expected an integer, got \(value.kindDescription)")
            return nil
        }
        guard range.contains(number) else {
            let suffix = unit.isEmpty ? "" : " \(unit)"
            report(key, "\(number) is out of range: must be \(range.lowerBound) to \(range.upperBound)\(suffix)")
            return nil
        }
        return number
    }

    /// A string that must be one of an enumeration's raw values.
    func choice<Choice: RawRepresentable & CaseIterable>(_ key: String, as _: Choice.Type) -> Choice?
    where Choice.RawValue == String {
        guard let text = string(key) else { return nil }
        guard let choice = Choice(rawValue: text) else {
            let allowed = Choice.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            report(key, "\"\(text)\" is not one of \(allowed)\(Self.hint(for: text, among: Choice.allCases.map(\.rawValue)))")
            return nil
        }
        return choice
    }

    /// A string converted by `parse`, whose thrown error's description becomes the reason.
    func parsed<Value, Failure: Error & CustomStringConvertible>(
        _ key: String, _ parse: (String) throws(Failure) -> Value
    ) -> Value? {
        guard let text = string(key) else { return nil }
        do {
            return try parse(text)
        } catch {
            report(key, error.description)
            return nil
        }
    }

    /// An array of strings, each converted by `parse`. Bad elements are reported by index and
    /// skipped; the result is nil only when the key is absent or not an array.
    func parsedArray<Value, Failure: Error & CustomStringConvertible>(
        _ key: String, _ parse: (String) throws(Failure) -> Value
    ) -> [Value]? {
        guard let value = node(key) else { return nil }
        guard case .array(let elements) = value else {
            report(key, "expected an array of strings, got \(value.kindDescription)")
            return nil
        }
        var result: [Value] = []
        for (index, element) in elements.enumerated() {
            let elementPath = path.appending(key).appending(index: index)
            guard case .string(let text) = element else {
                diagnostics.report(elementPath, "expected a string, got \(element.kindDescription)")
                continue
            }
            do {
                result.append(try parse(text))
            } catch {
                diagnostics.report(elementPath, error.description)
            }
        }
        return result
    }

    /// A sub-table (`[section]` or inline `{ … }`).
    func table(_ key: String) -> TableReader? {
        guard let value = node(key) else { return nil }
        guard case .table(let entries) = value else {
            report(key, "expected a table ([\(path.appending(key))]), got \(value.kindDescription)")
            return nil
        }
        return TableReader(path: path.appending(key), entries: entries, diagnostics: diagnostics)
    }

    /// An array of tables (`[[section]]`). Non-table elements are reported and skipped.
    func tableArray(_ key: String) -> [(index: Int, reader: TableReader)]? {
        guard let value = node(key) else { return nil }
        guard case .array(let elements) = value else {
            report(key, "expected an array of tables ([[\(path.appending(key))]]), got \(value.kindDescription)")
            return nil
        }
        var readers: [(Int, TableReader)] = []
        for (index, element) in elements.enumerated() {
            let elementPath = path.appending(key).appending(index: index)
            guard case .table(let entries) = element else {
                diagnostics.report(elementPath, "expected a table, got \(element.kindDescription)")
                continue
            }
            readers.append((index, TableReader(path: elementPath, entries: entries, diagnostics: diagnostics)))
        }
        return readers
    }

    /// Reports every key that no accessor asked for. Call after reading all known keys.
    func finishReading() {
        for key in entries.keys.sorted() where !knownKeys.contains(key) {
            report(key, "unknown key\(Self.hint(for: key, among: knownKeys, listAllOtherwise: true))")
        }
    }

    /// "; did you mean 'x'?" when a candidate is close enough to be a plausible typo.
    static func hint(for word: String, among candidates: [String], listAllOtherwise: Bool = false) -> String {
        // Compare without case and separators, so "pubkey" finds "public_key" and "fullTunnel" "full_tunnel".
        func normalized(_ text: String) -> String { text.lowercased().filter { $0 != "_" && $0 != "-" } }
        let scored = candidates.map { (candidate: $0, normal: normalized($0), distance: editDistance(normalized(word), normalized($0))) }
        if let best = scored.min(by: { $0.distance < $1.distance }),
           best.distance <= max(2, best.normal.count / 3) {
            return "; did you mean '\(best.candidate)'?"
        }
        guard listAllOtherwise, !candidates.isEmpty else { return "" }
        return "; known keys here: " + candidates.sorted().joined(separator: ", ")
    }

    /// Levenshtein distance over Unicode scalars.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let source = Array(a.unicodeScalars), target = Array(b.unicodeScalars)
        if source.isEmpty { return target.count }
        if target.isEmpty { return source.count }
        var previous = Array(0...target.count)
        var current = [Int](repeating: 0, count: target.count + 1)
        for i in 1...source.count {
            current[0] = i
            for j in 1...target.count {
                let substitution = previous[j - 1] + (source[i - 1] == target[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[target.count]
    }
}
