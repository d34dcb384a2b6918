#!/usr/bin/env bash
# A Neutron port's bind -> first ping, across hosts, against OVN's figure on
# this machine (../shared/anchors: lsp-add -> first ping reply, 30.5 ms).
# A server and two agents in namespaces (the e2e testbed); a source VM on h2
# pings every 5 ms, as the OVN anchor does, a new VM on h1 whose port is
#   create: made through Neutron (IPAM, DHCP entry, security-group chains;
#           its time as curl measures it),
#   bind:   then bound with mm-ctl through h1's agent socket (timed from
#           just before mm-ctl runs to the first reply);
# static neighbours, so ARP stays out, as in the anchor. Unanswered, that
# ping sends every 10 ms whatever its -i (iputils), in the anchor as here:
# a 1 ms ICMP probe (bench/icmp_probe.py) runs beside it and resolves what
# the 10 ms steps hide (every other repetition: each has the VMs to
# itself). Prints one line per repetition and a summary.
#   sudo bench/neutron_bind.sh        (REPS=40 by default: 20 of each)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/neutron_bind.sh: needs root (network namespaces)" >&2; exit 1; }
for c in ip ping python3 curl; do command -v $c >/dev/null || { echo "bench/neutron_bind.sh: needs $c" >&2; exit 1; }; done
cargo build --release -q -p midonet --bin midonet
export P=mnnbind BIN=$PWD/target/release/midonet
source tests/e2e/lib.sh
trap 'e2e_down' EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
e2e_down
e2e_underlay
start_server
start_agent h1 1; start_agent h2 1
H1=$(host_id h1); H2=$(host_id h2)
for _ in $(seq 100); do
    [[ $(mido host list -o json | python3 -c 'import json,sys; print(sum(h["alive"] for h in json.load(sys.stdin)))') == 2 ]] && break
    sleep 0.1
done
Z=$(mido tunnel-zone create name=tz type=vxlan)
mido tunnel-zone add-member "$Z" "$H1" 10.99.0.1 >/dev/null
mido tunnel-zone add-member "$Z" "$H2" 10.99.0.2 >/dev/null
N=http://$CTL_IP:9696/v2.0
neutron() { nsx ctl curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "$N/$2"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
ln -sf "$BIN" "$E2E_STATE/mm-ctl"
net=$(neutron POST networks '{"network": {"name": "bind-bench"}}' | field '["network"]["id"]')
neutron POST subnets "{\"subnet\": {\"network_id\": \"$net\", \"ip_version\": 4, \"cidr\": \"10.77.0.0/24\"}}" >/dev/null
src=$(neutron POST ports "{\"port\": {\"network_id\": \"$net\", \"mac_address\": \"02:00:00:77:00:01\", \"fixed_ips\": [{\"ip_address\": \"10.77.0.10\"}]}}" | field '["port"]["id"]')
# The new VMs go on h1, whose agent runs as configured by default (the
# testbed runs h2's on a TPACKET ring, to test that receive path).
vm src h2 02:00:00:77:00:01; nsx src ip addr add 10.77.0.10/24 dev eth0
mido port bind "$src" "$H2" src
sleep 1
binds=(); creates=(); probes=()
for i in $(seq "${REPS:-40}"); do
    ip=10.77.0.$((100 + i)); mac=$(printf '02:00:00:77:01:%02x' "$i")
    vm "d$i" h1 "$mac"; nsx "d$i" ip addr add "$ip/24" dev eth0
    nsx "d$i" ip neigh replace 10.77.0.10 lladdr 02:00:00:77:00:01 dev eth0 nud permanent
    nsx src ip neigh replace "$ip" lladdr "$mac" dev eth0 nud permanent
    sleep 0.3
    # The create's own time, as curl saw it (the harness's process starts
    # stay out of it).
    post_s=$(nsx ctl curl -sf -o "$E2E_STATE/port.json" -w '%{time_total}' -X POST -H 'Content-Type: application/json' \
        -d "{\"port\": {\"network_id\": \"$net\", \"mac_address\": \"$mac\", \"fixed_ips\": [{\"ip_address\": \"$ip\"}]}}" "$N/ports")
    pid=$(field '["port"]["id"]' <"$E2E_STATE/port.json")
    post_ms=$(python3 -c 'import sys; print(round(float(sys.argv[1]) * 1000))' "$post_s")
    if (( i % 2 == 0 )); then
        # Even repetitions: the 1 ms probe, started first; it says when it
        # is ready, so the clock starts after its own start-up.
        rm -f "$E2E_STATE/probe.ready"
        nsx src python3 bench/icmp_probe.py "$ip" "$E2E_STATE/probe.ready" 15 >"$E2E_STATE/probe.out" &
        probe=$!
        for _ in $(seq 200); do [[ -e $E2E_STATE/probe.ready ]] && break; sleep 0.01; done
        t1_ns=$(date +%s%N)
        MIDONET_AGENT_SOCKET=$E2E_STATE/agent-h1/agent.sock "$E2E_STATE/mm-ctl" --bind-port "$pid" "d$i"
        if wait $probe; then
            probe_ms=$(python3 -c 'import sys; print(round((int(sys.argv[1]) - int(sys.argv[2])) / 1e6, 1))' "$(cat "$E2E_STATE/probe.out")" "$t1_ns")
            probes+=("$probe_ms")
            echo "rep $i: bind -> first reply (1 ms probe) $probe_ms ms"
        else
            echo "rep $i: no reply within 15 s"
        fi
        continue
    fi
    # Odd repetitions: as the anchor measures OVN.
    t1=$(now_ms)
    nsx src ping -n -q -c 1 -w 15 -i 0.005 "$ip" >/dev/null 2>&1 &
    pp=$!
    MIDONET_AGENT_SOCKET=$E2E_STATE/agent-h1/agent.sock "$E2E_STATE/mm-ctl" --bind-port "$pid" "d$i"
    if wait $pp; then
        t2=$(now_ms)
        binds+=($((t2 - t1))); creates+=($((t2 - t1 + post_ms)))
        echo "rep $i: bind -> first ping $((t2 - t1)) ms, create (${post_ms} ms) + bind -> first ping $((t2 - t1 + post_ms)) ms${BIND_TRACE:+ (bind asked at $(date -u -d @$((t1 / 1000)).$(printf %03d $((t1 % 1000))) +%T.%3N))}"
    else
        echo "rep $i: no reply within 15 s"
    fi
done
python3 - "${binds[*]}" "${creates[*]}" "${probes[*]}" <<'PY'
import statistics, sys
b, c, p = ([float(x) for x in a.split()] for a in sys.argv[1:4])
ovn = 30.5  # ../shared/anchors/RESULTS.md: OVN vxlan lsp-add -> first ping (mean of 3), this machine
for name, v in (("bind -> first ping", b), ("create + bind -> first ping", c),
                ("bind -> first reply, 1 ms probe", p)):
    m = statistics.median(v)
    print("%-32s median %.1f ms, mean %.1f (min %.1f, max %.1f, %d reps); OVN %.1f ms; ratio %.2f"
          % (name, m, statistics.mean(v), min(v), max(v), len(v), ovn, m / ovn))
PY
