# The demo's and benchmarks' only contact with the VPN itself (sourced after lib.sh and lab_init).
# Four steps, each isolated so a backend can be swapped without touching the demo:
#   vpn_start_server   start the Triglav server in the server namespace
#   vpn_start_client   start the Triglav client in the client namespace, over wifi0, lte0, eth0
#   vpn_wait_for_tunnel  wait (bounded) until traffic flows through the tunnel
#   vpn_stop           stop both (lab down would kill them too; this is the clean way)
#
# Backends (DEMO_VPN, default auto = the first one available, in this order):
#   triglavd       the real daemon — TODO when triglavd runs tunnels: fill in vpn_triglavd_* below
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

# --- triglavd (TODO: the daemon) ---------------------------------------------------------------------
# When triglavd can run a server and a client tunnel, make vpn_triglavd_available return 0 (for
# example: `"$TRIGLAV_BIN_DIR/triglavd" --help | grep -q -- --config`) and write the two config files
# in vpn_triglavd_start_*: same keys, addresses and uplinks as the dataplane-dev backend below. Each
# triglavd needs its own private D-Bus bus (dbus-daemon --config-file=... --fork --print-address),
# started here and recorded in VPN_PIDS.
vpn_triglavd_available() { return 1; }
vpn_triglavd_start_server() { die "the triglavd backend is not written yet (lab/vpn.sh)"; }
vpn_triglavd_start_client() { die "the triglavd backend is not written yet (lab/vpn.sh)"; }

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
    ip netns exec "$NS_SERVER" "$TRIGLAV_BIN_DIR/triglav-dataplane-dev" server --key "$LAB_STATE/vpn/server.key" \
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
    ip netns exec "$NS_CLIENT" "$TRIGLAV_BIN_DIR/triglav-dataplane-dev" client --key "$LAB_STATE/vpn/client.key" \
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

vpn_stop() {
    local pid
    for pid in "${VPN_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${VPN_PIDS[@]}"; do
        local tries
        for tries in $(seq 1 50); do process_running "$pid" || break; sleep 0.1; done
        process_running "$pid" && kill -KILL "$pid" 2>/dev/null || true
    done
    VPN_PIDS=()
}
