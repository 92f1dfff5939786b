# shellcheck shell=bash
# The demo's and benchmarks' only contact with the VPN itself (sourced after lib.sh and lab_init).
# Four steps, each isolated so a backend can be swapped without touching the demo:
#   vpn_start_server   start the Triglav server in the server namespace
#   vpn_start_client   start the Triglav client in the client namespace, over wifi0, lte0, eth0
#   vpn_wait_for_tunnel  wait (bounded) until traffic flows through the tunnel
#   vpn_wait_for_uplinks wait (bounded) until every uplink carries it (before measuring throughput)
#   vpn_stop           stop both (lab down would kill them too; this is the clean way)
#
# Backends (DEMO_VPN, default auto = the first one available, in this order):
#   triglavd       the real daemon with a private D-Bus bus per node (written ahead: see below)
#   dataplane-dev  the data plane's development driver, triglav-dataplane-dev (flags, no daemon)
#   off            no VPN: the demo downloads over the bare uplinks instead and says so
#
# Tunnel addresses: server 10.77.0.1, client 10.77.0.2 (/24); the server listens on UDP 7443 of its
# public address; the client routes everything through the tunnel (full tunnel) unless
# DEMO_ROUTING=split, which routes only the internet host's network.

VPN_SERVER_TUNNEL4=10.77.0.1
VPN_CLIENT_TUNNEL4=10.77.0.2
VPN_PORT=7443
VPN_CLIENT_TUN=tgc0
VPN_SERVER_TUN=tgs0
VPN_PIDS=()

# Picks the backend; sets VPN_BACKEND (triglavd, dataplane-dev or off) and VPN_WHY.
vpn_detect() {
    local wanted=${DEMO_VPN:-auto}
    case $wanted in
        auto)
            if vpn_triglavd_available; then
                VPN_BACKEND=triglavd VPN_WHY="triglavd runs tunnels"
            elif [[ -x $TRIGLAV_BIN_DIR/triglav-dataplane-dev ]]; then
                VPN_BACKEND=dataplane-dev VPN_WHY="triglavd can't run tunnels yet; using the data plane's driver"
            else
                VPN_BACKEND=off VPN_WHY="no VPN executable in $TRIGLAV_BIN_DIR yet"
            fi
            ;;
        triglavd|dataplane-dev|off) VPN_BACKEND=$wanted VPN_WHY="DEMO_VPN=$wanted" ;;
        *) die "DEMO_VPN must be auto, triglavd, dataplane-dev or off, not '$wanted'" ;;
    esac
}

# --- triglavd ------------------------------------------------------------------------------------------
# The real daemons, driven like a desktop would: `triglavd --server` in the server namespace, `triglavd`
# in the client namespace with automatic uplink discovery (the config admits wifi0, lte0 and eth0, which
# are veths), and `triglav connect lab` over D-Bus. The bus is found through DBUS_SYSTEM_BUS_ADDRESS (and
# `triglav --bus-address`); readiness of the server is its UDP port. Each triglavd gets a private bus
# inside its node's namespace, so `lab down` stops it too.
# VPN_LOG_LEVEL (default info) sets both daemons' log_level; debug logs the engines' uplink state changes.
VPN_CLIENT_BUS=""

# Never probe by running triglavd itself: outside the lab's namespaces it would touch the root namespace.
vpn_triglavd_available() {
    [[ -x $TRIGLAV_BIN_DIR/triglavd && -x $TRIGLAV_BIN_DIR/triglav ]]
}

# Runs the unprivileged CLI against the client's daemon (triglavd backend only), e.g. `vpn_cli uplinks`.
vpn_cli() {
    [[ $VPN_BACKEND == triglavd && -n $VPN_CLIENT_BUS ]] || return 1
    ip netns exec "$NS_CLIENT" "$TRIGLAV_BIN_DIR/triglav" --bus-address "$VPN_CLIENT_BUS" "$@"
}

# Starts a private D-Bus bus in NODE's namespace and sets VPN_BUS_ADDRESS. Not in a $(...) subshell: the bus's pid
# must reach VPN_PIDS, or vpn_stop leaves it running and its pidfile blocks the next start in the same lab.
vpn_triglavd_bus() {
    local node=$1 dir="$LAB_STATE/vpn"
    cat >"$dir/bus-$node.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$dir/bus-$node.socket</listen>
  <pidfile>$dir/bus-$node.pid</pidfile>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
    lab_exec "$node" dbus-daemon --config-file="$dir/bus-$node.conf" --fork --print-address >"$dir/bus-$node.address"
    VPN_PIDS+=("$(cat "$dir/bus-$node.pid")")
    VPN_BUS_ADDRESS=$(head -1 "$dir/bus-$node.address")
}

vpn_triglavd_wait_for_port() {
    local tries
    for tries in $(seq 1 100); do
        ip netns exec "$NS_SERVER" ss -Huln "sport = :$VPN_PORT" 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    tail -5 "$LAB_STATE/log/vpn-server.log" >&2 || true
    die "triglavd (server) is not listening on UDP $VPN_PORT after 10 s"
}

vpn_triglavd_start_server() {
    local dir="$LAB_STATE/vpn" bin=$TRIGLAV_BIN_DIR
    mkdir -p "$dir/profiles"
    rm -f "$dir/server.key" "$dir/client.key"
    VPN_SERVER_PUBLIC_KEY=$("$bin/triglav" keygen "$dir/server.key" | tail -1)
    VPN_CLIENT_PUBLIC_KEY=$("$bin/triglav" keygen "$dir/client.key" | tail -1)
    cat >"$dir/server.toml" <<EOF
role = "server"
log_level = "${VPN_LOG_LEVEL:-info}"
private_key = "$dir/server.key"
[tunnel]
interface = "$VPN_SERVER_TUN"
[server]
listen = ["$SERVER_PUBLIC4:$VPN_PORT"]
tunnel_ipv4 = "$VPN_SERVER_TUNNEL4/24"
[server.nat]
enabled = true
outbound_interface = "inet0"
[[server.clients]]
name = "lab-client"
public_key = "$VPN_CLIENT_PUBLIC_KEY"
tunnel_ipv4 = "$VPN_CLIENT_TUNNEL4"
EOF
    "$bin/triglavd" --check-config "$dir/server.toml" --server >"$LAB_STATE/log/vpn-server-config.log" 2>&1 \
        || die "triglavd rejects the generated server configuration: $(cat "$LAB_STATE/log/vpn-server-config.log")"
    vpn_triglavd_bus server
    DBUS_SYSTEM_BUS_ADDRESS=$VPN_BUS_ADDRESS STATE_DIRECTORY=$dir ip netns exec "$NS_SERVER" "$bin/triglavd" --config "$dir/server.toml" --server \
        >"$LAB_STATE/log/vpn-server.log" 2>&1 &
    VPN_PIDS+=($!)
    vpn_triglavd_wait_for_port
}

vpn_triglavd_start_client() {
    local dir="$LAB_STATE/vpn" bin=$TRIGLAV_BIN_DIR full_tunnel=true routes=""
    if [[ ${DEMO_ROUTING:-full} == split ]]; then full_tunnel=false routes='routes = ["198.51.100.0/24"]'; fi
    cat >"$dir/client.toml" <<EOF
role = "client"
log_level = "${VPN_LOG_LEVEL:-info}"
private_key = "$dir/client.key"
[tunnel]
interface = "$VPN_CLIENT_TUN"
[uplinks]
include = [$(printf '"%s", ' "${UPLINKS[@]}" | sed 's/, $//')]
[routing]
full_tunnel = $full_tunnel
$routes
[multipath]
${LAB_CLIENT_MULTIPATH:-}
EOF
    cat >"$dir/profiles/lab.toml" <<EOF
[server]
endpoint = "$SERVER_PUBLIC4:$VPN_PORT"
public_key = "$VPN_SERVER_PUBLIC_KEY"
EOF
    "$bin/triglavd" --check-config "$dir/client.toml" --profile-dir "$dir/profiles" --all-profiles \
        >"$LAB_STATE/log/vpn-client-config.log" 2>&1 \
        || die "triglavd rejects the generated client configuration: $(cat "$LAB_STATE/log/vpn-client-config.log")"
    vpn_triglavd_bus client
    VPN_CLIENT_BUS=$VPN_BUS_ADDRESS
    # Its own /etc/resolv.conf (bind-mounted in the mount namespace `ip netns exec` makes): DNS a profile or the
    # server offers goes there, never into this machine's file.
    printf '# the lab client'"'"'s resolv.conf\nnameserver %s\n' "$VPN_SERVER_TUNNEL4" > "$dir/resolv.conf"
    DBUS_SYSTEM_BUS_ADDRESS=$VPN_BUS_ADDRESS STATE_DIRECTORY=$dir ip netns exec "$NS_CLIENT" \
        sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh "$dir/resolv.conf" \
        "$bin/triglavd" --config "$dir/client.toml" --profile-dir "$dir/profiles" >"$LAB_STATE/log/vpn-client.log" 2>&1 &
    VPN_PIDS+=($!)
    local tries
    for tries in $(seq 1 50); do
        ip netns exec "$NS_CLIENT" "$bin/triglav" --bus-address "$VPN_CLIENT_BUS" connect lab \
            >>"$LAB_STATE/log/vpn-client.log" 2>&1 && return 0
        sleep 0.2
    done
    die "triglav connect lab failed for 10 s (log: $LAB_STATE/log/vpn-client.log)"
}

# --- triglav-dataplane-dev ---------------------------------------------------------------------------
vpn_dev_keys() {
    local driver=$TRIGLAV_BIN_DIR/triglav-dataplane-dev
    mkdir -p "$LAB_STATE/vpn"
    rm -f "$LAB_STATE/vpn/server.key" "$LAB_STATE/vpn/client.key"
    VPN_SERVER_PUBLIC_KEY=$("$driver" keygen --out "$LAB_STATE/vpn/server.key")
    VPN_CLIENT_PUBLIC_KEY=$("$driver" keygen --out "$LAB_STATE/vpn/client.key")
}

vpn_dev_start_server() {
    vpn_dev_keys
    STATE_DIRECTORY=$LAB_STATE/vpn ip netns exec "$NS_SERVER" "$TRIGLAV_BIN_DIR/triglav-dataplane-dev" server --key "$LAB_STATE/vpn/server.key" \
        --listen "$SERVER_PUBLIC4:$VPN_PORT" --tun "$VPN_SERVER_TUN" --address "$VPN_SERVER_TUNNEL4/24" \
        --client "$VPN_CLIENT_PUBLIC_KEY=$VPN_CLIENT_TUNNEL4/24" \
        >"$LAB_STATE/log/vpn-server.log" 2>&1 &
    VPN_PIDS+=($!)
    wait_for_line "$LAB_STATE/log/vpn-server.log" "ready" "the Triglav server"
}

vpn_dev_start_client() {
    local routing=(--full-tunnel)
    [[ ${DEMO_ROUTING:-full} == split ]] && routing=(--split 198.51.100.0/24 --split 2001:db8:100::/64)
    local uplinks=() uplink
    for uplink in "${UPLINKS[@]}"; do uplinks+=(--uplink "$uplink"); done
    STATE_DIRECTORY=$LAB_STATE/vpn ip netns exec "$NS_CLIENT" "$TRIGLAV_BIN_DIR/triglav-dataplane-dev" client --key "$LAB_STATE/vpn/client.key" \
        --server-key "$VPN_SERVER_PUBLIC_KEY" --server "$SERVER_PUBLIC4:$VPN_PORT" --tun "$VPN_CLIENT_TUN" \
        "${uplinks[@]}" "${routing[@]}" \
        >"$LAB_STATE/log/vpn-client.log" 2>&1 &
    VPN_PIDS+=($!)
    wait_for_line "$LAB_STATE/log/vpn-client.log" "ready" "the Triglav client"
}

# --- the four steps -----------------------------------------------------------------------------------
vpn_start_server() {
    case $VPN_BACKEND in
        triglavd) vpn_triglavd_start_server ;;
        dataplane-dev) vpn_dev_start_server ;;
    esac
}

vpn_start_client() {
    case $VPN_BACKEND in
        triglavd) vpn_triglavd_start_client ;;
        dataplane-dev) vpn_dev_start_client ;;
    esac
}

# Returns 0 once the server's tunnel address answers pings through the client's TUN (at most
# $1 seconds, default 20).
vpn_wait_for_tunnel() {
    local limit=${1:-20} deadline
    deadline=$((SECONDS + limit))
    while [[ $SECONDS -lt $deadline ]]; do
        if ip netns exec "$NS_CLIENT" ping -q -c 1 -W 1 -I "$VPN_CLIENT_TUN" "$VPN_SERVER_TUNNEL4" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.3
    done
    return 1
}

# Returns 0 once every uplink of the client carries the tunnel (`triglav uplinks` shows each of UPLINKS
# active), at most $1 seconds (default 10); then waits $2 seconds more (default 1) for the engines' per-uplink
# delay estimates to settle. The tunnel passes traffic as soon as its first uplink answers, but a TCP flow
# started before the others joined keeps that one uplink's RTT as its minimum (BBR: for 10 s) and can't fill
# the slower uplinks (docs/LAB.md). Backends without an uplink table only wait the settling time.
vpn_wait_for_uplinks() {
    local limit=${1:-10} settle=${2:-1} deadline table uplink active
    deadline=$((SECONDS + limit))
    if [[ $VPN_BACKEND == triglavd ]]; then
        while :; do
            table=$(vpn_cli uplinks 2>/dev/null || true)
            active=0
            for uplink in "${UPLINKS[@]}"; do
                grep -qE "^$uplink +.* active " <<<"$table" && active=$((active + 1))
            done
            [[ $active -eq ${#UPLINKS[@]} ]] && break
            [[ $SECONDS -lt $deadline ]] || return 1
            sleep 0.2
        done
    fi
    sleep "$settle"
}

# Stops in reverse start order: each daemon before its bus, the client before the server.
vpn_stop() {
    local index pid
    for ((index = ${#VPN_PIDS[@]} - 1; index >= 0; index--)); do
        pid=${VPN_PIDS[$index]}
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do process_running "$pid" || break; sleep 0.1; done
        process_running "$pid" && kill -KILL "$pid" 2>/dev/null || true
    done
    VPN_PIDS=()
    VPN_CLIENT_BUS=""
}
