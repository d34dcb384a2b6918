#!/usr/bin/env bash
# midonet.sh -- our datapath in the anchors' testbed: h1 runs `midonet server
# --agent` (cluster + agent in one process), h2 runs `midonet agent`; the four
# VMs are ports of one virtual bridge, bound to their hosts' veths; traffic
# between hosts goes through our VXLAN tunnel (UDP 6677).
#   MIDONET_BIN=target/release/midonet bench/anchors/midonet.sh [run|up|measure|down]
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TB_OFFLOAD:=on}"    # kernel defaults (partial checksums, TSO/GSO): the datapath takes them
: "${TB_PREFIX:=mnb}"
# shellcheck source=testbed.sh
source "$HERE/testbed.sh"
: "${MIDONET_BIN:=$HERE/../../target/release/midonet}"
API=http://${TB_UL_IP[h1]}:8181/midonet-api

dp_describe() { echo "datapath: midonet-rs userspace (AF_PACKET + VXLAN/6677), server+agent on h1, agent on h2"; }
mido() { MIDO_API_URL=$API tb_exec h1 "$MIDONET_BIN" "$@"; }

dp_setup() {
    ip netns exec "$(tb_ns h1)" "$MIDONET_BIN" server --agent --store memory --listen "${TB_UL_IP[h1]}:8181" \
        --topology-listen "${TB_UL_IP[h1]}:8088" --data-dir "$TB_STATE/h1" >"$TB_STATE/server.log" 2>&1 &
    echo $! >"$TB_STATE/server.pid"
    ip netns exec "$(tb_ns h2)" "$MIDONET_BIN" agent --cluster "http://${TB_UL_IP[h1]}:8088" --host-name h2 \
        --state-dir "$TB_STATE/h2" >"$TB_STATE/agent-h2.log" 2>&1 &
    echo $! >"$TB_STATE/agent-h2.pid"
    local i
    for i in $(seq 200); do
        [[ -s $TB_STATE/h1/agent/host_id && -s $TB_STATE/h2/host_id ]] &&
            [[ $(mido host list -o json 2>/dev/null | python3 -c 'import json,sys; print(sum(h["alive"] for h in json.load(sys.stdin)))' 2>/dev/null) == 2 ]] && break
        sleep 0.05
    done
    local h1 h2 z b p vm
    h1=$(cat "$TB_STATE/h1/agent/host_id"); h2=$(cat "$TB_STATE/h2/host_id")
    z=$(mido tunnel-zone create name=tz type=vxlan)
    mido tunnel-zone add-member "$z" "$h1" "${TB_UL_IP[h1]}"
    mido tunnel-zone add-member "$z" "$h2" "${TB_UL_IP[h2]}"
    b=$(mido bridge create name=tenant)
    for vm in "${TB_VMS[@]}"; do
        p=$(mido port create --bridge "$b")
        if [[ ${TB_VM_HOST[$vm]} == h1 ]]; then mido port bind "$p" "$h1" "$vm"; else mido port bind "$p" "$h2" "$vm"; fi
    done
    # Ready when every port is active (its agent bound it); no VM traffic here.
    for i in $(seq 200); do
        [[ $(mido port list -o json | python3 -c 'import json,sys; print(sum(p["active"] for p in json.load(sys.stdin)))') == 4 ]] && return 0
        sleep 0.02
    done
    tb_die "ports did not become active"
}

dp_flush() { local f; for f in "$TB_STATE/server.pid" "$TB_STATE/agent-h2.pid"; do kill -USR1 "$(cat "$f")" 2>/dev/null; done; }
dp_teardown() { tb_kill_pidfile "$TB_STATE/server.pid" "$TB_STATE/agent-h2.pid"; }
dp_pids() { cat "$TB_STATE/server.pid" "$TB_STATE/agent-h2.pid" 2>/dev/null; }

tb_main midonet "$@"
