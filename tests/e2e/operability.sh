#!/usr/bin/env bash
# What an operator reads (issue 15): the agents' and the server's
# Prometheus metrics, checked by `promtool check metrics`, counters that
# move with real traffic (a VM port's rx, a rule's drops), `midonet flows`
# `midonet trace` (what-if) through the agent's socket, and a live trace
# request (`midonet trace-request`) capturing a VM's pings. Needs root and promtool (Debian
# `prometheus`). Prints one line per check; non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
export P=${P:-mnops}
export BIN=${MIDONET_BIN:-$PWD/target/debug/midonet}
export E2E_SECURE=${E2E_SECURE:-1}
export E2E_STATE=/tmp/midonet-e2e.$P
source tests/e2e/lib.sh

if [[ $(id -u) != 0 ]]; then echo "operability e2e: needs root"; echo "0 passed, 1 failed"; exit 1; fi
for c in ip ping python3 curl promtool; do
    command -v "$c" >/dev/null || { echo "operability e2e: missing $c" >&2; echo "0 passed, 1 failed"; exit 1; }
done

trap '[[ ${E2E_KEEP:-0} == 1 ]] || e2e_down' EXIT

# ---------------------------------------------------------------- testbed --
# vm1 and vm3 on h1, vm2 on h2, one bridge; vm1's port drops its ICMP to vm3.
e2e_down
e2e_underlay
start_server || { echo "0 passed, 1 failed"; exit 1; }
export AGENT_EXTRA="--metrics-listen 127.0.0.1:9101"
start_agent h1 1; start_agent h2 1
H1=$(host_id h1); H2=$(host_id h2)
tunnel_zone h1 h2
B=$(mido bridge create name=net)
vm vm1 h1 02:00:00:00:00:01; nsx vm1 ip addr add 10.0.0.1/24 dev eth0
vm vm2 h2 02:00:00:00:00:02; nsx vm2 ip addr add 10.0.0.2/24 dev eth0
vm vm3 h1 02:00:00:00:00:03; nsx vm3 ip addr add 10.0.0.3/24 dev eth0
C=$(mido chain create name=vm1-in)
mido rule create --chain "$C" type=accept nw-proto=6 >/dev/null
mido rule create --chain "$C" type=accept nw-proto=17 >/dev/null
mido rule create --chain "$C" type=drop nw-proto=1 nw-dst-address=10.0.0.3 nw-dst-length=32 >/dev/null
P1=$(mido port create --bridge "$B" inbound-filter-id="$C"); mido port bind "$P1" "$H1" vm1 >/dev/null
P2=$(mido port create --bridge "$B"); mido port bind "$P2" "$H2" vm2 >/dev/null
P3=$(mido port create --bridge "$B"); mido port bind "$P3" "$H1" vm3 >/dev/null
for i in $(seq 50); do nsx vm1 ping -n -c 1 -W 0.2 10.0.0.2 >/dev/null 2>&1 && break; done

agent_metrics() { nsx "$1" curl -sf http://127.0.0.1:9101/metrics; }
server_metrics() { ccurl -sf "$SCHEME://$CTL_IP:8181/metrics"; }
# metric NAME LABELS HOST: one sample's value from h1's or h2's agent (0 if absent).
metric() {
    agent_metrics "$3" | python3 -c '
import sys
name, labels = sys.argv[1], sys.argv[2]
want = name + ("{" + labels + "}" if labels else "")
print(next((l.split()[-1] for l in sys.stdin if l.split(" ")[0] == want), "0"))' "$1" "$2"
}
# Counters move at the workers' next report (once a second).
settle() { sleep 1.5; }

# ----------------------------------------------------------------- checks --
t_promtool() {
    local why=""
    settle
    agent_metrics h1 >"$E2E_STATE/agent.prom" || why+="h1's agent serves no /metrics; "
    server_metrics >"$E2E_STATE/server.prom" || why+="the server serves no /metrics; "
    promtool check metrics <"$E2E_STATE/agent.prom" || why+="promtool refuses the agent's; "
    promtool check metrics <"$E2E_STATE/server.prom" || why+="promtool refuses the server's; "
    grep -q '^midonet_agent_simulation_seconds_bucket' "$E2E_STATE/agent.prom" || why+="no simulation histogram; "
    grep -q '^midonet_server_rest_requests_total{method="POST",route="bridges",status="201"}' "$E2E_STATE/server.prom" || why+="no REST request counter; "
    [[ $(grep '^midonet_server_agent_sessions ' "$E2E_STATE/server.prom" | awk '{print $2}') == 2 ]] || why+="agent sessions not 2; "
    wc -l "$E2E_STATE/agent.prom" "$E2E_STATE/server.prom"
    echo "${why:-both endpoints pass promtool}"
    [[ -z $why ]]
}
t_rx() {
    local before after
    before=$(metric midonet_agent_port_rx_packets_total "port=\"$P1\"" h1)
    nsx vm1 ping -n -c 100 -i 0.01 -W 1 -q 10.0.0.2 || { echo "pings failed"; return 1; }
    settle
    after=$(metric midonet_agent_port_rx_packets_total "port=\"$P1\"" h1)
    echo "vm1's port rx packets: $before -> $after"
    (( after - before >= 100 ))
}
t_rule_drops() {
    local before after
    before=$(metric midonet_agent_drops_total 'reason="rule"' h1)
    # The negative check must fail for want of ping, not pass.
    command -v ping >/dev/null || return 1
    nsx vm1 ping -n -c 20 -i 0.05 -W 0.2 -q 10.0.0.3 && { echo "vm3 answered through the drop rule"; return 1; }
    settle
    after=$(metric midonet_agent_drops_total 'reason="rule"' h1)
    echo "rule drops on h1: $before -> $after"
    (( after - before >= 20 ))
}
t_flows() {
    local why=""
    # A UDP stream vm1 -> vm2: one flow, its packets counted.
    nsx vm1 python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(50):
    s.sendto(b"x" * 100, ("10.0.0.2", 9999)); time.sleep(0.01)'
    local out; out=$(MIDONET_AGENT_SOCKET=$E2E_STATE/agent-h1/agent.sock nsx h1 "$BIN" flows --port "$P1" -o json) || { echo "midonet flows failed: $out"; return 1; }
    local n; n=$(json 'max([(f["packets"] or 0) for f in d if ["nw_proto", "17"] in f["matches"]] or [0])' <<<"$out")
    echo "vm1's UDP flow: $n packets"
    (( n >= 40 )) || why+="no UDP flow of vm1 with its packets ($n); "
    # The drop flow of the rule says why.
    [[ $(json 'sum(f["drop"] == "rule" for f in d)' <<<"$out") -ge 1 ]] || why+="no drop flow marked rule; "
    MIDONET_AGENT_SOCKET=$E2E_STATE/agent-h1/agent.sock nsx h1 "$BIN" flows --port "$P1" | head -5
    local bad; bad=$(MIDONET_AGENT_SOCKET=$E2E_STATE/agent-h1/agent.sock nsx h1 "$BIN" flows --port not-a-uuid 2>&1) \
        && why+="a bad port id was accepted; "
    echo "bad port: $bad"
    echo "${why:-midonet flows shows the flows of the VM with their counters}"
    [[ -z $why ]]
}

t_trace() {
    local why="" out
    trace() { MIDONET_AGENT_SOCKET=$E2E_STATE/agent-h1/agent.sock nsx h1 "$BIN" trace --in-port "$P1" --eth-src 02:00:00:00:00:01 "$@"; }
    # vm1 -> vm3 ICMP: dropped by rule 3 of vm1-in.
    out=$(trace --eth-dst 02:00:00:00:00:03 --ip-src 10.0.0.1 --ip-dst 10.0.0.3 --proto icmp -o json) || { echo "trace failed: $out"; return 1; }
    local r; r=$(json 'next(("%s %d %s" % (s["chainName"], s["position"], s["action"])) for s in d["steps"] if s["kind"] == "rule")' <<<"$out")
    echo "vm1 -> vm3: $r; verdict $(json 'd["verdict"]' <<<"$out")"
    [[ $r == "vm1-in 3 Drop" ]] || why+="the drop is not named as rule 3 of vm1-in ($r); "
    [[ $(json 'd["verdict"]' <<<"$out") == Drop* ]] || why+="not a drop; "
    # vm1 -> vm2 UDP: out of vm2's port, on h2.
    out=$(trace --eth-dst 02:00:00:00:00:02 --ip-src 10.0.0.1 --ip-dst 10.0.0.2 --proto udp --src-port 5000 --dst-port 53 -o json) || { echo "trace failed: $out"; return 1; }
    [[ $(json '" ".join("%s@%s" % (o["port"], o["host"]) for o in d["outputs"])' <<<"$out") == "$P2@$H2" ]] \
        || why+="egress is not vm2's port on h2: $(json 'd["outputs"]' <<<"$out"); "
    [[ $(json 'd["stateWrites"]' <<<"$out") -ge 0 ]] || why+="no state count; "
    trace --eth-dst 02:00:00:00:00:02 --ip-src 10.0.0.1 --ip-dst 10.0.0.2 --proto udp --src-port 5000 --dst-port 53
    # Bad input: a clear message and a non-zero exit.
    local bad; bad=$(trace --ip-src 10.0.0.1 --ip-dst 10.0.0.2 --proto sctp 2>&1) && why+="proto sctp accepted; "
    echo "bad proto: $bad"
    [[ $bad == *proto* ]] || why+="the error does not name proto; "
    echo "${why:-traces name the rule, the egress port and the host}"
    [[ -z $why ]]
}

t_live_trace() {
    local why="" t out n
    t=$(mido trace-request create name=vm1-pings device-type=PORT device-id="$P1" \
        condition='{"nwProto": 1, "nwDstAddress": "10.0.0.2", "nwDstLength": 32}' limit=10 enabled=true) \
        || { echo "trace-request create failed: $t"; return 1; }
    # The agent has it once its flows of vm1's port are gone: give it a moment.
    sleep 1
    nsx vm1 ping -n -c 20 -i 0.05 -W 1 -q 10.0.0.2 || why+="pings lost while traced; "
    settle
    out=$(mido trace-request results "$t" -o json) || { echo "results failed: $out"; return 1; }
    n=$(json 'len(d)' <<<"$out")
    echo "$n pings traced (limit 10)"
    (( n == 10 )) || why+="$n records, not the limit of 10; "
    [[ $(json 'all(r["hostId"] == "'"$H1"'" and r["inPort"] == "'"$P1"'" and r["verdict"] == "Forward" for r in d)' <<<"$out") == True ]] \
        || why+="a record is not vm1's forwarded ping on h1; "
    [[ $(json 'all("nw_proto=1" in r["packet"] and "nw_dst=10.0.0.2" in r["packet"] for r in d)' <<<"$out") == True ]] \
        || why+="a record is not a ping to vm2; "
    [[ $(json 'all(["%s@%s" % (o["port"], o["host"]) for o in r["outputs"]] == ["'"$P2@$H2"'"] for r in d)' <<<"$out") == True ]] \
        || why+="a record does not leave by vm2's port on h2; "
    # The same walk as the what-if trace of such a ping.
    local live whatif
    live=$(json '[(s["kind"], s["device"]) for s in d[0]["steps"]]' <<<"$out")
    whatif=$(MIDONET_AGENT_SOCKET=$E2E_STATE/agent-h1/agent.sock nsx h1 "$BIN" trace --in-port "$P1" \
        --eth-src 02:00:00:00:00:01 --eth-dst 02:00:00:00:00:02 --ip-src 10.0.0.1 --ip-dst 10.0.0.2 --proto icmp -o json \
        | json '[(s["kind"], s["device"]) for s in d["steps"]]')
    echo "live walk: $live"
    [[ $(json 'next(s["deviceName"] for s in d[0]["steps"] if s["kind"] == "bridge")' <<<"$out") == net ]] \
        || why+="the bridge step does not name the bridge net; "
    [[ -n $live && $live == "$whatif" ]] || why+="the live walk is not the what-if one ($whatif); "
    mido trace-request results "$t" | head -12
    # Past the limit, the flow is cached again: the pings still go.
    nsx vm1 ping -n -c 5 -i 0.05 -W 1 -q 10.0.0.2 >/dev/null || why+="pings lost after the limit; "
    settle
    [[ $(mido trace-request results "$t" -o json | json 'len(d)') == 10 ]] || why+="traced past the limit; "
    mido trace-request delete "$t" || why+="delete failed; "
    local gone; gone=$(mido trace-request results "$t" 2>&1) && why+="results of a deleted request; "
    echo "after delete: $gone"
    echo "${why:-a live trace request captured the limit of the pings of vm1, each with the what-if walk}"
    [[ -z $why ]]
}

check "promtool check metrics accepts the agent's and the server's /metrics" t_promtool
check "100 pings move vm1's port rx counter by at least 100" t_rx
check "20 pings dropped by a rule move the rule-drop counter by at least 20" t_rule_drops
check "midonet flows shows the VM's flows with match, actions and counters" t_flows
check "midonet trace: a drop names rule 3 of its chain; a forward names the egress port and host" t_trace
check "a live trace request captures 10 of vm1's pings (its limit), each with the what-if walk" t_live_trace

tally "operability e2e"
