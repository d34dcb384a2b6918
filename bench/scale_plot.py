#!/usr/bin/env python3
"""bench/scale.tsv -> an SVG: change-to-effect latency (p50, p99 of rule,
route and port changes), the agent's CPU per change and convergence against
the number of tenants, log-log.
Standard library only."""
import math
import sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
head, data = rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]
series = [
    ("rule_p50_ms", "rule change p50", "#1f77b4", ""),
    ("rule_p99_ms", "rule change p99", "#1f77b4", "6,4"),
    ("route_p50_ms", "route change p50", "#d62728", ""),
    ("route_p99_ms", "route change p99", "#d62728", "6,4"),
    ("port_p50_ms", "port change p50", "#ff7f0e", ""),
    ("port_p99_ms", "port change p99", "#ff7f0e", "6,4"),
    ("agent_cpu_ms_per_change", "agent CPU per change", "#9467bd", "1,2"),
    ("converge_ms", "VM bound last: first ping", "#2ca02c", "2,3"),
]
W, H, L, R, T, B = 640, 400, 70, 220, 30, 50
xs = [float(d["tenants"]) for d in data]
ys = [max(float(d[k]), 0.5) for d in data for k, *_ in series]
x0, x1 = math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.1
y0, y1 = math.log10(min(ys + [1])) - 0.1, math.log10(max(ys + [100])) + 0.1


def px(x):
    return L + (math.log10(x) - x0) / (x1 - x0) * (W - L - R)


def py(y):
    return H - B - (math.log10(max(y, 0.5)) - y0) / (y1 - y0) * (H - T - B)


out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="18" font-size="14">REST change to its effect at the agent, by cloud size</text>']
for e in range(math.ceil(y0), math.floor(y1) + 1):
    y = py(10 ** e)
    out.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{L - 8}" y="{y + 4:.1f}" text-anchor="end">{10 ** e:g} ms</text>')
for x in xs:
    out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{T}" y2="{H - B}" stroke="#eee"/>')
    out.append(f'<text x="{px(x):.1f}" y="{H - B + 18}" text-anchor="middle">{int(x):,}</text>')
out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">tenants (17 objects each)</text>')
y100 = py(100)
out.append(f'<line x1="{L}" x2="{W - R}" y1="{y100:.1f}" y2="{y100:.1f}" stroke="#999" stroke-dasharray="1,3"/>')
out.append(f'<text x="{W - R - 4}" y="{y100 - 4:.1f}" text-anchor="end" fill="#666">target p99 100 ms</text>')
for i, (k, name, color, dash) in enumerate(series):
    pts = " ".join(f"{px(float(d['tenants'])):.1f},{py(float(d[k])):.1f}" for d in data)
    out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
    for d in data:
        out.append(f'<circle cx="{px(float(d["tenants"])):.1f}" cy="{py(float(d[k])):.1f}" r="3" fill="{color}"/>')
    ly = T + 20 + i * 20
    out.append(f'<line x1="{W - R + 15}" x2="{W - R + 45}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
    out.append(f'<text x="{W - R + 50}" y="{ly + 4}">{name}</text>')
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
