# A ZooKeeper ensemble of three (Debian's package) for the test scripts and
# bench/zookeeper.sh, every member started and stopped by PID. Source it,
# then set ZK_DIR (data and configs), ZK_HOST (the members' address) and
# ZK_EXEC (a command prefix, e.g. `ip netns exec NS`; empty for none), and
# call zk_ensemble. ZK_CONNECT is then the connect string, ZK_PIDS[i] and
# ZK_PORT[i] each member's. Ports are free ones of the host unless
# ZK_BASE_PORT is set (clients on BASE+1..3).
ZK_JAR=/usr/share/java/zookeeper.jar
declare -A ZK_PORT ZK_PIDS
ZK_CONNECT=""
ZK_EXEC=${ZK_EXEC:-}

zk_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

zk_ensemble() {
    [[ -f $ZK_JAR ]] || { echo "FAIL $ZK_JAR missing (apt-get install zookeeper)" >&2; return 1; }
    local i servers="" c q e
    ZK_CONNECT=""
    for i in 1 2 3; do
        if [[ -n ${ZK_BASE_PORT:-} ]]; then
            c=$((ZK_BASE_PORT + i)); q=$((ZK_BASE_PORT + 1000 + i)); e=$((ZK_BASE_PORT + 2000 + i))
        else
            c=$(zk_free_port); q=$(zk_free_port); e=$(zk_free_port)
        fi
        ZK_PORT[$i]=$c
        ZK_CONNECT+="${ZK_CONNECT:+,}$ZK_HOST:$c"
        servers+="server.$i=$ZK_HOST:$q:$e"$'\n'
    done
    for i in 1 2 3; do
        mkdir -p "$ZK_DIR/zk$i"; echo $i >"$ZK_DIR/zk$i/myid"
        printf 'tickTime=500\ninitLimit=20\nsyncLimit=5\ndataDir=%s\nclientPort=%s\nclientPortAddress=%s\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n%s' \
            "$ZK_DIR/zk$i" "${ZK_PORT[$i]}" "$ZK_HOST" "$servers" >"$ZK_DIR/zoo$i.cfg"
        zk_start $i
    done
    for _ in $(seq 300); do
        [[ $(zk_mode 1) =~ leader|follower ]] && return 0
        sleep 0.1
    done
    echo "FAIL the ZooKeeper ensemble did not form" >&2; return 1
}

zk_start() { # MEMBER: (again) by PID, on its own data
    $ZK_EXEC java -Xmx${ZK_HEAP:-256m} -cp "$ZK_JAR" -Dzookeeper.log.dir="$ZK_DIR" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_DIR/zoo$1.cfg" >>"$ZK_DIR/zk$1.log" 2>&1 &
    ZK_PIDS[$1]=$!
    echo $! >"$ZK_DIR/zk$1.pid"
}

zk_kill() { # MEMBER [SIGNAL]
    kill -"${2:-KILL}" "${ZK_PIDS[$1]}" 2>/dev/null || true
    wait "${ZK_PIDS[$1]}" 2>/dev/null || true
}

zk_stop_all() {
    local i
    for i in 1 2 3; do [[ -n ${ZK_PIDS[$i]:-} ]] && zk_kill $i; done
    return 0
}

# A member's mode (leader, follower, standalone) or "down".
zk_mode() { # MEMBER
    $ZK_EXEC python3 - "$ZK_HOST" "${ZK_PORT[$1]}" <<'PY'
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 1); s.sendall(b"srvr")
    data = b""
    while chunk := s.recv(4096): data += chunk
    print(next((l.split(":")[1].strip() for l in data.decode().splitlines() if l.startswith("Mode")), "down"))
except OSError:
    print("down")
PY
}

zk_leader() { local i; for i in 1 2 3; do [[ $(zk_mode $i) == leader ]] && { echo $i; return 0; }; done; return 1; }

zk_serving() { # MEMBER: until it is the leader or a follower again
    for _ in $(seq 600); do [[ $(zk_mode "$1") =~ leader|follower ]] && return 0; sleep 0.1; done
    return 1
}
