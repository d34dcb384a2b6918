# Shared by the demo and the end-to-end tests: a small datacenter in network
# namespaces. An underlay bridge (netns $P-ul) joins the cluster's namespace
# ($P-ctl, 10.99.0.100) and two hypervisors ($P-h1, $P-h2: 10.99.0.1/.2).
# VMs are namespaces with eth0 (veth) whose host side lives in a hypervisor.
# Everything is created here and removed by `e2e_down`; processes by PID.

: "${P:=mn}"
: "${BIN:=target/debug/midonet}"
: "${E2E_STATE:=/tmp/midonet-e2e.$P}"
CTL_IP=10.99.0.100
declare -A HOST_IP=([h1]=10.99.0.1 [h2]=10.99.0.2)
# E2E_SECURE=1: the server with TLS on every listener and `--auth static`,
# agents by mutual TLS with certificates of their own (made by e2e_pki).
: "${E2E_SECURE:=0}"
PKI=$E2E_STATE/pki
if [[ $E2E_SECURE == 1 ]]; then
    SCHEME=https
    E2E_PASSWORD=${E2E_PASSWORD:-e2e-$RANDOM$RANDOM}
    export MIDO_CA=$PKI/ca.pem MIDO_USER=admin MIDO_PASSWORD=$E2E_PASSWORD
else
    SCHEME=http
fi
API=$SCHEME://$CTL_IP:8181/midonet-api
NEUTRON=$SCHEME://$CTL_IP:9696/v2.0

# The checks' harness of the e2e scripts: one line per check, then the tally.
PASSED=0; FAILED=0; FAILS=()
ok() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
bad() { FAILED=$((FAILED + 1)); FAILS+=("$1"); printf 'FAIL %s%s\n' "$1" "${2:+: $2}"; }
check() { # NAME COMMAND...: passes if the command succeeds; its output kept in last.out
    local name=$1; shift
    if "$@" >"$E2E_STATE/last.out" 2>&1; then ok "$name"; else bad "$name" "$(tail -3 "$E2E_STATE/last.out" | tr '\n' ' ')"; fi
}
tally() { # SUITE: the failures, the counts; fails if any check did
    echo
    local f
    for f in "${FAILS[@]}"; do echo "failed: $f"; done
    echo "$1: $PASSED passed, $FAILED failed"
    [[ $FAILED == 0 ]]
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
wait_for() { # SECONDS 'COMMAND': until the command (evaluated anew each time) succeeds
    local t=$1 i
    for i in $(seq $(( t * 5 ))); do eval "$2" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

ns() { printf '%s-%s' "$P" "$1"; }
nsx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
mido() { MIDO_API_URL=$API nsx ctl "$BIN" "$@"; }
# curl in the cluster's namespace, trusting the testbed's CA.
ccurl() { if [[ $E2E_SECURE == 1 ]]; then nsx ctl curl --cacert "$PKI/ca.pem" "$@"; else nsx ctl curl "$@"; fi; }
# rest METHOD PATH [BODY]: a REST API v5 call as the admin (logged in).
rest() {
    local auth=()
    if [[ $E2E_SECURE == 1 ]]; then
        local t; t=$(ccurl -sf -X POST -u "admin:$E2E_PASSWORD" "$API/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])') || return 1
        auth=(-H "X-Auth-Token: $t")
    fi
    ccurl -sf -X "$1" -H 'Content-Type: application/json' "${auth[@]}" ${3:+-d "$3"} "$API/$2"
}

# A CA, the server's certificate (for its underlay address), one per
# hypervisor (naming the host, as its agent registers) and the users file.
e2e_pki() {
    [[ $E2E_SECURE == 1 ]] || return 0
    command -v openssl >/dev/null || { echo "e2e: E2E_SECURE=1 needs openssl" >&2; return 1; }
    mkdir -p "$PKI"
    local q=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${q[@]}" -days 2 -subj /CN=midonet-e2e-ca -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null || return 1
    local leaf
    for leaf in "server:IP:$CTL_IP" "h1:DNS:h1" "h2:DNS:h2" "h3:DNS:h3"; do
        local n=${leaf%%:*} san=${leaf#*:}
        openssl req "${q[@]}" -subj "/CN=$n" -addext "subjectAltName=$san" -keyout "$PKI/$n.key" -out "$PKI/$n.csr" 2>/dev/null || return 1
        openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 2 \
            -copy_extensions copy -out "$PKI/$n.pem" 2>/dev/null || return 1
    done
    echo "$E2E_PASSWORD" | "$BIN" user add --file "$PKI/users" admin 2>/dev/null
}

mkns() {
    ip netns add "$(ns "$1")"
    nsx "$1" ip link set lo up
    nsx "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null
}

e2e_down() { # safe under `set -e`: every step may find nothing to do
    local f p n
    for f in "$E2E_STATE"/*.pid; do
        [[ -f $f ]] || continue
        p=$(cat "$f" 2>/dev/null || true)
        if [[ $p =~ ^[0-9]+$ ]]; then kill "$p" 2>/dev/null || true; fi
    done
    sleep 0.2
    for f in "$E2E_STATE"/*.pid; do
        [[ -f $f ]] || continue
        p=$(cat "$f" 2>/dev/null || true)
        if [[ $p =~ ^[0-9]+$ ]]; then kill -9 "$p" 2>/dev/null || true; fi
        rm -f "$f"
    done
    for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$P-" || true); do
        for p in $(ip netns pids "$n" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
    # The logs outlive the run, for a failure to be read afterwards.
    if [[ -d $E2E_STATE ]]; then
        rm -rf "$E2E_STATE.logs"; mkdir -p "$E2E_STATE.logs"
        cp "$E2E_STATE"/*.log "$E2E_STATE"/*.out "$E2E_STATE.logs/" 2>/dev/null || true
    fi
    rm -rf "$E2E_STATE"
}

e2e_underlay() {
    mkdir -p "$E2E_STATE"
    mkns ul; mkns ctl; mkns h1; mkns h2
    nsx ul ip link add br-ul type bridge
    nsx ul ip link set br-ul up
    local h
    for h in ctl h1 h2; do
        ip link add ul0 netns "$(ns "$h")" type veth peer name "$h" netns "$(ns ul)"
        nsx ul ip link set "$h" master br-ul up
        nsx "$h" ip link set ul0 up
    done
    nsx ctl ip addr add $CTL_IP/24 dev ul0
    for h in h1 h2; do nsx "$h" ip addr add "${HOST_IP[$h]}/24" dev ul0; done
    e2e_pki
}

# vm NAME HOST [MAC]: a VM namespace, eth0 <-> veth NAME in HOST, as the
# kernel creates it (checksum offload, TSO and GSO on). E2E_OFFLOAD=off
# switches them off, for the one scenario that keeps that path tested.
vm() {
    local name=$1 h=$2 mac=${3:-}
    mkns "$name"
    ip link add eth0 netns "$(ns "$name")" ${mac:+address $mac} mtu 1450 type veth peer name "$name" netns "$(ns "$h")" mtu 1450
    nsx "$name" ip link set eth0 up
    nsx "$h" ip link set "$name" up
    if [[ ${E2E_OFFLOAD:-on} == off ]]; then
        nsx "$name" ethtool -K eth0 tx off tso off gso off >/dev/null
        nsx "$h" ethtool -K "$name" tx off tso off gso off >/dev/null
    fi
}

# Daemons start through `ip netns exec` directly (not a shell function run in
# the background), so $! is the daemon itself: a kill by PID reaches it.
start_server() {
    local secure=() envs=()
    if [[ $E2E_SECURE == 1 ]]; then
        secure=(--tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" --agent-ca "$PKI/ca.pem"
                --auth static --users-file "$PKI/users")
        # Neutron's tokens from a file too, as credentials should be.
        if [[ -n ${MIDONET_NEUTRON_TOKENS:-} ]]; then
            (umask 077; tr ',' '\n' <<<"$MIDONET_NEUTRON_TOKENS" >"$PKI/neutron-tokens")
            secure+=(--neutron-tokens-file "$PKI/neutron-tokens")
            envs=(-u MIDONET_NEUTRON_TOKENS)
        fi
    fi
    ip netns exec "$(ns ctl)" env "${envs[@]}" "$BIN" server --listen $CTL_IP:8181 --topology-listen $CTL_IP:8088 --data-dir "$E2E_STATE/nsdb" "${secure[@]}" \
        >>"$E2E_STATE/server.log" 2>&1 &
    local pid=$! i
    echo $pid >"$E2E_STATE/server.pid"
    for i in $(seq 100); do
        kill -0 $pid 2>/dev/null || break   # it exited (address in use?)
        # Any HTTP answer (401 under auth) means it serves.
        [[ $(ccurl -s -o /dev/null -w '%{http_code}' "$API/system_state" 2>/dev/null) != 000 ]] && return 0
        sleep 0.1
    done
    echo "server did not start" >&2; return 1
}

stop_pid() { # PIDFILE [SIGNAL]: signals the process and waits until it is gone
    local pid; pid=$(cat "$1" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    kill -"${2:-TERM}" "$pid" 2>/dev/null || return 0
    local i
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    echo "process $pid did not stop" >&2; return 1
}

start_agent() { # HOST [WORKERS]: h1 runs two sharded workers on plain sockets,
    # h2 one worker on a TPACKET_V3 ring, so every receive path is tested
    local w=${2:-} ring=()
    [[ -z $w ]] && { [[ $1 == h1 ]] && w=${H1_WORKERS:-2} || w=1; }
    [[ $1 == h2 ]] && ring=(--rx-ring-ms 1)
    local tls=()
    [[ $E2E_SECURE == 1 ]] && tls=(--ca "$PKI/ca.pem" --tls-cert "$PKI/$1.pem" --tls-key "$PKI/$1.key")
    ip netns exec "$(ns "$1")" env RUST_LOG="${AGENT_LOG:-info}" ${MIDONET_TRACE:+MIDONET_TRACE=1} "$BIN" agent --cluster "${AGENT_CLUSTER:-$SCHEME://$CTL_IP:8088}" "${tls[@]}" --host-name "$1" --state-dir "$E2E_STATE/agent-$1" --workers "$w" "${ring[@]}" --netns-prefix "$P-hm-" ${AGENT_EXTRA:-} \
        >>"$E2E_STATE/agent-$1.log" 2>&1 &
    echo $! >"$E2E_STATE/agent-$1.pid"
}

# tunnel_zone HOST...: once those hosts' agents are alive, one VXLAN
# tunnel zone with all of them (by their underlay addresses); its id in $Z.
tunnel_zone() {
    local i h
    for i in $(seq 100); do
        [[ $(mido host list -o json | json 'sum(h["alive"] for h in d)') == "$#" ]] && break
        sleep 0.1
    done
    Z=$(mido tunnel-zone create name=tz type=vxlan) || return 1
    for h in "$@"; do
        mido tunnel-zone add-member "$Z" "$(host_id "$h")" "${HOST_IP[$h]}" >/dev/null || return 1
    done
}

host_id() { # HOST: waits for the agent's persisted id
    local i
    for i in $(seq 100); do
        [[ -s $E2E_STATE/agent-$1/host_id ]] && { cat "$E2E_STATE/agent-$1/host_id"; return 0; }
        sleep 0.05
    done
    return 1
}

# bind_timed VM BRIDGE HOST CHAIN TRIES: a new port on BRIDGE filtered
# inbound by CHAIN, bound on HOST to VM's interface (the last create); prints
# the ms until VM pings 10.0.0.1 (its router), trying TRIES times 0.1 s each.
bind_timed() {
    local p t0 i
    p=$(mido port create --bridge "$2" inbound-filter-id="$4") || return 1
    mido port bind "$p" "$3" "$1" >/dev/null || return 1
    t0=$(date +%s.%N)
    for i in $(seq "$5"); do nsx "$1" ping -n -c 1 -W 0.1 10.0.0.1 >/dev/null 2>&1 && break; done
    python3 -c "import sys,time; print(round((time.time()-float(sys.argv[1]))*1000))" "$t0"
}
