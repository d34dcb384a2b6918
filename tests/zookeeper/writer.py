#!/usr/bin/env python3
"""Concurrent REST writes for the ZooKeeper tests: N bridge creates per
server URL given (one thread each), one connection per request. Prints, as
JSON, the ids acknowledged (201) and every answer's HTTP code (0: none, as
from a killed server).

  writer.py N REST_URL [REST_URL...]
  writer.py --present FILE REST_URL   exits 1 unless every acknowledged id
                                      of FILE is listed by REST_URL
"""
import http.client
import json
import sys
import threading
import urllib.parse
import urllib.request


def write(n, eps):
    acked, codes, lock = [], [], threading.Lock()

    def worker(ep, t):
        u = urllib.parse.urlsplit(ep)
        for i in range(n):
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            try:
                c.request("POST", u.path + "/bridges", json.dumps({"name": f"w{t}-{i}", "tenantId": "t1"}),
                          {"Content-Type": "application/vnd.org.midonet.Bridge-v4+json"})
                r = c.getresponse()
                r.read()
                code, loc = r.status, r.getheader("Location") or ""
            except OSError:
                code, loc = 0, ""
            finally:
                c.close()
            with lock:
                codes.append(code)
                if code == 201:
                    acked.append(loc.rstrip("/").rsplit("/", 1)[1])

    ts = [threading.Thread(target=worker, args=(e, t)) for t, e in enumerate(eps)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    print(json.dumps({"acked": acked, "codes": codes}))


def present(path, ep):
    d = json.load(open(path))
    have = {b["id"] for b in json.load(urllib.request.urlopen(ep + "/bridges", timeout=30))}
    missing = [i for i in d["acked"] if i not in have]
    refused = sum(c != 201 for c in d["codes"])
    print(f"{len(d['acked'])} acknowledged, {len(missing)} missing, {refused} of {len(d['codes'])} refused "
          f"(codes {sorted(set(d['codes']) - {201})})")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    if sys.argv[1] == "--present":
        present(sys.argv[2], sys.argv[3])
    else:
        write(int(sys.argv[1]), sys.argv[2:])
