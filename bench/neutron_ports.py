#!/usr/bin/env python3
"""Neutron port creates per second: a network with a /16 subnet, then N ports
created through the Neutron API by T threads (each create: IPAM from the
subnet's pool, a MAC, the bridge port, the DHCP host entry, one fsynced NSDB
commit). Prints one JSON line.

  bench/neutron_ports.py ENDPOINT [N] [THREADS]
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse


class Client:
    """One kept-alive HTTP connection, as openstacksdk's session keeps one."""

    def __init__(self, endpoint):
        u = urllib.parse.urlsplit(endpoint)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.base = u.path.rstrip("/") + "/v2.0"

    def call(self, method, path, body):
        self.conn.request(method, self.base + path, body=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
        return json.loads(data) if data else None


def main():
    ep = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    setup = Client(ep)
    # Past Neutron's default of 500 ports per project.
    setup.call("PUT", "/quotas/admin", {"quota": {"port": -1}})
    net = setup.call("POST", "/networks", {"network": {"name": "bench"}})["network"]["id"]
    setup.call("POST", "/subnets", {"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.128.0.0/16"}})
    left = [n]
    lock = threading.Lock()
    errors = []

    def worker():
        c = Client(ep)
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            try:
                c.call("POST", "/ports", {"port": {"network_id": net}})
            except Exception as e:  # noqa: BLE001 - counted, reported
                errors.append(str(e))
                c = Client(ep)

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
        for e in sorted(set(errors))[:5]:
            print("error:", e[:300], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
