# Data plane (docs/DATAPLANE.md): TUN, bound uplink sockets, packet pumps, routing/NAT, and their tests.
# The namespace tests and the benchmark run as root, in network namespaces they create and delete.
APT_PACKAGES += nftables iproute2
APT_TEST_PACKAGES += tcpdump curl iputils-ping python3 iperf3
# The benchmark compares against wireguard-go (userspace, like Triglav) with wg(8) to configure it.
DATAPLANE_BENCH_PACKAGES := wireguard-go wireguard-tools iperf3

.PHONY: dataplane-tests dataplane-bench
# Unit tests and the namespace integration tests of the data plane alone.
dataplane-tests: build-tests
	$(SWIFT) test --skip-build $(SWIFT_BUILD_FLAGS) --filter 'TriglavDataPlaneTests|IntegrationTests.DataPlane'

# Benchmark (not a test): single-uplink TCP throughput over one unimpaired veth, Triglav vs wireguard-go
# vs no tunnel, in one run. Writes its section of docs/BENCHMARKS.md (--print-only to only print).
dataplane-bench: deps
	@./scripts/apt-ensure $(DATAPLANE_BENCH_PACKAGES)
	$(SWIFT) build -c release --product triglav-dataplane-dev $(SWIFT_BUILD_FLAGS)
	Benchmarks/DataPlaneBench/run "$$($(SWIFT) build -c release --show-bin-path $(SWIFT_BUILD_FLAGS))/triglav-dataplane-dev"
