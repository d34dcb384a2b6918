#!/usr/bin/env python3
"""How long a rule change takes to reach the packets. A VM pings its router
every 10 ms (`ping -D`, its log given here); this adds a drop-ICMP rule to the
chain on the VM's port and deletes it again, N times, through the REST API,
and reads the ping log: the effect of an add is the last reply after the
add's answer, of a delete the first reply after the delete's answer.

  rule_latency.py API CHAIN PINGLOG N    prints one JSON line:
    {"samples": 2N, "p50_ms": .., "p99_ms": .., "max_ms": .., "ms": [...]}
Runs in the operator's namespace; the ping in the VM's (the same clock).
"""
import json
import re
import sys
import time
import urllib.request


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers.get("Location")


def replies(log):
    """Timestamps of the echo replies in a `ping -D` log."""
    out = []
    with open(log) as f:
        for line in f:
            m = re.match(r"\[(\d+\.\d+)\] \d+ bytes from", line)
            if m:
                out.append(float(m.group(1)))
    return out


def main():
    api, chain, log, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    changes = []  # (kind, time the API answered)
    for _ in range(n):
        loc = call("POST", f"{api}/chains/{chain}/rules",
                   {"type": "drop", "dlType": 2048, "nwProto": 1, "position": 1})
        changes.append(("add", time.time()))
        time.sleep(0.6)
        call("DELETE", loc)
        changes.append(("delete", time.time()))
        time.sleep(0.6)
    time.sleep(0.3)
    ts = replies(log)
    ms = []
    for i, (kind, t) in enumerate(changes):
        end = changes[i + 1][1] if i + 1 < len(changes) else float("inf")
        if kind == "add":
            # Replies still arriving after the add: the last one marks the effect.
            after = [x for x in ts if t <= x < end]
            ms.append(max(0.0, (after[-1] - t) * 1000) if after else 0.0)
        else:
            after = [x for x in ts if t <= x < end]
            if not after:
                print(json.dumps({"error": "no reply after a delete"}))
                sys.exit(1)
            ms.append((after[0] - t) * 1000)
    s = sorted(ms)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    print(json.dumps({"samples": len(s), "p50_ms": round(pick(0.5), 1), "p99_ms": round(pick(0.99), 1),
                      "max_ms": round(s[-1], 1), "ms": [round(x, 1) for x in ms]}))


if __name__ == "__main__":
    main()
