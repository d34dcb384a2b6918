#!/usr/bin/env python3
"""Creates a cloud of tenants through the MidoNet REST API v5, as an operator's
script would: a provider router, and per tenant a router linked to it, a
bridge linked to that router, two VM ports, a 5-rule chain on the bridge, the
routes to the tenant's network on both routers and the tenant's default route
(17 objects, 19 requests). Standard library only.

  tenants.py API N [--threads T] [--provider ID]   prints one JSON line:
    {"provider": id, "tenants": N, "requests": R, "seconds": S,
     "first": {"bridge":..., "router":..., "chain":..., "gateway": "10.0.0.1"}}
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse

import restauth


class Api:
    """One keep-alive connection."""

    def __init__(self, base):
        u = urllib.parse.urlparse(base)
        self.host, self.port, self.root = u.hostname, u.port or 80, u.path.rstrip("/")
        self.tls = restauth.context() if u.scheme == "https" else None
        self.auth = restauth.headers(base)
        self.conn = self.connect()
        self.requests = 0

    def connect(self):
        if self.tls is not None or self.port == 443:
            return http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.auth}
        for attempt in range(3):
            try:
                self.conn.request(method, self.root + path, data, headers)
                r = self.conn.getresponse()
                out = r.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = self.connect()
                if attempt == 2:
                    raise
        self.requests += 1
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {out[:200]!r}")
        loc = r.getheader("Location")
        if loc:
            return loc.rstrip("/").rsplit("/", 1)[-1]
        return json.loads(out) if out else None

    def post(self, path, body):
        return self.call("POST", path, body)


def tenant(api, provider, i):
    a, b = divmod(i, 256)
    net = f"10.{a}.{b}.0"
    gw = f"10.{a}.{b}.1"
    r = api.post("/routers", {"name": f"tenant-{i}", "tenantId": f"t{i}"})
    up = api.post(f"/routers/{provider}/ports", {"type": "Router", "portAddress": "100.64.0.1", "networkAddress": "100.64.0.0",
                                                  "networkLength": 30})
    down = api.post(f"/routers/{r}/ports", {"type": "Router", "portAddress": "100.64.0.2", "networkAddress": "100.64.0.0",
                                            "networkLength": 30})
    api.post(f"/ports/{up}/link", {"peerId": down})
    c = api.post("/chains", {"name": f"sg-{i}", "tenantId": f"t{i}"})
    for port in (22, 80, 443, 8080):
        api.post(f"/chains/{c}/rules", {"type": "accept", "dlType": 2048, "nwProto": 6,
                                         "tpDst": {"start": port, "end": port}})
    api.post(f"/chains/{c}/rules", {"type": "accept", "dlType": 2048, "nwProto": 1})
    br = api.post("/bridges", {"name": f"net-{i}", "tenantId": f"t{i}", "inboundFilterId": c})
    rp = api.post(f"/routers/{r}/ports", {"type": "Router", "portAddress": gw, "networkAddress": net, "networkLength": 24})
    bp = api.post(f"/bridges/{br}/ports", {"type": "Bridge"})
    api.post(f"/ports/{rp}/link", {"peerId": bp})
    for _ in range(2):
        api.post(f"/bridges/{br}/ports", {"type": "Bridge"})
    api.post(f"/routers/{r}/routes", {"type": "Normal", "srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0,
                                      "dstNetworkAddr": net, "dstNetworkLength": 24, "nextHopPort": rp,
                                      "weight": 100})
    api.post(f"/routers/{provider}/routes", {"type": "Normal", "srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0,
                                             "dstNetworkAddr": net, "dstNetworkLength": 24, "nextHopPort": up,
                                             "nextHopGateway": "100.64.0.2",
                                             "weight": 100})
    api.post(f"/routers/{r}/routes", {"type": "Normal", "srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0,
                                      "dstNetworkAddr": "0.0.0.0", "dstNetworkLength": 0, "nextHopPort": down,
                                      "nextHopGateway": "100.64.0.1",
                                      "weight": 100})
    return {"bridge": br, "router": r, "chain": c, "gateway": gw}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("api")
    ap.add_argument("n", type=int)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--provider")
    ap.add_argument("--first", type=int, default=0, help="number of the first tenant")
    a = ap.parse_args()
    main_api = Api(a.api)
    provider = a.provider or main_api.post("/routers", {"name": "provider"})
    firsts, errors, apis = {}, [], []
    todo = list(range(a.first, a.first + a.n))
    lock = threading.Lock()

    def work():
        api = Api(a.api)
        apis.append(api)
        while True:
            with lock:
                if not todo or errors:
                    return
                i = todo.pop(0)
            try:
                t = tenant(api, provider, i)
            except Exception as e:  # reported below, stops the others
                with lock:
                    errors.append(f"tenant {i}: {e}")
                return
            if i == a.first:
                firsts["first"] = t

    start = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - start
    if errors:
        print("tenants.py: " + errors[0], file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"provider": provider, "tenants": a.n, "seconds": round(secs, 2),
                      "requests": sum(x.requests for x in apis), "first": firsts.get("first")}))


if __name__ == "__main__":
    main()
