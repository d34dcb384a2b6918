#!/usr/bin/env python3
"""Neutron port creates per second: a network with a /16 subnet, then N ports
created through the Neutron API by T threads (each create: IPAM from the
subnet's pool, a MAC, the bridge port, the DHCP host entry, one fsynced NSDB
commit). Prints one JSON line.

  bench/neutron_ports.py ENDPOINT [N] [THREADS]
"""
import json
import sys
import threading
import time
import urllib.request


def call(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def main():
    ep = sys.argv[1].rstrip("/") + "/v2.0"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    # Past Neutron's default of 500 ports per project.
    req = urllib.request.Request(ep + "/quotas/admin", data=json.dumps({"quota": {"port": -1}}).encode(),
                                 method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    net = call(ep + "/networks", {"network": {"name": "bench"}})["network"]["id"]
    call(ep + "/subnets", {"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.128.0.0/16"}})
    left = [n]
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            try:
                call(ep + "/ports", {"port": {"network_id": net}})
            except Exception as e:  # noqa: BLE001 - counted, reported
                errors.append(str(e))

    t0 = time.time()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.time() - t0
    print(json.dumps({"ports": n, "threads": threads, "seconds": round(dt, 2),
                      "creates_per_s": round(n / dt), "errors": len(errors)}))
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
