#!/usr/bin/env bash
# One `monitor run <profile>` tick against the Python reference tick
# (benches/reference/py_tick.py), on the same loopback server, in the same run.
#
#   benches/tick_vs_python.sh [-n RUNS] [-b BACKLOG] [-o FILE]
#
#   -n RUNS     measured runs per tool and workload (default 10)
#   -b BACKLOG  listen backlog of the loopback server (default: the reference
#               server's own, socketserver's 5; see "Listen backlog" below)
#   -o FILE     also keep every run (tool, workload, iteration, wall_ms,
#               peak_rss_kib, exit) in FILE, tab-separated
#
# Workloads:  A  profile `one`:    1 http check of /delay/0   (start-up cost)
#             B  profile `twenty`: 20 http checks of /delay/200 (concurrency)
# Environment: MONITOR_BIN  use this binary instead of `cargo build --release`
#              PYTHON       interpreter for py_tick.py and the driver (python3)
#              CONNECTIONS_PER_HOST  monitor's per-host limit (default 20 here)
#
# Prints median/min wall time and median peak RSS per tool and workload, the
# python/monitor ratios and the targets (PASS/MISS, informative only). Exits
# non-zero if any run fails or if a tick did not really run.
set -euo pipefail

runs=10
backlog=
raw_output=
while getopts ':n:b:o:h' option; do
    case $option in
        n) runs=$OPTARG ;;
        b) backlog=$OPTARG ;;
        o) raw_output=$OPTARG ;;
        h) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "usage: $0 [-n RUNS] [-b BACKLOG] [-o FILE]" >&2; exit 2 ;;
    esac
done
for value in "$runs" "${backlog:-1}"; do
    if ! [[ $value =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: -n and -b want a positive integer, not '$value'" >&2
        exit 2
    fi
done

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$bench_dir")
python=${PYTHON:-python3}

# The reference tick needs requests and PyYAML; say how to get them rather
# than failing in the middle of the runs with a traceback.
if ! "$python" -c 'import requests, yaml' 2>/dev/null; then
    echo "$0: $python cannot import requests and yaml; install them with:" >&2
    echo "    $python -m pip install requests PyYAML" >&2
    exit 2
fi

if [[ -n ${MONITOR_BIN:-} ]]; then
    monitor=$MONITOR_BIN
else
    echo "building monitor (cargo build --release)..." >&2
    (cd "$repo" && cargo build --release --quiet)
    monitor=${CARGO_TARGET_DIR:-$repo/target}/release/monitor
fi
if [[ ! -x $monitor ]]; then
    echo "$0: $monitor is not an executable" >&2
    exit 2
fi

# Everything the runs write (configs, databases, lock folders, results) lives
# here, so runs never see the state of an earlier benchmark.
work=$(mktemp -d "${TMPDIR:-/tmp}/tick_vs_python.XXXXXX")
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C too

# A free port: bind port 0 and let the kernel choose. The port is released
# before the server binds it, a race no other process here takes part in.
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Listen backlog: slow_server.py listens with socketserver's default backlog
# of 5. monitor opens its 20 connections of workload B at once; those the
# accept queue cannot hold are dropped by the kernel and the client's SYN is
# retransmitted after 1 s, which shows as ~1.2 s ticks (counted below as
# ListenOverflows). py_tick.py, one connection at a time, never meets it. -b
# raises the backlog without editing the verbatim copy.
if [[ -n $backlog ]]; then
    "$python" -c 'import runpy, socketserver, sys
socketserver.TCPServer.request_queue_size = int(sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")' "$backlog" "$bench_dir/reference/slow_server.py" "$port" &
else
    "$python" "$bench_dir/reference/slow_server.py" "$port" &
fi
server_pid=$!
listening=
for _ in $(seq 50); do
    # bash's /dev/tcp: connects without curl; fails until the server listens.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        listening=yes
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $listening ]]; then
    echo "$0: slow_server.py is not listening on 127.0.0.1:$port" >&2
    exit 1
fi

# The same two workloads for both tools. monitor sends any alert to the
# implicit `console` notifier; --quiet keeps it (and the summary) off the
# terminal so printing costs nothing.
# Workload B measures concurrency: the Python tick opens all 20 at once, so
# monitor's per-host limit (connections_per_host, default 6: it protects a
# small server's listen backlog) is raised to 20 here to compare like with
# like. At the default, B runs in four waves of 200 ms.
{
    echo "version: 1"
    echo "defaults: { connections_per_host: ${CONNECTIONS_PER_HOST:-20} }"
    echo "profiles:"
    echo "  one:"
    echo "    cron: \"* * * * *\""
    echo "    tasks:"
    echo "      - { name: c0, http: { url: \"http://127.0.0.1:$port/delay/0\", timeout: 10s } }"
    echo "  twenty:"
    echo "    cron: \"* * * * *\""
    echo "    tasks:"
    for i in $(seq 0 19); do
        echo "      - { name: c$i, http: { url: \"http://127.0.0.1:$port/delay/200\", timeout: 10s } }"
    done
} >"$work/jobs.yaml"
{
    echo "profiles:"
    echo "  one:"
    echo "    tasks:"
    echo "      - { name: c0, url: \"http://127.0.0.1:$port/delay/0\", timeout: 10 }"
    echo "  twenty:"
    echo "    tasks:"
    for i in $(seq 0 19); do
        echo "      - { name: c$i, url: \"http://127.0.0.1:$port/delay/200\", timeout: 10 }"
    done
} >"$work/py_tick.yaml"

# Sets `tick` to the command of one tick of `tool` on `profile`. Each tool has
# its own database (monitor puts its lock folder beside it).
tick_command() {
    local tool=$1 profile=$2
    case $tool in
        monitor) tick=("$monitor" --config "$work/jobs.yaml" --db "$work/monitor.db" run "$profile" --quiet) ;;
        python) tick=("$python" "$bench_dir/reference/py_tick.py" "$work/py_tick.yaml" "$profile" "$work/py_tick.db") ;;
    esac
}

# Runs one measured tick and appends "tool workload iteration wall_ms rss_kib
# exit" to the results. The driver runs with -I -S to keep its own memory,
# which is the floor of every RSS figure, small (see measure.py).
failures=0
results=$work/results.tsv
measure() {
    local tool=$1 profile=$2 iteration=$3 line
    tick_command "$tool" "$profile"
    line=$("$python" -I -S "$bench_dir/measure.py" run -- "${tick[@]}")
    printf '%s\t%s\t%s\t%s\n' "$tool" "$profile" "$iteration" "$line" >>"$results"
    if [[ ${line##*$'\t'} != 0 ]]; then
        failures=$((failures + 1))
        echo "FAILED (exit ${line##*$'\t'}): ${tick[*]}" >&2
        if [[ $tool == monitor ]]; then
            echo "  (--quiet hides monitor's report: run it without to see why)" >&2
        fi
    fi
}

# The kernel's count of connections dropped because a listen queue was full
# (all sockets of this network namespace; empty where /proc/net/netstat is
# missing).
listen_overflows() {
    awk '$1 == "TcpExt:" && !column { for (i = 2; i <= NF; i++) if ($i == "ListenOverflows") column = i; next }
         $1 == "TcpExt:" && column { print $column }' /proc/net/netstat 2>/dev/null || true
}
overflows_before=$(listen_overflows)

# The warm-up runs create both databases (monitor applies its migrations) and
# bring binaries and libraries into the page cache; they are not recorded.
: >"$results"
for profile in one twenty; do
    for tool in monitor python; do
        measure "$tool" "$profile" warmup
    done
done
: >"$results"

# Interleaved: each iteration runs both tools on both workloads, so a slow
# moment of the machine hits both. Which tool goes first alternates, so neither
# always runs right after the other's (cache, CPU frequency) side effects.
echo "running $runs interleaved iterations (about $((runs * 5)) s)..." >&2
for iteration in $(seq "$runs"); do
    if ((iteration % 2)); then order=(monitor python); else order=(python monitor); fi
    for profile in one twenty; do
        for tool in "${order[@]}"; do
            measure "$tool" "$profile" "$iteration"
        done
    done
done

# The driver's own floors, measured the same way on a program that does
# nothing: its wall time is the cost of exec and exit seen from the driver,
# and an RSS figure close to its RSS means "at most this".
for iteration in 1 2 3; do
    line=$("$python" -I -S "$bench_dir/measure.py" run -- true)
    printf 'floor\ttrue\t%s\t%s\n' "$iteration" "$line" >>"$results"
done

# Exit status 0 is not proof of a tick: monitor also exits 0 when the profile
# lock is held, and a fast "skip" would flatter it. Both databases must show
# every tick (warm-up included) and every check healthy.
expected=$((runs + 1))
if ! "$python" - "$work/monitor.db" "$work/py_tick.db" "$expected" <<'EOF'; then
import sqlite3, sys
monitor_db, python_db, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
problems = []
try:
    m = sqlite3.connect(f"file:{monitor_db}?mode=ro", uri=True)
    for profile in ("one", "twenty"):
        ok, total = m.execute(
            "select count(*) filter (where status = 'ok'), count(*) from runs where profile = ?",
            (profile,),
        ).fetchone()
        if (ok, total) != (expected, expected):
            problems.append(f"monitor recorded {total} ticks of {profile} ({ok} ok), expected {expected} ok")
except sqlite3.Error as error:
    problems.append(f"monitor's database {monitor_db}: {error}")
try:
    p = sqlite3.connect(f"file:{python_db}?mode=ro", uri=True)
    alerts = p.execute("select count(*) from alerts").fetchone()[0]
    healthy = p.execute("select count(*) from monitor_state where value = '0'").fetchone()[0]
    if alerts or healthy != 21:
        problems.append(f"py_tick stored {alerts} alerts and {healthy}/21 healthy checks")
except sqlite3.Error as error:
    problems.append(f"py_tick's database {python_db}: {error}")
for problem in problems:
    print(f"check: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
    failures=$((failures + 1))
fi

overflows_after=$(listen_overflows)
if [[ -n $raw_output ]]; then
    cp "$results" "$raw_output"
fi

echo
echo "monitor $("$monitor" --version | cut -d' ' -f2) vs py_tick.py ($("$python" -V 2>&1));" \
    "$runs runs each, interleaved; $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
"$python" "$bench_dir/measure.py" report "$results"
if [[ -n $overflows_before && -n $overflows_after ]]; then
    echo "listen queue overflows (SYNs dropped, 1 s retransmit) during the runs (warm-up included):" \
        "$((overflows_after - overflows_before)); server backlog ${backlog:-5 (reference default)}"
fi
if ((failures)); then
    echo "$failures run(s) or checks FAILED" >&2
    exit 1
fi
