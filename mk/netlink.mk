# Netlink, systemd and uplink discovery (see docs/NETLINK.md).
# Build: libnl-3 + libnl-route-3 and libsystemd are already in the base APT_PACKAGES.
# Tests create network namespaces with iproute2 (already a base test package) and read udev
# properties through udevadm (systemd's udev package).
APT_TEST_PACKAGES += udev

.PHONY: netlink-tests
# The netlink, systemd and discovery suites alone (root: namespace tests run; otherwise they are skipped).
netlink-tests: build-tests
	$(SWIFT) test --skip-build $(SWIFT_BUILD_FLAGS) --filter 'TriglavNetlinkTests|TriglavSystemdTests|TriglavDaemonTests.Discovery'
