# The Prometheus endpoint (docs/METRICS.md). Its namespace test scrapes triglavd with curl.
APT_TEST_PACKAGES += curl

.PHONY: metrics-tests
# The text format and HTTP exchange (sans-IO), the daemon's families and endpoint on loopback, --check-config,
# then both roles scraped in namespaces (root; skipped otherwise).
metrics-tests: build-tests
	$(SWIFT) test --skip-build $(SWIFT_BUILD_FLAGS) --filter 'TriglavMetricsTests|MetricsMappingTests|MetricsServerTests|MetricsDaemonLifecycleTests|MetricsCheckConfigTests|DaemonMetricsTests'
