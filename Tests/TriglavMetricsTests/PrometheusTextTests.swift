import Testing
@testable import TriglavMetrics

@Suite("Prometheus text format 0.0.4")
struct PrometheusTextTests {
    @Test func aFamilyRendersHelpTypeAndSamplesInOrder() throws {
        var packets = try MetricFamily("triglav_uplink_transmitted_packets_total", type: .counter, help: "Packets sent on the uplink.")
        try packets.add(.integer(12), labels: [MetricLabel("uplink", "wlan0"), MetricLabel("tier", "primary")])
        try packets.add(.integer(0), labels: [MetricLabel("uplink", "wwan0"), MetricLabel("tier", "backup")])
        var up = try MetricFamily("triglav_up", type: .gauge, help: "Always 1.")
        try up.add(.integer(1))
        #expect(try PrometheusText.render([packets, up]) == """
            # HELP triglav_uplink_transmitted_packets_total Packets sent on the uplink.
            # TYPE triglav_uplink_transmitted_packets_total counter
            triglav_uplink_transmitted_packets_total{uplink="wlan0",tier="primary"} 12
            triglav_uplink_transmitted_packets_total{uplink="wwan0",tier="backup"} 0
            # HELP triglav_up Always 1.
            # TYPE triglav_up gauge
            triglav_up 1

            """)
    }

    @Test func aFamilyWithoutSamplesStillDeclaresItself() throws {
        let family = try MetricFamily("triglav_server_clients", type: .gauge, help: "Clients.")
        #expect(try PrometheusText.render([family]) == "# HELP triglav_server_clients Clients.\n# TYPE triglav_server_clients gauge\n")
        #expect(try PrometheusText.render([]) == "")
    }

    @Test(arguments: [
        ("plain", "plain"),
        ("back\\slash", "back\\\\slash"),
        ("a \"quoted\" name", "a \\\"quoted\\\" name"),
        ("two\nlines", "two\\nlines"),
        ("\\\"\n", "\\\\\\\"\\n"),
        ("Wi-Fi ünïcödé", "Wi-Fi ünïcödé"),
        ("", ""),
    ])
    func labelValuesEscapeBackslashQuoteAndNewline(raw: String, escaped: String) throws {
        #expect(PrometheusText.escapeLabelValue(raw) == escaped)
        var family = try MetricFamily("x", type: .gauge, help: "h")
        try family.add(.integer(1), labels: [MetricLabel("client", raw)])
        #expect(try PrometheusText.render([family]).hasSuffix("x{client=\"\(escaped)\"} 1\n"))
    }

    @Test func helpEscapesBackslashAndNewlineButNotQuotes() throws {
        #expect(PrometheusText.escapeHelp("say \"hi\"\\n\nnext") == "say \"hi\"\\\\n\\nnext")
        let family = try MetricFamily("x", type: .gauge, help: "line one\nline \\two")
        #expect(try PrometheusText.render([family]).hasPrefix("# HELP x line one\\nline \\\\two\n# TYPE x gauge\n"))
    }

    @Test(arguments: [
        (MetricValue.integer(0), "0"),
        (.integer(UInt64.max), "18446744073709551615"),
        (.integer(9_007_199_254_740_993), "9007199254740993"),  // 2^53 + 1: a Double would round it
        (.real(0.25), "0.25"),
        (.real(0.000_012), "1.2e-05"),
        (.real(1), "1"),
        (.real(-3), "-3"),
        (.real(1e20), "1e+20"),
        (.real(.nan), "NaN"),
        (.real(.infinity), "+Inf"),
        (.real(-.infinity), "-Inf"),
        (.flag(true), "1"),
        (.flag(false), "0"),
    ])
    func valuesAreWrittenExactly(value: MetricValue, text: String) {
        #expect(PrometheusText.format(value) == text)
    }

    @Test func realsRoundTripThroughTheirText() {
        for value in [0.1, 1.0 / 3, 123_456.789, .leastNonzeroMagnitude, 1.7976931348623157e308, 0.003_5] {
            #expect(Double(PrometheusText.format(.real(value))) == value)
        }
    }

    @Test(arguments: ["", "1abc", "has-dash", "has space", "ünï", "a.b"])
    func invalidMetricNamesAreRefused(name: String) {
        #expect(throws: TriglavMetricsError.invalidMetricName(name)) { try MetricFamily(name, type: .gauge, help: "") }
    }

    @Test(arguments: ["triglav_up", "_x", "a:b_c9", "triglav:rate5m"])
    func validMetricNamesAreAccepted(name: String) throws {
        _ = try MetricFamily(name, type: .gauge, help: "")
    }

    @Test func countersMustEndInTotal() throws {
        #expect(throws: TriglavMetricsError.counterWithoutTotalSuffix("triglav_bytes")) {
            try MetricFamily("triglav_bytes", type: .counter, help: "")
        }
        _ = try MetricFamily("triglav_bytes", type: .gauge, help: "")
        _ = try MetricFamily("triglav_bytes_total", type: .counter, help: "")
    }

    @Test(arguments: ["", "1x", "__name__", "__reserved", "a-b", "a:b", "ä"])
    func invalidLabelNamesAreRefused(label: String) throws {
        var family = try MetricFamily("x", type: .gauge, help: "")
        #expect(throws: TriglavMetricsError.invalidLabelName(metric: "x", label: label)) {
            try family.add(.integer(1), labels: [MetricLabel(label, "v")])
        }
        #expect(family.samples.isEmpty)
    }

    @Test func aLabelTwiceInOneSampleIsRefused() throws {
        var family = try MetricFamily("x", type: .gauge, help: "")
        #expect(throws: TriglavMetricsError.duplicateLabel(metric: "x", label: "uplink")) {
            try family.add(.integer(1), labels: [MetricLabel("uplink", "a"), MetricLabel("uplink", "b")])
        }
    }

    @Test func aSeriesTwiceIsRefusedButDistinctValuesAreFine() throws {
        var family = try MetricFamily("x", type: .gauge, help: "")
        try family.add(.integer(1), labels: [MetricLabel("uplink", "a")])
        try family.add(.integer(1), labels: [MetricLabel("uplink", "b")])
        #expect(throws: TriglavMetricsError.duplicateSeries(metric: "x", labels: "uplink=\"a\"")) {
            try family.add(.integer(2), labels: [MetricLabel("uplink", "a")])
        }
        // Escaping can't make two different values collide.
        try family.add(.integer(1), labels: [MetricLabel("uplink", "a\\\"")])
        try family.add(.integer(1), labels: [MetricLabel("uplink", "a\"")])
        #expect(family.samples.count == 4)
    }

    @Test func aNonFiniteCounterIsRefusedButAGaugeMayBeNaN() throws {
        var counter = try MetricFamily("x_total", type: .counter, help: "")
        #expect(throws: TriglavMetricsError.nonFiniteCounter(metric: "x_total", value: .infinity)) {
            try counter.add(.real(.infinity))
        }
        var gauge = try MetricFamily("y", type: .gauge, help: "")
        try gauge.add(.real(.nan))
        #expect(try PrometheusText.render([gauge]).hasSuffix("y NaN\n"))
    }

    @Test func twoFamiliesOfOneNameAreRefused() throws {
        let family = try MetricFamily("x", type: .gauge, help: "")
        #expect(throws: TriglavMetricsError.duplicateFamily("x")) { try PrometheusText.render([family, family]) }
    }

    @Test func everyErrorNamesTheOffendingMetric() {
        let errors: [TriglavMetricsError] = [
            .invalidMetricName("bad-name"), .counterWithoutTotalSuffix("bad-name"),
            .invalidLabelName(metric: "bad-name", label: "__l"), .duplicateLabel(metric: "bad-name", label: "l"),
            .duplicateSeries(metric: "bad-name", labels: "l=\"v\""), .duplicateFamily("bad-name"),
            .nonFiniteCounter(metric: "bad-name", value: .nan),
        ]
        for error in errors {
            #expect(error.description.contains("bad-name"), "\(error)")
        }
        #expect(TriglavMetricsError.counterWithoutTotalSuffix("x_bytes").description.contains("x_bytes_total"))
    }
}
