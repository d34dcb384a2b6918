#!/usr/bin/env bash
# The NAT benchmark: new SNAT'd TCP connections per second and memory per
# tracked connection, for our agent and for the Linux kernel (nftables
# masquerade), in the same run, on the same three namespaces:
#   client (10.0.0.2) -- gateway -- server (203.0.113.9)
# Kernel: the gateway namespace routes and masquerades (nf_conntrack + nf_nat).
# Ours: the gateway namespace runs `midonet server` (in-memory store, loopback)
# and `midonet agent` (one worker); a virtual router with an exterior port on
# each veth SNATs the client to 198.51.100.1 (ports 1024-65535, leased in
# blocks). The client is `connrate` (crates/loadgen): COUNT connections over
# THREADS threads, each connect, read one byte, close with RST.
#   bench/nat.sh   (root; NAT_COUNT=20000 NAT_THREADS=8 NAT_TRACK=125000)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/nat.sh: needs root (network namespaces)" >&2; exit 1; }
for c in ip nft curl python3; do command -v $c >/dev/null || { echo "bench/nat.sh: missing $c" >&2; exit 1; }; done
COUNT=${NAT_COUNT:-20000}; THREADS=${NAT_THREADS:-8}; TRACK=${NAT_TRACK:-125000}
cargo build --release -q -p midonet --bin midonet -p loadgen --bin connrate
BIN=$PWD/target/release/midonet; CONNRATE=$PWD/target/release/connrate
P=mnnat; STATE=/tmp/midonet-nat-bench
ns() { echo "$P-$1"; }
nsx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
PIDS=()
down() {
    local p n
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    PIDS=()
    for n in c gw s; do ip netns del "$(ns $n)" 2>/dev/null || true; done
}
trap down EXIT

up() {
    local n
    for n in c gw s; do ip netns add "$(ns $n)"; nsx $n ip link set lo up; done
    ip link add eth0 netns "$(ns c)" type veth peer name vc netns "$(ns gw)"
    ip link add eth0 netns "$(ns s)" type veth peer name vs netns "$(ns gw)"
    # Kernel-default offloads on every veth, for the kernel and for ours.
    for n in c s; do nsx $n ip link set eth0 up; done
    for n in vc vs; do nsx gw ip link set $n up; done
    nsx c ip addr add 10.0.0.2/24 dev eth0; nsx c ip route add default via 10.0.0.1
    nsx c sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
    nsx s ip addr add 203.0.113.9/24 dev eth0; nsx s ip route add 198.51.100.0/24 via 203.0.113.1
    # Started without a shell function in between: $! is the process itself.
    local port
    for port in 9000 9001 9002 9003 9004 9005; do
        ip netns exec "$(ns s)" "$CONNRATE" serve 0.0.0.0:$port 2 </dev/null >/dev/null 2>&1 & PIDS+=($!)
    done
}

# fill: NAT_TRACK more connections, a fifth to each of five server ports
# (connect() reuses client ports per destination, so not every connection is
# a distinct one: the tracked count is what the tables hold at the end).
fill() {
    local port r
    for port in 9001 9002 9003 9004 9005; do
        r=$(nsx c "$CONNRATE" connect 203.0.113.9:$port $((TRACK / 5)) "$THREADS")
        [[ $(field failed "$r") == 0 ]] || echo "  note: filling port $port: $r" >&2
    done
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

kernel() {
    up
    nsx gw sysctl -qw net.ipv4.ip_forward=1
    nsx gw ip addr add 10.0.0.1/24 dev vc; nsx gw ip addr add 203.0.113.1/24 dev vs
    nsx gw nft -f - <<'NFT'
table ip nat {
    chain post { type nat hook postrouting priority 100; oifname "vs" masquerade; }
}
NFT
    nsx gw sysctl -qw net.netfilter.nf_conntrack_max=$((TRACK * 3)) 2>/dev/null || true
    nsx c "$CONNRATE" connect 203.0.113.9:9000 200 2 >/dev/null   # warm-up
    K_RATE=$(nsx c "$CONNRATE" connect 203.0.113.9:9000 "$COUNT" "$THREADS")
    fill
    K_TRACKED=$(nsx gw cat /proc/sys/net/netfilter/nf_conntrack_count)
    # The kernel's cost per tracked connection: one nf_conntrack object
    # (its NAT data lives in the object's extension area).
    K_OBJ=$(awk '$1 == "nf_conntrack" {print $4}' /proc/slabinfo 2>/dev/null || true)
    down
}

ours() {
    rm -rf "$STATE"; mkdir -p "$STATE"
    up
    ip netns exec "$(ns gw)" "$BIN" server --store memory --listen 127.0.0.1:8181 --topology-listen 127.0.0.1:8088 \
        --data-dir "$STATE/server" </dev/null >"$STATE/server.log" 2>&1 & PIDS+=($!)
    local i api=http://127.0.0.1:8181/midonet-api
    for i in $(seq 100); do nsx gw curl -sf "$api/system_state" >/dev/null 2>&1 && break; sleep 0.1; done
    ip netns exec "$(ns gw)" "$BIN" agent --cluster http://127.0.0.1:8088 --host-name gw --state-dir "$STATE/agent" --workers 1 \
        </dev/null >"$STATE/agent.log" 2>&1 & PIDS+=($!); local agent=$!
    for i in $(seq 100); do [[ -s $STATE/agent/host_id ]] && break; sleep 0.05; done
    local h; h=$(cat "$STATE/agent/host_id")
    mido() { MIDO_API_URL=$api nsx gw "$BIN" "$@"; }
    local r a u rin rout
    r=$(mido router create name=gw)
    a=$(mido port create --router "$r" port-address=10.0.0.1 network-address=10.0.0.0 network-length=24)
    u=$(mido port create --router "$r" port-address=203.0.113.1 network-address=203.0.113.0 network-length=24)
    mido route create --router "$r" type=Normal src-network-addr=0.0.0.0 src-network-length=0 \
        dst-network-addr=10.0.0.0 dst-network-length=24 next-hop-port="$a" weight=100 >/dev/null
    mido route create --router "$r" type=Normal src-network-addr=0.0.0.0 src-network-length=0 \
        dst-network-addr=203.0.113.0 dst-network-length=24 next-hop-port="$u" weight=100 >/dev/null
    rin=$(mido chain create name=in); rout=$(mido chain create name=out)
    mido rule create --chain "$rout" type=snat flow-action=accept out-ports="[\"$u\"]" \
        'nat-targets=[{"addressFrom":"198.51.100.1","addressTo":"198.51.100.1","portFrom":1024,"portTo":65535}]' >/dev/null
    mido rule create --chain "$rin" type=rev_snat flow-action=accept in-ports="[\"$u\"]" >/dev/null
    mido router update "$r" inbound-filter-id="$rin" outbound-filter-id="$rout" >/dev/null
    local z; z=$(mido tunnel-zone create name=tz type=vxlan)
    mido tunnel-zone add-member "$z" "$h" 127.0.0.1   # one host: no peers to tunnel to
    mido port bind "$a" "$h" vc; mido port bind "$u" "$h" vs
    for i in $(seq 100); do
        [[ $(mido port list -o json | python3 -c 'import json,sys; print(sum(p["active"] for p in json.load(sys.stdin)))') == 2 ]] && break
        sleep 0.05
    done
    nsx c "$CONNRATE" connect 203.0.113.9:9000 200 2 >/dev/null   # warm-up (ARP, first blocks)
    sleep 1.2
    local rss0; rss0=$(awk '/VmRSS/ {print $2}' /proc/$agent/status)
    local cpu0; cpu0=$(awk '{print $14 + $15}' /proc/$agent/stat)
    if [[ -n ${NAT_PERF:-} ]]; then perf record -q -p "$agent" -o "$NAT_PERF" -- sleep 2 >/dev/null 2>&1 & fi
    O_RATE=$(nsx c "$CONNRATE" connect 203.0.113.9:9000 "$COUNT" "$THREADS")
    O_CPU=$(( $(awk '{print $14 + $15}' /proc/$agent/stat) - cpu0 ))   # clock ticks (1/100 s)
    fill
    sleep 1.5   # the next stats report
    local rss1; rss1=$(awk '/VmRSS/ {print $2}' /proc/$agent/status)
    O_STATS=$(cat "$STATE/agent/stats.json")
    O_TRACKED=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["nat"] // 2)' "$O_STATS")
    O_FLOWS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["flows"])' "$O_STATS")
    O_STATE_B=$(python3 -c 'import json,sys; s = json.loads(sys.argv[1]); print(s["state_bytes"] // (s["nat"] // 2))' "$O_STATS")
    O_FLOW_B=$(python3 -c 'import json,sys; s = json.loads(sys.argv[1]); print(s["flow_bytes"] // max(s["flows"], 1))' "$O_STATS")
    O_BYTES=$(( (rss1 - rss0) * 1024 / O_TRACKED ))
    down
}

kernel
ours
kr=$(field rate "$K_RATE"); or=$(field rate "$O_RATE")
echo "new SNAT'd TCP connections ($COUNT, $THREADS client threads):"
echo "  kernel (nftables masquerade): $K_RATE"
echo "  midonet-rs agent:             $O_RATE"
python3 -c 'import sys; k, o = float(sys.argv[1]), float(sys.argv[2]); print("  ratio (ours/kernel): %.2f" % (o / k))' "$kr" "$or"
echo "  agent CPU during our run: $O_CPU ticks of 10 ms ($(field secs "$O_RATE") s wall)"
echo "memory per tracked connection (after $TRACK more connections):"
echo "  kernel: ${K_OBJ:-n/a} bytes per nf_conntrack object ($K_TRACKED tracked)"
echo "  midonet-rs agent: $O_STATE_B bytes of connection state (conntrack + NAT tables) per connection ($O_TRACKED tracked)"
echo "                    plus $O_FLOW_B bytes per installed flow ($O_FLOWS flows: two per connection until they expire)"
echo "                    = $O_BYTES bytes of agent RSS growth per connection, flows included"
python3 -c 'import sys; print("  ratio (agent RSS per connection / kernel object): %.2f; target: <= 300 bytes" % (int(sys.argv[1]) / int(sys.argv[2])))' "$O_BYTES" "${K_OBJ:-0}" 2>/dev/null || true
[[ $(field failed "$O_RATE") == 0 ]] || echo "  note: $(field failed "$O_RATE") of our connections failed"
