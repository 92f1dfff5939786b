# D-Bus API (org.triglav), the triglav CLI and their generated docs. See docs/DBUS.md.
# busctl (package systemd) drives the API tests; useradd/runuser create and use the test users.
APT_TEST_PACKAGES += dbus-daemon systemd passwd util-linux

.PHONY: dbus-docs dbus-try

# The man page's date (`make dbus-docs DBUS_DOCS_DATE=2026-11-29` to keep an earlier one).
DBUS_DOCS_DATE ?= $(shell date +%Y-%m-%d)

# Shell completions and the man page, generated from the CLI's argument definitions. The man page
# comes from swift-argument-parser's generate-manual plugin, which builds in release mode (slow):
# run this after changing the CLI and commit contrib/. A test (CLIDocsTests) checks they're current.
dbus-docs: build
	@bin=$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path) && mkdir -p contrib/man contrib/completions && \
	"$$bin/triglav" --generate-completion-script bash > contrib/completions/triglav.bash && \
	"$$bin/triglav" --generate-completion-script zsh > contrib/completions/_triglav && \
	"$$bin/triglav" --generate-completion-script fish > contrib/completions/triglav.fish
	@tmp=$$(mktemp -d) && \
	$(SWIFT) package --allow-writing-to-package-directory generate-manual --date $(DBUS_DOCS_DATE) \
	  --authors "The Triglav authors" --output-directory "$$tmp" >/dev/null && \
	cp "$$tmp/triglav.1" contrib/man/triglav.1 && rm -rf "$$tmp" && \
	echo "dbus-docs: wrote contrib/man/triglav.1 and contrib/completions/"

# Try the CLI without privileges or a tunnel: a private bus with the fake controller on it.
dbus-try: build
	@bin=$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path) && dir=$$(mktemp -d /tmp/tg-dbus-try-XXXXXX) && \
	printf '%s\n' '<busconfig><type>session</type><listen>unix:path='"$$dir"'/bus</listen><pidfile>'"$$dir"'/pid</pidfile>' \
	  '<auth>EXTERNAL</auth><policy context="default"><allow user="*"/><allow own="*"/><allow send_type="method_call"/>' \
	  '<allow send_type="signal"/><allow send_requested_reply="true" send_type="method_return"/>' \
	  '<allow send_requested_reply="true" send_type="error"/><allow receive_type="method_call"/>' \
	  '<allow receive_type="method_return"/><allow receive_type="error"/><allow receive_type="signal"/>' \
	  '<allow send_destination="org.freedesktop.DBus"/></policy></busconfig>' > "$$dir/bus.conf" && \
	dbus-daemon --config-file="$$dir/bus.conf" --fork && \
	{ "$$bin/triglav-bus-fixture" --address "unix:path=$$dir/bus" --clients 1 --tick-ms 250 --allow-anyone >"$$dir/fixture.log" 2>&1 & \
	  echo $$! > "$$dir/fixture.pid"; } && sleep 1 && \
	echo "Bus:  unix:path=$$dir/bus" && \
	echo "Try:  $$bin/triglav --bus-address unix:path=$$dir/bus status   (or monitor, uplinks, connect home, ...)" && \
	echo "Stop: kill $$(cat "$$dir/pid") $$(cat "$$dir/fixture.pid"); rm -rf $$dir"
