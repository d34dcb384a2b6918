#!/usr/bin/env bash
# The NSDB on a 3-node ZooKeeper ensemble against the embedded store, in one
# run, on release builds:
#   - Neutron port creates/s (bench/neutron_ports.py, 1,000 ports): one
#     server with 1, 4, 8, 16 and 32 client threads (a Neutron server's
#     workers, or many tenants' scripts, at once); two servers with 4 each
#     (with 16 each, ZooKeeper sessions expire on this 2-core VM: see
#     BENCHMARKS.md);
#   - a REST change to its effect on a VM's packets (tests/scale/
#     change_latency.py: a drop rule on the VM's port added and removed 20
#     times while the VM pings its router every 10 ms; its agent talks to
#     server A), the change made through A, and through B (a server the
#     agent does not talk to).
# ZooKeeper is Debian's package (3 members on loopback in the operator's
# namespace, tickTime=500, fsync on). Everything is stopped by PID.
#   sudo bench/zookeeper.sh          (ZK_COMPACT_MIB=N: compact the log every N MiB, default 16)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/zookeeper.sh: needs root (network namespaces)" >&2; exit 1; }
cargo build --release -q -p midonet --bin midonet
export P=mnzkb BIN=$PWD/target/release/midonet
source tests/e2e/lib.sh
trap 'e2e_down' EXIT
json() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]);
for k in sys.argv[2].split("."): d = d[k]
print(d)' "$1" "$2"; }

ZK_DIR=$E2E_STATE ZK_HOST=$CTL_IP ZK_BASE_PORT=2180 ZK_EXEC="ip netns exec $(ns ctl)"
source tests/zookeeper/ensemble.sh
server() { # NAME REST TOPOLOGY NEUTRON STORE-ARGS...
    local name=$1 r=$2 t=$3 n=$4; shift 4
    ip netns exec "$(ns ctl)" "$BIN" server --listen $CTL_IP:$r --topology-listen $CTL_IP:$t --neutron-listen $CTL_IP:$n \
        --data-dir "$E2E_STATE/$name" "$@" >>"$E2E_STATE/server-$name.log" 2>&1 &
    echo $! >"$E2E_STATE/server-$name.pid"
    for _ in $(seq 200); do nsx ctl curl -sf "http://$CTL_IP:$r/midonet-api/system_state" >/dev/null && return 0; sleep 0.1; done
    echo "server $name did not start" >&2; exit 1
}
creates() { # NEUTRON-PORT THREADS: ports/s
    json "$(nsx ctl python3 bench/neutron_ports.py "http://$CTL_IP:$1" 1000 "$2")" creates_per_s
}
latency() { # API-PORT: "p50 p99" of 40 rule changes through that server
    local out
    out=$(nsx ctl python3 tests/scale/change_latency.py "http://$CTL_IP:$1/midonet-api" rule "$CHAIN" "$E2E_STATE/ping.txt" 20)
    echo "$(json "$out" p50_ms) $(json "$out" p99_ms)"
}
vm_setup() { # the agent on A, a VM on the first tenant's bridge pinging its router
    start_agent h1 1
    H1=$(host_id h1)
    for _ in $(seq 100); do grep -q "$H1" <<<"$(mido host list -o json)" && break; sleep 0.1; done
    local out b z
    z=$(mido tunnel-zone create name=tz type=vxlan)
    mido tunnel-zone add-member "$z" "$H1" 10.99.0.1 >/dev/null
    out=$(nsx ctl python3 tests/scale/tenants.py "$API" 1)
    b=$(json "$out" first.bridge)
    vm vm1 h1 02:00:00:00:00:11; nsx vm1 ip addr add 10.0.0.5/24 dev eth0
    CHAIN=$(mido chain create name=vm1-in)
    bind_timed vm1 "$b" "$H1" "$CHAIN" 600 >/dev/null
    nsx vm1 ping -D -n -i 0.01 -W 1 10.0.0.1 >"$E2E_STATE/ping.txt" 2>&1 &
    echo $! >"$E2E_STATE/ping.pid"
    sleep 0.5
}

declare -A R
for store in embedded zookeeper; do
    e2e_down; e2e_underlay
    if [[ $store == zookeeper ]]; then
        zk_ensemble
        zkargs=(--store zookeeper --zookeeper "$ZK_CONNECT/bench" --zookeeper-compact-mib "${ZK_COMPACT_MIB:-16}")
        server a 8181 8088 9696 "${zkargs[@]}"
        server b 8182 8089 9697 "${zkargs[@]}"
    else
        server a 8181 8088 9696
    fi
    for t in 1 4 8 16 32; do R[$store,c$t]=$(creates 9696 $t); done
    if [[ $store == zookeeper ]]; then
        nsx ctl python3 bench/neutron_ports.py "http://$CTL_IP:9696" 1000 4 >"$E2E_STATE/two-a.json" 2>&1 &
        pa=$!
        nsx ctl python3 bench/neutron_ports.py "http://$CTL_IP:9697" 1000 4 >"$E2E_STATE/two-b.json" 2>&1 &
        pb=$!
        wait $pa && wait $pb || { for f in "$E2E_STATE"/two-*.json; do tail -n 5 "$f" >&2; done; exit 1; }
        R[$store,two]=$(python3 -c 'import json,sys; print(round(sum(json.load(open(f))["creates_per_s"] for f in sys.argv[1:])))' "$E2E_STATE/two-a.json" "$E2E_STATE/two-b.json")
    fi
    vm_setup
    R[$store,lat_a]=$(latency 8181)
    [[ $store == zookeeper ]] && R[$store,lat_b]=$(latency 8182)
    stop_pid "$E2E_STATE/ping.pid"
done

echo
echo "| | embedded | ZooKeeper (3 members) | ratio |"
echo "|---|---:|---:|---:|"
for t in 1 4 8 16 32; do
    printf '| port creates/s, one server, %d client thread(s) | %s | %s | %s |\n' $t "${R[embedded,c$t]}" "${R[zookeeper,c$t]}" \
        "$(python3 -c 'import sys; print(f"{float(sys.argv[2]) / float(sys.argv[1]):.2f}")' "${R[embedded,c$t]}" "${R[zookeeper,c$t]}")"
done
printf '| port creates/s, two servers, 4 threads each | | %s | |\n' "${R[zookeeper,two]}"
read -r e50 e99 <<<"${R[embedded,lat_a]}"; read -r a50 a99 <<<"${R[zookeeper,lat_a]}"; read -r b50 b99 <<<"${R[zookeeper,lat_b]}"
printf '| rule change to effect, p50 / p99 ms, through the agent'"'"'s server | %s / %s | %s / %s | |\n' "$e50" "$e99" "$a50" "$a99"
printf '| rule change to effect, p50 / p99 ms, through the other server | | %s / %s | |\n' "$b50" "$b99"
