# The namespace lab (docs/LAB.md): link emulator, topology scripts, the demo, their tests.
# Run as root: everything happens in network namespaces the scripts create and delete.
APT_PACKAGES += iproute2 nftables ethtool curl python3 iputils-ping
APT_TEST_PACKAGES += iperf3
EXTRA_TEST_TARGETS += lab-test

# The lab scripts find triglav-linkemu (and the VPN executables) where this build put them.
LAB_BIN_DIR = TRIGLAV_BIN_DIR="$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)"
DEMO_COMMAND = $(LAB_BIN_DIR) lab/demo

.PHONY: lab-test lab-up lab-down lab-status lab-bench-linkemu lab-bench-aggregate

# Integration test: brings the lab up, checks connectivity, emulated delay and rate, tears down. With the binaries
# the package ships (`make deb` builds the emulator beside them): the 80 % goodput check measures the data plane, and
# a debug triglavd is CPU-bound on a 2-core machine (73–78 % there, 82–86 % in release on the same machine).
lab-test: build-tests deb
	TRIGLAV_BIN_DIR="$(DEB_BIN_DIR)" lab/test-lab

lab-up: build
	$(LAB_BIN_DIR) lab/lab up

lab-down:
	lab/lab down

lab-status:
	lab/lab status

# Benchmarks (not tests): print Markdown for docs/BENCHMARKS.md.
lab-bench-linkemu: build
	$(LAB_BIN_DIR) lab/bench-linkemu

lab-bench-aggregate: build
	$(LAB_BIN_DIR) lab/bench-aggregate
