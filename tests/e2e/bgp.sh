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
source tests/e2e/bgp_testbed.sh

if [[ $(id -u) != 0 ]]; then echo "bgp e2e: needs root"; echo "0 passed, 1 failed"; exit 1; fi
for c in ip ping python3 curl openssl vtysh bird birdc /usr/lib/frr/bgpd /usr/lib/frr/zebra /usr/lib/frr/bfdd; do
    command -v "$c" >/dev/null || { echo "bgp e2e: missing $c" >&2; echo "0 passed, 1 failed"; exit 1; }
done

trap '[[ ${E2E_KEEP:-0} == 1 ]] || { up_stop; speakers_down; e2e_down; }' EXIT

# ---------------------------------------------------------------- testbed --
bgp_testbed || { echo "0 passed, 1 failed"; exit 1; }

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
    ! grep -q '^0.0.0.0$' <<<"$(mido route list --router "$E" -o json | json '"\n".join(r["dstNetworkAddr"] for r in d if not r["learned"])')"
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

t_bfd() {
    local why="" t0 t1 took
    peers_bfd on || { echo "BFD settings refused"; return 1; }
    wait_for 30 '[[ $(up_sessions) == 2 && $(up_bfd) == 2 ]]' \
        || why+="BFD sessions up at the upstream: $(up_bfd), BGP sessions $(up_sessions); "
    wait_for 10 '[[ $(peer_bfd "$P1")$(peer_bfd "$P2") == upup ]]' \
        || why+="the peers' status says BFD $(peer_bfd "$P1") $(peer_bfd "$P2"); "
    mido bgp-peer list --router "$E"
    t0=$(date +%s.%N)
    stop_pid "$E2E_STATE/agent-h1.pid" KILL
    wait_for 10 '[[ $(up_sessions) == 1 ]]' || why+="the upstream kept h1's session; "
    t1=$(date +%s.%N)
    took=$(python3 -c "print(round($t1-$t0, 2))")
    echo "h1's session dropped at the upstream $took s after its agent died (BFD 100 ms x 3; hold time 30 s)"
    python3 -c "import sys; sys.exit(0 if $took <= 2.0 else 1)" || why+="the session took $took s to drop; "
    wait_for 5 '[[ $(up_nexthops) == "via 203.0.114.1 " ]]' || why+="the upstream still routes via h1 ($(up_nexthops)); "
    wait_for 5 'nsx vm1 ping -n -c 1 -W 1 172.16.50.1' || why+="no pings through h2; "
    start_agent h1 1
    wait_for 30 '[[ $(up_sessions) == 2 && $(up_bfd) == 2 ]]' || why+="the restarted gateway did not peer with BFD again; "
    # Back to the suite's settings.
    peers_bfd off || why+="BFD off refused; "
    wait_for 30 '[[ $(up_sessions) == 2 ]]' || why+="sessions did not come back without BFD; "
    wait_for 10 '[[ $(up_nexthops) == "via 203.0.113.1 via 203.0.114.1 " ]]' || why+="no ECMP after BFD; "
    echo "${why:-BFD failover ok}"
    [[ -z $why ]]
}

suite() { # NAME
    check "$1: both gateways peer with the upstream; peer status Established (bgp-peer list)" t_sessions
    check "$1: the upstream routes the floating-IP range over both uplinks (ECMP)" t_ecmp_upstream
    check "$1: the edge router learned the upstream's prefix through both uplinks (marked learned, no static route)" t_learned
    check "$1: the VM reaches the outside through the learned routes" t_out
    check "$1: the outside reaches the VM's floating IP" t_in
    check "$1: kill -9 of a gateway's agent: session down in the hold time, a long-lived TCP connection survives, pings go on; it peers again on restart" t_failover
    check "$1: with BFD (100 ms x 3) a gateway's death is noticed well within a 30 s hold time; BFD state in the peer status" t_bfd
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

tally "bgp e2e"
