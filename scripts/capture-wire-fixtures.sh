#!/usr/bin/env bash
# Captures the real packets the wire tests decode byte for byte: two network
# namespaces joined by a veth, real ping/arp/udp/tcp/dhcp (busybox udhcpc against
# dnsmasq), a kernel VXLAN tunnel, IPv6 neighbour discovery and IPv4 fragments.
# Needs root, iproute2, tcpdump, busybox, dnsmasq. Cleans up what it creates.
set -euo pipefail
OUT=${1:-crates/wire/tests/captures}
mkdir -p "$OUT"
A=wcap-a-$$ B=wcap-b-$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
ip link add wa type veth peer name wb
ip link set wa netns "$A"; ip link set wb netns "$B"
ip -n "$A" link set wa address 02:00:00:00:00:01 up
ip -n "$B" link set wb address 02:00:00:00:00:02 up
ip -n "$A" link set lo up; ip -n "$B" link set lo up
ip -n "$B" addr add 10.0.0.2/24 dev wb
# The veths keep the kernel's offloads: a capture then holds TCP/UDP
# checksums still partial (the pseudo-header sum); finish_checksums below
# completes them after capture, as a NIC would have on the wire.

cap() { # name, netns, filter, packet count
  ip netns exec "$2" timeout 5 tcpdump -U -q -c "$4" -i wb -w "$OUT/$1.pcap" "$3" >/dev/null 2>&1 &
  PIDS+=($!); sleep 1
}
stop() { wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'; }

# DHCP first, while A has no address.
cat >/tmp/wcap-dnsmasq.conf <<CONF
interface=wb
bind-interfaces
dhcp-range=10.0.0.50,10.0.0.60,255.255.255.0,3600
dhcp-option=option:router,10.0.0.2
dhcp-option=option:dns-server,10.0.0.53
dhcp-option-force=option:mtu,1450
dhcp-option-force=option:classless-static-route,172.16.0.0/12,10.0.0.2,0.0.0.0/0,10.0.0.2
CONF
ip netns exec "$B" dnsmasq -C /tmp/wcap-dnsmasq.conf -k --dhcp-leasefile=/tmp/wcap-leases --pid-file= -u root >/dev/null 2>&1 &
PIDS+=($!); sleep 0.5
cap dhcp "$B" "udp port 67 or udp port 68" 4
ip netns exec "$A" busybox udhcpc -i wa -n -q -s /bin/true >/dev/null 2>&1
stop
ip -n "$A" addr add 10.0.0.1/24 dev wa

cap arp_icmp "$B" "arp or icmp" 4
ip netns exec "$A" ping -c 1 -W 1 10.0.0.2 >/dev/null
stop
cap udp "$B" "udp or icmp" 2
ip netns exec "$A" bash -c 'echo hello > /dev/udp/10.0.0.2/5555' || true
stop
cap tcp "$B" "tcp" 2
ip netns exec "$A" bash -c 'exec 3<>/dev/tcp/10.0.0.2/5556' 2>/dev/null || true
stop
cap frag "$B" "icmp or (ip[6:2] & 0x3fff != 0)" 2
ip netns exec "$A" ping -c 1 -W 1 -s 2000 10.0.0.2 >/dev/null
stop
cap nd "$B" "icmp6 and (ip6[40] == 135 or ip6[40] == 136 or ip6[40] == 128)" 3
ip -n "$A" addr add fd00::1/64 dev wa nodad; ip -n "$B" addr add fd00::2/64 dev wb nodad; sleep 0.2
ip netns exec "$A" ping -6 -c 1 -W 1 fd00::2 >/dev/null
stop
# VXLAN over the veth: capture the outer packets.
ip -n "$A" link add vxa type vxlan id 42 remote 10.0.0.2 dstport 4789 dev wa
ip -n "$B" link add vxb type vxlan id 42 remote 10.0.0.1 dstport 4789 dev wb
ip -n "$A" link set vxa address 02:00:00:00:01:01 up; ip -n "$B" link set vxb address 02:00:00:00:01:02 up
ip -n "$A" addr add 192.168.42.1/24 dev vxa; ip -n "$B" addr add 192.168.42.2/24 dev vxb
cap vxlan "$B" "udp port 4789" 2
ip netns exec "$A" ping -c 1 -W 1 192.168.42.2 >/dev/null
stop
ls -l "$OUT"

# Completes every IPv4 TCP/UDP checksum in the fixtures (what the wire
# would carry; a capture on a veth with offloads on holds partial ones).
finish_checksums() {
python3 - "$OUT"/*.pcap <<'PY'
import struct, sys
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s > 0xffff: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
for path in sys.argv[1:]:
    d = bytearray(open(path, "rb").read()); at = 24
    while at + 16 <= len(d):
        n = struct.unpack("<I", d[at + 8:at + 12])[0]; f = at + 16; at = f + n
        if n < 34 or d[f + 12:f + 14] != b"\x08\x00": continue
        ip = f + 14; hl = (d[ip] & 15) * 4; tot = struct.unpack("!H", d[ip + 2:ip + 4])[0]
        proto, frag = d[ip + 9], struct.unpack("!H", d[ip + 6:ip + 8])[0] & 0x3fff
        if frag or proto not in (6, 17) or ip + tot > f + n: continue
        l4, ln = ip + hl, tot - hl; off = l4 + (16 if proto == 6 else 6)
        if off + 2 > l4 + ln: continue
        d[off:off + 2] = b"\0\0"
        ck = csum(bytes(d[ip + 12:ip + 20]) + struct.pack("!BBH", 0, proto, ln) + bytes(d[l4:l4 + ln]))
        d[off:off + 2] = struct.pack("!H", ck or 0xffff if proto == 17 else ck)
    open(path, "wb").write(d)
PY
}
finish_checksums
