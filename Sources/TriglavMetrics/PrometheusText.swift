/// The Prometheus text exposition format, version 0.0.4
/// (https://prometheus.io/docs/instrumenting/exposition_formats/): per family a `# HELP` line, a `# TYPE`
/// line and one line per sample, `name{label="value",…} value`, each ending in a line feed.
///
/// Escaping: in HELP text a backslash becomes `\\` and a line feed `\n`; in label values also a double quote
/// becomes `\"`. Values: integers in decimal, reals in Swift's shortest round-tripping form, and the
/// non-finite ones as `NaN`, `+Inf`, `-Inf`.
public enum PrometheusText {
    /// The Content-Type of a response carrying this format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The exposition of `families`, in the order given. Two families of one name are refused (a scraper
    /// would reject the whole page).
    public static func render(_ families: [MetricFamily]) throws(TriglavMetricsError) -> String {
        var names: Set<String> = []
        var text = ""
        text.reserveCapacity(families.reduce(0) { $0 + 120 + $1.samples.count * 80 })
        for family in families {
            guard names.insert(family.name).inserted else { throw .duplicateFamily(family.name) }
            text += "# HELP \(family.name) \(escapeHelp(family.help))\n"
            text += "# TYPE \(family.name) \(family.type.rawValue)\n"
            for sample in family.samples {
                text += family.name
                if !sample.labels.isEmpty { text += "{\(labelSet(sample.labels))}" }
                text += " \(format(sample.value))\n"
            }
        }
        return text
    }

    /// `a="x",b="y"`, values escaped.
    static func labelSet(_ labels: [MetricLabel]) -> String {
        labels.map { "\($0.name)=\"\(escapeLabelValue($0.value))\"" }.joined(separator: ",")
    }

    /// Backslash, double quote and line feed escaped, as the format wants inside a label value.
    public static func escapeLabelValue(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") })
        else { return value }
        var escaped = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// Backslash and line feed escaped (a double quote stays as it is in HELP text).
    public static func escapeHelp(_ help: String) -> String {
        guard help.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\n") }) else { return help }
        var escaped = ""
        for character in help.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// A sample value as the format writes it.
    public static func format(_ value: MetricValue) -> String {
        switch value {
        case .integer(let integer):
            return String(integer)
        case .real(let real):
            if real.isNaN { return "NaN" }
            if real.isInfinite { return real > 0 ? "+Inf" : "-Inf" }
            // Integral reals without the ".0" Swift adds, so 1 second reads `1` like Go clients write it.
            if real == real.rounded(), abs(real) < 1e15 { return String(Int64(real)) }
            return "\(real)"
        }
    }
}
