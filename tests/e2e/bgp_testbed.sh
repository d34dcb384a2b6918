# The BGP testbed, shared by tests/e2e/bgp.sh and bench/bgp.sh: h1 and h2
# are gateways (the edge router's uplinks, AS 64512, in a stateful port
# group), h3 a hypervisor with vm1 behind tenant router r1 (floating IP
# 198.51.100.77); "up" is the upstream router (AS 65000) with "the
# Internet" (172.16.50.0/24) behind it, running FRR (up_frr) or BIRD
# (up_bird). Sourced after tests/e2e/lib.sh.
HOST_IP[h3]=10.99.0.3

# The gateways' FRR daemons, by the PIDs in their pid files (a killed
# agent leaves them to its next run).
speakers_down() {
    local f p
    for f in "$E2E_STATE"/agent-*/bgp/*/*.pid; do
        [[ -f $f ]] || continue
        p=$(cat "$f" 2>/dev/null); [[ $p =~ ^[0-9]+$ ]] && kill -9 "$p" 2>/dev/null
    done
    return 0
}



bgp_testbed() {
    speakers_down
    e2e_down
    e2e_underlay
    mkns h3
    ip link add ul0 netns "$(ns h3)" type veth peer name h3 netns "$(ns ul)"
    nsx ul ip link set h3 master br-ul up; nsx h3 ip link set ul0 up
    nsx h3 ip addr add 10.99.0.3/24 dev ul0
    start_server || { echo "0 passed, 1 failed"; exit 1; }
    # A small cap, for the flood check at the end.
    export AGENT_EXTRA="--bgp-max-prefixes ${BGP_CAP:-100}"
    start_agent h1 1; start_agent h2 1; start_agent h3 1
    H1=$(host_id h1); H2=$(host_id h2); H3=$(host_id h3)

    # The upstream: eth1 to h1's uplink (203.0.113.0/24), eth2 to h2's
    # (203.0.114.0/24), and "the Internet" behind it (172.16.50.0/24).
    mkns up
    ip link add eth1 netns "$(ns up)" type veth peer name up0 netns "$(ns h1)"
    ip link add eth2 netns "$(ns up)" type veth peer name up0 netns "$(ns h2)"
    nsx h1 ip link set up0 up; nsx h2 ip link set up0 up
    nsx up ip link set eth1 up; nsx up ip link set eth2 up
    nsx up ip addr add 203.0.113.9/24 dev eth1
    nsx up ip addr add 203.0.114.9/24 dev eth2
    nsx up ip addr add 172.16.50.1/24 dev lo
    nsx up sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth1.rp_filter=0 net.ipv4.conf.eth2.rp_filter=0
    nsx up sysctl -qw net.ipv4.fib_multipath_hash_policy=1

    vm vm1 h3 02:00:00:00:00:31
    nsx vm1 ip addr add 192.168.10.11/24 dev eth0; nsx vm1 ip route add default via 192.168.10.1

    tunnel_zone h1 h2 h3
    route() { mido route create --router "$1" type=Normal src-network-addr=0.0.0.0 src-network-length=0 \
        dst-network-addr="$2" dst-network-length="$3" next-hop-port="$4" ${5:+next-hop-gateway=$5} weight=100 >/dev/null; }
    # Tenant: vm1 on net-a behind r1, floating IP 198.51.100.77.
    BA=$(mido bridge create name=net-a)
    R=$(mido router create name=r1)
    RA=$(mido port create --router "$R" port-address=192.168.10.1 network-address=192.168.10.0 network-length=24)
    mido port link "$RA" "$(mido port create --bridge "$BA")" >/dev/null
    route "$R" 192.168.10.0 24 "$RA"
    VP=$(mido port create --bridge "$BA"); mido port bind "$VP" "$H3" vm1 >/dev/null
    # Edge: the provider router, with its uplinks on h1 and h2 in a stateful
    # port group, AS 64512, no static route to the outside.
    E=$(mido router create name=edge as-number=64512)
    U1=$(mido port create --router "$E" port-address=203.0.113.1 network-address=203.0.113.0 network-length=24)
    U2=$(mido port create --router "$E" port-address=203.0.114.1 network-address=203.0.114.0 network-length=24)
    mido port bind "$U1" "$H1" up0 >/dev/null; mido port bind "$U2" "$H2" up0 >/dev/null
    route "$E" 203.0.113.0 24 "$U1"; route "$E" 203.0.114.0 24 "$U2"
    PG=$(mido port-group create name=uplinks stateful=true)
    mido port-group add "$PG" "$U1" >/dev/null; mido port-group add "$PG" "$U2" >/dev/null
    el=$(mido port create --router "$E" port-address=169.254.0.2 network-address=169.254.0.0 network-length=30)
    tl=$(mido port create --router "$R" port-address=169.254.0.1 network-address=169.254.0.0 network-length=30)
    mido port link "$el" "$tl" >/dev/null
    route "$E" 198.51.100.0 24 "$el" 169.254.0.1
    route "$E" 192.168.0.0 16 "$el" 169.254.0.1
    route "$R" 0.0.0.0 0 "$tl" 169.254.0.2
    rin=$(mido chain create name=r1-in); rout=$(mido chain create name=r1-out)
    mido rule create --chain "$rin" type=dnat flow-action=accept nw-dst-address=198.51.100.77 nw-dst-length=32 \
        'nat-targets=[{"addressFrom":"192.168.10.11","addressTo":"192.168.10.11","portFrom":0,"portTo":0}]' >/dev/null
    mido rule create --chain "$rout" type=snat flow-action=accept out-ports="[\"$tl\"]" nw-src-address=192.168.10.11 nw-src-length=32 \
        'nat-targets=[{"addressFrom":"198.51.100.77","addressTo":"198.51.100.77","portFrom":0,"portTo":0}]' >/dev/null
    mido router update "$R" inbound-filter-id="$rin" outbound-filter-id="$rout" >/dev/null
    # BGP: the floating-IP range advertised, both upstream addresses peers
    # (a 3 s hold time: a dead gateway is noticed in 3 s).
    mido bgp-network create --router "$E" subnet-address=198.51.100.0 subnet-length=24 >/dev/null
    P1=$(mido bgp-peer create --router "$E" as-number=65000 address=203.0.113.9 keep-alive=1 hold-time=3 connect-retry=1)
    P2=$(mido bgp-peer create --router "$E" as-number=65000 address=203.0.114.9 keep-alive=1 hold-time=3 connect-retry=1)

}

# ------------------------------------------------------------- upstreams --
UPD=$E2E_STATE/up
up_dir() { mkdir -p "$UPD"; chown frr:frr "$UPD" 2>/dev/null || true; }
up_frr() {
    up_dir
    cat >"$UPD/zebra.conf" <<'EOF'
frr defaults traditional
EOF
    # BFD towards both gateways, fast (used once the gateways turn it on).
    cat >"$UPD/bfdd.conf" <<'EOF'
frr defaults traditional
bfd
 profile fast
  receive-interval 100
  transmit-interval 100
 exit
exit
EOF
    cat >"$UPD/bgpd.conf" <<'EOF'
frr defaults traditional
router bgp 65000
 bgp router-id 172.16.50.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 203.0.113.1 remote-as 64512
 neighbor 203.0.113.1 timers 1 3
 neighbor 203.0.113.1 timers connect 1
 neighbor 203.0.113.1 bfd profile fast
 neighbor 203.0.114.1 remote-as 64512
 neighbor 203.0.114.1 timers 1 3
 neighbor 203.0.114.1 timers connect 1
 neighbor 203.0.114.1 bfd profile fast
 address-family ipv4 unicast
  network 172.16.50.0/24
  maximum-paths 8
 exit-address-family
exit
EOF
    chown frr:frr "$UPD"/*.conf 2>/dev/null || true
    local d
    for d in zebra bfdd bgpd; do
        # shellcheck disable=SC2046
        ip netns exec "$(ns up)" /usr/lib/frr/$d -N "${P}up" --vty_socket "$UPD" -f "$UPD/$d.conf" -i "$UPD/$d.pid" \
            -z "$UPD/zserv.api" --log "file:$UPD/$d.log" $([[ $d == bfdd ]] && echo --bfdctl "$UPD/bfdd.sock") >/dev/null 2>&1 &
        echo $! >"$E2E_STATE/up-$d.pid"
        [[ $d == zebra ]] && wait_for 5 'test -S "$UPD/zserv.api"'
    done
    UP_KIND=frr
}
up_bird() {
    up_dir
    cat >"$UPD/bird.conf" <<'EOF'
router id 172.16.50.1;
protocol device { scan time 1; }
protocol direct { ipv4; interface "lo"; }
protocol kernel { ipv4 { export filter { if proto = "direct1" then reject; accept; }; }; merge paths on; }
# BFD towards both gateways, fast (used once the gateways turn it on).
protocol bfd { interface "eth*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
template bgp uplinkpeer {
  # Fast failover timers; BIRD's 60 s wait after a session error would
  # keep a restarted gateway out for a minute.
  local as 65000; hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 10; bfd on;
  ipv4 { import all; export filter { if net ~ [ 10.240.0.0/16+ ] then reject; accept; }; };
}
protocol bgp gw1 from uplinkpeer { neighbor 203.0.113.1 as 64512; }
protocol bgp gw2 from uplinkpeer {
  neighbor 203.0.114.1 as 64512;
  ipv4 { import all; export all; };
}
# 150 prefixes for gw2 only, when enabled: over its cap of 100.
protocol static flood {
  ipv4; disabled;
EOF
    local i
    for i in $(seq 150); do echo "  route 10.240.$i.0/24 unreachable;"; done >>"$UPD/bird.conf"
    echo "}" >>"$UPD/bird.conf"
    # 1,000 prefixes for both, when enabled (bench/bgp.sh).
    { echo "protocol static bulk { ipv4; disabled;"
      for i in $(seq 0 999); do echo "  route 10.$((241 + i / 256)).$((i % 256)).0/24 unreachable;"; done
      echo "}"; } >>"$UPD/bird.conf"
    ip netns exec "$(ns up)" bird -f -c "$UPD/bird.conf" -s "$UPD/bird.ctl" >"$UPD/bird.log" 2>&1 &
    echo $! >"$E2E_STATE/up-bird.pid"
    UP_KIND=bird
}
up_stop() {
    local f
    for f in "$E2E_STATE"/up-*.pid; do [[ -f $f ]] && { stop_pid "$f" || stop_pid "$f" KILL; rm -f "$f"; }; done
    # What a daemon left in the kernel goes (zebra's routes use nexthop
    # objects: flushing those removes them).
    if grep -qE "^$(ns up)( |\$)" <<<"$(ip netns list 2>/dev/null)"; then
        nsx up ip nexthop flush >/dev/null 2>&1
        nsx up ip route flush proto bird >/dev/null 2>&1
    fi
    return 0
}
# The upstream's sessions up (1 = only gw2's, 2 = both).
up_sessions() {
    if [[ $UP_KIND == frr ]]; then
        vtysh --vty_socket "$UPD" -c 'show bgp ipv4 unicast summary json' 2>/dev/null \
            | json 'sum(p["state"] == "Established" for p in d["peers"].values())'
    else
        nsx up birdc -s "$UPD/bird.ctl" show protocols | grep -c Established
    fi
}
# The upstream's BFD sessions up.
up_bfd() {
    if [[ $UP_KIND == frr ]]; then
        vtysh --vty_socket "$UPD" -c 'show bfd peers json' 2>/dev/null | json 'sum(p["status"] == "up" for p in d)'
    else
        nsx up birdc -s "$UPD/bird.ctl" show bfd sessions | grep -c ' Up '
    fi
}
# The gateways' peers' settings: BFD on (100 ms x 3, a 30 s hold time BFD
# must beat by far) or off (the suite's 3 s hold time).
peers_bfd() { # on|off
    local p
    for p in "$P1" "$P2"; do
        if [[ $1 == on ]]; then
            mido bgp-peer update "$p" keep-alive=10 hold-time=30 bfd-enabled=true bfd-interval=100 bfd-multiplier=3 >/dev/null
        else
            mido bgp-peer update "$p" keep-alive=1 hold-time=3 bfd-enabled=false >/dev/null
        fi || return 1
    done
}
peer_bfd() { mido bgp-peer show "$1" -o json | json 'd["status"]["bfd"]'; }
# The upstream's kernel route to the floating-IP range: its next hops.
up_nexthops() { nsx up ip route show 198.51.100.0/24 | grep -oE 'via 203\.0\.11[34]\.1' | sort -u | tr '\n' ' '; }
learned_routes() { # the edge router's learned routes to the Internet, by uplink
    mido route list --router "$E" -o json \
        | json '" ".join(sorted(r["nextHopPort"] for r in d if r["learned"] and r["dstNetworkAddr"] == "172.16.50.0"))'
}
peer_state() { mido bgp-peer show "$1" -o json | json 'd["status"]["state"]'; }

