#!/usr/bin/env bash
# The datapath benchmark: our agents and userspace datapath, and the Linux
# kernel bridge + VXLAN (offloads off, and on), in the same run, on the same
# two-host namespace testbed (bench/anchors/testbed.sh, from shared/anchors);
# ours twice: batched recvmmsg (the default) and TPACKET_V3 rings (1 ms retire).
# Prints each figure and its ratio to the references.
#   bench/datapath.sh            (TB_IPERF_TIME=5 by default; root needed)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/datapath.sh: needs root (network namespaces)" >&2; exit 1; }
for c in ip ping ethtool iperf3 python3; do command -v $c >/dev/null || { echo "missing $c" >&2; exit 1; }; done
cargo build --release -q -p midonet --bin midonet
export MIDONET_BIN=$PWD/target/release/midonet
TSV=$(mktemp /tmp/midonet-datapath-XXXX.tsv)
export TB_TSV=$TSV TB_IDLE_WAIT=${TB_IDLE_WAIT:-20}
TB_OFFLOAD=off TB_LABEL=kernel-offload-off bench/anchors/linux-bridge-vxlan.sh run >/dev/null
TB_OFFLOAD=on TB_LABEL=kernel-offload-on bench/anchors/linux-bridge-vxlan.sh run >/dev/null
TB_OFFLOAD=off TB_LABEL=midonet-rs env -u MIDONET_RX_RING_MS bench/anchors/midonet.sh run >/dev/null
TB_OFFLOAD=off TB_LABEL=midonet-rs-ring MIDONET_RX_RING_MS=1 bench/anchors/midonet.sh run >/dev/null
python3 - "$TSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault(r["label"], {})[r["metric"]] = r["value"]
ours, ring, off, on = by["midonet-rs"], by["midonet-rs-ring"], by["kernel-offload-off"], by["kernel-offload-on"]
def num(d, k):
    try: return float(d[k])
    except (KeyError, ValueError): return None
print("%-22s %12s %12s %14s %14s %10s %10s" % ("metric", "midonet-rs", "mn-rs ring", "kernel(off)", "kernel(on)", "ratio/off", "ring/off"))
for k, unit in [("setup_time", "ms"), ("first_ping_cross", "ms"), ("first_ping_same", "ms"), ("cold_ping_cross", "ms"),
                ("rtt_cross", "ms"), ("rtt_same", "ms"), ("tcp_cross_gbps", "Gbit/s"), ("tcp_same_gbps", "Gbit/s"),
                ("tcp_cross_retrans", "segs"), ("udp_cross_rx_kpps", "kpps"), ("udp_same_rx_kpps", "kpps"),
                ("tcp_cross_cpu_dp", "cores"), ("mtu_cross_df", "")]:
    a, d, b, c = ours.get(k, "n/a"), ring.get(k, "n/a"), off.get(k, "n/a"), on.get(k, "n/a")
    x, w, y = num(ours, k), num(ring, k), num(off, k)
    r1 = "%.2f" % (x / y) if x is not None and y else "-"
    r2 = "%.2f" % (w / y) if w is not None and y else "-"
    print("%-22s %12s %12s %14s %14s %10s %10s  %s" % (k, a, d, b, c, r1, r2, unit))
PY
echo "(raw figures: $TSV)"
