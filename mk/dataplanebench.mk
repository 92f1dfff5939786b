# The data-plane benchmark's own plumbing (Benchmarks/DataPlaneBench): the test of the script that writes
# its section of docs/BENCHMARKS.md (no root, about a second). The benchmark itself is `make dataplane-bench`.
EXTRA_TEST_TARGETS += dataplane-bench-doc-test

.PHONY: dataplane-bench-doc-test
dataplane-bench-doc-test:
	Benchmarks/DataPlaneBench/test-write-section
