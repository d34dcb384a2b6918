#!/usr/bin/env bash
# The datapath benchmark: our agents and userspace datapath, and the Linux
# kernel bridge + VXLAN (offloads off, and on), in the same run, on the same
# two-host namespace testbed (bench/anchors/testbed.sh, from shared/anchors);
# ours three times: on kernel-default offloads with batched recvmmsg (the
# default) and with TPACKET_V3 rings (1 ms retire), and with offloads off.
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
TB_OFFLOAD=on TB_LABEL=midonet-rs env -u MIDONET_RX_RING_MS bench/anchors/midonet.sh run >/dev/null
TB_OFFLOAD=on TB_LABEL=midonet-rs-ring MIDONET_RX_RING_MS=1 bench/anchors/midonet.sh run >/dev/null
TB_OFFLOAD=off TB_LABEL=midonet-rs-off env -u MIDONET_RX_RING_MS bench/anchors/midonet.sh run >/dev/null
python3 - "$TSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault(r["label"], {})[r["metric"]] = r["value"]
ours, ring, moff = by["midonet-rs"], by["midonet-rs-ring"], by["midonet-rs-off"]
off, on = by["kernel-offload-off"], by["kernel-offload-on"]
def num(d, k):
    try: return float(d[k])
    except (KeyError, ValueError): return None
# CPU per Gbit/s: all busy cores of the machine (iperf3s, agents, kernel)
# during the stream, over what the stream carried.
for d in by.values():
    for t in ("tcp_cross", "tcp_same"):
        c, g = num(d, t + "_cpu_busy"), num(d, t + "_gbps")
        if c is not None and g:
            d[t + "_cpu_per_gbps"] = "%.3f" % (c / g)
print("offloads on for midonet-rs, mn-rs ring and kernel(on); off for mn-rs(off) and kernel(off)")
print("%-22s %11s %11s %11s %12s %12s %8s %8s %8s" % ("metric", "midonet-rs", "mn-rs ring", "mn-rs(off)", "kernel(off)", "kernel(on)", "mn/on", "mn/off", "ring/on"))
for k, unit in [("setup_time", "ms"), ("first_ping_cross", "ms"), ("first_ping_same", "ms"), ("cold_ping_cross", "ms"),
                ("rtt_cross", "ms"), ("rtt_same", "ms"), ("tcp_cross_gbps", "Gbit/s"), ("tcp_same_gbps", "Gbit/s"),
                ("tcp_cross_retrans", "segs"), ("udp_cross_rx_kpps", "kpps"), ("udp_same_rx_kpps", "kpps"),
                ("tcp_cross_cpu_dp", "cores"), ("tcp_cross_cpu_per_gbps", "cores/Gbit/s"), ("tcp_same_cpu_per_gbps", "cores/Gbit/s"), ("mtu_cross_df", "")]:
    a, d, e = ours.get(k, "n/a"), ring.get(k, "n/a"), moff.get(k, "n/a")
    b, c = off.get(k, "n/a"), on.get(k, "n/a")
    x, w, y, z = num(ours, k), num(ring, k), num(off, k), num(on, k)
    ratio = lambda p, q: "%.2f" % (p / q) if p is not None and q else "-"
    print("%-22s %11s %11s %11s %12s %12s %8s %8s %8s  %s" % (k, a, d, e, b, c, ratio(x, z), ratio(x, y), ratio(w, z), unit))
PY
echo "(raw figures: $TSV)"
