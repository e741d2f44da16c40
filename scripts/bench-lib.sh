# shellcheck shell=bash
#
# Helpers for scripts/bench, on top of scripts/lib.sh (source that first): the tools the
# benchmark installs, background commands in a node that a signal can interrupt, one
# function per measurement, and the report (results.json, summary.md, chart.svg).
#
# Every command that runs longer than a moment is started in the background and then
# waited for: bash runs a trap only between foreground commands, but `wait` returns at
# once on a signal, so Ctrl-C or SIGTERM reach cluster_cleanup (which kills the pids in
# CLUSTER_PIDS and deletes the namespaces) within a fraction of a second. Every such
# command also runs under `timeout`, so nothing outlives its measurement.

BENCH_APT_UPDATED=""

# bench_install SPEC... — SPEC is COMMAND:PACKAGE; apt-get install -y (after one
# apt-get update) the packages whose command is missing.
bench_install() {
    local spec missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
    done
    ((${#missing[@]} > 0)) || return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "missing tools and no apt-get to install them: ${missing[*]}"
    log "installing: ${missing[*]}"
    if [[ -z $BENCH_APT_UPDATED ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        BENCH_APT_UPDATED=1
    fi
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# bench_forget PID — drop PID (reaped) from CLUSTER_PIDS, so that the cleanup never
# signals a pid that the system may have handed to somebody else since.
bench_forget() {
    local pid keep=()
    for pid in "${CLUSTER_PIDS[@]}"; do
        [[ $pid == "$1" ]] || keep+=("$pid")
    done
    CLUSTER_PIDS=("${keep[@]}")
}

# bench_bg OUT SECS NODE CMD... — start CMD in node NODE under `timeout SECS`, stdout and
# stderr to OUT, in the background; its pid (timeout's: `ip netns exec` execs) in BG_PID.
BG_PID=""
bench_bg() {
    local out=$1 secs=$2 node=$3
    shift 3
    ip netns exec "$(node_ns "$node")" timeout "$secs" "$@" </dev/null >"$out" 2>&1 &
    BG_PID=$!
    CLUSTER_PIDS+=("$BG_PID")
}

# bench_wait PID — wait for a bench_bg command; returns its status.
bench_wait() {
    local rc=0
    wait "$1" || rc=$?
    bench_forget "$1"
    return "$rc"
}

# bench_run OUT SECS NODE CMD... — bench_bg, then bench_wait.
bench_run() {
    bench_bg "$@"
    bench_wait "$BG_PID"
}

# bench_listening NODE PROTO PORT — wait up to 5 s until something listens on PORT
# (PROTO t or u) in node NODE.
bench_listening() {
    local k
    for ((k = 0; k < 50; k++)); do
        in_node "$1" ss -Hn"$2"l "sport = :$3" 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# bench_reach NODE SRC DST — until one ping from SRC (in NODE) to DST is answered, at most
# 5 s (warms up the neighbour entries as well).
bench_reach() {
    local deadline=$((SECONDS + 5))
    until in_node "$1" ping -n -q -c 1 -W 1 -I "$2" "$3" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# bench_iperf OUT SRC_NODE SRC DST_NODE DST SECS STREAMS — one iperf3 TCP test (JSON into
# OUT), server started for this test only. Returns 0 when OUT holds a result.
bench_iperf() {
    local out=$1 sn=$2 src=$3 dn=$4 dst=$5 secs=$6 streams=$7 spid rc=0
    bench_bg "$out.server" $((secs + 15)) "$dn" iperf3 -s -1 -B "$dst"
    spid=$BG_PID
    if ! bench_listening "$dn" t 5201; then
        bench_wait "$spid" || true
        return 1
    fi
    bench_run "$out" $((secs + 10)) "$sn" iperf3 -c "$dst" -B "$src" -t "$secs" \
        -P "$streams" -J --connect-timeout 3000 || rc=$?
    bench_wait "$spid" || true
    ((rc == 0)) && jq -e '.end.sum_received.bytes > 0' "$out" >/dev/null 2>&1
}

# iperf_field OUT FIELD — FIELD of the receiver's sum: bits_per_second or bytes.
iperf_field() {
    jq -r ".end.sum_received.$2" "$1"
}

# bench_ping OUT NODE SRC DST COUNT — COUNT pings 10 ms apart (root may go below 200 ms),
# one line per reply in OUT.
bench_ping() {
    local out=$1 node=$2 src=$3 dst=$4 count=$5
    bench_run "$out" $((count / 100 + 10)) "$node" ping -n -i 0.01 -W 1 -c "$count" \
        -I "$src" "$dst" || true
}

# ping_percentiles OUT — "P50 P99" of the RTTs in ms in a ping output (nearest rank), or
# nothing when no reply came back.
ping_percentiles() {
    sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' "$1" | sort -g | awk '
        { v[++n] = $1 }
        function rank(p,  r) { r = int(p * n); if (r < p * n) r++; if (r < 1) r = 1; return v[r] }
        END { if (n > 0) printf "%s %s\n", rank(0.50), rank(0.99) }'
}

# bench_udp OUT SRC_NODE SRC DST_NODE DST SIZE SECS — pktgen at max rate for SECS from SRC
# to DST:9000, SIZE-byte payloads; sender JSON in OUT.send, sink JSON in OUT.sink.
bench_udp() {
    local out=$1 sn=$2 src=$3 dn=$4 dst=$5 size=$6 secs=$7 spid rc=0
    bench_bg "$out.sink" $((secs + 10)) "$dn" "$PKTGEN_BIN" sink --bind "$dst:9000" \
        --duration $((secs + 5)) --json
    spid=$BG_PID
    if ! bench_listening "$dn" u 9000; then
        bench_wait "$spid" || true
        return 1
    fi
    bench_run "$out.send" $((secs + 10)) "$sn" "$PKTGEN_BIN" send --to "$dst:9000" \
        --bind "$src" --size "$size" --rate max --duration "$secs" || rc=$?
    bench_wait "$spid" || rc=$?
    ((rc == 0))
}

# proc_cpu_ticks PID... — utime + stime of the processes, in clock ticks.
proc_cpu_ticks() {
    local pid sum=0 stat fields
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat")
        # Fields after the command name (which may hold spaces): state is field 3, so
        # utime and stime (fields 14 and 15) are words 12 and 13 of the rest.
        read -r -a fields <<<"${stat##*) }"
        sum=$((sum + fields[11] + fields[12]))
    done
    echo "$sum"
}

# sys_cpu_ticks — "KERNEL BUSY" from /proc/stat, in clock ticks, all CPUs: KERNEL is
# system + irq + softirq, BUSY is everything but idle and iowait.
sys_cpu_ticks() {
    awk '$1 == "cpu" { k = $4 + $7 + $8; b = 0; for (i = 2; i <= NF; i++) b += $i;
        b -= $5 + $6; print k, b; exit }' /proc/stat
}

# steal_ticks — "STEAL TOTAL" from /proc/stat, in clock ticks, all CPUs: the time the
# hypervisor ran something else while this machine's CPUs wanted to run, and all time.
steal_ticks() {
    awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t; exit }' /proc/stat
}

# vmrss_mib PID — resident memory of PID in MiB.
vmrss_mib() {
    awk '$1 == "VmRSS:" { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"
}

# bench_report DIR — from DIR/samples.tsv (mode, round, metric, value, unit) and
# DIR/meta.json: DIR/results.json, DIR/summary.md and DIR/chart.svg.
bench_report() {
    python3 - "$1" <<'PY'
"""Turn the benchmark's samples into results.json, summary.md and chart.svg (no packages)."""
import json
import math
import statistics
import sys
from html import escape
from pathlib import Path

out = Path(sys.argv[1])
meta = json.loads((out / "meta.json").read_text())
modes = [m["name"] for m in meta["modes"]]

# name: (label, better, shown in the chart)
METRICS = {
    "tcp1_gbps": ("TCP, 1 stream", "higher", True),
    "tcp1_retrans_per_s": ("TCP, 1 stream: retransmits", "lower", True),
    "tcp4_gbps": ("TCP, 4 streams", "higher", True),
    "udp64_kpps": ("UDP 64 B: delivered", "higher", True),
    "udp64_loss_pct": ("UDP 64 B: loss at max rate", "lower", True),
    "udp64_sent_kpps": ("UDP 64 B: generator sent", "higher", False),
    "udp1400_kpps": ("UDP 1400 B: delivered", "higher", True),
    "udp1400_loss_pct": ("UDP 1400 B: loss at max rate", "lower", True),
    "udp1400_sent_kpps": ("UDP 1400 B: generator sent", "higher", False),
    "ping_idle_p50_ms": ("ping idle p50", "lower", True),
    "ping_idle_p99_ms": ("ping idle p99", "lower", True),
    "ping_load_p50_ms": ("ping under load p50", "lower", True),
    "ping_load_p99_ms": ("ping under load p99", "lower", True),
    "ping_load_steal_pct": ("host steal during the loaded ping", "lower", False),
    "cpu_s_per_gb": ("CPU per GB (see note)", "lower", True),
    "cpu_total_s_per_gb": ("CPU per GB, whole machine", "lower", True),
    "rss_mib": ("tundra resident memory", "lower", True),
}

samples, units = [], {}
for line in (out / "samples.tsv").read_text().splitlines():
    mode, rnd, metric, value, unit = line.split("\t")
    v = float(value) if value not in ("", "-") else None
    samples.append({"mode": mode, "round": int(rnd), "metric": metric, "value": v, "unit": unit})
    units[metric] = unit
metrics = [m for m in METRICS if m in units] + sorted(m for m in units if m not in METRICS)

values = {}
for s in samples:
    if s["value"] is not None:
        values.setdefault((s["mode"], s["metric"]), []).append(s["value"])
med = {k: statistics.median(v) for k, v in values.items()}


def label(m):
    return METRICS.get(m, (m, "higher", True))[0]


def better(m):
    return METRICS.get(m, (m, "higher", True))[1]


def ratio(mode, m):
    base, v = med.get(("vxlan", m)), med.get((mode, m))
    if base is None or v is None or base == 0:
        return None
    return v / base


def fmt(v):
    if v is None:
        return "-"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def nice_axis(vmax):
    """(step, ticks): a round tick step (1, 2, 2.5 or 5 times a power of ten) and how many
    steps reach 12% above vmax, room for the value labels."""
    want = vmax * 1.12 if vmax > 0 else 1.0
    mag = 10 ** math.floor(math.log10(want / 4))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag * 4 >= want)
    return step, max(1, math.ceil(want / step - 1e-9))


(out / "results.json").write_text(json.dumps({"meta": meta, "samples": samples}, indent=1) + "\n")

# summary.md
rows = []
rows.append(f"# tundra benchmark, {meta['started']}\n")
rows.append(
    f"{meta['rounds']} round(s), modes interleaved; {meta['host']}, {meta['cpus']} CPUs; "
    f"tundra {meta['commit']}; run took {meta.get('elapsed_s', '?')} s.\n"
)
if meta.get("loadavg_start", 0) > 1.0:
    rows.append(f"**Warning**: the load average was {meta['loadavg_start']} when the run "
                f"started ({meta['loadavg_end']} at the end, this run included): other work "
                "shared the CPUs, which hurts a userspace dataplane more than the kernel's.\n")
rows.append("Each cell: median over the rounds, and in parentheses the ratio to `vxlan` "
            "(the kernel VXLAN that flannel sets up). The last column says which direction is better.\n")
rows.append("| metric | unit | " + " | ".join(modes) + " | better |")
rows.append("|---|---|" + "---:|" * len(modes) + "---|")
for m in metrics:
    cells = []
    for mode in modes:
        v = med.get((mode, m))
        r = ratio(mode, m)
        cells.append(fmt(v) + (f" ({r:.2f}×)" if r is not None and mode != "vxlan" else ""))
    rows.append(f"| {label(m)} (`{m}`) | {units[m]} | " + " | ".join(cells) + f" | {better(m)} |")
rows.append("\n## Spread (min – max over the rounds)\n")
rows.append("| metric | " + " | ".join(modes) + " |")
rows.append("|---|" + "---:|" * len(modes))
for m in metrics:
    cells = []
    for mode in modes:
        v = values.get((mode, m))
        cells.append(f"{fmt(min(v))} – {fmt(max(v))}" if v else "-")
    rows.append(f"| `{m}` | " + " | ".join(cells) + " |")
rows.append("\n## Modes\n")
for mm in meta["modes"]:
    rows.append(f"- `{mm['name']}`: {mm['describe']}")
rows.append("\n## How each figure is measured\n")
for note in meta["notes"]:
    rows.append(f"- {note}")
(out / "summary.md").write_text("\n".join(rows) + "\n")

# chart.svg: small multiples, one panel per metric, one bar per mode (median), a whisker
# from the lowest to the highest round, the value above the bar and the ratio to vxlan
# below it.
COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]
shown = [m for m in metrics if METRICS.get(m, (m, "higher", True))[2]]
cols = 4
pw, ph = 330, 250
left, top = 20, 92
rows_n = (len(shown) + cols - 1) // cols
width, height = left * 2 + cols * pw, top + rows_n * ph + 20
svg = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
    f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
    f'<rect width="{width}" height="{height}" fill="white"/>',
    f'<text x="{width / 2}" y="28" text-anchor="middle" font-size="20" font-weight="bold">'
    f"tundra vs kernel VXLAN: median of {meta['rounds']} round(s), 2-node namespace test bed</text>",
    f'<text x="{width / 2}" y="50" text-anchor="middle" font-size="12" fill="#444">'
    f"{escape(meta['started'])} · bars: median · whisker: min–max over rounds · "
    f"under each bar: ratio to vxlan · see summary.md for how each figure is measured</text>",
]
lx = left
for i, mode in enumerate(modes):
    c = COLOURS[i % len(COLOURS)]
    svg.append(f'<rect x="{lx}" y="64" width="14" height="14" fill="{c}"/>')
    svg.append(f'<text x="{lx + 20}" y="76" font-size="13">{escape(mode)}</text>')
    lx += 40 + 8 * len(mode)
for k, m in enumerate(shown):
    x0 = left + (k % cols) * pw
    y0 = top + (k // cols) * ph
    ax_l, ax_r = x0 + 52, x0 + pw - 12
    ax_t, ax_b = y0 + 44, y0 + ph - 48
    svg.append(f'<text x="{x0 + pw / 2}" y="{y0 + 16}" text-anchor="middle" font-size="13" '
               f'font-weight="bold">{escape(label(m))}</text>')
    svg.append(f'<text x="{x0 + pw / 2}" y="{y0 + 31}" text-anchor="middle" font-size="11" '
               f'fill="#555">{escape(units[m])}, {better(m)} is better</text>')
    step, ticks = nice_axis(max([max(values.get((mode, m), [0])) for mode in modes]))
    top_v = step * ticks

    def y(v):
        return ax_b - (ax_b - ax_t) * v / top_v

    for t in range(ticks + 1):
        tv = round(step * t, 12)
        svg.append(f'<line x1="{ax_l}" x2="{ax_r}" y1="{y(tv):.1f}" y2="{y(tv):.1f}" '
                   f'stroke="#ddd"/>')
        svg.append(f'<text x="{ax_l - 4}" y="{y(tv) + 4:.1f}" text-anchor="end" '
                   f'font-size="10" fill="#555">{tv:g}</text>')
    svg.append(f'<text transform="translate({x0 + 12},{(ax_t + ax_b) / 2}) rotate(-90)" '
               f'text-anchor="middle" font-size="11" fill="#555">{escape(units[m])}</text>')
    svg.append(f'<line x1="{ax_l}" x2="{ax_r}" y1="{ax_b}" y2="{ax_b}" stroke="#333"/>')
    slot = (ax_r - ax_l) / len(modes)
    for i, mode in enumerate(modes):
        cx = ax_l + slot * (i + 0.5)
        bw = slot * 0.66
        c = COLOURS[i % len(COLOURS)]
        v = med.get((mode, m))
        if v is None:
            svg.append(f'<text x="{cx:.1f}" y="{ax_b - 6}" text-anchor="middle" '
                       f'font-size="10" fill="#999">n/a</text>')
        else:
            svg.append(f'<rect x="{cx - bw / 2:.1f}" y="{y(v):.1f}" width="{bw:.1f}" '
                       f'height="{ax_b - y(v):.1f}" fill="{c}"/>')
            vs = values[(mode, m)]
            if len(vs) > 1:
                svg.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(min(vs)):.1f}" '
                           f'y2="{y(max(vs)):.1f}" stroke="#222" stroke-width="1.5"/>')
            svg.append(f'<text x="{cx:.1f}" y="{min(y(v), y(max(vs))) - 4:.1f}" '
                       f'text-anchor="middle" font-size="11" font-weight="bold">{fmt(v)}</text>')
        svg.append(f'<text x="{cx:.1f}" y="{ax_b + 14}" text-anchor="middle" font-size="10">'
                   f"{escape(mode)}</text>")
        r = ratio(mode, m)
        if r is not None and mode != "vxlan":
            svg.append(f'<text x="{cx:.1f}" y="{ax_b + 28}" text-anchor="middle" '
                       f'font-size="11" fill="#333">{r:.2f}×</text>')
svg.append("</svg>")
(out / "chart.svg").write_text("\n".join(svg) + "\n")
PY
}
