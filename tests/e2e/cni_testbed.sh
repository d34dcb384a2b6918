# The CNI testbed, shared by tests/e2e/cni.sh and bench/cni.sh: agents on
# h1 and h2 in one tunnel zone, a bridge "pods" with DHCP subnet
# 10.50.0.0/24 whose gateway 10.50.0.1 is a router's port, and helpers
# that call midonet-cni as a runtime does. Sourced after tests/e2e/lib.sh.
CNI_DATA=$E2E_STATE/cni


cni_testbed() {
    e2e_down
    e2e_underlay
    start_server || return 1
    start_agent h1 1; start_agent h2 1
    H1=$(host_id h1) && H2=$(host_id h2) || return 1
    tunnel_zone h1 h2 || return 1
    PODS=$(mido bridge create name=pods) || return 1
    mido dhcp create --bridge "$PODS" subnet-prefix=10.50.0.0 subnet-length=24 default-gateway=10.50.0.1 >/dev/null || return 1
    local r rp bp
    r=$(mido router create name=pods-gw)
    rp=$(mido port create --router "$r" port-address=10.50.0.1 network-address=10.50.0.0 network-length=24)
    bp=$(mido port create --bridge "$PODS")
    mido port link "$rp" "$bp" >/dev/null
    mido route create --router "$r" type=Normal src-network-addr=0.0.0.0 src-network-length=0 \
        dst-network-addr=10.50.0.0 dst-network-length=24 next-hop-port="$rp" weight=100 >/dev/null
    CNI_TOKEN=""
    if [[ $E2E_SECURE == 1 ]]; then
        CNI_TOKEN=$(ccurl -sf -X POST -u "admin:$E2E_PASSWORD" "$API/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])') || return 1
    fi
    mkdir -p "$CNI_DATA"
}

# The network configuration of h1 or h2 (the agent's socket is the
# host's); `conf KEY JSON` overrides or adds one field.
conf() {
    python3 - "$API" "$PODS" "$CNI_DATA" "$CNI_TOKEN" "$PKI/ca.pem" "$E2E_STATE/agent-${CNI_HOST:-h1}/agent.sock" "$@" <<'PY'
import json, sys
api, net, data, token, ca, sock = sys.argv[1:7]
c = {"cniVersion": "1.1.0", "name": "pods", "type": "midonet-cni", "api": api, "network": net,
     "agentSocket": sock, "dataDir": data}
if token:
    c["token"] = token; c["ca"] = ca
if len(sys.argv) > 8:
    c[sys.argv[7]] = json.loads(sys.argv[8])
print(json.dumps(c))
PY
}

# cni HOST COMMAND CONTAINER IFNAME NETNS [CONF]: the plugin run in HOST's
# namespace with only the CNI environment; its stdout; its exit status.
cni() {
    local h=$1 cmd=$2 cid=$3 ifn=$4 netns=$5 c=${6:-}
    [[ -n $c ]] || c=$(CNI_HOST=$h conf)
    # A configuration given for h1 is aimed at the host it runs on.
    c=${c//agent-h1\/agent.sock/agent-$h\/agent.sock}
    local e=(CNI_COMMAND="$cmd" CNI_PATH=/opt/cni/bin)
    [[ -n $cid ]] && e+=(CNI_CONTAINERID="$cid")
    [[ -n $ifn ]] && e+=(CNI_IFNAME="$ifn")
    [[ -n $netns ]] && e+=(CNI_NETNS="$netns")
    nsx "$h" env -i PATH="$PATH" "${e[@]}" "$CNI" <<<"$c"
}

pod() { ip netns add "$(ns "p$1")"; }            # the runtime's empty namespace
pod_ns() { echo "/run/netns/$(ns "p$1")"; }
state_of() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$CNI_DATA/pods/$1-$2.json" "$3"; }
port_binding() { mido port show "$1" -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["hostId"], d["interfaceName"])'; }
port_exists() { mido port show "$1" >/dev/null 2>&1; }
dhcp_ips() { rest GET "bridges/$PODS/dhcp/10.50.0.0_24/hosts" | python3 -c 'import json,sys; print(" ".join(sorted(h["ipAddr"] for h in json.load(sys.stdin))))'; }
bridge_ports() { mido port list --bridge "$PODS" -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
host_ends() { nsx "$1" ip -o link show | grep -oE ' mc[0-9a-f]{13}' | tr -d ' ' | sort | tr '\n' ' ' | sed 's/ $//'; }
bound_ports() { rest GET "hosts/$1/ports" | python3 -c 'import json,sys; print(" ".join(sorted(p["portId"] for p in json.load(sys.stdin))))'; }
