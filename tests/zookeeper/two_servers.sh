#!/usr/bin/env bash
# Two `midonet server`s on one real ZooKeeper ensemble of three (Debian's
# package, started here by PID on loopback): what one writes, through the
# MidoNet REST API and the Neutron API, the other serves; a server restarted
# on the ensemble has it all; with one ZooKeeper member down, writes go on;
# with two down (no quorum), a write fails with HTTP 503 within 15 s and
# reads go on. Everything is stopped by PID on exit.
set -euo pipefail
BIN=${MIDONET_BIN:-$(dirname "$0")/../../target/debug/midonet}
JAR=/usr/share/java/zookeeper.jar
[[ -f $JAR ]] || { echo "zookeeper: $JAR missing (apt-get install zookeeper)" >&2; exit 1; }
D=$(mktemp -d /tmp/midonet-zk.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT
fail() { echo "FAIL $*"; for f in "$D"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A ZK_PORT
ZK_PIDS=(); ZK_CONNECT=""; SERVERS=""
for i in 1 2 3; do
    cp_=$(port); q=$(port); e=$(port)
    ZK_CONNECT+="${ZK_CONNECT:+,}127.0.0.1:$cp_"; ZK_PORT[$i]=$cp_
    SERVERS+="server.$i=127.0.0.1:$q:$e"$'\n'
done
for i in 1 2 3; do
    mkdir -p "$D/zk$i"; echo $i >"$D/zk$i/myid"
    printf 'tickTime=500\ninitLimit=20\nsyncLimit=5\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n%s' \
        "$D/zk$i" "${ZK_PORT[$i]}" "$SERVERS" >"$D/zoo$i.cfg"
    java -Xmx256m -cp "$JAR" -Dzookeeper.log.dir="$D" org.apache.zookeeper.server.quorum.QuorumPeerMain "$D/zoo$i.cfg" >"$D/zk$i.log" 2>&1 &
    ZK_PIDS[$i]=$!; PIDS+=($!)
done
# Up when a member answers as leader or follower (the ensemble has a quorum).
zk_mode() { python3 - "$1" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1); s.sendall(b"srvr")
    data = b""
    while chunk := s.recv(4096): data += chunk
    print(next((l.split(":")[1].strip() for l in data.decode().splitlines() if l.startswith("Mode")), "down"))
except OSError:
    print("down")
PY
}
for _ in $(seq 300); do
    [[ $(zk_mode "${ZK_PORT[1]}") =~ leader|follower ]] && break
    sleep 0.1
done
[[ $(zk_mode "${ZK_PORT[1]}") =~ leader|follower ]] || fail "the ZooKeeper ensemble did not form"

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

# With the ensemble answering, reads carry no staleness warning.
grep -qi '^warning:' <<<"$(curl -sf -D - -o /dev/null "${REST[s3]}/bridges/$B")" && fail "a read warns of staleness with ZooKeeper up"

# One member down: the other two are a quorum, and writes go on.
kill "${ZK_PIDS[1]}"; wait "${ZK_PIDS[1]}" 2>/dev/null || true
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
kill "${ZK_PIDS[2]}"; wait "${ZK_PIDS[2]}" 2>/dev/null || true
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
