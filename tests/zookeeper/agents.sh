#!/usr/bin/env bash
# Agents on two servers that share one ZooKeeper: h1's agent talks to server
# A, h2's to server B (then A: `--cluster B,A`). The topology is made through
# A; the VMs ping across hosts (each host sees the other's state: alive, port
# bound and active, through ZooKeeper); a filter set through B cuts the
# traffic at h1, whose agent only talks to A. Then B is killed: traffic goes
# on, h2's agent moves to A, stays alive there once B's sessions expire, and
# hears of changes made through A. On a ZooKeeper ensemble of three: kill -9
# of its leader during writes and traffic; two members down for longer than
# a session: traffic goes on, a write gets 503, and with the quorum back
# writes succeed, the agents are alive again and hear of changes. Needs root
# (namespaces); all by PID.
set -uo pipefail
cd "$(dirname "$0")/../.."
export P=${P:-mnzk}
export BIN=${MIDONET_BIN:-$PWD/target/debug/midonet}
source tests/e2e/lib.sh
[[ $(id -u) == 0 ]] || { echo "FAIL agents on two servers: needs root" >&2; exit 1; }
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "FAIL agents on two servers: /usr/share/java/zookeeper.jar missing (apt-get install zookeeper)" >&2; exit 1; }
trap "[[ \${E2E_KEEP:-0} == 1 ]] || e2e_down" EXIT
fail() { echo "FAIL agents on two servers: $*"; for f in "$E2E_STATE"/*.log; do echo "--- $f"; tail -15 "$f"; done; exit 1; }
e2e_down; e2e_underlay

# Three ZooKeeper members in the operator's namespace (pid files in the
# state dir: e2e_down stops them by PID).
ZK_DIR=$E2E_STATE ZK_HOST=$CTL_IP ZK_BASE_PORT=2180 ZK_EXEC="ip netns exec $(ns ctl)"
source tests/zookeeper/ensemble.sh
zk_ensemble || fail "the ZooKeeper ensemble did not form"

server() { # NAME REST_PORT TOPOLOGY_PORT NEUTRON_PORT
    ip netns exec "$(ns ctl)" "$BIN" server --store zookeeper --zookeeper "$ZK_CONNECT/e2e" \
        --listen $CTL_IP:$2 --topology-listen $CTL_IP:$3 --neutron-listen $CTL_IP:$4 \
        --data-dir "$E2E_STATE/$1" >>"$E2E_STATE/server-$1.log" 2>&1 &
    echo $! >"$E2E_STATE/server-$1.pid"
    for _ in $(seq 100); do nsx ctl curl -sf "http://$CTL_IP:$2/midonet-api/system_state" >/dev/null && return 0; sleep 0.1; done
    fail "server $1 did not start"
}
server a 8181 8088 9696
server b 8182 8089 9697
mido_b() { MIDO_API_URL=http://$CTL_IP:8182/midonet-api nsx ctl "$BIN" "$@"; }
# Succeeds once VM's pings of IP stop (a filter took effect), within 12 s.
cut_within() { # VM IP
    local _
    for _ in $(seq 50); do nsx "$1" ping -n -c 1 -W 0.2 "$2" >/dev/null 2>&1 || return 0; sleep 0.05; done
    return 1
}
alive_hosts() { mido host list -o json 2>/dev/null | python3 -c 'import json,sys; print(sum(h["alive"] for h in json.load(sys.stdin)))' 2>/dev/null; }
AGENT_CLUSTER=http://$CTL_IP:8088 start_agent h1 1
AGENT_CLUSTER=http://$CTL_IP:8089,http://$CTL_IP:8088 start_agent h2 1
H1=$(host_id h1) && H2=$(host_id h2) || fail "agents did not register"
# Each server lists both hosts alive: h2's liveness reached A through ZooKeeper.
for _ in $(seq 100); do
    [[ $(alive_hosts) == 2 ]] && break
    sleep 0.1
done
alive=$(alive_hosts)
[[ $alive == 2 ]] || fail "server A sees $alive of 2 hosts alive"

Z=$(mido tunnel-zone create name=tz type=vxlan)
mido tunnel-zone add-member "$Z" "$H1" 10.99.0.1 >/dev/null
mido tunnel-zone add-member "$Z" "$H2" 10.99.0.2 >/dev/null
B=$(mido bridge create name=net-zk)
vm zv1 h1; vm zv2 h2
nsx zv1 ip addr add 10.0.0.11/24 dev eth0
nsx zv2 ip addr add 10.0.0.12/24 dev eth0
P1=$(mido port create --bridge "$B"); P2=$(mido port create --bridge "$B")
mido port bind "$P1" "$H1" zv1 >/dev/null || fail "bind on h1"
mido port bind "$P2" "$H2" zv2 >/dev/null || fail "bind on h2"
ok=0
for _ in $(seq 50); do nsx zv1 ping -n -c 1 -W 0.2 10.0.0.12 >/dev/null 2>&1 && { ok=1; break; }; done
[[ $ok == 1 ]] || fail "zv1 (h1, server A) cannot ping zv2 (h2, server B)"
echo "ok   agents on two servers: VMs on h1 (server A) and h2 (server B) ping across hosts"

# A filter made and set through B drops ICMP into zv1: h1's agent hears of
# it from A.
command -v ping >/dev/null || fail "ping missing"
nsx zv2 ping -n -c 1 -W 1 10.0.0.11 >/dev/null 2>&1 || fail "zv2 cannot ping zv1 before the filter"
C=$(mido_b chain create name=no-icmp) || fail "chain create through B"
mido_b rule create --chain "$C" type=drop nw-proto=1 >/dev/null || fail "rule create through B"
# Timed from the request to B (the CLI's own start-up included) to the last
# reply zv2 got (pings every 10 ms).
nsx zv2 ping -D -n -i 0.01 -W 1 10.0.0.11 >"$E2E_STATE/cut-ping.out" 2>&1 &
PING=$!
sleep 0.5
t0=$(date +%s.%N)
mido_b port update "$P1" outbound-filter-id="$C" >/dev/null || fail "port update through B"
sleep 2.5
kill $PING 2>/dev/null; wait $PING 2>/dev/null
ms=$(python3 - "$E2E_STATE/cut-ping.out" "$t0" <<'PY'
import re, sys
t0 = float(sys.argv[2])
ts = [float(m.group(1)) for l in open(sys.argv[1]) if (m := re.match(r"\[(\d+\.\d+)\] \d+ bytes from", l))]
after = [t for t in ts if t >= t0]
print(round(max(0.0, (after[-1] - t0) * 1000)) if after else 0)
PY
)
last=$(grep -c "bytes from" "$E2E_STATE/cut-ping.out" || true)
(( last > 0 )) || fail "zv2 never pinged zv1 before the filter"
(( ms <= 2000 )) || fail "a filter set through server B took ${ms} ms from the request to stop ICMP at h1's agent (over 2 s)"
nsx zv2 ping -n -c 3 -i 0.1 -W 0.3 10.0.0.11 >/dev/null 2>&1 && fail "a filter set through server B did not stop ICMP to zv1"
echo "ok   agents on two servers: a filter set through server B stops traffic at h1's agent, which talks to A, ${ms} ms after the request"

# Server B dies (kill -9): the pings between the VMs go on; h2's agent moves
# to A and keeps its state there after ZooKeeper expires B's sessions (10 s).
mido port update "$P1" outbound-filter-id=null >/dev/null 2>&1 || mido port update "$P1" outboundFilterId=null >/dev/null || fail "filter removal through A"
for _ in $(seq 50); do nsx zv2 ping -n -c 1 -W 0.2 10.0.0.11 >/dev/null 2>&1 && break; sleep 0.05; done
nsx zv1 ping -n -q -i 0.02 -w 16 10.0.0.12 >"$E2E_STATE/failover-ping.out" 2>&1 &
PING=$!
sleep 1
kill -9 "$(cat "$E2E_STATE/server-b.pid")"
sleep 13
# A change through A after the move reaches h2: a filter on zv2's port.
C2=$(mido chain create name=no-icmp-a) || fail "chain create through A"
mido rule create --chain "$C2" type=drop nw-proto=1 >/dev/null || fail "rule create through A"
wait $PING
loss=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' "$E2E_STATE/failover-ping.out")
[[ -n $loss ]] || fail "no ping summary: $(cat "$E2E_STATE/failover-ping.out")"
# At most 5 of every 200 pings (20 ms apart) lost.
python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= 2.5 else 1)' "$loss" ||
    fail "traffic stopped while B died: $loss% of the pings lost"
h2alive=$(mido host list -o json | python3 -c 'import json,sys; print([h["alive"] for h in json.load(sys.stdin) if h["name"]=="h2"][0])')
[[ $h2alive == True ]] || fail "after B's sessions expired, A does not see h2 alive"
mido port update "$P2" outbound-filter-id="$C2" >/dev/null || fail "port update through A"
cut_within zv1 10.0.0.12 || fail "after the move, a filter set through A did not reach h2's agent"
grep -aq "watching the topology.*$CTL_IP:8088" "$E2E_STATE/agent-h2.log" || fail "h2's agent never watched through A"
echo "ok   agents on two servers: server B killed; VM traffic went on ($loss% of pings lost), h2's agent moved to A, stayed alive after B's sessions expired, and applied a change made through A"

# kill -9 of the ZooKeeper leader during REST writes through both servers
# (B started again) and traffic: the writes go on (at most 10 % refused,
# each a clean 503), every acknowledged one is there, and the VMs' pings
# (200 at 20 ms) are not disturbed.
mido port update "$P2" outbound-filter-id=null >/dev/null || fail "filter removal through A"
for _ in $(seq 50); do nsx zv1 ping -n -c 1 -W 0.2 10.0.0.12 >/dev/null 2>&1 && break; sleep 0.05; done
server b 8182 8089 9697
REST_A=http://$CTL_IP:8181/midonet-api REST_B=http://$CTL_IP:8182/midonet-api
nsx zv1 ping -n -q -i 0.02 -c 200 -W 1 10.0.0.12 >"$E2E_STATE/leader-ping.out" 2>&1 &
PING=$!
nsx ctl python3 tests/zookeeper/writer.py 40 "$REST_A" "$REST_B" "$REST_A" "$REST_B" >"$E2E_STATE/leader-writes.json" &
WP=$!
sleep 1
leader=$(zk_leader) || fail "no ZooKeeper leader"
zk_kill "$leader"
wait $WP || fail "the writer failed"
wait $PING
answered=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$E2E_STATE/leader-ping.out")
(( ${answered:-0} >= 195 )) || fail "the leader's kill disturbed traffic: ${answered:-0} of 200 pings answered"
read -r total refused other < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["codes"]; print(len(c), sum(x != 201 for x in c), sorted(set(c) - {201, 503}))' "$E2E_STATE/leader-writes.json")
(( refused * 10 <= total )) || fail "with the ZooKeeper leader killed, $refused of $total writes refused"
[[ $other == "[]" ]] || fail "with the ZooKeeper leader killed, writes answered $other (not 201 or 503)"
present=$(nsx ctl python3 tests/zookeeper/writer.py --present "$E2E_STATE/leader-writes.json" "$REST_B") ||
    fail "after the leader's kill: $present"
echo "ok   kill -9 of the ZooKeeper leader (member $leader) during writes through two servers and traffic: $answered of 200 pings answered; $present"
zk_start "$leader"; zk_serving "$leader" || fail "ZooKeeper member $leader did not rejoin"

# Two of three ZooKeeper members down for 13 s, longer than a session's
# timeout: a write fails cleanly within 15 s, the VMs' traffic goes on, the
# sessions expire. With the quorum back, writes succeed within 30 s; the
# server opens a new session of its own and has its agents reconnect: both
# hosts are alive again once ZooKeeper has expired the old sessions, and a
# change through the server still reaches the agents.
nsx zv1 ping -n -q -i 0.05 -w 17 10.0.0.12 >"$E2E_STATE/outage-ping.out" 2>&1 &
PING=$!
sleep 1
down=(); for i in 1 2 3; do [[ $i != "$leader" ]] && down+=($i); done
zk_kill "${down[0]}"; zk_kill "${down[1]}"
t0=$(date +%s)
out=$(nsx ctl curl -s -m 30 -w '\n%{http_code}' -X POST -H 'Content-Type: application/vnd.org.midonet.Bridge-v4+json' \
    -d '{"name":"late","tenantId":"t1"}' "$REST_A/bridges")
code=${out##*$'\n'}; dt=$(( $(date +%s) - t0 ))
[[ $code == 503 && $dt -le 15 ]] || fail "a write without a quorum: HTTP $code after ${dt}s"
sleep $(( 13 - dt > 0 ? 13 - dt : 0 ))
zk_start "${down[0]}"; zk_start "${down[1]}"
t0=$(date +%s); code=""
while (( $(date +%s) - t0 < 30 )); do
    code=$(nsx ctl curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST -H 'Content-Type: application/vnd.org.midonet.Bridge-v4+json' \
        -d '{"name":"back","tenantId":"t1"}' "$REST_A/bridges") && [[ $code == 201 ]] && break
    sleep 0.5
done
[[ $code == 201 ]] || fail "30 s after the quorum came back, a write still gets HTTP $code"
back=$(( $(date +%s) - t0 ))
wait $PING
loss=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' "$E2E_STATE/outage-ping.out")
python3 -c 'import sys; sys.exit(0 if float(sys.argv[1] or 100) <= 1.0 else 1)' "$loss" ||
    fail "traffic stopped without a ZooKeeper quorum: ${loss:-all}% of the pings lost"
sleep 12   # ZooKeeper, back, expires the sessions nobody resumed
alive=0
for _ in $(seq 100); do
    alive=$(alive_hosts) && [[ $alive == 2 ]] && break
    sleep 0.2
done
[[ $alive == 2 ]] || fail "after the ZooKeeper outage, server A sees $alive of 2 hosts alive"
mido port update "$P1" outbound-filter-id="$C2" >/dev/null || fail "a write through A after the outage"
cut_within zv2 10.0.0.11 || fail "after the ZooKeeper outage, a filter set through A did not reach h1's agent"
grep -aq "NSDB session expired" "$E2E_STATE/server-a.log" || fail "server A never asked an agent to reconnect"
echo "ok   two of three ZooKeeper members down 13 s: a write got 503 in ${dt}s, VM traffic went on ($loss% of pings lost); with the quorum back writes succeeded after ${back}s, the agents' expired sessions were renewed (both hosts alive) and a change reached them"
