#!/usr/bin/env bash
# Fuzzes the REST API v5, bounded in time: schemathesis sends requests built
# from /midonet-api/openapi.json (every operation, bodies from each type's
# fields) to a real `midonet server` on loopback and fails on any 5xx; the
# server's log must show no panic. Started and stopped by PID.
#   MIDONET_FUZZ_EXAMPLES (default 30) examples per operation.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${MIDONET_BIN:-$PWD/target/debug/midonet}
VENV=$(realpath -m "${MIDONET_FUZZ_VENV:-target/fuzz-venv}")
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/fuzz/requirements.txt
DIR=$(mktemp -d /tmp/midonet-fuzz.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REST=$(port); TOPO=$(port); NEUTRON=$(port)
"$BIN" server --store memory --listen 127.0.0.1:$REST --topology-listen 127.0.0.1:$TOPO \
    --neutron-listen 127.0.0.1:$NEUTRON >"$DIR/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
URL=http://127.0.0.1:$REST/midonet-api
for _ in $(seq 100); do curl -sf "$URL/system_state" >/dev/null && break; sleep 0.1; done
rc=0
# From the scratch directory: hypothesis keeps its database in the cwd.
(cd "$DIR" && timeout 600 "$VENV/bin/schemathesis" run "$URL/openapi.json" --checks not_a_server_error \
    --hypothesis-max-examples "${MIDONET_FUZZ_EXAMPLES:-30}" --hypothesis-deadline None \
    --hypothesis-suppress-health-check all --workers 2 --no-color >"$DIR/fuzz.out" 2>&1) || rc=$?
grep -E "not_a_server_error|passed in|failed in|errored|Randomized with" "$DIR/fuzz.out" || true
if [[ $rc != 0 ]]; then
    grep -v "returned only 4xx" "$DIR/fuzz.out" | tail -40
    echo "REST fuzzing: failures (schemathesis exit $rc)"; exit 1
fi
kill -0 $PID 2>/dev/null || { echo "REST fuzzing: the server died"; tail -20 "$DIR/server.log"; exit 1; }
if grep -q "panicked" "$DIR/server.log"; then
    grep -B2 -A5 "panicked" "$DIR/server.log" | head -30
    echo "REST fuzzing: the server panicked"; exit 1
fi
echo "REST fuzzing: no 5xx, no panic"
