/// The kinds of metric the daemon exposes. (Histograms and summaries are not needed: the daemon's figures are
/// counters it keeps and gauges it samples once a second.)
public enum MetricType: String, Sendable, CaseIterable {
    /// Only goes up (it restarts from 0 when what counts it restarts); the name ends in `_total`.
    case counter
    /// A value that may go up and down.
    case gauge
}

/// A sample's value. Counters of bytes and packets are integers that a `Double` would round above 2^53, so they
/// keep their exact value; measurements (seconds, ratios) are reals.
public enum MetricValue: Sendable, Equatable {
    case integer(UInt64)
    case real(Double)

    /// `true` as 1, `false` as 0 (state-set and info style gauges).
    public static func flag(_ value: Bool) -> MetricValue { .integer(value ? 1 : 0) }
}

/// One name="value" pair of a sample.
public struct MetricLabel: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// One line of a family: its labels and value.
public struct MetricSample: Sendable, Equatable {
    public var labels: [MetricLabel]
    public var value: MetricValue
}

/// A metric family: the `# HELP` and `# TYPE` lines and the samples under them.
///
/// Invariants (checked by `init` and `add`, so a family that exists can always be rendered): the name is a
/// valid metric name, a counter's ends in `_total`; every label name is valid and not reserved; no sample has a
/// label twice; no two samples have the same labels; counter values are finite.
public struct MetricFamily: Sendable, Equatable {
    public let name: String
    public let help: String
    public let type: MetricType
    public private(set) var samples: [MetricSample] = []
    /// The rendered label sets seen so far, to refuse a second sample of one series.
    private var series: Set<String> = []

    public init(_ name: String, type: MetricType, help: String) throws(TriglavMetricsError) {
        guard Self.isValidMetricName(name) else { throw .invalidMetricName(name) }
        if type == .counter, !name.hasSuffix("_total") { throw .counterWithoutTotalSuffix(name) }
        self.name = name
        self.type = type
        self.help = help
    }

    /// Adds a sample; labels are rendered in the order given.
    public mutating func add(_ value: MetricValue, labels: [MetricLabel] = []) throws(TriglavMetricsError) {
        var names: Set<String> = []
        for label in labels {
            guard Self.isValidLabelName(label.name) else { throw .invalidLabelName(metric: name, label: label.name) }
            guard names.insert(label.name).inserted else { throw .duplicateLabel(metric: name, label: label.name) }
        }
        if type == .counter, case .real(let real) = value, !real.isFinite {
            throw .nonFiniteCounter(metric: name, value: real)
        }
        let key = PrometheusText.labelSet(labels)
        guard series.insert(key).inserted else { throw .duplicateSeries(metric: name, labels: key) }
        samples.append(MetricSample(labels: labels, value: value))
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    static func isValidMetricName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !isDigit(first) else { return false }
        return name.utf8.allSatisfy { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ":") }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
    static func isValidLabelName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !isDigit(first), !name.hasPrefix("__") else { return false }
        return name.utf8.allSatisfy { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") }
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
}
