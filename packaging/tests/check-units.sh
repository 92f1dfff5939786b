#!/usr/bin/env bash
# Static checks of what systemd/ and dbus/org.triglav.service ship: `systemd-analyze verify` of every
# unit with ExecStart= pointing at the built triglavd, the exposure score of
# `systemd-analyze security --offline=true` (≤ 4.0, and the one docs/INSTALL.md records), the
# hardening the packaging issue requires, both units hardened alike, the D-Bus activation file, and
# the sysusers/tmpfiles snippets applied to a scratch root. Needs no root and changes nothing.
# Usage: check-units.sh [PATH-TO-triglavd]   (default: the debug build)
set -uo pipefail
source "$(dirname "$0")/lib.sh"
SUITE=packaging-units
root=$(repo_root)
cd "$root"

daemon=${1:-$(swift build --show-bin-path 2>/dev/null)/triglavd}
if [[ ! -x "$daemon" ]]; then
    fail "no triglavd binary at $daemon: build it first (make build)"
    finish
    exit 1
fi
daemon=$(realpath "$daemon")
scratch=$(mktemp -d /tmp/tg-packaging-units.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

units=(systemd/triglavd.service systemd/triglavd-server.service)
max_exposure=4.0

# Lines every unit must carry verbatim (the packaging issue's list).
required=(
    "Type=notify"
    "NotifyAccess=main"
    "CapabilityBoundingSet=CAP_NET_ADMIN"
    "AmbientCapabilities=CAP_NET_ADMIN"
    "DevicePolicy=closed"
    "DeviceAllow=/dev/net/tun rw"
    "ProtectSystem=strict"
    "ProtectHome=yes"
    "PrivateTmp=yes"
    "NoNewPrivileges=yes"
    "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6"
    "SystemCallFilter=@system-service"
    "StateDirectory=triglav"
    "StateDirectoryMode=0700"
    "ConfigurationDirectory=triglav"
)

# The [Service] settings that are not about which role runs: must be identical in both units. Only the
# client writes /etc/resolv.conf and resolvconf's records (a profile's or the server's DNS without systemd-resolved).
hardening() {
    sed -n '/^\[Service\]/,/^\[/p' "$1" | grep -Ev '^(#|$|\[|ExecStart=|BusName=|ReadWritePaths=-/etc/resolv.conf -/run/resolvconf$)' | sort
}

exposure() {
    systemd-analyze security --offline=true "$1" 2>&1 |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p'
}

for unit in "${units[@]}"; do
    name=$(basename "$unit")
    check "$name: ExecStart runs /usr/sbin/triglavd, where the package installs it" \
        grep -q '^ExecStart=/usr/sbin/triglavd\( \|$\)' "$unit"
    for line in "${required[@]}"; do
        check "$name: has '$line'" grep -qxF "$line" "$unit"
    done
    check "$name: WatchdogSec= is set" grep -q '^WatchdogSec=[1-9]' "$unit"
    check "$name: no capability beyond CAP_NET_ADMIN" \
        bash -c "! grep -E '^(CapabilityBoundingSet|AmbientCapabilities)=' '$unit' | grep -v '=CAP_NET_ADMIN\$'"

    mkdir -p "$scratch/verify"
    sed "s|^ExecStart=/usr/sbin/triglavd|ExecStart=$daemon|" "$unit" > "$scratch/verify/$name"
    # The man pages named in Documentation= exist only once the package is installed; the
    # installed-package test verifies the units with them.
    output=$(systemd-analyze verify --man=no "$scratch/verify/$name" 2>&1)
    status=$?
    if [[ $status -eq 0 && -z "$output" ]]; then
        pass "$name: systemd-analyze verify (ExecStart=$daemon)"
    else
        fail "$name: systemd-analyze verify exited $status: $output"
    fi

    score=$(exposure "$scratch/verify/$name")
    if [[ -n "$score" ]] && awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s <= m) }'; then
        pass "$name: systemd-analyze security exposure $score <= $max_exposure"
    else
        fail "$name: systemd-analyze security exposure '${score:-unreadable}' is not <= $max_exposure"
    fi
    check "docs/INSTALL.md records $name's exposure ($score)" \
        grep -qF "exposure of $name: $score " docs/INSTALL.md
done

check "triglavd.service may write /etc/resolv.conf and /run/resolvconf (DNS without systemd-resolved), triglavd-server.service may not" \
    bash -c "grep -qx 'ReadWritePaths=-/etc/resolv.conf -/run/resolvconf' '${units[0]}' && ! grep -q 'resolv' '${units[1]}'"
check "triglavd.service names org.triglav in BusName= (activation starts it)" \
    grep -qx 'BusName=org.triglav' "${units[0]}"
check "triglavd-server.service does not (systemd refuses two units with one BusName=)" \
    bash -c "! grep -q '^BusName=' '${units[1]}'"
check "both units carry the same hardening" diff <(hardening "${units[0]}") <(hardening "${units[1]}")
check "the units conflict with each other (both own org.triglav)" \
    bash -c "grep -qx 'Conflicts=triglavd-server.service' '${units[0]}' && grep -qx 'Conflicts=triglavd.service' '${units[1]}'"

activation=dbus/org.triglav.service
for line in "[D-BUS Service]" "Name=org.triglav" "Exec=/bin/false" "User=root" "SystemdService=triglavd.service"; do
    check "$activation: has '$line'" grep -qxF "$line" "$activation"
done

# sysusers and tmpfiles, applied for real to a scratch root.
mkdir -p "$scratch/root/etc"
check "sysusers.d/triglav.conf creates group triglav" \
    bash -c "systemd-sysusers --root='$scratch/root' '$root/systemd/sysusers.d/triglav.conf' > /dev/null 2>&1 &&
             grep -q '^triglav:x:[0-9]*:\$' '$scratch/root/etc/group'"
check "tmpfiles.d/triglav.conf applies cleanly" \
    systemd-tmpfiles --root="$scratch/root" --create "$root/systemd/tmpfiles.d/triglav.conf"
check "tmpfiles: /var/lib/triglav is 0700, as StateDirectoryMode=" \
    test "$(stat -c %a "$scratch/root/var/lib/triglav" 2>/dev/null)" = 700
check "tmpfiles: /etc/triglav is 0755, as ConfigurationDirectoryMode=" \
    bash -c "test \"\$(stat -c %a '$scratch/root/etc/triglav')\" = 755 && grep -qx 'ConfigurationDirectoryMode=0755' '${units[0]}'"

finish
