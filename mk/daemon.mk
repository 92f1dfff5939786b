# The daemon (triglavd composition: managers, signals, sd_notify, D-Bus; see docs/DAEMON.md).
# Integration tests start triglavd in network namespaces, listen on a NOTIFY_SOCKET, run a private
# dbus-daemon (base test package) and drive it with busctl (systemd) and ping (iputils-ping); the udev test
# runs its own systemd-udevd (udev) in the lab namespace, entered with nsenter (util-linux).
APT_TEST_PACKAGES += systemd iputils-ping udev util-linux

.PHONY: daemon-tests
# The daemon's suites alone: unit tests with fakes, then the namespace tests (root; skipped otherwise).
daemon-tests: build-tests
	$(SWIFT) test --skip-build $(SWIFT_BUILD_FLAGS) --filter 'TriglavDaemonTests.Core|IntegrationTests.Daemon'

# The DNS tests also run the real systemd-resolved (in a namespace, on their private bus) and Debian's resolvconf
# (in the daemon's mount namespace): unpacked, not installed (scripts/unpack-deb says why).
RESOLVED_FOR_TESTS := .build-deps/systemd-resolved
RESOLVCONF_FOR_TESTS := .build-deps/resolvconf
.PHONY: resolved-for-tests
resolved-for-tests: test-deps
	@./scripts/fetch-resolved $(RESOLVED_FOR_TESTS)
	@./scripts/unpack-deb resolvconf $(RESOLVCONF_FOR_TESTS)
build-tests: resolved-for-tests
