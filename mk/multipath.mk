# TriglavMultipath: the simulator's throughput figures for docs/BENCHMARKS.md (debug build, ~60 s).
.PHONY: multipath-bench
multipath-bench: build-tests
	TRIGLAV_MULTIPATH_BENCH=1 $(SWIFT) test --skip-build --filter ThroughputBenchmark
