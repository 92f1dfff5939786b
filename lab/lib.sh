# shellcheck shell=bash
# Shared functions of the Triglav lab scripts (sourced by lab/lab, lab/demo, lab/test-lab,
# lab/bench-*). Callers set `set -euo pipefail`. Nothing here touches the root network namespace:
# every `ip` command names one of the lab's namespaces.

LAB_DIR=${LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
REPO_DIR=$(cd "$LAB_DIR/.." && pwd)

die() { echo "lab: error: $*" >&2; exit 1; }
note() { echo "lab: $*" >&2; }

# True while `pid` runs (a zombie waiting for its reaper doesn't count).
process_running() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Claims this LAB_ID for the calling script, so two demos (or tests) with the same LAB_ID can't tear
# each other's lab down. An owner file rather than flock: the lab's background processes would inherit
# a lock descriptor and keep it held after a kill -9 of the script, blocking the cleanup re-run.
# Waits up to $1 seconds (default 0) for a live owner; a dead owner's claim is taken over.
lab_lock() {
    local owner_file="/run/triglav-lab/$LAB_ID.owner" owner deadline=$((SECONDS + ${1:-0}))
    mkdir -p /run/triglav-lab
    while owner=$(cat "$owner_file" 2>/dev/null) && [[ -n $owner && $owner != "$$" ]] && process_running "$owner"; do
        [[ $SECONDS -lt $deadline ]] || die "lab $LAB_ID is in use by process $owner; wait for it or use another LAB_ID"
        sleep 1
    done
    echo $$ >"$owner_file"
}

lab_unlock() {
    local owner_file="/run/triglav-lab/$LAB_ID.owner"
    [[ $(cat "$owner_file" 2>/dev/null) == "$$" ]] && rm -f "$owner_file"
    return 0
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces); run with sudo"
}

# The uplinks: name, client address, router address, IPv6 prefix, policy table, route metric.
# Lab defaults for the links follow the issue: wifi 30 Mbit/s 20 ms ±5 ms 1% loss, lte 20 Mbit/s
# 45 ms ±10 ms, ethernet 10 Mbit/s 5 ms. Queues hold about 100 ms at the link rate.
UPLINKS=(wifi0 lte0 eth0)
declare -A UPLINK_CLIENT4=([wifi0]=192.168.10.2 [lte0]=100.64.20.2 [eth0]=192.168.30.2)
declare -A UPLINK_ROUTER4=([wifi0]=192.168.10.1 [lte0]=100.64.20.1 [eth0]=192.168.30.1)
declare -A UPLINK_PREFIX4=([wifi0]=24 [lte0]=24 [eth0]=24)
declare -A UPLINK_CLIENT6=([wifi0]=fd00:10::2 [lte0]=fd00:20::2 [eth0]=fd00:30::2)
declare -A UPLINK_ROUTER6=([wifi0]=fd00:10::1 [lte0]=fd00:20::1 [eth0]=fd00:30::1)
declare -A UPLINK_PUBLIC4=([wifi0]=203.0.113.10 [lte0]=203.0.113.20 [eth0]=203.0.113.30)
declare -A UPLINK_TABLE=([wifi0]=110 [lte0]=120 [eth0]=130)
declare -A UPLINK_METRIC=([wifi0]=600 [lte0]=700 [eth0]=100)
# Router-side interface stem: <stem>-c faces the client, <stem>-e is the emulator's other end,
# <stem>-r carries the router's address.
declare -A UPLINK_STEM=([wifi0]=wifi [lte0]=lte [eth0]=eth)
declare -A UPLINK_DEFAULT_ARGS=(
    [wifi0]="--rate 30mbit --delay 20ms --jitter 5ms --loss 1% --queue 375kb"
    [lte0]="--rate 20mbit --delay 45ms --jitter 10ms --queue 250kb"
    [eth0]="--rate 10mbit --delay 5ms --queue 125kb"
)
# Nominal link rates in bit/s, for the demo's and tests' expectations.
declare -A UPLINK_RATE=([wifi0]=30000000 [lte0]=20000000 [eth0]=10000000)

SERVER_PUBLIC4=203.0.113.1
ROUTER_PUBLIC4=203.0.113.254
SERVER_PUBLIC6=2001:db8:113::1
ROUTER_PUBLIC6=2001:db8:113::fe
SERVER_INTERNET4=198.51.100.1
INTERNET4=198.51.100.10
SERVER_INTERNET6=2001:db8:100::1
INTERNET6=2001:db8:100::10
WEB_PORT=80

lab_init() {
    LAB_ID=${LAB_ID:-0}
    [[ $LAB_ID =~ ^[a-z0-9]{1,8}$ ]] || die "LAB_ID '$LAB_ID' must be 1-8 lowercase letters or digits"
    LAB_PREFIX="tglab-$LAB_ID-"
    LAB_STATE=/run/triglav-lab/$LAB_ID
    NS_CLIENT=${LAB_PREFIX}client
    NS_ROUTER=${LAB_PREFIX}router
    NS_SERVER=${LAB_PREFIX}server
    NS_INTERNET=${LAB_PREFIX}internet
    LAB_NODES=(client router server internet)
    LAB_FILE_MB=${LAB_FILE_MB:-64}
    LAB_NAT=${LAB_NAT:-1}
    # Congestion control of the lab's TCP senders (web server, iperf3), set per socket so every host measures
    # the same thing whatever its default (Debian's is cubic, this project's VMs run bbr; docs/LAB.md).
    LAB_TCP_CC=${LAB_TCP_CC:-bbr}
    TRIGLAV_BIN_DIR=${TRIGLAV_BIN_DIR:-$REPO_DIR/.build/debug}
    LINKEMU=$TRIGLAV_BIN_DIR/triglav-linkemu
}

node_namespace() {
    case $1 in
        client|router|server|internet) echo "${LAB_PREFIX}$1" ;;
        *) die "unknown node '$1' (client, router, server or internet)" ;;
    esac
}

uplink_args() {
    local uplink=$1 variable
    case $uplink in
        wifi0) variable=LAB_WIFI_ARGS ;;
        lte0) variable=LAB_LTE_ARGS ;;
        eth0) variable=LAB_ETH_ARGS ;;
    esac
    echo "${!variable:-${UPLINK_DEFAULT_ARGS[$uplink]}}"
}

check_uplink() {
    [[ -n ${UPLINK_STEM[$1]:-} ]] || die "unknown uplink '$1' (wifi0, lte0 or eth0)"
}

lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${LAB_PREFIX}" || true
}

lab_exec() {
    local namespace
    namespace=$(node_namespace "$1"); shift
    ip netns exec "$namespace" "$@"
}

# Stops every process in the lab's namespaces (they are the lab's: nothing else runs there), by pid:
# TERM, up to 3 s of grace, then KILL.
lab_stop_processes() {
    local namespaces=("$@") pids=() attempt
    [[ ${#namespaces[@]} -gt 0 ]] || return 0
    for attempt in $(seq 1 30); do
        pids=()
        local namespace
        for namespace in "${namespaces[@]}"; do
            mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$namespace" 2>/dev/null || true)
        done
        [[ ${#pids[@]} -gt 0 ]] || return 0
        if [[ $attempt -eq 1 ]]; then
            kill -TERM "${pids[@]}" 2>/dev/null || true
        elif [[ $attempt -eq 30 ]]; then
            kill -KILL "${pids[@]}" 2>/dev/null || true
        fi
        sleep 0.1
    done
}

lab_down() {
    local namespaces
    mapfile -t namespaces < <(lab_namespaces)
    if [[ ${#namespaces[@]} -gt 0 ]]; then
        lab_stop_processes "${namespaces[@]}"
        local namespace
        for namespace in "${namespaces[@]}"; do
            ip netns del "$namespace" 2>/dev/null || note "could not delete namespace $namespace"
        done
    fi
    rm -rf "$LAB_STATE"
    if [[ -n $(lab_namespaces) ]]; then
        die "namespaces left behind: $(lab_namespaces | tr '\n' ' ')"
    fi
}

# Waits (bounded) until `pattern` appears in `file`; fails with the file's tail otherwise.
wait_for_line() {
    local file=$1 pattern=$2 what=$3 tries
    for tries in $(seq 1 100); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -5 "$file" >&2 || true
    die "$what did not start within 10 s (log: $file)"
}

# Segmentation and checksum offloads off: the emulator forwards frames as they are, so they must
# be wire-sized and carry real checksums.
offloads_off() {
    local namespace=$1 device=$2
    ip netns exec "$namespace" ethtool -K "$device" tso off gso off gro off tx off rx off >/dev/null 2>&1 \
        || die "ethtool -K $device failed in $namespace (is ethtool installed?)"
    ip netns exec "$namespace" ethtool -K "$device" tx-udp-segmentation off >/dev/null 2>&1 || true
}

lab_up() {
    [[ -x $LINKEMU ]] || die "$LINKEMU not found: run 'swift build --product triglav-linkemu' (or set TRIGLAV_BIN_DIR)"
    for tool in ethtool ip nft curl /usr/bin/python3; do
        command -v "$tool" >/dev/null || die "$tool is missing: run 'make test-deps' (or apt-get install it)"
    done
    if [[ -n $(lab_namespaces) ]]; then
        note "removing leftovers of an earlier lab $LAB_ID: $(lab_namespaces | tr '\n' ' ')"
        lab_down
    fi
    # Built halfway and failed or interrupted: tear down what exists.
    trap 'status=$?; trap - EXIT INT TERM; if [[ $status -ne 0 ]]; then note "setup failed; tearing down"; lab_down; fi; exit $status' EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$LAB_STATE/www" "$LAB_STATE/log"

    local node namespace
    for node in "${LAB_NODES[@]}"; do
        namespace=$(node_namespace "$node")
        ip netns add "$namespace"
        ip -n "$namespace" link set lo up
    done
    ip netns exec "$NS_ROUTER" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ip netns exec "$NS_SERVER" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    # Addresses survive `lab link UPLINK down`, as on a laptop whose Wi-Fi drops.
    ip netns exec "$NS_CLIENT" sysctl -qw net.ipv6.conf.all.keep_addr_on_down=1 net.ipv6.conf.default.keep_addr_on_down=1

    local uplink stem
    for uplink in "${UPLINKS[@]}"; do
        stem=${UPLINK_STEM[$uplink]}
        ip -n "$NS_CLIENT" link add "$uplink" type veth peer name "$stem-c" netns "$NS_ROUTER"
        ip -n "$NS_ROUTER" link add "$stem-e" type veth peer name "$stem-r"
        offloads_off "$NS_CLIENT" "$uplink"
        local device
        for device in "$stem-c" "$stem-e" "$stem-r"; do offloads_off "$NS_ROUTER" "$device"; done
        # The bridged ends are wires, not hosts: no ARP answers, no IPv6, so traffic can only take
        # the emulated path to <stem>-r.
        for device in "$stem-c" "$stem-e"; do
            ip netns exec "$NS_ROUTER" sysctl -qw "net.ipv6.conf.$device.disable_ipv6=1"
            ip -n "$NS_ROUTER" link set "$device" arp off up
        done
        ip -n "$NS_ROUTER" addr add "${UPLINK_ROUTER4[$uplink]}/${UPLINK_PREFIX4[$uplink]}" dev "$stem-r"
        ip -n "$NS_ROUTER" addr add "${UPLINK_ROUTER6[$uplink]}/64" dev "$stem-r" nodad
        ip -n "$NS_ROUTER" link set "$stem-r" up
        ip -n "$NS_CLIENT" addr add "${UPLINK_CLIENT4[$uplink]}/${UPLINK_PREFIX4[$uplink]}" dev "$uplink"
        ip -n "$NS_CLIENT" addr add "${UPLINK_CLIENT6[$uplink]}/64" dev "$uplink" nodad
        ip -n "$NS_CLIENT" link set "$uplink" up
        # A multihomed host: one default route per uplink (ethernet preferred), and replies leave
        # through the uplink whose address they come from.
        ip -n "$NS_CLIENT" route add default via "${UPLINK_ROUTER4[$uplink]}" dev "$uplink" metric "${UPLINK_METRIC[$uplink]}"
        ip -n "$NS_CLIENT" -6 route add default via "${UPLINK_ROUTER6[$uplink]}" dev "$uplink" metric "${UPLINK_METRIC[$uplink]}"
        ip -n "$NS_CLIENT" route add default via "${UPLINK_ROUTER4[$uplink]}" dev "$uplink" table "${UPLINK_TABLE[$uplink]}"
        ip -n "$NS_CLIENT" -6 route add default via "${UPLINK_ROUTER6[$uplink]}" dev "$uplink" table "${UPLINK_TABLE[$uplink]}"
        ip -n "$NS_CLIENT" rule add from "${UPLINK_CLIENT4[$uplink]}" lookup "${UPLINK_TABLE[$uplink]}" pref "${UPLINK_TABLE[$uplink]}0"
        ip -n "$NS_CLIENT" -6 rule add from "${UPLINK_CLIENT6[$uplink]}" lookup "${UPLINK_TABLE[$uplink]}" pref "${UPLINK_TABLE[$uplink]}0"

        start_emulator "$uplink" "$(uplink_args "$uplink")"
    done

    # Router <-> server (the "public" network), server <-> internet.
    ip -n "$NS_ROUTER" link add wan0 type veth peer name wan0 netns "$NS_SERVER"
    ip -n "$NS_SERVER" link add inet0 type veth peer name inet0 netns "$NS_INTERNET"
    ip -n "$NS_ROUTER" addr add "$ROUTER_PUBLIC4/24" dev wan0
    ip -n "$NS_ROUTER" addr add "$ROUTER_PUBLIC6/64" dev wan0 nodad
    ip -n "$NS_SERVER" addr add "$SERVER_PUBLIC4/24" dev wan0
    ip -n "$NS_SERVER" addr add "$SERVER_PUBLIC6/64" dev wan0 nodad
    ip -n "$NS_SERVER" addr add "$SERVER_INTERNET4/24" dev inet0
    ip -n "$NS_SERVER" addr add "$SERVER_INTERNET6/64" dev inet0 nodad
    ip -n "$NS_INTERNET" addr add "$INTERNET4/24" dev inet0
    ip -n "$NS_INTERNET" addr add "$INTERNET6/64" dev inet0 nodad
    ip -n "$NS_ROUTER" link set wan0 up
    ip -n "$NS_SERVER" link set wan0 up
    ip -n "$NS_SERVER" link set inet0 up
    ip -n "$NS_INTERNET" link set inet0 up
    ip -n "$NS_ROUTER" route add 198.51.100.0/24 via "$SERVER_PUBLIC4"
    ip -n "$NS_ROUTER" -6 route add 2001:db8:100::/64 via "$SERVER_PUBLIC6"
    ip -n "$NS_SERVER" route add default via "$ROUTER_PUBLIC4"
    ip -n "$NS_SERVER" -6 route add default via "$ROUTER_PUBLIC6"
    ip -n "$NS_INTERNET" route add default via "$SERVER_INTERNET4"
    ip -n "$NS_INTERNET" -6 route add default via "$SERVER_INTERNET6"
    if [[ $LAB_NAT == 1 ]]; then
        # Like three different ISPs: each uplink appears under its own public address.
        ip netns exec "$NS_ROUTER" nft -f - <<EOF
table ip triglav_lab {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" ip saddr ${UPLINK_CLIENT4[wifi0]} snat to ${UPLINK_PUBLIC4[wifi0]}
        oifname "wan0" ip saddr ${UPLINK_CLIENT4[lte0]} snat to ${UPLINK_PUBLIC4[lte0]}
        oifname "wan0" ip saddr ${UPLINK_CLIENT4[eth0]} snat to ${UPLINK_PUBLIC4[eth0]}
    }
}
EOF
        local public
        for public in "${UPLINK_PUBLIC4[@]}"; do ip -n "$NS_ROUTER" addr add "$public/32" dev wan0; done
    else
        ip -n "$NS_SERVER" route add 192.168.0.0/16 via "$ROUTER_PUBLIC4"
        ip -n "$NS_SERVER" route add 100.64.0.0/10 via "$ROUTER_PUBLIC4"
    fi

    # The internet host serves a random file (and its checksum) over HTTP with byte ranges, IPv4 and IPv6.
    head -c "${LAB_FILE_MB}M" /dev/urandom >"$LAB_STATE/www/random.bin"
    (cd "$LAB_STATE/www" && sha256sum random.bin >random.bin.sha256)
    ip netns exec "$NS_INTERNET" /usr/bin/python3 "$LAB_DIR/webserver.py" "$LAB_STATE/www" "$WEB_PORT" "$LAB_TCP_CC" \
        >"$LAB_STATE/log/web.log" 2>&1 &
    echo $! >"$LAB_STATE/web.pid"

    for uplink in "${UPLINKS[@]}"; do
        wait_for_line "$LAB_STATE/log/linkemu-$uplink.log" "ready:" "link emulator for $uplink"
    done
    local tries
    for tries in $(seq 1 50); do
        ip netns exec "$NS_INTERNET" curl -sf -o /dev/null "http://$INTERNET4:$WEB_PORT/random.bin.sha256" && break
        [[ $tries -lt 50 ]] || die "web server did not answer within 10 s (log: $LAB_STATE/log/web.log)"
        sleep 0.2
    done
    date +%s >"$LAB_STATE/up"
    trap - EXIT INT TERM
}

# Starts the emulator of one uplink with the given triglav-linkemu flags (a string), in the background.
start_emulator() {
    local uplink=$1 stem=${UPLINK_STEM[$1]} args seed_args=()
    read -r -a args <<<"$2"
    [[ -n ${LAB_SEED:-} ]] && seed_args=(--seed "$((LAB_SEED + ${UPLINK_TABLE[$uplink]}))")
    echo "${args[*]}" >"$LAB_STATE/$uplink.args"
    ip netns exec "$NS_ROUTER" "$LINKEMU" --a "$stem-c" --b "$stem-e" "${args[@]}" "${seed_args[@]}" --stats-interval 5 \
        >>"$LAB_STATE/log/linkemu-$uplink.log" 2>&1 &
    echo $! >"$LAB_STATE/linkemu-$uplink.pid"
}

# Replaces an uplink's emulator with one using new flags (packets in flight on the link are lost).
lab_shape() {
    local uplink=$1; shift
    check_uplink "$uplink"
    [[ -n $(lab_namespaces) ]] || die "lab $LAB_ID is not up"
    local pid tries
    pid=$(cat "$LAB_STATE/linkemu-$uplink.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for tries in $(seq 1 50); do process_running "$pid" || break; sleep 0.1; done
    local mark
    mark=$(wc -l <"$LAB_STATE/log/linkemu-$uplink.log")
    start_emulator "$uplink" "$*"
    for tries in $(seq 1 100); do
        tail -n +"$((mark + 1))" "$LAB_STATE/log/linkemu-$uplink.log" | grep -q "ready:" && return 0
        process_running "$(cat "$LAB_STATE/linkemu-$uplink.pid")" || break
        sleep 0.1
    done
    tail -n +"$((mark + 1))" "$LAB_STATE/log/linkemu-$uplink.log" >&2
    die "the new emulator for $uplink did not start (flags: $*)"
}

lab_print_summary() {
    local uplink
    echo "lab $LAB_ID is up (namespaces ${LAB_PREFIX}{client,router,server,internet}):"
    for uplink in "${UPLINKS[@]}"; do
        printf '  client %-5s %-13s -> router %-13s  %s\n' "$uplink" "${UPLINK_CLIENT4[$uplink]}" \
            "${UPLINK_ROUTER4[$uplink]}" "$(cat "$LAB_STATE/$uplink.args")"
    done
    echo "  server $SERVER_PUBLIC4 ($SERVER_PUBLIC6), internet web server http://$INTERNET4/random.bin (${LAB_FILE_MB} MiB)"
    echo "  try: lab/lab exec client curl -o /dev/null http://$INTERNET4/random.bin ; lab/lab down"
}

lab_env() {
    cat <<EOF
LAB_ID=$LAB_ID
LAB_STATE=$LAB_STATE
LAB_NS_CLIENT=$NS_CLIENT
LAB_NS_ROUTER=$NS_ROUTER
LAB_NS_SERVER=$NS_SERVER
LAB_NS_INTERNET=$NS_INTERNET
LAB_UPLINKS="${UPLINKS[*]}"
LAB_SERVER4=$SERVER_PUBLIC4
LAB_SERVER6=$SERVER_PUBLIC6
LAB_INTERNET4=$INTERNET4
LAB_INTERNET6=$INTERNET6
LAB_SERVER_INTERNET_IF=inet0
LAB_SERVER_WAN_IF=wan0
LAB_WEB_URL=http://$INTERNET4:$WEB_PORT/random.bin
LAB_WEB_SHA256_URL=http://$INTERNET4:$WEB_PORT/random.bin.sha256
EOF
}

lab_status() {
    local namespaces
    mapfile -t namespaces < <(lab_namespaces)
    if [[ ${#namespaces[@]} -eq 0 ]]; then
        echo "lab $LAB_ID: down"
        return 0
    fi
    echo "lab $LAB_ID: namespaces ${namespaces[*]}"
    local uplink pid state
    for uplink in "${UPLINKS[@]}"; do
        pid=$(cat "$LAB_STATE/linkemu-$uplink.pid" 2>/dev/null || echo "")
        if [[ -n $pid ]] && process_running "$pid"; then state="emulator pid $pid"; else state="emulator NOT running"; fi
        local counters
        counters=$(ip netns exec "$NS_CLIENT" cat "/sys/class/net/$uplink/statistics/rx_bytes" \
            "/sys/class/net/$uplink/statistics/tx_bytes" "/sys/class/net/$uplink/operstate" 2>/dev/null | tr '\n' ' ' || true)
        read -r rx tx operstate <<<"$counters"
        printf '  %-5s %-5s rx %12s B  tx %12s B  %s  [%s]\n' "$uplink" "${operstate:-?}" "${rx:-?}" "${tx:-?}" "$state" \
            "$(cat "$LAB_STATE/$uplink.args" 2>/dev/null || echo '?')"
        # The emulator's own counters (it logs them every 5 s): drops by loss, queue, send errors.
        grep -E -- "-> ?[a-z]+-[ce]: received" "$LAB_STATE/log/linkemu-$uplink.log" 2>/dev/null | tail -2 \
            | sed 's/^triglav-linkemu: /        /' || true
    done
    pid=$(cat "$LAB_STATE/web.pid" 2>/dev/null || echo "")
    if [[ -n $pid ]] && process_running "$pid"; then echo "  web server pid $pid"; else echo "  web server NOT running"; fi
}

lab_link() {
    local uplink=$1 state=$2
    check_uplink "$uplink"
    [[ $state == up || $state == down ]] || die "link state must be up or down, not '$state'"
    ip -n "$NS_CLIENT" link set "$uplink" "$state"
    if [[ $state == up ]]; then
        # Bringing the device up drops its routes' nexthops back in; re-add what the kernel removed.
        ip -n "$NS_CLIENT" route replace default via "${UPLINK_ROUTER4[$uplink]}" dev "$uplink" metric "${UPLINK_METRIC[$uplink]}"
        ip -n "$NS_CLIENT" route replace default via "${UPLINK_ROUTER4[$uplink]}" dev "$uplink" table "${UPLINK_TABLE[$uplink]}"
        ip -n "$NS_CLIENT" -6 route replace default via "${UPLINK_ROUTER6[$uplink]}" dev "$uplink" metric "${UPLINK_METRIC[$uplink]}" 2>/dev/null || true
        ip -n "$NS_CLIENT" -6 route replace default via "${UPLINK_ROUTER6[$uplink]}" dev "$uplink" table "${UPLINK_TABLE[$uplink]}" 2>/dev/null || true
    fi
}

lab_blackhole() {
    local uplink=$1 state=$2 table
    check_uplink "$uplink"
    table="triglav_lab_blackhole_${UPLINK_STEM[$uplink]}"
    case $state in
        on)
            ip netns exec "$NS_ROUTER" nft -f - <<EOF
table inet $table {
    chain prerouting { type filter hook prerouting priority -300; policy accept; iifname "${UPLINK_STEM[$uplink]}-r" drop; }
    chain postrouting { type filter hook postrouting priority 300; policy accept; oifname "${UPLINK_STEM[$uplink]}-r" drop; }
}
EOF
            ;;
        off) ip netns exec "$NS_ROUTER" nft delete table inet "$table" 2>/dev/null || true ;;
        *) die "blackhole state must be on or off, not '$state'" ;;
    esac
}

# Reads the client's uplink byte counters: prints "rx_wifi0 rx_lte0 rx_eth0 tx_wifi0 tx_lte0 tx_eth0".
uplink_counters() {
    local files=() uplink
    for uplink in "${UPLINKS[@]}"; do files+=("/sys/class/net/$uplink/statistics/rx_bytes"); done
    for uplink in "${UPLINKS[@]}"; do files+=("/sys/class/net/$uplink/statistics/tx_bytes"); done
    ip netns exec "$NS_CLIENT" cat "${files[@]}" 2>/dev/null | tr '\n' ' '
}
