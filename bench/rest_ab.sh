#!/usr/bin/env bash
# Compares midonet binaries on this machine, alternating: for each, one
# embedded server on loopback, Neutron port creates/s from one client
# thread (bench/neutron_ports.py, 1,000 ports) and the mean of 3,000
# sequential `GET /midonet-api/system_state` on one kept-alive connection.
#   bench/rest_ab.sh OLD-BINARY NEW-BINARY [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
one() {
    local bin=$1 d pid
    d=$(mktemp -d)
    "$bin" server --data-dir "$d" --listen 127.0.0.1:28181 --topology-listen 127.0.0.1:28088 \
        --neutron-listen 127.0.0.1:29696 >"$d/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:28181/midonet-api/system_state >/dev/null && break; sleep 0.1; done
    python3 bench/neutron_ports.py http://127.0.0.1:29696 1000 1
    python3 -c '
import http.client, time
c = http.client.HTTPConnection("127.0.0.1", 28181)
t = time.time()
for _ in range(3000):
    c.request("GET", "/midonet-api/system_state"); c.getresponse().read()
print("GET system_state: %.0f us each" % ((time.time() - t) / 3000 * 1e6))'
    kill $pid; wait $pid 2>/dev/null || true
    rm -rf "$d"
}
for _ in $(seq "${3:-2}"); do
    echo "$1:"; one "$1"
    echo "$2:"; one "$2"
done
