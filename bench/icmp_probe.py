#!/usr/bin/env python3
"""Sends an ICMP echo to ADDR every millisecond until the first reply (or
TIMEOUT seconds: at most 1,000 x TIMEOUT packets), then prints the wall
clock of that reply in nanoseconds since the epoch.

iputils ping sends unanswered echoes at most every 10 ms whatever its -i, so
a latency measured with it is quantised to 10 ms; this probe resolves 1 ms.
It writes READY_FILE once its socket is open, so the caller starts its clock
after the probe's own start-up.

  icmp_probe.py ADDR READY_FILE [TIMEOUT]      (root: a raw socket)
"""
import os
import select
import socket
import struct
import sys
import time


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo(ident, seq):
    payload = b"midonet-probe"
    h = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(h + payload), ident, seq) + payload


def main():
    addr, ready = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    with open(ready, "w") as f:
        f.write("ready\n")
    end = time.monotonic() + timeout
    seq = 0
    next_send = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            s.sendto(echo(ident, seq), (addr, 0))
            next_send = now + 0.001
        r, _, _ = select.select([s], [], [], max(0.0, next_send - time.monotonic()))
        if not r:
            continue
        pkt, src = s.recvfrom(2048)
        ihl = (pkt[0] & 0x0F) * 4
        typ, _, _, rid, _ = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if typ == 0 and rid == ident and src[0] == addr:
            print(time.time_ns())
            return 0
    print("timeout", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
