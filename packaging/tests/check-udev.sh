#!/usr/bin/env bash
# Runs udev/90-triglav.rules for real: installs it under /run/udev/rules.d, creates stand-in network
# devices in a network namespace of its own (veths renamed to what a wwan, ethernet or Wi-Fi device
# would be called, a bridge named like Docker's, a TUN named like Triglav's), and checks the TRIGLAV_*
# properties `udevadm test --action=add` computes for each, and that udev reports no "Invalid key".
# udevadm test needs no running udevd. /sys/class/net shows the current namespace's devices, so each
# udevadm runs inside the namespace. Root only; removes the rules file and the namespace on any exit.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
SUITE=packaging-udev
root=$(repo_root)

if [[ $(id -u) -ne 0 ]]; then
    skip "udev rules test needs root (network namespace, /run/udev/rules.d)"
    finish
    exit
fi

rules_dir=/run/udev/rules.d
installed_rules=$rules_dir/90-triglav.rules
namespace=tg-packaging-$$-$RANDOM
created_rules_dir=no
# Without a udevd (containers, CI) /run/udev doesn't exist; udevadm test then leaves files in it (its database),
# and a /run/udev left behind makes later tools believe udev runs. Created here, so removed here.
created_udev_dir=no
[[ -d /run/udev ]] || created_udev_dir=yes
cleanup() {
    ip netns delete "$namespace" 2>/dev/null
    rm -f "$installed_rules"
    [[ $created_rules_dir == yes ]] && rmdir "$rules_dir" 2>/dev/null
    [[ $created_udev_dir == yes ]] && rm -rf /run/udev
}
trap cleanup EXIT

if [[ -e "$installed_rules" ]]; then
    fail "$installed_rules already exists; remove it (left over from an earlier run?)"
    finish
    exit 1
fi
[[ -d $rules_dir ]] || { mkdir -p "$rules_dir" && created_rules_dir=yes; }
cp "$root/udev/90-triglav.rules" "$installed_rules"
ip netns add "$namespace" || { fail "could not create network namespace $namespace"; finish; exit 1; }
in_namespace() { ip netns exec "$namespace" "$@"; }

# A veth pair created under neutral names and then renamed: the rules must match the final name.
add_renamed_veth_pair() {
    in_namespace ip link add tgstandin0 type veth peer name tgstandin1 &&
        in_namespace ip link set tgstandin0 name "$1" &&
        in_namespace ip link set tgstandin1 name "$2"
}
check "create stand-in devices" bash -c "
    $(declare -f add_renamed_veth_pair in_namespace); namespace=$namespace
    in_namespace ip link add veth0 type veth peer name veth1 &&
    add_renamed_veth_pair wwan0 enp9s0 &&
    add_renamed_veth_pair wlp2s0 tgother0 &&
    in_namespace ip link add docker0 type bridge &&
    in_namespace ip tuntap add mode tun name triglav0"

# expect_properties IFACE 'NAME=VALUE ...' (empty: no TRIGLAV_* property at all)
expect_properties() {
    local interface=$1 expected=$2 output actual
    output=$(in_namespace udevadm test --action=add "/sys/class/net/$interface" 2>&1)
    if grep -q "Invalid key" <<< "$output"; then
        fail "$interface: udev reports an invalid key: $(grep 'Invalid key' <<< "$output" | head -1)"
        return
    fi
    actual=$(grep -E '^TRIGLAV_[A-Z]+=' <<< "$output" | sort | tr '\n' ' ' | sed 's/ $//')
    if [[ "$actual" == "$expected" ]]; then
        pass "$interface: ${expected:-no TRIGLAV_* property}"
    else
        fail "$interface: expected '${expected:-nothing}', udevadm test gave '${actual:-nothing}'"
    fi
}

# udev names a rules file and line for every problem it finds in it (invalid key, missing label, ...).
output=$(in_namespace udevadm test --action=add /sys/class/net/lo 2>&1)
check "udevadm test reads $installed_rules" grep -qxF "Reading rules file: $installed_rules" <<< "$output"
diagnostics=$(grep -F "$installed_rules:" <<< "$output")
check "udev reports no problem in the rules file${diagnostics:+: $diagnostics}" test -z "$diagnostics"

expect_properties veth0 "TRIGLAV_UPLINK=ignore"
expect_properties veth1 "TRIGLAV_UPLINK=ignore"
expect_properties lo "TRIGLAV_UPLINK=ignore"
expect_properties docker0 "TRIGLAV_UPLINK=ignore"
expect_properties triglav0 "TRIGLAV_UPLINK=ignore"
expect_properties wwan0 "TRIGLAV_METERED=1"
expect_properties enp9s0 "TRIGLAV_TIER=primary"
expect_properties wlp2s0 "TRIGLAV_TIER=primary"
expect_properties tgother0 ""

finish
