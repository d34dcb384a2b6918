#!/usr/bin/env bash
# midonet-cni, as a container runtime calls it (issue 14): the CNI
# environment and the network configuration on stdin, the answer on stdout.
# Pods are network namespaces the "runtime" (this script) makes empty; the
# plugin alone gives them their interface, address and route, on hosts h1
# and h2 whose agents carry the traffic (kernel-default offloads).
# First the conformance checks (VERSION, ADD, a second ADD, CHECK, DEL three
# ways, error JSON, STATUS and GC), then pods on two hosts talking, DEL
# cutting traffic and freeing the address, and 30 ADD/DEL cycles leaving
# nothing behind. Needs root. Prints one line per check; non-zero if any
# failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
export P=${P:-mncni}
export BIN=${MIDONET_BIN:-$PWD/target/debug/midonet}
CNI=${MIDONET_CNI_BIN:-$(dirname "$BIN")/midonet-cni}
export E2E_SECURE=${E2E_SECURE:-1}
export E2E_STATE=/tmp/midonet-e2e.$P
source tests/e2e/lib.sh

if [[ $(id -u) != 0 ]]; then echo "cni e2e: needs root"; echo "0 passed, 1 failed"; exit 1; fi
for c in ip ping python3 curl "$CNI"; do
    command -v "$c" >/dev/null || { echo "cni e2e: missing $c" >&2; echo "0 passed, 1 failed"; exit 1; }
done

trap '[[ ${E2E_KEEP:-0} == 1 ]] || e2e_down' EXIT

# ---------------------------------------------------------------- testbed --
source tests/e2e/cni_testbed.sh
cni_testbed || { echo "0 passed, 1 failed"; exit 1; }

# ------------------------------------------------------------ conformance --
t_version() {
    local out; out=$(cni h1 VERSION "" "" "" '{"cniVersion":"1.1.0"}') || { echo "VERSION failed: $out"; return 1; }
    echo "$out"
    [[ $(json '" ".join(d["supportedVersions"])' <<<"$out") == "1.0.0 1.1.0" ]]
}
t_add() {
    pod a
    local out why=""
    out=$(cni h1 ADD ca eth0 "$(pod_ns a)") || { echo "ADD failed: $out"; return 1; }
    echo "$out" >"$E2E_STATE/a.json"; echo "$out"
    local addr mac; addr=$(json 'd["ips"][0]["address"]' <<<"$out"); mac=$(json 'd["interfaces"][1]["mac"]' <<<"$out")
    [[ $(json 'd["interfaces"][1]["name"] + " " + d["interfaces"][1]["sandbox"]' <<<"$out") == "eth0 $(pod_ns a)" ]] || why+="interface/sandbox; "
    [[ $addr == 10.50.0.*/24 ]] || why+="address $addr; "
    [[ $(json 'd["routes"][0]["dst"] + " " + d["routes"][0]["gw"]' <<<"$out") == "0.0.0.0/0 10.50.0.1" ]] || why+="route; "
    grep -q "inet $addr " <<<"$(nsx pa ip -o addr show dev eth0)" || why+="eth0 lacks $addr; "
    [[ $(nsx pa cat /sys/class/net/eth0/address) == "$mac" ]] || why+="eth0's MAC is not $mac; "
    grep -q 'via 10.50.0.1' <<<"$(nsx pa ip route show default)" || why+="no default route; "
    local host; host=$(json 'd["interfaces"][0]["name"]' <<<"$out")
    nsx h1 ip link show "$host" >/dev/null || why+="no host end $host; "
    # The kernel's defaults: nothing switched off.
    grep -q '^tcp-segmentation-offload: on' <<<"$(nsx pa ethtool -k eth0)" || why+="TSO is off; "
    wait_for 10 '[[ $(port_binding "$(state_of ca eth0 port)") == "$H1 $host" ]]' || why+="the port is not bound to $host on h1; "
    echo "${why:-added}"
    [[ -z $why ]]
}
t_add_again() {
    local out rc
    out=$(cni h1 ADD ca eth0 "$(pod_ns a)"); rc=$?
    echo "rc=$rc $out"
    [[ $rc != 0 && $(json 'd["code"]' <<<"$out") == 101 ]]
}
t_check() {
    local prev out why=""
    prev=$(cat "$E2E_STATE/a.json")
    out=$(cni h1 CHECK ca eth0 "$(pod_ns a)" "$(conf prevResult "$prev")") || why+="CHECK of a good attachment failed: $out; "
    local addr; addr=$(json 'd["ips"][0]["address"]' <<<"$prev")
    nsx pa ip addr del "$addr" dev eth0
    out=$(cni h1 CHECK ca eth0 "$(pod_ns a)" "$(conf prevResult "$prev")") && why+="CHECK passed without the address; "
    echo "tampered: $out"
    [[ $(json 'd["code"]' <<<"$out" 2>/dev/null) == 102 ]] || why+="code is not 102; "
    nsx pa ip addr add "$addr" dev eth0; nsx pa ip route add default via 10.50.0.1 2>/dev/null
    out=$(cni h1 CHECK cz eth0 "$(pod_ns a)") && why+="CHECK of an unknown container passed; "
    [[ $(json 'd["code"]' <<<"$out" 2>/dev/null) == 3 ]] || why+="unknown container: not code 3 ($out); "
    echo "${why:-checked}"
    [[ -z $why ]]
}
t_errors() {
    local why="" out
    expect_code() { # CODE WHAT, the output in $out
        local c; c=$(json 'd["code"]' <<<"$out" 2>/dev/null)
        [[ $c == "$1" ]] && echo "$2: code $c: $(json 'd["msg"]' <<<"$out")" || why+="$2: got '$out'; "
    }
    out=$(echo '{}' | nsx h1 env -i "$CNI") && why+="no CNI_COMMAND accepted; "; expect_code 4 "no CNI_COMMAND"
    out=$(cni h1 ADD cb eth0 "$(pod_ns a)" '{"cniVersion": "1.0.0", ') && why+="broken JSON accepted; "; expect_code 6 "broken JSON"
    out=$(cni h1 ADD cb eth0 "$(pod_ns a)" "$(conf cniVersion '"0.3.1"')") && why+="0.3.1 accepted; "; expect_code 1 "cniVersion 0.3.1"
    out=$(cni h1 ADD cb eth1 "$(pod_ns a)" "$(conf network '"no-such-net"')") && why+="unknown network accepted; "; expect_code 7 "unknown network"
    out=$(cni h1 ADD cb eth1 /run/netns/no-such-ns) && why+="missing netns accepted; "; expect_code 5 "missing netns"
    out=$(cni h1 ADD "bad id!" eth1 "$(pod_ns a)") && why+="bad container id accepted; "; expect_code 4 "bad container id"
    out=$(cni h1 ADD cb eth1 "$(pod_ns a)" "$(conf api '"http://127.0.0.1:9"')") && why+="unreachable API accepted; "; expect_code 11 "API unreachable"
    # Nothing of the failed ADDs stayed.
    nsx pa ip link show eth1 >/dev/null 2>&1 && why+="eth1 left in the pod; "
    [[ ! -e $CNI_DATA/pods/cb-eth1.json ]] || why+="state of a failed ADD left; "
    echo "${why:-bad input answered with the codes of the spec}"
    [[ -z $why ]]
}
t_status() {
    local why="" out
    out=$(cni h1 STATUS "" "" "" "$(conf cniVersion '"1.1.0"')") || why+="STATUS failed: $out; "
    out=$(cni h1 STATUS "" "" "" "$(conf agentSocket '"/nonexistent.sock"')") && why+="STATUS ok without an agent; "
    [[ $(json 'd["code"]' <<<"$out" 2>/dev/null) == 50 ]] || why+="no agent: not code 50 ($out); "
    echo "${why:-ready; not ready without an agent: $(json 'd["msg"]' <<<"$out")}"
    [[ -z $why ]]
}
t_gc() {
    local why=""
    pod g; pod k
    cni h1 ADD cg eth0 "$(pod_ns g)" >/dev/null || why+="ADD g; "
    # CNI 1.0.0 too: the result in its version.
    local r; r=$(cni h1 ADD ck eth0 "$(pod_ns k)" "$(conf cniVersion '"1.0.0"')") || why+="ADD k (1.0.0); "
    [[ $(json 'd["cniVersion"]' <<<"$r") == 1.0.0 ]] || why+="a 1.0.0 ADD answered $r; "
    local pg; pg=$(state_of cg eth0 port)
    cni h1 GC "" "" "" "$(conf cni.dev/valid-attachments '[{"containerID":"ca","ifname":"eth0"},{"containerID":"ck","ifname":"eth0"}]')" \
        || why+="GC failed; "
    [[ ! -e $CNI_DATA/pods/cg-eth0.json ]] || why+="cg's state stayed; "
    port_exists "$pg" && why+="cg's port $pg stayed; "
    nsx pg ip link show eth0 >/dev/null 2>&1 && why+="cg's interface stayed; "
    [[ -e $CNI_DATA/pods/ck-eth0.json && -e $CNI_DATA/pods/ca-eth0.json ]] || why+="GC removed a listed attachment; "
    nsx pk ip link show eth0 >/dev/null || why+="ck's interface went; "
    echo "${why:-GC kept the listed attachments and removed the other}"
    [[ -z $why ]]
}
t_del_three_ways() {
    local why="" p
    # 1: with its namespace. 2: without CNI_NETNS. 3: its namespace gone.
    pod d1; pod d2; pod d3
    for p in d1 d2 d3; do cni h1 ADD "c$p" eth0 "$(pod_ns $p)" >/dev/null || why+="ADD $p; "; done
    local ports=() ips=() p2
    for p in d1 d2 d3; do ports+=("$(state_of "c$p" eth0 port)"); ips+=("$(state_of "c$p" eth0 address)"); done
    cni h1 DEL cd1 eth0 "$(pod_ns d1)" >/dev/null || why+="DEL with netns; "
    cni h1 DEL cd2 eth0 "" >/dev/null || why+="DEL without netns; "
    ip netns del "$(ns pd3)"
    cni h1 DEL cd3 eth0 "$(pod_ns d3)" >/dev/null || why+="DEL of a gone netns; "
    # And again: DEL is idempotent.
    for p in d1 d2 d3; do cni h1 DEL "c$p" eth0 "$(pod_ns $p)" >/dev/null || why+="second DEL $p; "; done
    for p2 in "${ports[@]}"; do port_exists "$p2" && why+="port $p2 stayed; "; done
    local held; held=$(dhcp_ips)
    for p2 in "${ips[@]}"; do grep -qw "$p2" <<<"$held" && why+="address $p2 still held; "; done
    for p in d1 d2 d3; do [[ -e $CNI_DATA/pods/c$p-eth0.json ]] && why+="state of $p stayed; "; done
    nsx pd1 ip link show eth0 >/dev/null 2>&1 && why+="d1's eth0 stayed; "
    [[ $(host_ends h1) == "$(state_of ca eth0 hostIfname) $(state_of ck eth0 hostIfname)" || \
       $(host_ends h1) == "$(state_of ck eth0 hostIfname) $(state_of ca eth0 hostIfname)" ]] || why+="host ends left: $(host_ends h1); "
    echo "${why:-DEL with the namespace, without it, after it went, and twice: nothing left}"
    [[ -z $why ]]
}

check "VERSION lists 1.0.0 and 1.1.0" t_version
check "ADD: the result names the veth, its address and route; the pod has them (default offloads); the port is bound through the agent" t_add
check "a second ADD of the same interface fails (code 101)" t_add_again
check "CHECK passes on the attachment, fails (102) once its address is gone, and on an unknown container (3)" t_check
check "bad input: error JSON with the spec's codes, nothing left behind" t_errors
check "STATUS ready; not ready (50) without an agent" t_status
check "GC removes attachments the runtime does not list, keeps those it does" t_gc
check "DEL with the namespace, without CNI_NETNS, after the namespace went, and repeated: no port, address, veth or state left" t_del_three_ways

# --------------------------------------------------------- pods and hosts --
t_two_hosts() {
    local why=""
    pod b
    cni h2 ADD cb eth0 "$(pod_ns b)" >"$E2E_STATE/b.json" || { cat "$E2E_STATE/b.json"; return 1; }
    local a b; a=$(state_of ca eth0 address); b=$(state_of cb eth0 address)
    wait_for 10 'nsx pa ping -n -c 1 -W 1 '"$b" || why+="pod a (h1) does not ping pod b (h2) at $b; "
    nsx pa ping -n -c 3 -i 0.2 -W 1 "$b" || why+="pings lost; "
    # TCP, 4 MB each way through the veths' TSO and the tunnel.
    nsx pb timeout 20 python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("'"$b"'", 5201)); s.listen(1); c, _ = s.accept(); n = 0
while n < 4 << 20:
    d = c.recv(65536)
    if not d: break
    n += len(d); c.sendall(d)
c.close()' &
    local sp=$!; sleep 0.5
    local got; got=$(nsx pa timeout 20 python3 -c '
import socket, threading
s = socket.create_connection(("'"$b"'", 5201), timeout=10); buf = bytes(range(256)) * 4096
t = threading.Thread(target=lambda: s.sendall(buf * 4)); t.start(); n = 0
while n < 4 << 20:
    d = s.recv(65536)
    if not d: break
    n += len(d)
t.join(); print(n)')
    wait $sp
    echo "pod a sent 4 MB to pod b over TCP, got back $got bytes"
    [[ $got == $((4 << 20)) ]] || why+="TCP echo incomplete ($got); "
    echo "${why:-pods on two hosts talk}"
    [[ -z $why ]]
}
t_del_cuts() {
    local why="" b; b=$(state_of cb eth0 address)
    cni h2 DEL cb eth0 "$(pod_ns b)" >/dev/null || why+="DEL failed; "
    nsx pa ping -n -c 2 -i 0.2 -W 1 "$b" >/dev/null 2>&1 && why+="pod b's address still answers; "
    grep -qw "$b" <<<"$(dhcp_ips)" && why+="$b is still held; "
    # The freed address is the next one handed out.
    pod b2
    cni h2 ADD cb2 eth0 "$(pod_ns b2)" >/dev/null || why+="ADD b2 failed; "
    [[ $(state_of cb2 eth0 address) == "$b" ]] || why+="b2 got $(state_of cb2 eth0 address), not the freed $b; "
    wait_for 10 'nsx pa ping -n -c 1 -W 1 '"$b" || why+="the new pod at $b is unreachable; "
    echo "${why:-DEL cut pod b off and freed $b}"
    [[ -z $why ]]
}
t_cycles() {
    local why="" i ports0 hosts0 ends0 bound0
    ports0=$(bridge_ports); hosts0=$(dhcp_ips | wc -w); ends0=$(host_ends h2); bound0=$(bound_ports "$H2")
    for i in $(seq 30); do
        pod cy
        cni h2 ADD ccy eth0 "$(pod_ns cy)" >/dev/null || { why+="ADD $i failed; "; break; }
        cni h2 DEL ccy eth0 "$(pod_ns cy)" >/dev/null || { why+="DEL $i failed; "; break; }
        ip netns del "$(ns pcy)"
    done
    [[ $(bridge_ports) == "$ports0" ]] || why+="ports: $ports0 before, $(bridge_ports) after; "
    [[ $(dhcp_ips | wc -w) == "$hosts0" ]] || why+="DHCP hosts: $hosts0 before, $(dhcp_ips | wc -w) after; "
    [[ $(host_ends h2) == "$ends0" ]] || why+="veths on h2: '$ends0' before, '$(host_ends h2)' after; "
    [[ ! -e $CNI_DATA/pods/ccy-eth0.json ]] || why+="state left; "
    [[ $(bound_ports "$H2") == "$bound0" ]] || why+="bindings on h2: '$bound0' before, '$(bound_ports "$H2")' after; "
    echo "${why:-30 ADD/DEL cycles left nothing behind}"
    [[ -z $why ]]
}

check "pods on two hosts ping and talk TCP (4 MB each way) through the agents" t_two_hosts
check "DEL cuts the pod off and frees its address (the next ADD gets it)" t_del_cuts
check "30 ADD/DEL cycles leave no port, address, veth, binding or state behind" t_cycles

tally "cni e2e"
