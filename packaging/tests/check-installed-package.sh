#!/usr/bin/env bash
# Installs artifacts/triglav_*.deb on this machine and checks it as a user would meet it, then purges
# it and checks that nothing is left behind:
#   - dpkg -i succeeds without a running systemd; group triglav, the directories, the enabled unit;
#   - the installed units pass `systemd-analyze verify` as installed (real binary, real man pages);
#   - on a system bus started by hand (dbus-daemon --system, the machine's real socket path, which
#     nothing else uses on CI: the test refuses to run if a system bus is already up and stops its
#     own through the pidfile on any exit), the installed triglavd, started as the unit starts it (only
#     CAP_NET_ADMIN, no new privileges) inside a network namespace of the test's, owns org.triglav;
#     busctl status/introspect work; a member of group triglav may call Connect, a user outside the
#     group gets AccessDenied from the bus but may read properties;
#   - dpkg --purge leaves no file, user, group or bus policy behind (file lists before and after).
# If the installed triglavd does not own org.triglav within 5 s (the daemon is not wired to the bus
# yet), the bus checks are skipped, saying so; everything else still runs. Root only.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
SUITE=packaging-installed
export LC_ALL=C
root=$(repo_root)
cd "$root"

if [[ $(id -u) -ne 0 ]]; then
    skip "the installed-package test needs root (dpkg, users, a system bus)"
    finish
    exit
fi
debs=(artifacts/triglav_*_"$(dpkg --print-architecture)".deb)
if [[ ! -f "${debs[0]}" ]]; then
    fail "no artifacts/triglav_*.deb: run make deb first"
    finish
    exit 1
fi
deb=$(realpath "${debs[0]}")

bus_socket=/run/dbus/system_bus_socket
bus_pidfile=/run/dbus/pid
member=tgpkg-member
outsider=tgpkg-outsider
namespace=tg-packaging-$$-$RANDOM
scratch=$(mktemp -d /tmp/tg-packaging-installed.XXXXXX)
claim_timeout_seconds=5

# Refuse to run where the result would be ambiguous or the machine's state is not ours to change.
precondition_failed() { fail "$1"; finish; exit 1; }
dpkg-query -W -f='${Status}' triglav 2>/dev/null | grep -q installed &&
    precondition_failed "triglav is already installed; purge it first (dpkg --purge triglav)"
for directory in /etc/triglav /var/lib/triglav; do
    [[ -e $directory ]] && precondition_failed "$directory exists; the test checks what the package creates and removes there (left over? remove it)"
done
getent group triglav > /dev/null && precondition_failed "group triglav already exists; the test checks that the package creates and removes it"
[[ -S $bus_socket ]] && busctl --system status > /dev/null 2>&1 &&
    precondition_failed "a system bus is already running on $bus_socket; this test starts and stops its own"
if [[ -e $bus_pidfile ]] && ! kill -0 "$(cat "$bus_pidfile")" 2>/dev/null; then
    echo "removing the stale $bus_pidfile and $bus_socket of a system bus that is no longer running"
    rm -f "$bus_pidfile" "$bus_socket"
fi
for user in $member $outsider; do
    getent passwd "$user" > /dev/null && precondition_failed "user $user exists (left over from an earlier run?): userdel $user"
done

daemon_pid=""
bus_started=no
bus_pid=""
# Stops the hand-started bus through its pidfile. dbus-daemon drops to user messagebus and so cannot
# remove its root-owned pidfile and socket itself; once the process is gone, they are removed here.
stop_bus() {
    bus_pid=$(cat "$bus_pidfile" 2>/dev/null)
    if [[ -n $bus_pid ]]; then
        kill -TERM "$bus_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$bus_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$bus_pid" 2>/dev/null
    fi
    rm -f "$bus_pidfile" "$bus_socket"
    bus_started=no
}
cleanup() {
    if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null
    fi
    ip netns delete "$namespace" 2>/dev/null
    [[ $bus_started == yes ]] && stop_bus
    for user in $member $outsider; do
        getent passwd "$user" > /dev/null && userdel "$user"
    done
    if dpkg-query -W -f='${Status}' triglav 2>/dev/null | grep -q installed; then
        dpkg --purge triglav > /dev/null 2>&1
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

# Names of everything the package could touch, minus what changes on its own (logs, caches, dpkg's and
# apt's databases, the backups the shadow tools keep).
snapshot() {
    find /etc /usr /var -xdev \
        \( -path /var/lib/dpkg -o -path /var/log -o -path /var/cache -o -path /var/lib/apt \
           -o -path /var/backups -o -path /var/tmp -o -path /var/lib/lintian \) -prune -o -print 2> /dev/null |
        grep -vxE '/etc/(passwd|group|shadow|gshadow|subuid|subgid)-|/etc/\.pwd\.lock' | sort
    # Accounts by name: a leftover user or group counts as much as a leftover file.
    getent passwd | cut -d: -f1 | sort | sed 's/^/user:/'
    getent group | cut -d: -f1 | sort | sed 's/^/group:/'
}
snapshot > "$scratch/before"

# The bus runs while the package is installed, as on a real system: postinst must create the group
# and make the bus re-read the policy (which names the group) before anything uses it.
mkdir -p /run/dbus
if dbus-daemon --system --fork > "$scratch/bus.log" 2>&1; then
    bus_started=yes
    pass "dbus-daemon --system started (pid $(cat $bus_pidfile 2>/dev/null))"
else
    fail "could not start the system bus: $(cat "$scratch/bus.log")"
fi

# ---- install ------------------------------------------------------------------------------------
if dpkg --install "$deb" > "$scratch/install.log" 2>&1; then
    pass "dpkg --install $(basename "$deb")"
else
    fail "dpkg --install failed: $(tail -5 "$scratch/install.log")"
    finish
    exit 1
fi
check "group triglav exists" bash -c "getent group triglav > /dev/null"
check "/var/lib/triglav exists with mode 0700" test "$(stat -c %a /var/lib/triglav 2>/dev/null)" = 700
check "/etc/triglav/profiles exists" test -d /etc/triglav/profiles
check "triglavd.service is enabled (multi-user.target.wants)" \
    test -L /etc/systemd/system/multi-user.target.wants/triglavd.service
check "triglavd-server.service is not enabled" \
    test ! -e /etc/systemd/system/multi-user.target.wants/triglavd-server.service
for unit in triglavd.service triglavd-server.service; do
    output=$(systemd-analyze verify "/lib/systemd/system/$unit" 2>&1)
    check "installed $unit passes systemd-analyze verify (binary and man pages in place)${output:+: $output}" \
        test -z "$output"
done
check "triglav --version (installed CLI) prints the package version" \
    test "$(triglav --version)" = "$(dpkg-query -W -f='${Version}' triglav)"
check "triglav keygen writes the daemon's key into /var/lib/triglav" \
    bash -c "triglav keygen /var/lib/triglav/private.key > /dev/null && test \"\$(stat -c %a /var/lib/triglav/private.key)\" = 600"

# ---- the daemon on the system bus -------------------------------------------------------------------
# The unit's ExecStart=, run the way the unit runs it: only CAP_NET_ADMIN, no new privileges, umask
# 0077, systemd's clean environment with the directories of StateDirectory= and ConfigurationDirectory=.
# In a network namespace of the test's, so that nothing the daemon does reaches the machine's network.
exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/triglavd.service)
ip netns add "$namespace"
(
    umask 0077
    exec ip netns exec "$namespace" setpriv --bounding-set=-all,+net_admin --inh-caps=-all,+net_admin \
        --ambient-caps=-all,+net_admin --no-new-privs \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        STATE_DIRECTORY=/var/lib/triglav CONFIGURATION_DIRECTORY=/etc/triglav $exec_start
) > "$scratch/daemon.log" 2>&1 &
daemon_pid=$!

claimed=no
if [[ $bus_started == yes ]]; then
    for _ in $(seq $((claim_timeout_seconds * 10))); do
        if busctl --system status org.triglav > /dev/null 2>&1; then claimed=yes; break; fi
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.1
    done
fi

if [[ $claimed == no ]]; then
    running=$(kill -0 "$daemon_pid" 2>/dev/null && echo "still running" || echo "exited")
    skip "bus checks: the installed triglavd ($exec_start) did not own org.triglav within ${claim_timeout_seconds} s ($running; its output: $(head -c 300 "$scratch/daemon.log" | tr '\n' ' '))"
else
    pass "the installed triglavd owns org.triglav on the system bus"
    check "busctl status org.triglav names the daemon's pid" \
        bash -c "busctl --system status org.triglav | grep -qx 'PID=$daemon_pid'"
    check "busctl introspect org.triglav /org/triglav shows org.triglav.Manager1.Connect" \
        bash -c "busctl --system introspect org.triglav /org/triglav org.triglav.Manager1 | grep -q '^\.Connect '"

    useradd --no-create-home --no-user-group --shell /usr/sbin/nologin --groups triglav "$member"
    useradd --no-create-home --no-user-group --shell /usr/sbin/nologin "$outsider"
    # The bus resolves group membership when the user connects: no reload needed. gdbus prints the
    # D-Bus error name, so the bus's own AccessDenied can't be confused with an answer of the daemon
    # (a member asking for a profile that does not exist gets an org.triglav.Error from the daemon).
    connect=(gdbus call --system --dest org.triglav --object-path /org/triglav
             --method org.triglav.Manager1.Connect tgpkg-no-such-profile '@a{sv} {}')
    member_reply=$(runuser -u "$member" -- "${connect[@]}" 2>&1)
    outsider_reply=$(runuser -u "$outsider" -- "${connect[@]}" 2>&1)
    check "a member of group triglav may call Connect (reply: $member_reply)" \
        bash -c "grep -q 'org.triglav.Error' <<< '$member_reply' || grep -q '^()' <<< '$member_reply'"
    check "a user outside group triglav gets AccessDenied from the bus on Connect (reply: $outsider_reply)" \
        grep -q 'org.freedesktop.DBus.Error.AccessDenied' <<< "$outsider_reply"
    check "a user outside group triglav may read properties (State)" \
        bash -c "runuser -u '$outsider' -- busctl --system get-property org.triglav /org/triglav org.triglav.Manager1 State > /dev/null"
    grep -q '^()' <<< "$member_reply" && busctl --system call org.triglav /org/triglav org.triglav.Manager1 Disconnect > /dev/null 2>&1

    kill -TERM "$daemon_pid"
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    check "triglavd exits on SIGTERM within 5 s" bash -c "! kill -0 $daemon_pid 2>/dev/null"
fi
kill -KILL "$daemon_pid" 2>/dev/null
wait "$daemon_pid" 2>/dev/null
daemon_pid=""
ip netns delete "$namespace"
for user in $member $outsider; do
    getent passwd "$user" > /dev/null && userdel "$user"
done

# ---- purge ----------------------------------------------------------------------------------------
# With the bus still up, so that postrm's bus reload runs too.
if dpkg --purge triglav > "$scratch/purge.log" 2>&1; then
    pass "dpkg --purge triglav"
else
    fail "dpkg --purge failed: $(tail -5 "$scratch/purge.log")"
fi
if [[ $bus_started == yes ]]; then
    stop_bus
    check "the hand-started system bus (pid $bus_pid) is stopped" bash -c "! kill -0 $bus_pid 2>/dev/null"
fi

snapshot > "$scratch/after"
leftovers=$(comm -13 "$scratch/before" "$scratch/after")
removed=$(comm -23 "$scratch/before" "$scratch/after")
check "purge leaves no file, user or group behind${leftovers:+: $(tr '\n' ' ' <<< "$leftovers")}" test -z "$leftovers"
check "install and purge removed nothing that was there before${removed:+: $(tr '\n' ' ' <<< "$removed")}" test -z "$removed"
check "no bus policy left (/usr/share/dbus-1/system.d/org.triglav.conf)" test ! -e /usr/share/dbus-1/system.d/org.triglav.conf
check "group triglav is gone" bash -c "! getent group triglav > /dev/null"

# ---- an /etc/triglav that was there before the package is the administrator's -----------------------
mkdir -p /etc/triglav && echo '# the administrator was here' > /etc/triglav/kept.toml
if dpkg --install "$deb" > "$scratch/install2.log" 2>&1 && dpkg --purge triglav > "$scratch/purge2.log" 2>&1; then
    check "purge keeps an /etc/triglav that existed before the install" test -f /etc/triglav/kept.toml
    check "purge still removes /var/lib/triglav and the group it created" \
        bash -c "[[ ! -e /var/lib/triglav ]] && ! getent group triglav > /dev/null"
else
    fail "second install/purge failed: $(tail -3 "$scratch/install2.log" "$scratch/purge2.log")"
fi
rm -rf /etc/triglav

finish
