#!/usr/bin/env bash
# midonet-cni (issue 14), on release builds, on the CNI testbed
# (tests/e2e/cni_testbed.sh: agents on h1 and h2, plain http):
#   - ADD latency: 100 pods added one after another on h1, each call timed
#     as a runtime sees it (the plugin process, from exec to exit); p50/p99;
#   - first ping: from ADD's return to the pod's first answered ping of its
#     gateway (10.50.0.1, a router port the agent simulates);
#   - DEL latency of the same 100.
# The reference, in the same run and the same harness: Debian's
# containernetworking-plugins `bridge` with `host-local` IPAM (a Linux
# bridge in h1 as the pods' gateway), 100 pods.
#   sudo bench/cni.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/cni.sh: needs root (network namespaces)" >&2; exit 1; }
[[ -x /usr/lib/cni/bridge ]] || { echo "bench/cni.sh: needs Debian's containernetworking-plugins (the reference)" >&2; exit 1; }
N=${1:-100}
cargo build --release -q -p midonet --bin midonet
cargo build --release -q -p cni --bin midonet-cni
export P=mncnib BIN=$PWD/target/release/midonet E2E_SECURE=0
CNI=$PWD/target/release/midonet-cni
export E2E_STATE=/tmp/midonet-e2e.$P
source tests/e2e/lib.sh
source tests/e2e/cni_testbed.sh
trap 'e2e_down' EXIT
set +e
cni_testbed >/dev/null || { echo "testbed failed" >&2; exit 1; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# run_pods KIND: ADD N pods, then DEL them; timings into $E2E_STATE/KIND.*
run_pods() {
    local kind=$1 i t0 t1 c mc
    # The configuration is made once: the timings are the plugin's.
    mc=$(CNI_HOST=h1 conf)
    : >"$E2E_STATE/$kind.add"; : >"$E2E_STATE/$kind.ping"; : >"$E2E_STATE/$kind.del"
    for i in $(seq "$N"); do
        pod "$kind$i"
        t0=$(now_ms)
        if [[ $kind == mido ]]; then
            cni h1 ADD "c$kind$i" eth0 "$(pod_ns "$kind$i")" "$mc" >/dev/null || { echo "ADD $i failed" >&2; return 1; }
            gw=10.50.0.1
        else
            ref_cni ADD "c$kind$i" "$(pod_ns "$kind$i")" >/dev/null || { echo "reference ADD $i failed" >&2; return 1; }
            gw=10.60.0.1
        fi
        t1=$(now_ms); echo $((t1 - t0)) >>"$E2E_STATE/$kind.add"
        for c in $(seq 300); do nsx "p$kind$i" ping -n -c 1 -W 0.02 "$gw" >/dev/null 2>&1 && break; done
        echo $(( $(now_ms) - t1 )) >>"$E2E_STATE/$kind.ping"
    done
    for i in $(seq "$N"); do
        t0=$(now_ms)
        if [[ $kind == mido ]]; then
            cni h1 DEL "c$kind$i" eth0 "$(pod_ns "$kind$i")" "$mc" >/dev/null
        else
            ref_cni DEL "c$kind$i" "$(pod_ns "$kind$i")" >/dev/null
        fi
        echo $(( $(now_ms) - t0 )) >>"$E2E_STATE/$kind.del"
        ip netns del "$(ns "p$kind$i")"
    done
}
ref_cni() { # COMMAND CONTAINER NETNS: Debian's bridge plugin, host-local IPAM
    local c; c=$(printf '{"cniVersion":"1.0.0","name":"ref","type":"bridge","bridge":"cniref0","isGateway":true,"ipam":{"type":"host-local","subnet":"10.60.0.0/24","dataDir":"%s"}}' "$E2E_STATE/ref-ipam")
    nsx h1 env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_IFNAME=eth0 CNI_NETNS="$3" CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge <<<"$c"
}

run_pods mido || exit 1
run_pods ref || exit 1
python3 - "$E2E_STATE" "$N" <<'PY'
import sys
d, n = sys.argv[1], sys.argv[2]
def q(kind, what):
    v = sorted(int(x) for x in open("%s/%s.%s" % (d, kind, what)) if x.strip())
    return v[len(v) // 2], v[min(len(v) - 1, int(len(v) * 0.99))]
print("CNI on h1, %s pods one after another (ms; as the runtime sees the plugin process):" % n)
print("%-28s %14s %14s %14s" % ("", "ADD p50/p99", "ping p50/p99", "DEL p50/p99"))
for kind, name in (("mido", "midonet-cni"), ("ref", "reference: bridge+host-local")):
    a, p, x = q(kind, "add"), q(kind, "ping"), q(kind, "del")
    print("%-28s %14s %14s %14s" % (name, "%d / %d" % a, "%d / %d" % p, "%d / %d" % x))
ma, ra = q("mido", "add"), q("ref", "add")
print("ratio ADD p99 midonet-cni / reference: %.2f (target: p99 <= 50 ms)" % (ma[1] / max(ra[1], 1)))
PY
