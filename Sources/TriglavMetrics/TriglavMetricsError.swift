/// Errors of the metrics module: a metric family or sample that the Prometheus text format (0.0.4) can't
/// express, or would express ambiguously. They are programming errors of whoever builds the families (the
/// names are constants), so each says which name or label is at fault and what the format wants instead.
public enum TriglavMetricsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    case invalidMetricName(String)
    /// A counter whose name doesn't end in `_total` (the naming convention scrapers and recording rules rely on).
    case counterWithoutTotalSuffix(String)
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, or starting with `__` (reserved for Prometheus itself).
    case invalidLabelName(metric: String, label: String)
    /// The same label name twice in one sample.
    case duplicateLabel(metric: String, label: String)
    /// Two samples of one family with the same label values: a scraper would keep one at random.
    case duplicateSeries(metric: String, labels: String)
    /// Two families with the same name in one exposition.
    case duplicateFamily(String)
    /// A value that is not a finite number in a family where only finite numbers make sense (counters).
    case nonFiniteCounter(metric: String, value: Double)

    public var description: String {
        switch self {
        case .invalidMetricName(let name):
            "invalid metric name \"\(name)\": use letters, digits, '_' and ':' only, not starting with a digit"
        case .counterWithoutTotalSuffix(let name):
            "counter \"\(name)\" must end in \"_total\" (rename it \"\(name)_total\")"
        case .invalidLabelName(let metric, let label):
            "metric \(metric): invalid label name \"\(label)\": use letters, digits and '_', not starting with a digit or \"__\""
        case .duplicateLabel(let metric, let label):
            "metric \(metric): label \"\(label)\" given twice in one sample; give each label once"
        case .duplicateSeries(let metric, let labels):
            "metric \(metric): two samples with the same labels {\(labels)}; make the label values distinct"
        case .duplicateFamily(let name):
            "metric family \"\(name)\" appears twice; merge the samples into one family"
        case .nonFiniteCounter(let metric, let value):
            "counter \(metric): value \(value) is not a finite number; counters count, so give a finite value ≥ 0"
        }
    }
}
