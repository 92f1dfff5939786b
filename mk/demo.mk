# The README's main job, tested (docs/LAB.md): lab/test-demo runs lab/demo once to completion and once
# interrupted with SIGINT mid-download, and checks that nothing of the demo's lab is left behind.
# Root only (network namespaces the demo creates and deletes); about 60-90 s.
APT_TEST_PACKAGES += iproute2 nftables ethtool curl python3 coreutils
EXTRA_TEST_TARGETS += demo-test

.PHONY: demo-test
demo-test: build-tests
	TRIGLAV_BIN_DIR="$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)" lab/test-demo
