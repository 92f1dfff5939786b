#!/usr/bin/env bash
# Checks the built artifacts/triglav_*.deb without installing it: lintian has nothing to say beyond
# what packaging/debian/triglav.lintian-overrides justifies (if present), every shipped file is where
# Debian and the daemon expect it, Depends names Debian packages only (the Swift runtime is linked in
# statically), and the generated man pages and completions are there.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
SUITE=packaging-deb
root=$(repo_root)
cd "$root"

debs=(artifacts/triglav_*_"$(dpkg --print-architecture)".deb)
if [[ ! -f "${debs[0]}" ]]; then
    fail "no artifacts/triglav_*.deb: run make deb first"
    finish
    exit 1
fi
deb=${debs[0]}
echo "checking $deb"

# lintian's exit status is 0 with warnings, so read the tags: errors and warnings fail; overridden
# tags are not printed.
tags=$(lintian --fail-on none "$deb" 2>&1 | grep -E '^[EW]: ')
check "lintian: no errors or unjustified warnings${tags:+: $tags}" test -z "$tags"

contents=$(dpkg-deb --contents "$deb" | awk '{ print $6 }' | sed 's|^\./|/|')
for path in \
    /usr/sbin/triglavd /usr/bin/triglav \
    /lib/systemd/system/triglavd.service /lib/systemd/system/triglavd-server.service \
    /usr/lib/sysusers.d/triglav.conf /usr/lib/tmpfiles.d/triglav.conf \
    /usr/lib/udev/rules.d/90-triglav.rules \
    /usr/share/dbus-1/system.d/org.triglav.conf \
    /usr/share/dbus-1/system-services/org.triglav.service \
    /usr/share/dbus-1/interfaces/org.triglav.xml \
    /usr/share/man/man1/triglav.1.gz /usr/share/man/man8/triglavd.8.gz \
    /usr/share/bash-completion/completions/triglav \
    /usr/share/zsh/vendor-completions/_triglav \
    /usr/share/fish/vendor_completions.d/triglav.fish \
    /usr/share/doc/triglav/copyright; do
    check "ships $path" grep -qxF "$path" <<< "$contents"
done
if [[ -d examples ]]; then
    check "ships the example configurations under /usr/share/doc/triglav/examples" \
        grep -q '^/usr/share/doc/triglav/examples/.' <<< "$contents"
fi
check "ships nothing under /etc (no conffiles: configuration is the administrator's)" \
    bash -c "! grep -q '^/etc/' <<< '$contents'"

depends=$(dpkg-deb --field "$deb" Depends)
echo "Depends: $depends"
for library in libsodium23 libdbus-1-3 libnl-3-200 libnl-route-3-200 libsystemd0; do
    check "Depends on $library" grep -qE "(^|, )$library( |,|$)" <<< "$depends"
done
check "Depends names no Swift runtime package" bash -c "! grep -qi swift <<< '$depends'"
recommends=$(dpkg-deb --field "$deb" Recommends)
check "Recommends nftables (the server role's NAT)" grep -qE "(^|, )nftables( |,|$)" <<< "$recommends"
suggests=$(dpkg-deb --field "$deb" Suggests)
check "Suggests systemd-resolved (a profile's [dns])" grep -qE "(^|, )systemd-resolved( |,|$)" <<< "$suggests"

scratch=$(mktemp -d /tmp/tg-packaging-deb.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb --extract "$deb" "$scratch"
for binary in usr/sbin/triglavd usr/bin/triglav; do
    needed=$(readelf --dynamic "$scratch/$binary" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
    check "$binary needs no Swift runtime library ($needed)" bash -c "! grep -qi swift <<< '$needed'"
    check "$binary has no RUNPATH (no toolchain or \$ORIGIN lookups)" bash -c "! readelf --dynamic '$scratch/$binary' | grep -qE 'R(UN)?PATH'"
    check "$binary is linked with full RELRO (BIND_NOW)" bash -c "readelf --dynamic '$scratch/$binary' | grep -q BIND_NOW"
    check "$binary runs: --help" "$scratch/$binary" --help > /dev/null
done
check "triglav.1 documents each subcommand in detail" bash -c "zcat '$scratch/usr/share/man/man1/triglav.1.gz' | grep -q 'USAGE: triglav keygen'"
check "bash completion completes triglav's subcommands" \
    grep -q keygen "$scratch/usr/share/bash-completion/completions/triglav"
check "bash completion has no #! line (it is sourced)" \
    bash -c "! head -1 '$scratch/usr/share/bash-completion/completions/triglav' | grep -q '^#!'"

finish
