#!/usr/bin/env bash
# Soak: N ticks (default 10 000) of a profile with a failing and a flapping
# task, one simulated minute apart (MONITOR_NOW), against one database.
# Every 1 000 ticks it prints the database size (file + WAL) and the
# median/p95 tick wall time of the last 1 000, so a reader sees whether
# retention keeps the file flat and the tick time stays flat.
#
#   benches/soak.sh [-n TICKS] [-r RETENTION]     (default 10000, 1d)
#
# Environment: MONITOR_BIN  use this binary instead of `cargo build --release`
set -euo pipefail

ticks=10000
retention=1d
while getopts ':n:r:h' option; do
    case $option in
        n) ticks=$OPTARG ;;
        r) retention=$OPTARG ;;
        h) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "usage: $0 [-n TICKS] [-r RETENTION]" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n ${MONITOR_BIN:-} ]]; then
    monitor=$MONITOR_BIN
else
    echo "building monitor (cargo build --release)..." >&2
    (cd "$repo" && cargo build --release --quiet)
    monitor=${CARGO_TARGET_DIR:-$repo/target}/release/monitor
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Retention short enough that pruning reaches its steady state within the
# run (1d = 1 440 ticks). The flapping task writes history and outbox rows
# every tick: the worst case for growth.
cat > "$work/jobs.yaml" <<EOF
version: 1
host: soak
defaults: { retention: $retention, cooldown: 1h }
profiles:
  soak:
    cron: "* * * * *"
    tasks:
      - name: down
        command: { argv: "echo 'CRITICAL - down'; exit 2", shell: true }
      - name: flapping
        command: { argv: "exit \$(( (MONITOR_NOW / 60) % 2 * 2 ))", shell: true }
EOF

start=1790000000
printf '%8s %12s %10s %10s %12s %8s\n' ticks db_bytes p50_ms p95_ms history_rows runs
times=()
for ((i = 0; i < ticks; i++)); do
    t0=$(date +%s%N)
    MONITOR_NOW=$((start + i * 60)) "$monitor" --config "$work/jobs.yaml" run soak --quiet || true
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000)))
    if (((i + 1) % 1000 == 0)); then
        sorted=$(printf '%s\n' "${times[@]}" | sort -n)
        count=${#times[@]}
        p50=$(sed -n "$((count / 2))p" <<<"$sorted")
        p95=$(sed -n "$((count * 95 / 100))p" <<<"$sorted")
        size=$(($(stat -c %s "$work/state/monitor.db") + $(stat -c %s "$work/state/monitor.db-wal" 2>/dev/null || echo 0)))
        rows=$(python3 -c "import sqlite3,sys; c=sqlite3.connect('file:$work/state/monitor.db?mode=ro', uri=True); print(c.execute('select count(*) from alert_history').fetchone()[0], c.execute('select count(*) from runs').fetchone()[0])")
        printf '%8d %12d %10.1f %10.1f %12s %8s\n' $((i + 1)) "$size" "$(bc -l <<<"$p50/1000")" "$(bc -l <<<"$p95/1000")" ${rows}
        times=()
    fi
done
