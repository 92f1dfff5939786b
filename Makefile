# Triglav build, demo and test entry points. The README's two commands are `make demo` and `make test`.
# Feature areas add their own targets, apt packages and test steps in mk/*.mk.
SHELL := /bin/bash
SWIFT ?= swift
SWIFT_BUILD_FLAGS ?=

# Debian packages needed to build and run (extended by mk/*.mk).
APT_PACKAGES := pkg-config libsodium-dev libdbus-1-dev libnl-3-dev libnl-route-3-dev libsystemd-dev
# Debian packages needed only by tests (extended by mk/*.mk).
APT_TEST_PACKAGES := dbus-daemon iproute2 nftables
# Test steps run after the Swift test suite (extended by mk/*.mk).
EXTRA_TEST_TARGETS :=

-include mk/*.mk

.PHONY: all deps test-deps build build-tests release demo test unit-tests clean
all: build

# Installs only what is missing, so a second run costs one dpkg query.
deps:
	@./scripts/apt-ensure $(APT_PACKAGES)

test-deps:
	@./scripts/apt-ensure $(APT_PACKAGES) $(APT_TEST_PACKAGES)

build: deps
	$(SWIFT) build $(SWIFT_BUILD_FLAGS)

build-tests: test-deps
	$(SWIFT) build --build-tests $(SWIFT_BUILD_FLAGS)

release: deps
	$(SWIFT) build -c release $(SWIFT_BUILD_FLAGS)

# The main job: the network-namespace lab (see docs/LAB.md).
demo: build
	$(DEMO_COMMAND)

DEMO_COMMAND ?= $(SWIFT) run --skip-build triglav --help

# The whole Swift suite, in three processes at once, then the server-scale suite alone (see the script); `swift test --skip-build` runs it in one.
unit-tests: build-tests
	./scripts/unit-tests "$$($(SWIFT) build --show-bin-path $(SWIFT_BUILD_FLAGS))"

test: unit-tests $(EXTRA_TEST_TARGETS)

clean:
	rm -rf .build .build-*
