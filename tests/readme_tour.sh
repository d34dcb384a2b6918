#!/usr/bin/env bash
# Runs the README's five-minute tour against a fresh in-memory server, so the
# README stays true. Fails on the first command that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MIDONET_BIN:-target/debug/midonet}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" server --store memory --listen 127.0.0.1:$PORT >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
export MIDO_API_URL=http://127.0.0.1:$PORT/midonet-api
for _ in $(seq 100); do curl -sf "$MIDO_API_URL/system_state" >/dev/null && break; sleep 0.1; done
TOUR=$(sed -n '/^alias midonet=/,/^midonet router delete/p' README.md | grep -v '^alias midonet=' | grep -v '^export MIDO_API_URL')
[ -n "$TOUR" ] || { echo "README tour not found" >&2; exit 1; }
midonet() { "$BIN" "$@"; }
export -f midonet
export BIN
bash -euo pipefail -c "$TOUR" >/dev/null
echo "README tour: ok"
# Bad input through the CLI: a clear message and a non-zero exit.
if out=$("$BIN" bridge show no-such-bridge 2>&1); then
  echo "expected 'bridge show' of a missing id to fail" >&2; exit 1
fi
grep -q 'HTTP 404' <<<"$out" || { echo "unexpected error text: $out" >&2; exit 1; }
if out=$("$BIN" rule create type=accept 2>&1); then
  echo "expected 'rule create' without --chain to fail" >&2; exit 1
fi
grep -q 'needs --chain' <<<"$out" || { echo "unexpected error text: $out" >&2; exit 1; }
echo "CLI errors: ok"
