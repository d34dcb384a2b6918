#!/usr/bin/env bash
# Docker through the unmodified kuryr-libnetwork (issue 14): kuryr-server
# 18.0.0 runs on host h1 against our Neutron API, with `midonet` as its
# binding executable (kuryr runs `<bindir>/midonet bind PORT IFNAME ...`).
# This script plays the Docker engine's side of the libnetwork protocol
# (the POSTs Docker sends a remote network and IPAM driver), and its
# sandbox step (moving the veth into the container's namespace). A VM on
# h2, a Neutron port bound as Nova binds it, is on the same network: the
# container and the VM talk. Needs root and the kuryr venv
# (MIDONET_KURYR_VENV, default target/kuryr-venv; scripts/test makes it).
set -uo pipefail
cd "$(dirname "$0")/../.."
export P=${P:-mnkur}
export BIN=${MIDONET_BIN:-$PWD/target/debug/midonet}
# kuryr speaks to Neutron without Keystone (auth_type none): plain http.
export E2E_SECURE=0
export E2E_STATE=/tmp/midonet-e2e.$P
VENV=${MIDONET_KURYR_VENV:-$PWD/target/kuryr-venv}
source tests/e2e/lib.sh

if [[ $(id -u) != 0 ]]; then echo "kuryr e2e: needs root"; echo "0 passed, 1 failed"; exit 1; fi
for c in ip ping python3 curl unshare "$VENV/bin/kuryr-server"; do
    command -v "$c" >/dev/null || { echo "kuryr e2e: missing $c" >&2; echo "0 passed, 1 failed"; exit 1; }
done

trap '[[ ${E2E_KEEP:-0} == 1 ]] || e2e_down' EXIT
# A libnetwork call as Docker makes it; the answer on stdout, non-zero on
# an error answer ({"Err": ...}).
docker_call() { # ENDPOINT JSON
    local out; out=$(nsx h1 curl -s -X POST -H 'Accept: application/vnd.docker.plugins.v1.2+json' \
        -H 'Content-Type: application/json' -d "$2" "http://127.0.0.1:23750/$1") || return 1
    echo "$out"
    [[ -n $out ]] && ! grep -q '"Err": *"[^"]' <<<"$out"
}
neutron() { nsx ctl curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "$NEUTRON/$2"; }

# ---------------------------------------------------------------- testbed --
e2e_down
e2e_underlay
start_server || { echo "0 passed, 1 failed"; exit 1; }
start_agent h1 1; start_agent h2 1
H1=$(host_id h1); H2=$(host_id h2)
tunnel_zone h1 h2

# kuryr's binding executable is our binary, talking to h1's agent.
mkdir -p "$E2E_STATE/kuryr-bin"
printf '#!/bin/sh\nMIDONET_AGENT_SOCKET=%s exec %s "$@"\n' "$E2E_STATE/agent-h1/agent.sock" "$BIN" >"$E2E_STATE/kuryr-bin/midonet"
chmod +x "$E2E_STATE/kuryr-bin/midonet"
cat >"$E2E_STATE/kuryr.conf" <<EOF
[DEFAULT]
kuryr_uri = http://127.0.0.1:23750
bindir = $E2E_STATE/kuryr-bin
capability_scope = local
process_external_connectivity = False
debug = True
[neutron]
auth_type = none
endpoint = http://$CTL_IP:9696
EOF
# kuryr names the host by its hostname (binding:host_id): h1 in a UTS
# namespace of its own, as the agent registered.
ip netns exec "$(ns h1)" unshare --uts sh -c 'hostname h1 && exec "$0" --config-file "$1"' \
    "$VENV/bin/kuryr-server" "$E2E_STATE/kuryr.conf" >>"$E2E_STATE/kuryr.log" 2>&1 &
echo $! >"$E2E_STATE/kuryr.pid"
wait_for 60 'grep -q NetworkDriver <<<"$(docker_call Plugin.Activate "{}")"' || { echo "kuryr-server did not start"; tail -5 "$E2E_STATE/kuryr.log"; echo "0 passed, 1 failed"; exit 1; }

NID=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
EID=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
POOL=10.70.0.0/24

# ----------------------------------------------------------------- checks --
t_network() {
    local out why=""
    docker_call IpamDriver.GetDefaultAddressSpaces '{}' || why+="address spaces; "
    out=$(docker_call IpamDriver.RequestPool '{"AddressSpace": "no_address_space", "Pool": "'$POOL'", "SubPool": "", "Options": {}, "V6": false}') \
        || { echo "RequestPool: $out"; return 1; }
    PID=$(json 'd["PoolID"]' <<<"$out"); echo "pool $PID"
    echo "$PID" >"$E2E_STATE/pool"
    docker_call IpamDriver.RequestAddress '{"PoolID": "'$PID'", "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}' \
        || why+="gateway address; "
    out=$(docker_call NetworkDriver.CreateNetwork '{"NetworkID": "'$NID'", "IPv4Data": [{"AddressSpace": "no_address_space", "Pool": "'$POOL'", "Gateway": "10.70.0.1/24"}], "IPv6Data": [], "Options": {"com.docker.network.generic": {}}}') \
        || why+="CreateNetwork: $out; "
    local nets; nets=$(neutron GET "networks?tags=kuryr.net.uuid.lh:${NID:0:32}" | json 'len(d["networks"])')
    [[ $nets == 1 ]] || why+="Neutron has $nets networks tagged with the Docker network; "
    echo "${why:-pool, gateway and network made on our Neutron API}"
    [[ -z $why ]]
}
t_endpoint() {
    local out why="" pid; pid=$(cat "$E2E_STATE/pool")
    out=$(docker_call IpamDriver.RequestAddress '{"PoolID": "'$pid'", "Address": "", "Options": {}}') || { echo "RequestAddress: $out"; return 1; }
    CADDR=$(json 'd["Address"]' <<<"$out"); echo "container address $CADDR"; echo "$CADDR" >"$E2E_STATE/caddr"
    out=$(docker_call NetworkDriver.CreateEndpoint '{"NetworkID": "'$NID'", "EndpointID": "'$EID'", "Interface": {"Address": "'$CADDR'", "AddressIPv6": "", "MacAddress": ""}, "Options": {}}') \
        || { echo "CreateEndpoint: $out"; tail -20 "$E2E_STATE/kuryr.log"; return 1; }
    local mac; mac=$(json 'd["Interface"]["MacAddress"]' <<<"$out")
    out=$(docker_call NetworkDriver.Join '{"NetworkID": "'$NID'", "EndpointID": "'$EID'", "SandboxKey": "/var/run/docker/netns/'"${EID:0:12}"'", "Options": {}}') \
        || { echo "Join: $out"; return 1; }
    echo "$out"
    local src gw; src=$(json 'd["InterfaceName"]["SrcName"]' <<<"$out"); gw=$(json 'd["Gateway"]' <<<"$out")
    echo "$src" >"$E2E_STATE/src"
    # Docker's part: the veth into the sandbox, named eth0, addressed.
    mkns ct1
    nsx h1 ip link set "$src" netns "$(ns ct1)" || why+="no $src on h1; "
    nsx ct1 ip link set "$src" name eth0
    nsx ct1 ip addr add "$CADDR" dev eth0
    nsx ct1 ip link set eth0 up
    nsx ct1 ip route add default via "$gw"
    [[ $(nsx ct1 cat /sys/class/net/eth0/address) == "$mac" ]] || why+="eth0 lacks the port's MAC $mac; "
    # The Neutron port: bound on h1 as vif_type midonet, through `midonet bind`.
    local port; port=$(neutron GET "ports?fixed_ips=ip_address%3D${CADDR%/*}" | json 'd["ports"][0]["id"]')
    echo "$port" >"$E2E_STATE/cport"
    wait_for 10 '[[ $(neutron GET "ports/'"$port"'" | json "d[\"port\"][\"binding:vif_type\"]") == midonet ]]' \
        || why+="the port's vif_type is $(neutron GET "ports/$port" | json 'd["port"]["binding:vif_type"]'); "
    wait_for 10 '[[ $(mido port show '"$port"' -o json | json "d[\"hostId\"]") == '"$H1"' ]]' \
        || why+="the MidoNet port is not bound on h1; "
    echo "${why:-endpoint created, joined, bound through midonet bind}"
    [[ -z $why ]]
}
t_traffic() {
    local why="" out net caddr; caddr=$(cat "$E2E_STATE/caddr")
    net=$(neutron GET "networks?tags=kuryr.net.uuid.lh:${NID:0:32}" | json 'd["networks"][0]["id"]')
    # A VM on h2: a Neutron port bound as Nova binds it (mm-ctl's role).
    out=$(neutron POST ports '{"port": {"network_id": "'$net'", "binding:host_id": "h2", "name": "vm-k"}}') || { echo "no VM port"; return 1; }
    local vport vip vmac
    vport=$(json 'd["port"]["id"]' <<<"$out"); vip=$(json 'd["port"]["fixed_ips"][0]["ip_address"]' <<<"$out"); vmac=$(json 'd["port"]["mac_address"]' <<<"$out")
    vm vmk h2 "$vmac"
    nsx vmk ip addr add "$vip/24" dev eth0
    MIDONET_AGENT_SOCKET=$E2E_STATE/agent-h2/agent.sock nsx h2 "$BIN" bind "$vport" vmk >/dev/null || why+="VM bind failed; "
    wait_for 15 "nsx ct1 ping -n -c 1 -W 1 $vip" || why+="the container does not ping the VM at $vip; "
    nsx ct1 ping -n -c 3 -i 0.2 -W 1 "$vip" >/dev/null || why+="pings lost; "
    # TCP, 1 MB from the VM to the container.
    nsx ct1 timeout 15 python3 -c '
import socket
s = socket.socket(); s.bind(("'"${caddr%/*}"'", 8000)); s.listen(1); c, _ = s.accept(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
print(n)' >"$E2E_STATE/tcp.out" &
    local sp=$!; sleep 0.5
    nsx vmk timeout 10 python3 -c '
import socket
s = socket.create_connection(("'"${caddr%/*}"'", 8000), timeout=5); s.sendall(b"x" * (1 << 20)); s.close()' || why+="TCP connect failed; "
    wait $sp
    [[ $(cat "$E2E_STATE/tcp.out") == $((1 << 20)) ]] || why+="the container got $(cat "$E2E_STATE/tcp.out") bytes of 1 MB; "
    echo "${why:-the container (kuryr, h1) and the VM (Neutron port, h2) ping and talk TCP}"
    [[ -z $why ]]
}
t_teardown() {
    local why="" pid port caddr
    pid=$(cat "$E2E_STATE/pool"); port=$(cat "$E2E_STATE/cport"); caddr=$(cat "$E2E_STATE/caddr")
    # Docker gives the interface back to the host, by its first name, on Leave.
    nsx ct1 ip link set eth0 netns "$(ns h1)" name "$(cat "$E2E_STATE/src")" || why+="eth0 not given back; "
    docker_call NetworkDriver.Leave '{"NetworkID": "'$NID'", "EndpointID": "'$EID'"}' || why+="Leave; "
    docker_call NetworkDriver.DeleteEndpoint '{"NetworkID": "'$NID'", "EndpointID": "'$EID'"}' || why+="DeleteEndpoint; "
    # kuryr ran `midonet unbind` and removed the veth; the port is still there.
    local h; h=$(mido port show "$port" -o json | json 'str(d["hostId"])') || why+="the port went before ReleaseAddress; "
    [[ $h == None ]] || why+="the port stayed bound to $h; "
    nsx h1 ip link show "$(cat "$E2E_STATE/src")" >/dev/null 2>&1 && why+="the veth stayed; "
    docker_call IpamDriver.ReleaseAddress '{"PoolID": "'$pid'", "Address": "'"${caddr%/*}"'"}' || why+="ReleaseAddress; "
    mido port show "$port" >/dev/null 2>&1 && why+="the port outlived ReleaseAddress; "
    # The VM's port goes first (a network with ports is in use).
    for p in $(neutron GET "ports?name=vm-k" | json '" ".join(p["id"] for p in d["ports"])'); do neutron DELETE "ports/$p" >/dev/null; done
    docker_call NetworkDriver.DeleteNetwork '{"NetworkID": "'$NID'"}' || why+="DeleteNetwork; "
    docker_call IpamDriver.ReleasePool '{"PoolID": "'$pid'"}' || why+="ReleasePool; "
    [[ $(neutron GET "networks?tags=kuryr.net.uuid.lh:${NID:0:32}" | json 'len(d["networks"])') == 0 ]] || why+="the network stayed; "
    [[ $(neutron GET "subnetpools" | json 'len(d["subnetpools"])') == 0 ]] || why+="the pool stayed; "
    echo "${why:-Leave, DeleteEndpoint, ReleaseAddress, DeleteNetwork, ReleasePool: all gone}"
    [[ -z $why ]]
}

check "Docker's network: pool, gateway and network through kuryr on our Neutron API" t_network
check "an endpoint: created, joined, its port vif_type midonet and bound on h1 by midonet bind" t_endpoint
check "the container and a VM on another host ping and talk TCP" t_traffic
check "teardown through kuryr leaves nothing" t_teardown

tally "kuryr e2e"
