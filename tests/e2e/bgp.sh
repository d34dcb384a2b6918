#!/usr/bin/env bash
# BGP on two gateway hosts, end to end (issue 13). An upstream router
# namespace ("up") peers with the edge router's uplinks on h1 and h2; a VM
# on h3 sits behind a tenant router with a floating IP. The upstream runs
# FRR, then BIRD (another implementation), and the same checks run against
# each: sessions, ECMP at the upstream, learned routes in the NSDB, traffic
# both ways, the death of one gateway's agent (a long-lived connection
# survives), its return; then bad input and a peer over its prefix cap.
# Needs root, frr and bird2. Prints one line per check; exits non-zero if
# any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
export P=${P:-mnbgp}
export BIN=${MIDONET_BIN:-$PWD/target/debug/midonet}
export E2E_SECURE=${E2E_SECURE:-1}
export E2E_STATE=/tmp/midonet-e2e.$P
source tests/e2e/lib.sh
HOST_IP[h3]=10.99.0.3

if [[ $(id -u) != 0 ]]; then echo "bgp e2e: needs root"; echo "0 passed, 1 failed"; exit 1; fi
for c in ip ping python3 curl openssl vtysh bird birdc /usr/lib/frr/bgpd /usr/lib/frr/zebra; do
    command -v "$c" >/dev/null || { echo "bgp e2e: missing $c" >&2; echo "0 passed, 1 failed"; exit 1; }
done

PASSED=0; FAILED=0; FAILS=()
# The gateways' FRR daemons, by the PIDs in their pid files (a killed
# agent leaves them to its next run).
speakers_down() {
    local f p
    for f in "$E2E_STATE"/agent-*/bgp/*/*.pid; do
        [[ -f $f ]] || continue
        p=$(cat "$f" 2>/dev/null); [[ $p =~ ^[0-9]+$ ]] && kill -9 "$p" 2>/dev/null
    done
    return 0
}
trap '[[ ${E2E_KEEP:-0} == 1 ]] || { up_stop; speakers_down; e2e_down; }' EXIT
ok() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
bad() { FAILED=$((FAILED + 1)); FAILS+=("$1"); printf 'FAIL %s%s\n' "$1" "${2:+: $2}"; }
check() {
    local name=$1; shift
    if "$@" >"$E2E_STATE/last.out" 2>&1; then ok "$name"; else bad "$name" "$(tail -3 "$E2E_STATE/last.out" | tr '\n' ' ')"; fi
}
wait_for() { # SECONDS 'COMMAND': until the command (evaluated anew each time) succeeds
    local t=$1 i
    for i in $(seq $(( t * 5 ))); do eval "$2" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---------------------------------------------------------------- testbed --
speakers_down
e2e_down
e2e_underlay
mkns h3
ip link add ul0 netns "$(ns h3)" type veth peer name h3 netns "$(ns ul)"
nsx ul ip link set h3 master br-ul up; nsx h3 ip link set ul0 up
nsx h3 ip addr add 10.99.0.3/24 dev ul0
start_server || { echo "0 passed, 1 failed"; exit 1; }
# A small cap, for the flood check at the end.
export AGENT_EXTRA="--bgp-max-prefixes 100"
start_agent h1 1; start_agent h2 1; start_agent h3 1
H1=$(host_id h1); H2=$(host_id h2); H3=$(host_id h3)

# The upstream: eth1 to h1's uplink (203.0.113.0/24), eth2 to h2's
# (203.0.114.0/24), and "the Internet" behind it (172.16.50.0/24).
mkns up
ip link add eth1 netns "$(ns up)" type veth peer name up0 netns "$(ns h1)"
ip link add eth2 netns "$(ns up)" type veth peer name up0 netns "$(ns h2)"
nsx h1 ip link set up0 up; nsx h2 ip link set up0 up
nsx up ip link set eth1 up; nsx up ip link set eth2 up
nsx up ip addr add 203.0.113.9/24 dev eth1
nsx up ip addr add 203.0.114.9/24 dev eth2
nsx up ip addr add 172.16.50.1/24 dev lo
nsx up sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth1.rp_filter=0 net.ipv4.conf.eth2.rp_filter=0
nsx up sysctl -qw net.ipv4.fib_multipath_hash_policy=1

vm vm1 h3 02:00:00:00:00:31
nsx vm1 ip addr add 192.168.10.11/24 dev eth0; nsx vm1 ip route add default via 192.168.10.1

for i in $(seq 100); do
    [[ $(mido host list -o json | json 'sum(h["alive"] for h in d)') == 3 ]] && break
    sleep 0.1
done
Z=$(mido tunnel-zone create name=tz type=vxlan)
for h in h1 h2 h3; do
    id=$(host_id $h); mido tunnel-zone add-member "$Z" "$id" "${HOST_IP[$h]}" >/dev/null
done
route() { mido route create --router "$1" type=Normal src-network-addr=0.0.0.0 src-network-length=0 \
    dst-network-addr="$2" dst-network-length="$3" next-hop-port="$4" ${5:+next-hop-gateway=$5} weight=100 >/dev/null; }
# Tenant: vm1 on net-a behind r1, floating IP 198.51.100.77.
BA=$(mido bridge create name=net-a)
R=$(mido router create name=r1)
RA=$(mido port create --router "$R" port-address=192.168.10.1 network-address=192.168.10.0 network-length=24)
mido port link "$RA" "$(mido port create --bridge "$BA")" >/dev/null
route "$R" 192.168.10.0 24 "$RA"
VP=$(mido port create --bridge "$BA"); mido port bind "$VP" "$H3" vm1 >/dev/null
# Edge: the provider router, with its uplinks on h1 and h2 in a stateful
# port group, AS 64512, no static route to the outside.
E=$(mido router create name=edge as-number=64512)
U1=$(mido port create --router "$E" port-address=203.0.113.1 network-address=203.0.113.0 network-length=24)
U2=$(mido port create --router "$E" port-address=203.0.114.1 network-address=203.0.114.0 network-length=24)
mido port bind "$U1" "$H1" up0 >/dev/null; mido port bind "$U2" "$H2" up0 >/dev/null
route "$E" 203.0.113.0 24 "$U1"; route "$E" 203.0.114.0 24 "$U2"
PG=$(mido port-group create name=uplinks stateful=true)
mido port-group add "$PG" "$U1" >/dev/null; mido port-group add "$PG" "$U2" >/dev/null
el=$(mido port create --router "$E" port-address=169.254.0.2 network-address=169.254.0.0 network-length=30)
tl=$(mido port create --router "$R" port-address=169.254.0.1 network-address=169.254.0.0 network-length=30)
mido port link "$el" "$tl" >/dev/null
route "$E" 198.51.100.0 24 "$el" 169.254.0.1
route "$E" 192.168.0.0 16 "$el" 169.254.0.1
route "$R" 0.0.0.0 0 "$tl" 169.254.0.2
rin=$(mido chain create name=r1-in); rout=$(mido chain create name=r1-out)
mido rule create --chain "$rin" type=dnat flow-action=accept nw-dst-address=198.51.100.77 nw-dst-length=32 \
    'nat-targets=[{"addressFrom":"192.168.10.11","addressTo":"192.168.10.11","portFrom":0,"portTo":0}]' >/dev/null
mido rule create --chain "$rout" type=snat flow-action=accept out-ports="[\"$tl\"]" nw-src-address=192.168.10.11 nw-src-length=32 \
    'nat-targets=[{"addressFrom":"198.51.100.77","addressTo":"198.51.100.77","portFrom":0,"portTo":0}]' >/dev/null
mido router update "$R" inbound-filter-id="$rin" outbound-filter-id="$rout" >/dev/null
# BGP: the floating-IP range advertised, both upstream addresses peers
# (a 3 s hold time: a dead gateway is noticed in 3 s).
mido bgp-network create --router "$E" subnet-address=198.51.100.0 subnet-length=24 >/dev/null
P1=$(mido bgp-peer create --router "$E" as-number=65000 address=203.0.113.9 keep-alive=1 hold-time=3 connect-retry=1)
P2=$(mido bgp-peer create --router "$E" as-number=65000 address=203.0.114.9 keep-alive=1 hold-time=3 connect-retry=1)

# ------------------------------------------------------------- upstreams --
UPD=$E2E_STATE/up
mkdir -p "$UPD"; chown frr:frr "$UPD" 2>/dev/null || true
up_frr() {
    cat >"$UPD/zebra.conf" <<'EOF'
frr defaults traditional
EOF
    cat >"$UPD/bgpd.conf" <<'EOF'
frr defaults traditional
router bgp 65000
 bgp router-id 172.16.50.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 203.0.113.1 remote-as 64512
 neighbor 203.0.113.1 timers 1 3
 neighbor 203.0.113.1 timers connect 1
 neighbor 203.0.114.1 remote-as 64512
 neighbor 203.0.114.1 timers 1 3
 neighbor 203.0.114.1 timers connect 1
 address-family ipv4 unicast
  network 172.16.50.0/24
  maximum-paths 8
 exit-address-family
exit
EOF
    chown frr:frr "$UPD"/*.conf 2>/dev/null || true
    local d
    for d in zebra bgpd; do
        ip netns exec "$(ns up)" /usr/lib/frr/$d -N "${P}up" --vty_socket "$UPD" -f "$UPD/$d.conf" -i "$UPD/$d.pid" \
            -z "$UPD/zserv.api" --log "file:$UPD/$d.log" >/dev/null 2>&1 &
        echo $! >"$E2E_STATE/up-$d.pid"
        [[ $d == zebra ]] && wait_for 5 'test -S "$UPD/zserv.api"'
    done
    UP_KIND=frr
}
up_bird() {
    cat >"$UPD/bird.conf" <<'EOF'
router id 172.16.50.1;
protocol device { scan time 1; }
protocol direct { ipv4; interface "lo"; }
protocol kernel { ipv4 { export filter { if proto = "direct1" then reject; accept; }; }; merge paths on; }
template bgp uplinkpeer {
  # Fast failover timers; BIRD's 60 s wait after a session error would
  # keep a restarted gateway out for a minute.
  local as 65000; hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 10;
  ipv4 { import all; export filter { if net ~ [ 10.240.0.0/16+ ] then reject; accept; }; };
}
protocol bgp gw1 from uplinkpeer { neighbor 203.0.113.1 as 64512; }
protocol bgp gw2 from uplinkpeer {
  neighbor 203.0.114.1 as 64512;
  ipv4 { import all; export all; };
}
# 150 prefixes for gw2 only, when enabled: over its cap of 100.
protocol static flood {
  ipv4; disabled;
EOF
    local i
    for i in $(seq 150); do echo "  route 10.240.$i.0/24 unreachable;"; done >>"$UPD/bird.conf"
    echo "}" >>"$UPD/bird.conf"
    ip netns exec "$(ns up)" bird -f -c "$UPD/bird.conf" -s "$UPD/bird.ctl" >"$UPD/bird.log" 2>&1 &
    echo $! >"$E2E_STATE/up-bird.pid"
    UP_KIND=bird
}
up_stop() {
    local f
    for f in "$E2E_STATE"/up-*.pid; do [[ -f $f ]] && { stop_pid "$f" || stop_pid "$f" KILL; rm -f "$f"; }; done
    # What a daemon left in the kernel goes (zebra's routes use nexthop
    # objects: flushing those removes them).
    if ip netns list | grep -qE "^$(ns up)( |\$)"; then
        nsx up ip nexthop flush >/dev/null 2>&1
        nsx up ip route flush proto bird >/dev/null 2>&1
    fi
    return 0
}
# The upstream's sessions up (1 = only gw2's, 2 = both).
up_sessions() {
    if [[ $UP_KIND == frr ]]; then
        vtysh --vty_socket "$UPD" -c 'show bgp ipv4 unicast summary json' 2>/dev/null \
            | json 'sum(p["state"] == "Established" for p in d["peers"].values())'
    else
        nsx up birdc -s "$UPD/bird.ctl" show protocols | grep -c Established
    fi
}
# The upstream's kernel route to the floating-IP range: its next hops.
up_nexthops() { nsx up ip route show 198.51.100.0/24 | grep -oE 'via 203\.0\.11[34]\.1' | sort -u | tr '\n' ' '; }
learned_routes() { # the edge router's learned routes to the Internet, by uplink
    mido route list --router "$E" -o json \
        | json '" ".join(sorted(r["nextHopPort"] for r in d if r["learned"] and r["dstNetworkAddr"] == "172.16.50.0"))'
}
peer_state() { mido bgp-peer show "$1" -o json | json 'd["status"]["state"]'; }

# ----------------------------------------------------------------- checks --
t_sessions() {
    wait_for 30 '[[ $(up_sessions) == 2 ]]' || { echo "upstream sessions up: $(up_sessions)"; return 1; }
    wait_for 10 '[[ $(peer_state "$P1")$(peer_state "$P2") == EstablishedEstablished ]]' \
        || { echo "peer status: $(peer_state "$P1") $(peer_state "$P2")"; return 1; }
    mido bgp-peer list --router "$E"
}
t_ecmp_upstream() {
    wait_for 10 '[[ $(up_nexthops) == "via 203.0.113.1 via 203.0.114.1 " ]]' || { nsx up ip route; return 1; }
    nsx up ip route show 198.51.100.0/24
}
t_learned() {
    local want; want=$(printf '%s\n' "$U1" "$U2" | sort | tr '\n' ' '); want=${want% }
    wait_for 10 '[[ $(learned_routes) == "$want" ]]' || { mido route list --router "$E"; return 1; }
    mido route list --router "$E" | grep -E 'true$'
    # Nothing static leads out: only what was learned.
    ! mido route list --router "$E" -o json | json '"\n".join(r["dstNetworkAddr"] for r in d if not r["learned"])' | grep -q '^0.0.0.0$'
}
t_out() { wait_for 10 'nsx vm1 ping -n -c 1 -W 1 172.16.50.1'; nsx vm1 ping -n -c 3 -i 0.2 -W 1 172.16.50.1; }
t_in() {
    nsx vm1 timeout 15 python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.10.11", 8080)); s.listen(1); c, a = s.accept(); c.sendall(("%s\n" % a[0]).encode())' &
    local sp=$!; sleep 0.5
    local got; got=$(nsx up timeout 10 python3 -c '
import socket
s = socket.socket(); s.bind(("172.16.50.1", 0)); s.settimeout(5); s.connect(("198.51.100.77", 8080))
print(s.recv(100).decode().strip())')
    wait $sp
    echo "vm1 saw a connection from $got"
    [[ $got == 172.16.50.1 ]]
}
t_failover() {
    local why="" t0 t1
    # A long-lived connection from the Internet to vm1, echoing every 0.1 s.
    nsx vm1 timeout 60 python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.10.11", 7000)); s.listen(1); c, _ = s.accept()
while True:
    b = c.recv(100)
    if not b: break
    c.sendall(b)' &
    local sp=$!; sleep 0.5
    nsx up timeout 60 python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("172.16.50.1", 0)); s.settimeout(20); s.connect(("198.51.100.77", 7000))
end = time.time() + float(sys.argv[1]); n = 0; gap = 0.0; last = time.time()
while time.time() < end:
    m = b"m%d" % n; s.sendall(m)
    got = b""
    while len(got) < len(m): got += s.recv(100)
    assert got == m, (got, m)
    now = time.time(); gap = max(gap, now - last); last = now; n += 1
    time.sleep(0.1)
print("echoed %d messages; longest gap %.1f s" % (n, gap))' 14 >"$E2E_STATE/long.txt" 2>&1 &
    local cp=$!
    nsx vm1 ping -n -D -i 0.1 -W 1 172.16.50.1 >"$E2E_STATE/fping.txt" 2>&1 & local pp=$!
    sleep 2
    t0=$(date +%s.%N)
    stop_pid "$E2E_STATE/agent-h1.pid" KILL
    wait_for 10 '[[ $(up_sessions) == 1 ]]' || why+="the upstream kept h1's session; "
    t1=$(date +%s.%N)
    local took; took=$(python3 -c "print(round($t1-$t0, 1))")
    echo "h1's session dropped at the upstream $took s after its agent died (hold time 3 s)"
    python3 -c "import sys; sys.exit(0 if $took <= 4.5 else 1)" || why+="the session took $took s to drop; "
    wait_for 5 '[[ $(up_nexthops) == "via 203.0.114.1 " ]]' || why+="the upstream still routes via h1 ($(up_nexthops)); "
    wait_for 5 '[[ $(learned_routes) == "$U2" ]]' || why+="h1's learned routes stayed ($(learned_routes)); "
    wait $cp || why+="the long-lived connection broke: $(cat "$E2E_STATE/long.txt"); "
    cat "$E2E_STATE/long.txt"
    kill $pp 2>/dev/null; wait $pp 2>/dev/null; kill $sp 2>/dev/null; wait $sp 2>/dev/null
    nsx vm1 ping -n -c 3 -i 0.2 -W 1 172.16.50.1 >/dev/null || why+="no pings through h2; "
    echo "pings: $(grep -c 'bytes from' "$E2E_STATE/fping.txt") answered"
    # The gateway comes back and peers again.
    start_agent h1 1
    wait_for 30 '[[ $(up_sessions) == 2 ]]' || why+="the restarted gateway did not peer again; "
    wait_for 10 '[[ $(up_nexthops) == "via 203.0.113.1 via 203.0.114.1 " ]]' || why+="no ECMP after the restart; "
    echo "${why:-failover and return ok}"
    [[ -z $why ]]
}

suite() { # NAME
    check "$1: both gateways peer with the upstream; peer status Established (bgp-peer list)" t_sessions
    check "$1: the upstream routes the floating-IP range over both uplinks (ECMP)" t_ecmp_upstream
    check "$1: the edge router learned the upstream's prefix through both uplinks (marked learned, no static route)" t_learned
    check "$1: the VM reaches the outside through the learned routes" t_out
    check "$1: the outside reaches the VM's floating IP" t_in
    check "$1: kill -9 of a gateway's agent: session down in the hold time, a long-lived TCP connection survives, pings go on; it peers again on restart" t_failover
}

up_frr
suite "FRR upstream"
up_stop
# The FRR upstream's routes leave with its sessions (hold time).
wait_for 10 '[[ -z $(learned_routes) ]]' || echo "warning: learned routes outlived the FRR upstream" >&2
up_bird
suite "BIRD upstream"

t_bad_input() {
    local why="" c
    for bad in "as-number=0" "as-number=4294967296" "hold-time=2" "keep-alive=0" "keep-alive=5 hold-time=4" "connect-retry=0"; do
        # shellcheck disable=SC2086
        if out=$(mido bgp-peer create --router "$E" address=203.0.113.50 as-number=65001 $bad 2>&1); then
            why+="accepted $bad; "
        else
            echo "refused $bad: $out"
        fi
    done
    c=$(rest POST "routers/$E/bgp_peers" '{"asNumber": 65001, "address": "203.0.113.50", "holdTime": 1}' 2>&1) && why+="REST accepted holdTime 1; "
    mido router update "$R" as-number=-5 >/dev/null 2>&1 && why+="router accepted asNumber -5; "
    local p3; p3=$(mido bgp-peer create --router "$E" as-number=65001 address=10.66.0.1) || { echo "no peer"; return 1; }
    local st; st=$(mido bgp-peer show "$p3" -o json | json 'd["status"]["state"] + ": " + str(d["status"]["message"])')
    echo "a peer outside every uplink subnet: $st"
    [[ $st == Invalid:*"subnet of no port"* ]] || why+="its status says $st; "
    mido bgp-peer delete "$p3" >/dev/null
    echo "${why:-bad input refused or reported}"
    [[ -z $why ]]
}
check "bad input: invalid AS numbers and timers refused with a message; a peer outside every uplink reported in its status" t_bad_input

t_flood() {
    local why=""
    nsx up birdc -s "$UPD/bird.ctl" enable flood >/dev/null
    wait_for 15 '[[ $(peer_state "$P2") != Established ]]' \
        || why+="h2's session stayed up with 150 prefixes over its cap of 100; "
    local st; st=$(mido bgp-peer show "$P2" -o json | json '"%s: %s" % (d["status"]["state"], d["status"]["message"])')
    echo "h2's peer: $st"
    [[ $st == *maximum-prefix* ]] || why+="the status does not say why: $st; "
    [[ $(peer_state "$P1") == Established ]] || why+="h1's session suffered: $(peer_state "$P1"); "
    nsx vm1 ping -n -c 3 -i 0.2 -W 1 172.16.50.1 >/dev/null || why+="the VM lost the outside; "
    local n; n=$(mido route list --router "$E" -o json | json 'sum(r["learned"] and r["dstNetworkAddr"].startswith("10.240.") for r in d)')
    [[ $n == 0 ]] || why+="$n flooded routes learned; "
    nsx up birdc -s "$UPD/bird.ctl" disable flood >/dev/null
    echo "${why:-the flooding peer was cut off and reported; the other session and traffic went on}"
    [[ -z $why ]]
}
check "a peer sending more prefixes than the cap is cut off and reported; nothing else suffers" t_flood

echo
for f in "${FAILS[@]}"; do echo "failed: $f"; done
echo "bgp e2e: $PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
