#!/usr/bin/env bash
# API throughput on the embedded store: bridge-port creates/s and reads/s.
# Starts a release `midonet server` on loopback with a fresh data dir, drives it
# with wrk for a bounded time, and stops the server by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-5}
PORT=${PORT:-18999}
command -v wrk >/dev/null || { echo "bench/api.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p midonet --bin midonet
DATA=$(mktemp -d)
./target/release/midonet server --listen 127.0.0.1:$PORT --data-dir "$DATA" >"$DATA/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
API=http://127.0.0.1:$PORT/midonet-api
for _ in $(seq 100); do curl -sf "$API/system_state" >/dev/null && break; sleep 0.1; done
BRIDGE=$(curl -sf -D - -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"bench"}' "$API/bridges" \
  | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')

echo "midonet-rs API benchmark: $(nproc) cores, embedded store (redb, fsync per commit), wrk over loopback"
wrk -t2 -c8 -d"${SECS}s" -s bench/create_port.lua "$BRIDGE/ports" >"$DATA/create.txt"
CREATES=$(awk '/Requests\/sec/{print $2}' "$DATA/create.txt")
BAD=$(awk '/Non-2xx/{print $5}' "$DATA/create.txt")
curl -sf "$BRIDGE/ports" | python3 -c 'import json,sys,urllib.parse
for p in json.load(sys.stdin): print(urllib.parse.urlparse(p["uri"]).path)' >"$DATA/paths.txt"
N=$(wc -l <"$DATA/paths.txt")
PORT_PATHS="$DATA/paths.txt" wrk -t2 -c16 -d"${SECS}s" -s bench/read_ports.lua "$API" >"$DATA/read.txt"
READS=$(awk '/Requests\/sec/{print $2}' "$DATA/read.txt")
printf 'port creates/s: %8.0f  (8 connections, %s failed; %s ports stored)  target 2000\n' "$CREATES" "${BAD:-0}" "$N"
printf 'port reads/s:   %8.0f  (16 connections, over all %s ports)          target 20000\n' "$READS" "$N"
