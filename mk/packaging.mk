# Packaging: the Debian package, and tests of the units, udev rules and the installed package
# (see docs/INSTALL.md and packaging/tests/).
#
#   make deb               release build (static Swift stdlib) -> artifacts/triglav_VERSION_ARCH.deb
#   make packaging-check   systemd-analyze verify/security on the units, udev rules in a namespace,
#                          sysusers/tmpfiles snippets (seconds; part of `make test`)
#   make package-test      make deb, lintian, then install it on this machine, exercise it on a
#                          hand-started system bus and purge it (root; part of `make test`)

# Only `make deb` needs these; `make deps` stays as it was.
DEB_APT_PACKAGES := debhelper dpkg-dev fakeroot help2man lintian rsync
# The installed-package test: a system bus to start by hand, busctl, users and a namespace.
PACKAGE_TEST_APT_PACKAGES := dbus dbus-bin dbus-daemon dbus-system-bus-common libglib2.0-bin systemd udev iproute2 passwd util-linux
APT_TEST_PACKAGES += systemd udev

EXTRA_TEST_TARGETS += packaging-check package-test

.PHONY: deb packaging-check package-test

# Where `make deb` leaves its release binaries (packaging/build-deb's mirror and debian/rules' scratch path); the lab
# test runs them.
DEB_BIN_DIR := $(CURDIR)/artifacts/deb-build/triglav/.build-deb/release

deb: deps
	@./scripts/apt-ensure $(DEB_APT_PACKAGES)
	./packaging/build-deb

packaging-check: build-tests
	./packaging/tests/check-units.sh "$$($(SWIFT) build --show-bin-path $(SWIFT_BUILD_FLAGS))/triglavd"
	./packaging/tests/check-udev.sh

package-test: deb
	./scripts/apt-ensure $(PACKAGE_TEST_APT_PACKAGES)
	./packaging/tests/check-deb.sh
	./packaging/tests/check-installed-package.sh
