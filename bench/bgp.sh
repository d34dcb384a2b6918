#!/usr/bin/env bash
# BGP on gateway hosts (issue 13), on release builds, on the e2e testbed
# (tests/e2e/bgp_testbed.sh: two gateways, a BIRD upstream):
#   - failover: 32 UDP flows between the outside and the VM's floating IP,
#     one probe per flow every 10 ms; the agent of gateway h1 is killed
#     (kill -9). Per flow, the longest time without an answer; flows hashed
#     through the other gateway see none. Hold time 3 s, then BFD at
#     100 ms x 3 (hold time 30 s). The reference in the same run is the
#     detection time itself (hold time, or BFD's interval x multiplier): no
#     BGP gateway learns of a dead peer sooner, whatever its dataplane.
#   - learning: the upstream announces 1,000 prefixes at once; the time
#     until all of them are learned routes of the edge router in the NSDB
#     (both gateways: 2,000 entries, read through the REST API), against
#     the time until zebra put them in the kernel FIB of h1's bgpd
#     namespace (the reference: FRR's own route installation, same run).
#   sudo bench/bgp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/bgp.sh: needs root (network namespaces)" >&2; exit 1; }
cargo build --release -q -p midonet --bin midonet
export P=mnbgpb BIN=$PWD/target/release/midonet E2E_SECURE=0 BGP_CAP=5000
export E2E_STATE=/tmp/midonet-e2e.$P
source tests/e2e/lib.sh
source tests/e2e/bgp_testbed.sh
trap 'up_stop; speakers_down; e2e_down' EXIT
set +e
bgp_testbed >/dev/null
up_bird
wait_for 30 '[[ $(up_sessions) == 2 ]]' || { echo "sessions did not come up" >&2; exit 1; }
wait_for 10 '[[ $(up_nexthops) == "via 203.0.113.1 via 203.0.114.1 " ]]' || { echo "no ECMP upstream" >&2; exit 1; }
wait_for 10 'nsx vm1 ping -n -c 1 -W 1 172.16.50.1' || { echo "the VM does not reach out" >&2; exit 1; }

# ------------------------------------------------------------- learning --
# First, on sessions fresh from the start (as a gateway coming up sees it).
sleep 2
# h1's bgpd namespace, entered through bgpd's PID (the agent made it from
# its own mount namespace).
bgpd1=$(cat "$E2E_STATE"/agent-h1/bgp/*/bgpd.pid)
fib_routes() { nsenter -t "$bgpd1" -n ip route show | grep -c '^10\.24[1-4]\.'; }
count_learned() { ccurl -s "$API/routers/$E/routes" | python3 -c 'import json,sys; print(sum(r["learned"] and r["dstNetworkAddr"].startswith("10.24") for r in json.load(sys.stdin)))'; }
t0=$(date +%s.%N)
nsx up birdc -s "$UPD/bird.ctl" enable bulk >/dev/null
t_fib=""; t_nsdb=""
for i in $(seq 300); do
    if [[ -z $t_fib ]] && (( $(fib_routes) >= 1000 )); then t_fib=$(date +%s.%N); fi
    if [[ -z $t_nsdb ]] && (( $(count_learned) >= 2000 )); then t_nsdb=$(date +%s.%N); fi
    [[ -n $t_fib && -n $t_nsdb ]] && break
    sleep 0.1
done
python3 - "$t0" "${t_fib:-0}" "${t_nsdb:-0}" <<'PY'
import sys
t0, fib, nsdb = map(float, sys.argv[1:])
print("learning 1,000 prefixes announced at once (two gateways: 2,000 learned routes):")
if fib and nsdb:
    print("  in the NSDB (REST route list): %.2f s, %.0f routes/s" % (nsdb - t0, 2000 / (nsdb - t0)))
    print("  reference, zebra into h1's bgpd-namespace FIB: %.2f s, %.0f routes/s" % (fib - t0, 1000 / (fib - t0)))
    print("  ratio NSDB time / FIB time: %.2f" % ((nsdb - t0) / (fib - t0)))
else:
    print("  did not complete in 30 s (FIB %s, NSDB %s)" % (bool(fib), bool(nsdb)))
    sys.exit(1)
PY
nsx up birdc -s "$UPD/bird.ctl" disable bulk >/dev/null
wait_for 30 '[[ $(count_learned) == 0 ]]' || { echo "the bulk routes stayed" >&2; exit 1; }

# ------------------------------------------------------------- failover --
# The VM echoes the probes of both runs.
nsx vm1 timeout 200 python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("192.168.10.11", 9000))
while True:
    b, a = s.recvfrom(100); s.sendto(b, a)' &
echo_pid=$!
sleep 0.5
failover() { # LABEL DETECT_SECONDS: kill h1's agent under load, print the outage
nsx up timeout 40 python3 - >"$E2E_STATE/failover.json" <<'PY' &
import json, select, socket, time
flows = []
for i in range(32):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("172.16.50.1", 41000 + i)); s.connect(("198.51.100.77", 9000)); s.setblocking(False)
    flows.append(s)
last = [time.time()] * 32; gap = [0.0] * 32; start = time.time()
while time.time() - start < 14:
    now = time.time()
    for s in flows:
        s.send(b"%.6f" % now)
    end = now + 0.01
    while True:
        t = end - time.time()
        if t <= 0: break
        r, _, _ = select.select(flows, [], [], t)
        for s in r:
            try:
                s.recv(100)
            except OSError:
                continue
            i = flows.index(s); n = time.time()
            gap[i] = max(gap[i], n - last[i]); last[i] = n
for i in range(32):
    gap[i] = max(gap[i], time.time() - last[i])
print(json.dumps({"gaps": gap}))
PY
local probe_pid=$!
sleep 4
local t_kill t_down
t_kill=$(date +%s.%N)
stop_pid "$E2E_STATE/agent-h1.pid" KILL
wait_for 10 '[[ $(up_sessions) == 1 ]]'
t_down=$(date +%s.%N)
wait $probe_pid
python3 - "$E2E_STATE/failover.json" "$t_kill" "$t_down" "$1" "$2" <<'PY'
import json, sys
g = sorted(json.load(open(sys.argv[1]))["gaps"])
hit = [x for x in g if x > 0.1]
down = float(sys.argv[3]) - float(sys.argv[2])
label, detect = sys.argv[4], float(sys.argv[5])
print("failover, %s (kill -9 of gateway h1's agent, 32 UDP flows, a probe per flow every 10 ms):" % label)
print("  upstream's session to h1 down after %.2f s (the reference: detection time %.1f s)" % (down, detect))
print("  flows interrupted: %d of 32; their longest outage: median %.2f s, max %.2f s; ratio max/detection %.2f"
      % (len(hit), hit[len(hit) // 2] if hit else 0, max(g), max(g) / detect))
PY
start_agent h1 1
wait_for 30 '[[ $(up_sessions) == 2 ]]' || { echo "h1 did not peer again" >&2; exit 1; }
wait_for 10 '[[ $(up_nexthops) == "via 203.0.113.1 via 203.0.114.1 " ]]' || { echo "no ECMP upstream" >&2; exit 1; }
}
failover "hold time 3 s" 3
# BFD on both peers (100 ms x 3 = 0.3 s), the hold time left at 30 s.
peers_bfd on
wait_for 30 '[[ $(up_sessions) == 2 && $(up_bfd) == 2 ]]' || { echo "BFD did not come up" >&2; exit 1; }
sleep 2
failover "with BFD 100 ms x 3, hold time 30 s" 0.3
wait_for 30 '[[ $(up_bfd) == 2 ]]' || { echo "BFD did not come back" >&2; exit 1; }
peers_bfd off
wait_for 30 '[[ $(up_sessions) == 2 ]]' || { echo "sessions did not come back" >&2; exit 1; }
kill $echo_pid 2>/dev/null; wait $echo_pid 2>/dev/null || true

