#!/usr/bin/env python3
"""The status page over a year of history: a MONITOR_NOW soak of 50 tasks x
10 signals, then `GET /` and a task page of `monitor serve` timed.

  python3 benches/status_page.py [--days 365] [--tasks 50] [-n 30] [--minutely-days 8]

The soak ticks one profile of `--tasks` `process` tasks (each watching a
real `sleep` child through its pidfile, with rules that read ten of its
signals) once an hour for the year's first `days - 8` days, then once a
minute for the last 8: the history ends as a year of ticks a minute apart
leaves it (retention keeps every sample for 7 days, hourly summaries for
90), without running half a million ticks. Every 30 simulated days, and at
the end, it prints the history tables' size (SQLite's dbstat) beside the
README's bound, and fails if they pass it. Then `monitor serve` answers
`GET /` and `GET /task/p/task-00?range=90d` `-n` times each (interleaved)
and the medians and maxima are printed.
Environment: MONITOR_BIN  the binary (default: `cargo build --release`)
"""
import argparse
import http.client
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# README ("Signal history"): 50 tasks x 10 signals x a tick a minute.
BOUND_BYTES = 150e6
START = 1790000000 // 86400 * 86400
SIGNALS = ["pid", "processes", "uptime_s", "fds_ratio", "restarted", "rss_growth_bytes", "healthy"]


def jobs_yaml(work, tasks):
    lines = [
        "version: 1",
        "host: bench",
        f"state: {work}/state/monitor.db",
        "profiles:",
        "  p:",
        '    cron: "* * * * *"',
        "    tasks:",
    ]
    for i in range(tasks):
        lines += [
            f"      - name: task-{i:02}",
            f"        process: {{ pidfile: {work}/sleep.pid }}",
            "        rules:",
            '          - { name: big, signal: rss_bytes, value: "> 1GiB" }',
            '          - { name: fds, signal: open_fds, value: "> 10000" }',
            '          - { name: young, signal: uptime_s, value: "< 0" }',
            '          - { name: many, signal: processes, value: "> 5" }',
            '          - { name: ratio, signal: fds_ratio, value: "> 0.9" }',
            '          - { name: again, signal: restarted, value: "> 1" }',
            '          - { name: grows, signal: rss_growth_bytes, value: "> 1GiB" }',
            '          - { name: pid, signal: pid, value: "< 0" }',
        ]
    return "\n".join(lines) + "\n"


def history_bytes(db):
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name IN "
            "('signal_series', 'signal_hours', 'signal_hours_by_hour', 'task_status')"
        ).fetchone()
        series = connection.execute("SELECT count(*) FROM signal_series").fetchone()[0]
        hours = connection.execute("SELECT count(*) FROM signal_hours").fetchone()[0]
        return rows[0] or 0, series, hours
    finally:
        connection.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    if response.status != 200:
        sys.exit(f"GET {path}: HTTP {response.status}: {body[:300]!r}")
    return elapsed, len(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("-n", type=int, default=30, help="requests of each page (default 30)")
    parser.add_argument("--minutely-days", type=int, default=8,
                        help="the last days ticked once a minute (default 8: past the 7-day full window)")
    args = parser.parse_args()
    monitor = os.environ.get("MONITOR_BIN")
    if not monitor:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
        monitor = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")),
                               "release", "monitor")
    work = tempfile.mkdtemp(prefix="status-page-")
    sleeper = subprocess.Popen(["sleep", "100000"])
    try:
        with open(os.path.join(work, "sleep.pid"), "w") as f:
            f.write(str(sleeper.pid))
        config = os.path.join(work, "jobs.yaml")
        with open(config, "w") as f:
            f.write(jobs_yaml(work, args.tasks))
        minutely_from = START + (args.days - args.minutely_days) * 86400
        end = START + args.days * 86400
        at, ticks, started = START, 0, time.time()
        next_report = START + 30 * 86400
        print(f"{'day':>5} {'ticks':>7} {'series':>7} {'hour rows':>10} {'history MB':>11}  (bound {BOUND_BYTES / 1e6:.0f} MB)")
        worst = 0
        while at < end:
            env = dict(os.environ, MONITOR_NOW=str(at))
            subprocess.run([monitor, "--config", config, "run", "p", "--quiet"], env=env)
            ticks += 1
            at += 60 if at >= minutely_from else 3600
            if at >= next_report or at >= end:
                size, series, hours = history_bytes(os.path.join(work, "state", "monitor.db"))
                worst = max(worst, size)
                print(f"{(at - START) // 86400:>5} {ticks:>7} {series:>7} {hours:>10} {size / 1e6:>11.1f}")
                next_report += 30 * 86400
        print(f"soak: {ticks} ticks in {time.time() - started:.0f} s; largest history {worst / 1e6:.1f} MB")
        port = free_port()
        server = subprocess.Popen([monitor, "--config", config, "serve", "--bind", f"127.0.0.1:{port}"],
                                  env=dict(os.environ, MONITOR_NOW=str(end)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            pages = {"/": [], "/task/p/task-00?range=90d": [], "/task/p/task-00?range=7d": []}
            sizes = {}
            for _ in range(args.n):
                for path, times in pages.items():
                    elapsed, size = get(port, path)
                    times.append(elapsed)
                    sizes[path] = size
            print(f"\n{'page':<28} {'runs':>4} {'median ms':>10} {'max ms':>8} {'KiB':>6}")
            for path, times in pages.items():
                print(f"{path:<28} {len(times):>4} {statistics.median(times):>10.1f} {max(times):>8.1f} {sizes[path] / 1024:>6.0f}")
        finally:
            server.terminate()
            server.wait()
        if worst > BOUND_BYTES:
            sys.exit(f"the history grew to {worst / 1e6:.1f} MB, past the README's {BOUND_BYTES / 1e6:.0f} MB")
    finally:
        sleeper.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
