#!/usr/bin/env python3
"""How long a change takes to reach the packets. A VM pings its router every
10 ms (`ping -D`, its log given here); this makes a change that stops the
replies and undoes it, N times, through the REST API, and reads the ping log:
the effect of a change that stops the replies is the last reply after the
API answered it, of its undoing the first reply after the API answered that
(the other way round for a change that makes them start).

  change_latency.py API rule CHAIN PINGLOG N
      a drop-ICMP rule added to (and deleted from) the chain on the VM's port
  change_latency.py API route ROUTER/VM_IP PINGLOG N
      a blackhole route to the VM's address added to its router (and deleted)
  change_latency.py API port BRIDGE/HOST/IFACE PINGLOG N
      a VM boots: a port created on the VM's bridge and bound to IFACE (a
      second VM's veth) on HOST, timed from the binding's answer (and the
      port deleted); the log is of the first VM's ping to the second
prints one JSON line:
    {"samples": 2N, "p50_ms": .., "p99_ms": .., "max_ms": .., "ms": [...]}
Runs in the operator's namespace; the ping in the VM's (the same clock).
"""
import json
import re
import sys
import time
import urllib.request

import restauth

AUTH = {}


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **AUTH})
    with urllib.request.urlopen(req, timeout=10, context=restauth.context()) as r:
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
    api, what, target, log, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    AUTH.update(restauth.headers(api))
    if what == "rule":
        path, body = f"{api}/chains/{target}/rules", {"type": "drop", "dlType": 2048, "nwProto": 1, "position": 1}
    elif what == "route":
        router, vm = target.split("/")
        path, body = f"{api}/routers/{router}/routes", {
            "type": "BlackHole", "srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0,
            "dstNetworkAddr": vm, "dstNetworkLength": 32, "weight": 100}
    elif what == "port":
        bridge, host, iface = target.split("/")
        path, body = f"{api}/bridges/{bridge}/ports", {"type": "Bridge"}
    else:
        sys.exit(f"change_latency.py: no change of kind {what!r} (rule, route, port)")
    starts = what == "port"  # the change makes the replies start
    changes = []  # (kind, time the request went, time the API answered)
    for _ in range(n):
        sent = time.time()
        loc = call("POST", path, body)
        if what == "port":
            call("POST", f"{api}/hosts/{host}/ports",
                 {"portId": loc.rstrip("/").rsplit("/", 1)[1], "interfaceName": iface})
        changes.append(("add", sent, time.time()))
        time.sleep(0.6)
        sent = time.time()
        call("DELETE", loc)
        changes.append(("delete", sent, time.time()))
        time.sleep(0.6)
    time.sleep(0.3)
    ts = replies(log)
    ms = []
    for i, (kind, sent, t) in enumerate(changes):
        # A change's window ends where the next one's request went: the next
        # change may take effect before its answer is back here.
        end = changes[i + 1][1] if i + 1 < len(changes) else float("inf")
        if (kind == "add") != starts:
            # Replies still arriving after the change: the last one marks its effect.
            after = [x for x in ts if t <= x < end]
            ms.append(max(0.0, (after[-1] - t) * 1000) if after else 0.0)
        else:
            # Replies start again: the first one marks its effect (which may
            # come before the answer: 0).
            after = [x for x in ts if sent <= x < end]
            if not after:
                print(json.dumps({"error": f"no reply after a {kind}"}))
                sys.exit(1)
            ms.append(max(0.0, (after[0] - t) * 1000))
    s = sorted(ms)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    print(json.dumps({"samples": len(s), "p50_ms": round(pick(0.5), 1), "p99_ms": round(pick(0.99), 1),
                      "max_ms": round(s[-1], 1), "ms": [round(x, 1) for x in ms]}))


if __name__ == "__main__":
    main()
