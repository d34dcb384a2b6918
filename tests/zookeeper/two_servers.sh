#!/usr/bin/env bash
# Two `midonet server`s on one real ZooKeeper ensemble of three (Debian's
# package, started here by PID on loopback): what one writes, through the
# MidoNet REST API and the Neutron API, the other serves; a server restarted
# on the ensemble has it all; kill -9 of the ZooKeeper leader, and of a
# server, during concurrent writes: writes go on, every acknowledged one is
# there; with one ZooKeeper member down, writes go on; with two down (no
# quorum), a write fails with HTTP 503 within 15 s and reads go on; with the
# quorum back, writes succeed within 30 s; `midonet nsdb export` of the
# ensemble, imported into an embedded store, serves the same cloud.
# Everything is stopped by PID on exit.
set -euo pipefail
BIN=${MIDONET_BIN:-$(dirname "$0")/../../target/debug/midonet}
D=$(mktemp -d /tmp/midonet-zk.XXXXXX)
PIDS=()
cleanup() { zk_stop_all 2>/dev/null; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; [[ ${ZK_KEEP:-0} == 1 ]] && echo "kept $D" || rm -rf "$D"; }
trap cleanup EXIT
fail() { echo "FAIL $*"; for f in "$D"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ZK_DIR=$D ZK_HOST=127.0.0.1
source "$(dirname "$0")/ensemble.sh"
zk_ensemble || fail "the ZooKeeper ensemble did not form"
PIDS+=("${ZK_PIDS[@]}")

declare -A REST NEUTRON SPID
start() { # NAME
    local r n t; r=$(port); n=$(port); t=$(port)
    "$BIN" server --store zookeeper --zookeeper "$ZK_CONNECT/cloud" --listen 127.0.0.1:$r \
        --neutron-listen 127.0.0.1:$n --topology-listen 127.0.0.1:$t --data-dir "$D/$1" >>"$D/$1.log" 2>&1 &
    SPID[$1]=$!; PIDS+=($!)
    REST[$1]=http://127.0.0.1:$r/midonet-api; NEUTRON[$1]=http://127.0.0.1:$n/v2.0
    for _ in $(seq 100); do curl -sf "${REST[$1]}/system_state" >/dev/null && return 0; sleep 0.1; done
    fail "server $1 did not start"
}
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
start s1; start s2

# A bridge made through s1 is served by s2.
# (MidoNet answers a create with 201 and the new object's location.)
B=$(curl -sf -D - -o /dev/null -X POST -H 'Content-Type: application/vnd.org.midonet.Bridge-v4+json' \
    -d '{"name":"shared","tenantId":"t1"}' "${REST[s1]}/bridges" | tr -d '\r' | sed -n 's|^location: .*/bridges/||ip')
[[ -n $B ]] || fail "no bridge made through s1"
got=""
for _ in $(seq 100); do
    got=$(curl -sf "${REST[s2]}/bridges/$B" | json 'd["name"]' 2>/dev/null) && [[ $got == shared ]] && break
    sleep 0.02
done
[[ $got == shared ]] || fail "s2 does not serve the bridge s1 made (got '$got')"
echo "ok   a bridge made through one server is served by the other"

# A Neutron network made through s2 is listed by s1, with its subnet.
N=$(curl -sf -X POST -H 'Content-Type: application/json' -d '{"network":{"name":"net-zk"}}' \
    "${NEUTRON[s2]}/networks" | json 'd["network"]["id"]')
curl -sf -X POST -H 'Content-Type: application/json' \
    -d "{\"subnet\":{\"network_id\":\"$N\",\"ip_version\":4,\"cidr\":\"10.7.0.0/24\"}}" "${NEUTRON[s2]}/subnets" >/dev/null
seen=""
for _ in $(seq 100); do
    seen=$(curl -sf "${NEUTRON[s1]}/subnets?network_id=$N" | json 'len(d["subnets"])' 2>/dev/null) && [[ $seen == 1 ]] && break
    sleep 0.02
done
[[ $seen == 1 ]] || fail "s1 does not list the subnet s2 made ($seen)"
echo "ok   a Neutron network and subnet made through one server are listed by the other"

# A quota counts what both servers made: with room for two more networks,
# one through s1 and one through s2 fit, a third through either is refused.
P=$(curl -sf "${NEUTRON[s1]}/networks/$N" | json 'd["network"]["project_id"]')
have=$(curl -sf "${NEUTRON[s1]}/networks" | json "sum(n['project_id'] == '$P' for n in d['networks'])")
curl -sf -X PUT -H 'Content-Type: application/json' -d "{\"quota\":{\"network\":$((have + 2))}}" "${NEUTRON[s1]}/quotas/$P" >/dev/null ||
    fail "setting a network quota"
net_code() { curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d '{"network":{"name":"q"}}' "${NEUTRON[$1]}/networks"; }
c1=$(net_code s1); sleep 0.2; c2=$(net_code s2); sleep 0.2; c3=$(net_code s1); c4=$(net_code s2)
[[ "$c1 $c2 $c3 $c4" == "201 201 409 409" ]] || fail "a network quota across servers: creates answered $c1 $c2 $c3 $c4 (want 201 201 409 409)"
curl -sf -X DELETE "${NEUTRON[s1]}/quotas/$P" >/dev/null || fail "resetting the quota"
echo "ok   a Neutron quota counts what both servers made (the third network over it is refused through either)"

# Port creates on that network through both servers at once: no address is
# handed out twice, and a create that raced the other server's is done
# again by its server rather than refused.
python3 - "${NEUTRON[s1]}" "${NEUTRON[s2]}" "$N" >"$D/ipam.out" <<'PY' || fail "IPAM across servers: $(cat "$D/ipam.out")"
import http.client, json, sys, threading, urllib.parse
eps, net = sys.argv[1:3], sys.argv[3]
got, codes, why = [], [], set()
def worker(ep):
    u = urllib.parse.urlsplit(ep)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    for _ in range(40):
        c.request("POST", u.path + "/ports", json.dumps({"port": {"network_id": net}}), {"Content-Type": "application/json"})
        r = c.getresponse(); body = r.read(); codes.append(r.status)
        if r.status == 201:
            got.append(json.loads(body)["port"]["fixed_ips"][0]["ip_address"])
        elif r.status == 409:
            why.add(json.loads(body).get("NeutronError", {}).get("message", "")[:90])
ts = [threading.Thread(target=worker, args=(e,)) for e in eps * 2]
[t.start() for t in ts]; [t.join() for t in ts]
dup = len(got) - len(set(got))
print(f"{len(got)} ports made, {codes.count(409)} conflicts {sorted(why)}, other codes {sorted(set(codes) - {201, 409})}, {dup} addresses twice")
sys.exit(0 if dup == 0 and len(got) >= 156 and set(codes) <= {201, 409} else 1)
PY
echo "ok   port creates through both servers at once never share an address ($(cat "$D/ipam.out"))"

# Each server keeps what a network's ports hold: an address the other
# server's port holds is refused, and one the other server's delete gave
# back is handed out again (not refused from a stale cache).
fixed_port() { # SERVER IP -> HTTP code
    curl -s -o "$D/fixed.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d "{\"port\":{\"network_id\":\"$N\",\"fixed_ips\":[{\"ip_address\":\"$2\"}]}}" "${NEUTRON[$1]}/ports"
}
read -r pid pip < <(curl -sf -X POST -H 'Content-Type: application/json' -d "{\"port\":{\"network_id\":\"$N\"}}" "${NEUTRON[s2]}/ports" |
    json 'd["port"]["id"] + " " + d["port"]["fixed_ips"][0]["ip_address"]') || fail "a port through s2"
code=$(fixed_port s1 "$pip")
[[ $code == 409 ]] && grep -q IpAddressAlreadyAllocated "$D/fixed.json" ||
    fail "$pip, held by s2's port, asked through s1: HTTP $code $(cat "$D/fixed.json")"
curl -sf -X DELETE "${NEUTRON[s2]}/ports/$pid" >/dev/null || fail "deleting s2's port"
# (s1 reads what ZooKeeper holds a few milliseconds later: within 1 s.)
for _ in $(seq 20); do code=$(fixed_port s1 "$pip"); [[ $code == 201 ]] && break; sleep 0.05; done
[[ $code == 201 ]] || fail "$pip, given back through s2, asked through s1: HTTP $code $(cat "$D/fixed.json")"
echo "ok   an address held through one server is refused through the other (409), and once given back is handed out (within 1 s)"

# A change through one server, then a delete through the other.
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.org.midonet.Bridge-v4+json' \
    -d '{"name":"renamed","tenantId":"t1"}' "${REST[s2]}/bridges/$B")
[[ $code == 200 || $code == 204 ]] || fail "update through s2: HTTP $code"
for _ in $(seq 100); do [[ $(curl -sf "${REST[s1]}/bridges/$B" | json 'd["name"]') == renamed ]] && break; sleep 0.02; done
[[ $(curl -sf "${REST[s1]}/bridges/$B" | json 'd["name"]') == renamed ]] || fail "s1 does not see s2's update"
echo "ok   an update through one server is seen by the other"

# A server started later has everything (it replays the ensemble's log).
kill -9 "${SPID[s1]}"; wait "${SPID[s1]}" 2>/dev/null || true
start s3
[[ $(curl -sf "${REST[s3]}/bridges/$B" | json 'd["name"]') == renamed ]] || fail "s3 does not have the bridge"
[[ $(curl -sf "${NEUTRON[s3]}/networks/$N" | json 'd["network"]["name"]') == net-zk ]] || fail "s3 does not have the network"
echo "ok   a server started on the ensemble later serves what the others wrote"

WRITER=$(dirname "$0")/writer.py
all_present() { python3 "$WRITER" --present "$1" "${REST[$2]}"; } # FILE SERVER

# kill -9 of the ZooKeeper leader during writes through two servers: the
# writes go on (at most 10 % refused, each a clean 503), and every one
# acknowledged is there.
leader=$(zk_leader) || fail "no ZooKeeper leader"
python3 "$WRITER" 60 "${REST[s2]}" "${REST[s3]}" "${REST[s2]}" "${REST[s3]}" >"$D/w1.json" &
wp=$!
sleep 1
zk_kill "$leader"
wait $wp || fail "the writer failed"
read -r total refused other < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["codes"]; print(len(c), sum(x != 201 for x in c), sorted(set(c) - {201, 503}))' "$D/w1.json")
(( refused * 10 <= total )) || fail "with the ZooKeeper leader killed, $refused of $total writes refused"
[[ $other == "[]" ]] || fail "with the ZooKeeper leader killed, writes answered $other (not 201 or 503)"
sleep 1
present=$(all_present "$D/w1.json" s3) || fail "after the leader's kill: $present"
echo "ok   kill -9 of the ZooKeeper leader (member $leader) during $total writes through two servers: $refused refused with 503, $present"
zk_start "$leader"; zk_serving "$leader" || fail "ZooKeeper member $leader did not rejoin"

# kill -9 of a server during writes through it and another: every write
# acknowledged by either is there (the dead one's in-flight ones get no
# answer); the server comes back.
python3 "$WRITER" 100 "${REST[s2]}" "${REST[s3]}" "${REST[s2]}" "${REST[s3]}" >"$D/w2.json" &
wp=$!
sleep 1
kill -9 "${SPID[s2]}"; wait "${SPID[s2]}" 2>/dev/null || true
wait $wp || fail "the writer failed"
present=$(all_present "$D/w2.json" s3) || fail "after a server's kill: $present"
echo "ok   kill -9 of a server during concurrent writes: $present"
start s2

# With the ensemble answering, reads carry no staleness warning.
grep -qi '^warning:' <<<"$(curl -sf -D - -o /dev/null "${REST[s3]}/bridges/$B")" && fail "a read warns of staleness with ZooKeeper up"

# One member down: the other two are a quorum, and writes go on.
zk_kill 1 TERM
code=$(curl -s -o /dev/null -w '%{http_code}' -m 30 -X POST -H 'Content-Type: application/vnd.org.midonet.Bridge-v4+json' \
    -d '{"name":"quorum","tenantId":"t1"}' "${REST[s3]}/bridges")
[[ $code == 201 ]] || fail "a write with two of three members up: HTTP $code"
n=0
for _ in $(seq 100); do
    n=$(curl -sf "${REST[s2]}/bridges" | json 'sum(b["name"] == "quorum" for b in d)') && [[ $n == 1 ]] && break
    sleep 0.05
done
[[ $n == 1 ]] || fail "s2 does not serve what s3 wrote with one member down"
echo "ok   with one of three ZooKeeper members down, writes through one server reach the other"

# Two members down, no quorum: a write fails with 503 and a message within
# 15 s; reads go on from the mirror.
zk_kill 2 TERM
t0=$(date +%s)
out=$(curl -s -m 30 -w '\n%{http_code}' -X POST -H 'Content-Type: application/vnd.org.midonet.Bridge-v4+json' \
    -d '{"name":"late","tenantId":"t1"}' "${REST[s3]}/bridges")
code=${out##*$'\n'}; dt=$(( $(date +%s) - t0 ))
[[ $code == 503 && $dt -le 15 ]] || fail "write without a quorum: HTTP $code after ${dt}s: ${out%$'\n'*}"
grep -qi zookeeper <<<"$out" || fail "the 503 does not say what is unavailable: $out"
curl -sf "${REST[s3]}/bridges/$B" >/dev/null || fail "reads stop without a quorum"
# Reads go on, and say they may be stale (REST and Neutron alike).
warn=""
for _ in $(seq 100); do
    warn=$(curl -sf -D - -o /dev/null "${REST[s3]}/bridges/$B" | tr -d '\r' | grep -i '^warning:') && break
    sleep 0.1
done
[[ $warn == *110*stale* ]] || fail "reads without a quorum do not say they may be stale ('$warn')"
grep -qi '^warning: 110' <<<"$(curl -sf -D - -o /dev/null "${NEUTRON[s3]}/networks/$N")" || fail "Neutron reads without a quorum do not warn"
echo "ok   without a ZooKeeper quorum a write gets HTTP 503 in ${dt}s ($(head -1 <<<"$out" | cut -c1-100)); reads go on, marked '${warn#*: }'"

# The quorum back: writes succeed again within 30 s.
zk_start 1; zk_start 2
t0=$(date +%s); code=""
while (( $(date +%s) - t0 < 30 )); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST -H 'Content-Type: application/vnd.org.midonet.Bridge-v4+json' \
        -d '{"name":"back","tenantId":"t1"}' "${REST[s3]}/bridges") && [[ $code == 201 ]] && break
    sleep 0.5
done
[[ $code == 201 ]] || fail "30 s after the quorum came back, a write still gets HTTP $code"
echo "ok   with the quorum back, a write succeeds after $(( $(date +%s) - t0 )) s"

# `midonet nsdb export` of the live ensemble, imported into an embedded
# store: a server on it serves the same cloud.
"$BIN" nsdb --store zookeeper --zookeeper "$ZK_CONNECT/cloud" export "$D/cloud.jsonl" 2>"$D/export.log" || fail "export: $(cat "$D/export.log")"
"$BIN" nsdb --data-dir "$D/moved" import "$D/cloud.jsonl" 2>"$D/import.log" || fail "import: $(cat "$D/import.log")"
"$BIN" nsdb --data-dir "$D/moved" import "$D/cloud.jsonl" 2>"$D/again.log" && fail "a second import into the same store was taken"
grep -q "not empty" "$D/again.log" || fail "a second import's refusal does not say why: $(cat "$D/again.log")"
r=$(port); n=$(port); t=$(port)
"$BIN" server --data-dir "$D/moved" --listen 127.0.0.1:$r --neutron-listen 127.0.0.1:$n --topology-listen 127.0.0.1:$t >>"$D/moved.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$r/midonet-api/system_state" >/dev/null && break; sleep 0.1; done
[[ $(curl -sf "http://127.0.0.1:$r/midonet-api/bridges/$B" | json 'd["name"]') == renamed ]] || fail "the embedded copy lacks the bridge"
[[ $(curl -sf "http://127.0.0.1:$n/v2.0/networks/$N" | json 'd["network"]["name"]') == net-zk ]] || fail "the embedded copy lacks the network"
REST[moved]=http://127.0.0.1:$r/midonet-api
present=$(all_present "$D/w1.json" moved) || fail "the embedded copy: $present"
echo "ok   the ensemble exported ($(cat "$D/export.log")) and imported into an embedded store serves the same cloud"
