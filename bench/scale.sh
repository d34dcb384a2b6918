#!/usr/bin/env bash
# Topology at cloud scale, end to end: for N tenants (default 100 1000 10000)
# on a fresh release server and one agent, in namespaces of their own:
#   - the time to create them through the REST API (tests/scale/tenants.py);
#   - convergence: a VM bound last, on the first tenant's bridge (its agent
#     reaches every tenant through the provider router), until it pings its
#     router;
#   - a REST change to its effect on the VM's packets, p50/p99: a rule on the
#     VM's port, a blackhole route on its router and a port on its router,
#     each added and removed 20 times (tests/scale/change_latency.py);
#   - agent and server RSS, and their CPU per change (beyond their CPU
#     without changes).
# Prints a table, writes bench/scale.tsv and the plot bench/scale.svg.
#   sudo bench/scale.sh            (SCALE_N="100 1000" for a shorter run)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/scale.sh: needs root (network namespaces)" >&2; exit 1; }
for c in ip ping python3 curl; do command -v $c >/dev/null || { echo "bench/scale.sh: needs $c" >&2; exit 1; }; done
cargo build --release -q -p midonet --bin midonet
export P=mnscale BIN=$PWD/target/release/midonet
source tests/e2e/lib.sh
trap 'e2e_down' EXIT
cpu_ms() { # PIDFILE: user+system CPU time so far, in ms
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$(cat "$1")/stat"
}
rss_mib() { awk '/^VmRSS/{printf "%.0f", $2 / 1024}' "/proc/$(cat "$1")/status"; }
json() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]);
for k in sys.argv[2].split("."): d = d[k]
print(d)' "$1" "$2"; }

OUT=bench/scale.tsv
printf 'tenants\tobjects\tcreate_s\tcreates_per_s\tconverge_ms\trule_p50_ms\trule_p99_ms\troute_p50_ms\troute_p99_ms\tport_p50_ms\tport_p99_ms\tagent_rss_mib\tserver_rss_mib\tagent_cpu_ms_per_change\tserver_cpu_ms_per_change\n' >"$OUT"
for n in ${SCALE_N:-100 1000 10000}; do
    e2e_down
    e2e_underlay
    start_server
    start_agent h1 1
    H1=$(host_id h1)
    for _ in $(seq 100); do grep -q "$H1" <<<"$(mido host list -o json)" && break; sleep 0.1; done
    Z=$(mido tunnel-zone create name=tz type=vxlan)
    mido tunnel-zone add-member "$Z" "$H1" 10.99.0.1
    out=$(nsx ctl python3 tests/scale/tenants.py "$API" "$n" --threads 4)
    b=$(json "$out" first.bridge); r=$(json "$out" first.router)
    vm vm1 h1 02:00:00:00:00:11; nsx vm1 ip addr add 10.0.0.5/24 dev eth0
    nsx vm1 ip route add default via 10.0.0.1
    c=$(mido chain create name=vm1-in)
    conv=$(bind_timed vm1 "$b" "$H1" "$c" 600)
    # The VM pings the provider router's side of its router's uplink, through
    # its router: a rule on its port and a blackhole route on its router both
    # stop the replies.
    nsx vm1 ping -D -n -i 0.01 -W 1 100.64.0.1 >"$E2E_STATE/ping.txt" 2>&1 &
    pp=$!
    # And a second VM on the same bridge, whose port is created, bound and
    # deleted (the first VM knows its MAC already: the ARP cache stays out
    # of the figure).
    vm vm2 h1 02:00:00:00:00:12; nsx vm2 ip addr add 10.0.0.6/24 dev eth0
    nsx vm1 ip neigh replace 10.0.0.6 lladdr 02:00:00:00:00:12 dev eth0
    nsx vm2 ip neigh replace 10.0.0.5 lladdr 02:00:00:00:00:11 dev eth0
    nsx vm1 ping -D -n -i 0.01 -W 1 10.0.0.6 >"$E2E_STATE/ping-port.txt" 2>&1 &
    pq=$!
    sleep 0.5
    # CPU without changes (the pings and the idle work) for 15 s before and
    # 15 s after 120 changes (60 adds, 60 deletes, 72 s), once convergence
    # has settled: the difference per change.
    sleep 5
    a0=$(cpu_ms "$E2E_STATE/agent-h1.pid"); s0=$(cpu_ms "$E2E_STATE/server.pid"); i0=$(date +%s.%N)
    sleep 15
    a1=$(cpu_ms "$E2E_STATE/agent-h1.pid"); s1=$(cpu_ms "$E2E_STATE/server.pid"); i1=$(date +%s.%N)
    rule=$(nsx ctl python3 tests/scale/change_latency.py "$API" rule "$c" "$E2E_STATE/ping.txt" 20)
    route=$(nsx ctl python3 tests/scale/change_latency.py "$API" route "$r/100.64.0.1" "$E2E_STATE/ping.txt" 20)
    port=$(nsx ctl python3 tests/scale/change_latency.py "$API" port "$b/$H1/vm2" "$E2E_STATE/ping-port.txt" 20)
    a2=$(cpu_ms "$E2E_STATE/agent-h1.pid"); s2=$(cpu_ms "$E2E_STATE/server.pid"); i2=$(date +%s.%N)
    sleep 15
    a3=$(cpu_ms "$E2E_STATE/agent-h1.pid"); s3=$(cpu_ms "$E2E_STATE/server.pid"); i3=$(date +%s.%N)
    kill $pp $pq; wait $pp $pq 2>/dev/null || true
    per_change() { python3 -c "import sys; c0,c1,c2,c3,t0,t1,t2,t3=map(float,sys.argv[1:]); idle=((c1-c0)+(c3-c2))/((t1-t0)+(t3-t2)); print(max(0,(c2-c1)-idle*(t2-t1))/120)" "$@"; }
    printf '%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\n' "$n" $((n * 17 + 1)) "$(json "$out" seconds)" \
        "$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['requests']/d['seconds'])" "$out")" "$conv" \
        "$(json "$rule" p50_ms)" "$(json "$rule" p99_ms)" "$(json "$route" p50_ms)" "$(json "$route" p99_ms)" "$(json "$port" p50_ms)" "$(json "$port" p99_ms)" \
        "$(rss_mib "$E2E_STATE/agent-h1.pid")" "$(rss_mib "$E2E_STATE/server.pid")" \
        "$(per_change "$a0" "$a1" "$a2" "$a3" "$i0" "$i1" "$i2" "$i3")" "$(per_change "$s0" "$s1" "$s2" "$s3" "$i0" "$i1" "$i2" "$i3")" >>"$OUT"
done
column -t "$OUT"
python3 bench/scale_plot.py "$OUT" bench/scale.svg
echo "plot: bench/scale.svg"
