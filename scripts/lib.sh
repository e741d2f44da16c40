# shellcheck shell=bash
#
# Shared helpers for scripts/demo and the benchmark: a cluster of overlay nodes on one
# machine, each node a network namespace (see shared TESTBED.md for the rules and the
# address plan). Source this file, then call `cluster_init` once; it registers the cleanup
# with `trap` on EXIT, INT and TERM.
#
#   node i:   namespace "$(node_ns i)", underlay eth0 198.18.0.i/24 + fd18::i/64,
#             pods on lo: 198.19.i.1/32 + fd19:0:0:i::1/128
#   N = 2:    the two eth0 are the ends of one veth pair
#   N >= 3:   switch namespace "$(switch_ns)" holds bridge br0 and a veth to each node
#
# Everything here is bounded in time; nothing is created in the root namespace.

# Knobs (set before sourcing or before the calls).
: "${TUNDRA_BIN:=}"              # path of the tundra binary (default: target/release/tundra)
: "${TUNDRA_PORT:=8285}"         # UDP port tundra listens on in every node
: "${TUNDRA_TUN:=tun0}"          # TUN device name in every node
: "${TUNDRA_START_TIMEOUT:=10}"  # seconds to wait for the TUN to come up
: "${TUNDRA_STOP_TIMEOUT:=10}"   # seconds to wait for a clean exit after SIGTERM
: "${CLUSTER_UNDERLAY:=4}"       # 4 or 6: which underlay address family the peers use

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LIB_DIR/.." && pwd)
[[ -n $TUNDRA_BIN ]] || TUNDRA_BIN=$REPO_DIR/target/release/tundra

CLUSTER_PREFIX=""   # unique per run: "td<pid>"
CLUSTER_N=0
CLUSTER_DIR=""      # temporary directory: logs
CLUSTER_PIDS=()     # every background process started through this library
declare -A TUNDRA_PID=()  # node index -> pid of its tundra
declare -A TUNDRA_LOG=()  # node index -> its stderr log

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# need_tools TOOL:PACKAGE ... — exit with a clear message naming the apt packages to install.
need_tools() {
    local spec missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
    done
    ((${#missing[@]} == 0)) ||
        die "missing tools; install them with: apt-get install -y ${missing[*]}"
}

need_root() {
    ((EUID == 0)) || die "must run as root (network namespaces, TUN devices): try sudo $0"
}

# cluster_init: unique prefix, temporary directory, cleanup trap. Call once, first.
cluster_init() {
    CLUSTER_PREFIX="td$$"
    CLUSTER_DIR=$(mktemp -d "/tmp/${CLUSTER_PREFIX}.XXXXXX")
    trap cluster_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

node_ns() { echo "${CLUSTER_PREFIX}-n$1"; }
switch_ns() { echo "${CLUSTER_PREFIX}-sw"; }
underlay4() { echo "198.18.0.$1"; }
underlay6() { echo "fd18::$1"; }
pod4() { echo "198.19.$1.1"; }
pod6() { echo "fd19:0:0:$1::1"; }
subnet4() { echo "198.19.$1.0/24"; }
subnet6() { echo "fd19:0:0:$1::/64"; }

# in_node I CMD... — run CMD inside node I's namespace (in the foreground: a function run
# with & would leave $! naming a subshell, not CMD).
in_node() {
    local i=$1
    shift
    ip netns exec "$(node_ns "$i")" "$@"
}

# cluster_create N — N node namespaces joined by a veth pair (N=2) or a bridge (N>=3).
cluster_create() {
    local n=$1 i ns sw
    ((n >= 2 && n <= 250)) || die "cluster_create: N must be 2..250, got $n"
    [[ -n $CLUSTER_PREFIX ]] || die "cluster_create: call cluster_init first"
    CLUSTER_N=$n
    for ((i = 1; i <= n; i++)); do
        ip netns add "$(node_ns "$i")"
    done
    if ((n == 2)); then
        ip -n "$(node_ns 1)" link add eth0 type veth peer name eth0 netns "$(node_ns 2)"
    else
        sw=$(switch_ns)
        ip netns add "$sw"
        ip -n "$sw" link add br0 type bridge
        ip -n "$sw" link set br0 up
        for ((i = 1; i <= n; i++)); do
            ip -n "$sw" link add "p$i" type veth peer name eth0 netns "$(node_ns "$i")"
            ip -n "$sw" link set "p$i" master br0
            ip -n "$sw" link set "p$i" up
        done
    fi
    for ((i = 1; i <= n; i++)); do
        ns=$(node_ns "$i")
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(underlay4 "$i")/24" dev eth0
        ip -n "$ns" addr add "$(underlay6 "$i")/64" dev eth0 nodad
        ip -n "$ns" link set eth0 up
        ip -n "$ns" addr add "$(pod4 "$i")/32" dev lo
        ip -n "$ns" addr add "$(pod6 "$i")/128" dev lo
    done
    wait_underlay
}

# wait_underlay — until every node reaches every other node's underlay address (bounded).
wait_underlay() {
    local i j deadline=$((SECONDS + 10))
    for ((i = 1; i <= CLUSTER_N; i++)); do
        for ((j = 1; j <= CLUSTER_N; j++)); do
            ((i != j)) || continue
            until in_node "$i" ping -q -c 1 -W 1 "$(underlay4 "$j")" >/dev/null 2>&1; do
                ((SECONDS < deadline)) || die "underlay: node $i cannot reach node $j"
                sleep 0.2
            done
        done
    done
}

# peer_addr J — node J's underlay socket address as tundra's --peer expects it.
peer_addr() {
    if [[ $CLUSTER_UNDERLAY == 6 ]]; then
        echo "[$(underlay6 "$1")]:$TUNDRA_PORT"
    else
        echo "$(underlay4 "$1"):$TUNDRA_PORT"
    fi
}

# tundra_start I [EXTRA-ARGS...] — start tundra in node I with a --peer for every other
# node, stderr to "$CLUSTER_DIR/tundra-nI.log", control socket "$(tundra_control I)" (one
# per node: the namespaces share the filesystem) unless EXTRA-ARGS has its own --control;
# return once its TUN is up. Fails (and shows the log) if tundra exits or the TUN is not up
# within $TUNDRA_START_TIMEOUT s.
tundra_start() {
    local i=$1 j peer_args=() control_args=() logf deadline
    shift
    [[ " $* " == *" --control "* ]] || control_args=(--control "$(tundra_control "$i")")
    [[ -x $TUNDRA_BIN ]] || die "no tundra binary at $TUNDRA_BIN (cargo build --release)"
    [[ -z ${TUNDRA_PID[$i]:-} ]] || die "tundra already running in node $i"
    # With --encap vxlan: port 8472 and every node's VTEP MAC (see vtep_mac).
    local port=$TUNDRA_PORT vx="" vx_args=()
    if [[ " $* " == *" --encap vxlan "* ]]; then
        port=8472
        vx_args=(--vtep-mac "$(vtep_mac "$i")")
    fi
    for ((j = 1; j <= CLUSTER_N; j++)); do
        ((i != j)) || continue
        [[ -z ${vx_args[*]} ]] || vx=",mac=$(vtep_mac "$j")"
        peer_args+=(--peer "$(subnet4 "$j")=$(TUNDRA_PORT=$port peer_addr "$j")$vx")
        peer_args+=(--peer "$(subnet6 "$j")=$(TUNDRA_PORT=$port peer_addr "$j")$vx")
    done
    logf=$CLUSTER_DIR/tundra-n$i.log
    : >"$logf"
    # `ip netns exec` execs the command: $! is tundra's own pid (not a subshell's).
    ip netns exec "$(node_ns "$i")" "$TUNDRA_BIN" run --tun "$TUNDRA_TUN" \
        --listen "$(TUNDRA_PORT=$port peer_addr "$i")" "${vx_args[@]}" \
        --local-subnet "$(subnet4 "$i")" --local-subnet "$(subnet6 "$i")" \
        "${control_args[@]}" "${peer_args[@]}" "$@" </dev/null >>"$logf" 2>&1 &
    TUNDRA_PID[$i]=$!
    TUNDRA_LOG[$i]=$logf
    CLUSTER_PIDS+=("$!")
    deadline=$((SECONDS + TUNDRA_START_TIMEOUT))
    until ip -n "$(node_ns "$i")" -o link show "$TUNDRA_TUN" 2>/dev/null | grep -q '[<,]UP[,>]'; do
        if ! kill -0 "${TUNDRA_PID[$i]}" 2>/dev/null; then
            local rc=0
            wait "${TUNDRA_PID[$i]}" || rc=$?
            unset "TUNDRA_PID[$i]"
            sed 's/^/    /' "$logf" >&2
            die "tundra in node $i exited with status $rc before its TUN was up"
        fi
        if ((SECONDS >= deadline)); then
            sed 's/^/    /' "$logf" >&2
            die "tundra in node $i: $TUNDRA_TUN not up after ${TUNDRA_START_TIMEOUT}s"
        fi
        sleep 0.1
    done
}

# tundra_control I — path of node I's control socket (for `tundra routes|stats --control`).
tundra_control() { echo "$CLUSTER_DIR/tundra-n$1.sock"; }

# wait_pid PID TIMEOUT — wait up to TIMEOUT s for PID (a child) to exit and return its
# status; past TIMEOUT send SIGTERM (which `timeout` passes on), then SIGKILL after 2 s more,
# and return 124.
wait_pid() {
    local pid=$1 deadline=$((SECONDS + $2)) rc=0 sig=TERM
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill "-$sig" "$pid" 2>/dev/null
            [[ $sig == KILL ]] && break
            sig=KILL
            deadline=$((SECONDS + 2))
            rc=124
        fi
        sleep 0.05
    done
    if ((rc == 124)); then
        wait "$pid" 2>/dev/null || true
        return 124
    fi
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}

# tundra_stop I — SIGTERM, wait (bounded), and fail unless tundra exited with status 0.
tundra_stop() {
    local i=$1 pid=${TUNDRA_PID[$1]:-} rc=0
    [[ -n $pid ]] || die "tundra_stop: no tundra running in node $i"
    kill -TERM "$pid" 2>/dev/null || true
    wait_pid "$pid" "$TUNDRA_STOP_TIMEOUT" || rc=$?
    unset "TUNDRA_PID[$i]"
    case $rc in
    0) ;;
    124) die "tundra in node $i did not exit within ${TUNDRA_STOP_TIMEOUT}s of SIGTERM (killed)" ;;
    *) die "tundra in node $i exited with status $rc after SIGTERM (log: ${TUNDRA_LOG[$i]})" ;;
    esac
    if ip -n "$(node_ns "$i")" link show "$TUNDRA_TUN" >/dev/null 2>&1; then
        die "tundra in node $i exited but left $TUNDRA_TUN behind"
    fi
}

# tundra_stats I — the last `stats {json}` line tundra in node I wrote (empty if none).
# While it runs, SIGUSR1 asks for a fresh one first.
tundra_stats() {
    local i=$1 pid=${TUNDRA_PID[$1]:-} logf=${TUNDRA_LOG[$1]:-} before k
    [[ -n $logf ]] || return 0
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        before=$(grep -c 'stats {' "$logf" || true)
        kill -USR1 "$pid"
        for ((k = 0; k < 40; k++)); do
            (($(grep -c 'stats {' "$logf" || true) > before)) && break
            sleep 0.05
        done
    fi
    grep -o 'stats {.*' "$logf" | tail -n 1 || true
}

# vtep_mac I — node I's VTEP MAC, whether kernel VXLAN (vx0) or tundra --encap vxlan is
# the VTEP there: fixed, so that every node knows every other's without asking.
vtep_mac() { printf '0a:58:c6:13:%02x:00\n' "$1"; }

# vxlan_up I... — kernel VXLAN on the given nodes, exactly as flannel sets it up (device
# vx0, VNI 1, port 8472, nolearning; per other node of the cluster, kernel or tundra: a
# permanent neighbour for its subnet .0 address, an FDB entry to its underlay address, an
# onlink route). Nodes whose tundra is running are refused: both overlays would claim the
# same overlay routes.
vxlan_up() {
    local i j ns mac
    for i in "$@"; do
        [[ -z ${TUNDRA_PID[$i]:-} ]] || die "vxlan_up: tundra still runs in node $i"
        ns=$(node_ns "$i")
        ip -n "$ns" link add vx0 address "$(vtep_mac "$i")" type vxlan id 1 dstport 8472 \
            local "$(underlay4 "$i")" dev eth0 nolearning
        ip -n "$ns" addr add "198.19.$i.0/32" dev vx0
        ip -n "$ns" link set vx0 up
        for ((j = 1; j <= CLUSTER_N; j++)); do
            ((i != j)) || continue
            mac=$(vtep_mac "$j")
            ip -n "$ns" neigh add "198.19.$j.0" lladdr "$mac" dev vx0 nud permanent
            bridge -n "$ns" fdb append "$mac" dev vx0 dst "$(underlay4 "$j")"
            ip -n "$ns" route add "$(subnet4 "$j")" via "198.19.$j.0" dev vx0 onlink
        done
    done
}

# vxlan_csum_off I — compute the inner checksums of node I's vx0 in software. Over a veth
# pair a checksum left to the "hardware" is never filled in, and a userspace VTEP (tundra)
# cannot tell such a segment from a corrupt one; flannel deployments do the same on
# flannel.1 (flannel issue 1279). Kernel-to-kernel VXLAN does not need it.
vxlan_csum_off() {
    ip netns exec "$(node_ns "$1")" ethtool -K vx0 tx off >/dev/null
}

# vxlan_down I... — delete vx0 (and with it its neighbours, FDB entries and routes).
vxlan_down() {
    local i
    for i in "$@"; do
        ip -n "$(node_ns "$i")" link del vx0 2>/dev/null || true
    done
}

# ping_check I J FAMILY — one ping from node I's pod to node J's pod (4 or 6), 1 s bound.
ping_check() {
    local i=$1 j=$2 fam=$3
    if [[ $fam == 6 ]]; then
        in_node "$i" ping -6 -n -q -c 1 -W 1 -I "$(pod6 "$i")" "$(pod6 "$j")" >/dev/null 2>&1
    else
        in_node "$i" ping -4 -n -q -c 1 -W 1 -I "$(pod4 "$i")" "$(pod4 "$j")" >/dev/null 2>&1
    fi
}

# ping_rtt I J [COUNT] — average RTT in ms of COUNT pings (default 20, 50 ms apart) from
# node I's pod to node J's pod over IPv4; prints "-" when no reply came back.
ping_rtt() {
    local i=$1 j=$2 count=${3:-20} out avg
    out=$(in_node "$i" timeout --foreground 15 ping -4 -n -q -c "$count" -i 0.05 -W 1 \
        -I "$(pod4 "$i")" "$(pod4 "$j")" 2>/dev/null) || true
    avg=$(sed -n 's|^rtt [^=]*= [0-9.]*/\([0-9.]*\)/.*|\1|p' <<<"$out")
    echo "${avg:--}"
}

# iperf_gbps I J [SECONDS] — one TCP stream from node I's pod to node J's pod over IPv4 for
# SECONDS (default 5); prints the receiver's rate in Gbit/s, or "-" on failure.
iperf_gbps() {
    local i=$1 j=$2 secs=${3:-5} spid out rate k
    ip netns exec "$(node_ns "$j")" timeout $((secs + 20)) iperf3 -s -1 -B "$(pod4 "$j")" \
        </dev/null >/dev/null 2>&1 &
    spid=$!
    CLUSTER_PIDS+=("$spid")
    for ((k = 0; k < 50; k++)); do
        in_node "$j" ss -Htln "sport = :5201" 2>/dev/null | grep -q . && break
        sleep 0.1
    done
    # --foreground: keep the client in our process group, so that Ctrl-C reaches it.
    out=$(in_node "$i" timeout --foreground $((secs + 15)) iperf3 -c "$(pod4 "$j")" \
        -B "$(pod4 "$i")" -t "$secs" -f g --connect-timeout 3000 2>&1) || true
    wait_pid "$spid" 2 || true
    rate=$(awk '/receiver$/ { for (k = 1; k < NF; k++) if ($(k + 1) == "Gbits/sec") print $k }' \
        <<<"$out" | tail -n 1)
    echo "${rate:--}"
}

# cluster_cleanup — kill every process started here (by pid), delete the namespaces and the
# temporary directory. Registered by cluster_init; safe to call more than once.
cluster_cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${CLUSTER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${CLUSTER_PIDS[@]}"; do
        wait_pid "$pid" 5 || true
    done
    CLUSTER_PIDS=()
    TUNDRA_PID=()
    if [[ -n $CLUSTER_PREFIX ]]; then
        for ((i = 1; i <= CLUSTER_N; i++)); do
            ip netns del "$(node_ns "$i")" 2>/dev/null || true
        done
        ip netns del "$(switch_ns)" 2>/dev/null || true
    fi
    if [[ -n $CLUSTER_DIR && -d $CLUSTER_DIR ]]; then
        if ((rc != 0)) || [[ -n ${KEEP_LOGS:-} ]]; then
            log "logs kept in $CLUSTER_DIR"
        else
            rm -rf "$CLUSTER_DIR"
        fi
    fi
    exit "$rc"
}
