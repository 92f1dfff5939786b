# Configuration area: TriglavConfig, triglavd --check-config, examples/ (see docs/CONFIG.md).

# TOMLKit compiles toml++, a C++17 library, so the C++ standard library headers are needed.
APT_PACKAGES += libstdc++-12-dev

.PHONY: check-examples
# The shipped examples must stay valid: check them with the built daemon, as a user would.
check-examples: build-tests
	"$$($(SWIFT) build --show-bin-path $(SWIFT_BUILD_FLAGS))/triglavd" --check-config examples/triglavd-client.toml \
		--profile-dir examples/profiles --all-profiles
	"$$($(SWIFT) build --show-bin-path $(SWIFT_BUILD_FLAGS))/triglavd" --check-config examples/triglavd-server.toml

EXTRA_TEST_TARGETS += check-examples
