#!/usr/bin/env python3
"""A `metrics` scrape at scale: a whole `monitor run` tick (the second one,
its snapshot present) with 30 rules, against Python's prometheus_client
parsing the same bytes and `promtool check metrics` reading them, and a plain
`curl -o /dev/null` of the same URL, in one run, paired and interleaved.

  python3 benches/scrape_scale.py [-n RUNS] [--sizes node,1000,10000,100000,1000000]

Expositions are generated (about 20 families: gauges and counters with
instance/job/reason labels, histograms with 10 buckets); the size `node`
is the real node_exporter capture in tests/fixtures/metrics (507 series)
with 30 rules of the kinds seed 003 writes on it. They are served by
nginx on 127.0.0.1 (Debian's nginx-light, as a real exporter serves them:
a Go exporter writes a scrape as fast as the loopback takes it), or by
`python3 -m http.server` where nginx is missing (slower to send than most
tools are to read: the curl line shows the transfer's own cost). Each round measures every size with
every tool in turn. Prints wall, CPU (user+sys) and peak-RSS medians per
size and tool, and the ratios. Environment:
  MONITOR_BIN   the binary (default: `cargo build --release`)
  PROM_PYTHON   a python with prometheus_client (default /usr/bin/python3;
                Debian: apt-get install python3-prometheus-client)
  MAX_BODY      the metrics probe's max_body (default: twice the body when
                it is over the probe's own 16 MiB default)
  SERVER        `nginx` or `python` (default: nginx when installed)
  BEFORE_BIN    another monitor binary (an earlier build) measured in the
                same rounds, with its own state, as `before`: a change's
                cost side by side (`git worktree add /tmp/old REV && cargo
                build --release` there)
What each tick said of its scrape is printed: a refused scrape gets no
ratios.
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MEASURE = os.path.join(HERE, "measure.py")

GAUGES = ["app_queue_depth", "app_inflight_requests", "app_memory_bytes", "app_open_fds",
          "app_goroutines", "app_cache_entries", "app_peers", "app_sync_lag"]
COUNTERS = ["app_requests_total", "app_errors_total", "app_bytes_sent_total",
            "app_retries_total", "app_timeouts_total", "app_restarts_total",
            "app_dropped_total", "app_processed_total"]
HISTOGRAMS = ["app_request_duration_seconds", "app_queue_wait_seconds",
              "app_block_close_seconds", "app_rpc_latency_seconds"]
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
REASONS = ["ok", "timeout", "refused", "reset", "tls", "dns", "busy", "other"]


def exposition(series, tick):
    """About `series` series; `tick` moves the counters and histograms."""
    families = len(GAUGES) + len(COUNTERS) + len(HISTOGRAMS) * (len(BUCKETS) + 2)
    per_label_set = max(1, series // families)
    lines = []
    for name in GAUGES:
        lines.append(f"# HELP {name} A gauge.\n# TYPE {name} gauge\n")
        for i in range(per_label_set):
            lines.append(f'{name}{{instance="node-{i}",job="app",reason="{REASONS[i % 8]}"}} {(i * 7 + tick) % 1000}\n')
    for name in COUNTERS:
        lines.append(f"# HELP {name} A counter.\n# TYPE {name} counter\n")
        for i in range(per_label_set):
            lines.append(f'{name}{{instance="node-{i}",job="app",reason="{REASONS[i % 8]}"}} {i * 100 + tick * (i % 5)}\n')
    for name in HISTOGRAMS:
        lines.append(f"# HELP {name} A histogram.\n# TYPE {name} histogram\n")
        for i in range(per_label_set):
            labels = f'instance="node-{i}",job="app"'
            count = 1000 + tick * 10 + i
            for b, bound in enumerate(BUCKETS):
                cumulative = count if bound == "+Inf" else count * (b + 1) // len(BUCKETS)
                lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}\n')
            lines.append(f"{name}_sum{{{labels}}} {count * 0.12:.3f}\n")
            lines.append(f"{name}_count{{{labels}}} {count}\n")
    return "".join(lines)


def rules():
    """30 rules of the kinds the seeds use, over a few series of the scrape."""
    out = []
    for k, name in enumerate(GAUGES):
        out.append(f'{{ name: g{k}, gauge: \'{name}{{instance="node-{k}"}}\', value: "> 100000" }}')
        out.append(f'{{ name: gs{k}, gauge: \'{name}{{reason="timeout",instance=~"node-1.*"}}\', value: "> 1e12" }}')
    for k, name in enumerate(COUNTERS):
        out.append(f'{{ name: c{k}, counter: \'{name}{{instance="node-{k}"}}\', delta: "> 1e12" }}')
    for k, name in enumerate(HISTOGRAMS):
        out.append(f'{{ name: h{k}, histogram: \'{name}{{instance="node-{k}"}}\', quantile: 0.99, value: "> 100" }}')
    out.append('{ name: r0, ratio: { numerator: \'app_errors_total{instance="node-1"}\', denominator: \'app_requests_total{instance="node-1"}\' }, value: "> 2" }')
    out.append('{ name: r1, gauge_ratio: [\'app_queue_depth{instance="node-2"}\', \'app_peers{instance="node-2"}\'], value: "> 1e9" }')
    return out[:30]


NODE_CAPTURE = os.path.join(REPO, "tests", "fixtures", "metrics", "node_exporter.prom")


def node_rules():
    """30 rules over the node_exporter capture, as seed 003's host checks."""
    out = [
        '{ name: load, gauge: node_load1, value: "> 8" }',
        '{ name: load15, gauge: node_load15, value: "> 6", for: 10m }',
        '{ name: memory, gauge_ratio: [node_memory_MemAvailable_bytes, node_memory_MemTotal_bytes], value: "< 0.1" }',
        '{ name: disk, gauge_ratio: [\'node_filesystem_avail_bytes{mountpoint="/"}\', \'node_filesystem_size_bytes{mountpoint="/"}\'], value: "< 0.1" }',
        '{ name: iowait, ratio: { numerator: \'node_cpu_seconds_total{mode="iowait"}\', denominator: node_cpu_seconds_total }, value: "> 0.3" }',
        '{ name: steal, ratio: { numerator: \'node_cpu_seconds_total{mode="steal"}\', denominator: node_cpu_seconds_total }, value: "> 0.2" }',
        '{ name: blocked, gauge: node_procs_blocked, value: "> 10" }',
        '{ name: running, gauge: node_procs_running, value: "> 64" }',
        '{ name: forks, counter: node_forks_total, delta: "> 100000" }',
        '{ name: ctx, counter: node_context_switches_total, delta: "> 1e8" }',
        '{ name: collector, gauge: \'node_scrape_collector_success{collector="cpu"}\', value: "< 1" }',
        '{ name: collectors, gauge: \'node_scrape_collector_success{collector=~"disk.*|filesystem|meminfo"}\', value: "< 3" }',
        '{ name: fds, gauge_ratio: [process_open_fds, process_max_fds], value: "> 0.8" }',
        '{ name: rss, gauge: process_resident_memory_bytes, value: "> 2e9" }',
        '{ name: goroutines, gauge: go_goroutines, value: "> 1000" }',
        '{ name: gc, gauge: \'go_gc_duration_seconds{quantile="1"}\', value: "> 1" }',
        '{ name: http-errors, counter: promhttp_metric_handler_errors_total, delta: ">= 1" }',
    ]
    for direction in ("receive", "transmit"):
        for what in ("errs", "drop", "fifo"):
            out.append(f'{{ name: {direction}-{what}, counter: \'node_network_{direction}_{what}_total{{device!="lo"}}\', delta: "> 100" }}')
    for device in ("lo", "eth0"):
        out.append(f'{{ name: up-{device}, gauge: \'node_network_up{{device="{device}"}}\', value: "< 1", severity: warning }}')
    out += [
        '{ name: softnet-drop, counter: node_softnet_dropped_total, delta: ">= 1" }',
        '{ name: squeezed, counter: node_softnet_times_squeezed_total, delta: "> 100" }',
        '{ name: disk-writes, counter: node_disk_writes_completed_total, delta: "> 1e6" }',
        '{ name: written, counter: node_disk_written_bytes_total, delta: "> 1e11" }',
        '{ name: intr, counter: node_intr_total, delta: "> 1e9" }',
    ]
    return out[:30]


def jobs_yaml(url, state, max_body=None, node=False):
    max_body = os.environ.get("MAX_BODY", max_body)
    extra = f", max_body: {max_body}" if max_body else ""
    rule_lines = "\n".join(f"          - {r}" for r in (node_rules() if node else rules()))
    return f"""version: 1
host: bench
state: {state}
profiles:
  scrape:
    cron: "* * * * *"
    tasks:
      - name: app
        metrics: {{ url: "{url}", timeout: 30s{extra} }}
        rules:
{rule_lines}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(work, port):
    """A static server of `work` on 127.0.0.1:`port`, and its name."""
    kind = os.environ.get("SERVER") or ("nginx" if shutil.which("nginx") else "python")
    if kind == "python":
        print(f"serving with python3 -m http.server on 127.0.0.1:{port}", file=sys.stderr)
        return subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                                 "127.0.0.1", "--directory", work],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nginx = shutil.which("nginx") or sys.exit("SERVER=nginx, but nginx is not installed "
                                              "(apt-get install nginx-light)")
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        # Workers run as the user running the bench (root: not nobody,
        # who cannot read the private work directory).
        f.write(("user root;\n" if os.geteuid() == 0 else "")
                + f"daemon off;\nworker_processes 1;\npid {work}/nginx.pid;\n"
                f"error_log {work}/nginx-error.log;\nevents {{ worker_connections 64; }}\n"
                f"http {{ access_log off; sendfile on; tcp_nopush on;\n"
                f"  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};\n"
                f"  uwsgi_temp_path {work}; scgi_temp_path {work};\n"
                f"  server {{ listen 127.0.0.1:{port}; root {work}; }} }}\n")
    print(f"serving with nginx on 127.0.0.1:{port}", file=sys.stderr)
    return subprocess.Popen([nginx, "-c", conf, "-p", work],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(argv, stdin=None, env=None):
    """wall ms, CPU ms, peak RSS KiB, exit code of one run of argv."""
    command = [sys.executable, "-I", "-S", MEASURE, "run", "--cpu"]
    if stdin:
        command += ["--stdin", stdin]
    line = subprocess.run(command + ["--"] + argv, capture_output=True, text=True,
                          env=env, check=True).stdout.strip()
    wall, rss, code, cpu = line.split("\t")
    return float(wall), float(cpu), int(rss), int(code)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--sizes", default="node,1000,10000,100000,1000000",
                        help="series counts, and `node` for the node_exporter capture")
    args = parser.parse_args()
    sizes = [s if s == "node" else int(s) for s in args.sizes.split(",")]
    prom_python = os.environ.get("PROM_PYTHON", "/usr/bin/python3")
    if subprocess.run([prom_python, "-c", "import prometheus_client.parser"],
                      capture_output=True).returncode != 0:
        sys.exit(f"{prom_python} cannot import prometheus_client: "
                 "apt-get install python3-prometheus-client (or set PROM_PYTHON)")
    promtool = shutil.which("promtool")
    curl = shutil.which("curl")
    before = os.environ.get("BEFORE_BIN")
    monitor = os.environ.get("MONITOR_BIN")
    if not monitor:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
        monitor = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")),
                               "release", "monitor")

    work = tempfile.mkdtemp(prefix="scrape-scale-")
    port = free_port()
    server = serve(work, port)
    results = {}
    seen = {}
    bodies = {}
    try:
        for size in sizes:
            for tick in (0, 1):
                with open(os.path.join(work, f"{size}-{tick}.prom"), "w") as f:
                    if size == "node":
                        with open(NODE_CAPTURE) as capture:
                            f.write(capture.read())
                    else:
                        f.write(exposition(size, tick))
            bodies[size] = os.path.getsize(os.path.join(work, f"{size}-1.prom"))
        time.sleep(0.3)
        parse_py = ("import sys\nfrom prometheus_client.parser import text_string_to_metric_families\n"
                    "n = sum(len(f.samples) for f in text_string_to_metric_families(open(sys.argv[1]).read()))\n")
        for round_ in range(args.n):
            for size in sizes:
                body = os.path.join(work, f"{size}-1.prom")
                url = f"http://127.0.0.1:{port}/{size}-1.prom"
                # A fresh state whose snapshot holds the first tick's scrape.
                state = os.path.join(work, f"state-{size}-{round_}.db")
                config = os.path.join(work, f"jobs-{size}.yaml")
                max_body = f"{2 * bodies[size]}" if bodies[size] > 16 << 20 else None
                with open(config, "w") as f:
                    f.write(jobs_yaml(f"http://127.0.0.1:{port}/{size}-0.prom", state, max_body,
                                      size == "node"))
                env = dict(os.environ, MONITOR_NOW="1790000000")
                subprocess.run([monitor, "--config", config, "run", "scrape", "--quiet"],
                               env=env, capture_output=True)
                with open(config, "w") as f:
                    f.write(jobs_yaml(url, state, max_body, size == "node"))
                if before:
                    before_config = os.path.join(work, f"jobs-{size}-before.yaml")
                    before_state = os.path.join(work, f"state-{size}-{round_}-before.db")
                    with open(before_config, "w") as f:
                        f.write(jobs_yaml(f"http://127.0.0.1:{port}/{size}-0.prom", before_state,
                                          max_body, size == "node"))
                    subprocess.run([before, "--config", before_config, "run", "scrape", "--quiet"],
                                   env=env, capture_output=True)
                    with open(before_config, "w") as f:
                        f.write(jobs_yaml(url, before_state, max_body, size == "node"))
                env["MONITOR_NOW"] = "1790000060"
                runs = [
                    ("monitor", [monitor, "--config", config, "run", "scrape", "--quiet"], None, env),
                    ("prometheus_client", [prom_python, "-c", parse_py, body], None, None),
                ]
                if before:
                    runs.insert(1, ("before", [before, "--config", before_config, "run", "scrape",
                                               "--quiet"], None, env))
                if promtool:
                    runs.append(("promtool", [promtool, "check", "metrics"], body, None))
                if curl:
                    runs.append(("curl", [curl, "-s", "-o", "/dev/null", url], None, None))
                for tool, argv, stdin, run_env in runs:
                    results.setdefault((size, tool), []).append(measure(argv, stdin, run_env))
                if round_ == 0:
                    # What the measured tick saw, said once (a tick that
                    # refused the scrape is fast and proves nothing).
                    said = subprocess.run([monitor, "--config", config, "run", "scrape", "--dry-run"],
                                          env=env, capture_output=True, text=True).stdout
                    seen[size] = next((line.strip() for line in said.splitlines()
                                       if line.strip().startswith(("ok", "FAIL", "WARN", "CRIT"))), "?")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)

    tools = ["monitor", "before", "prometheus_client", "promtool", "curl"]
    print(f"{'series':>9} {'tool':<18} {'runs':>4} {'wall med':>10} {'CPU med':>10} {'RSS med':>9}")
    medians = {}
    for size in sizes:
        for tool in tools:
            runs = results.get((size, tool))
            if not runs:
                continue
            # promtool exits 3 when its lint finds something (the node
            # capture's camelCase names): a whole run all the same.
            fine = (0, 1, 3) if tool == "promtool" else (0, 1)
            failed = [code for *_, code in runs if code not in fine]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            rss = statistics.median(r[2] for r in runs) / 1024
            medians[(size, tool)] = (wall, cpu, rss, bool(failed))
            note = f"  FAILED (exit {failed[0]})" if failed else ""
            print(f"{size:>9} {tool:<18} {len(runs):>4} {wall:>7.1f} ms {cpu:>7.1f} ms {rss:>5.1f} MiB{note}")
    print("\nwhat monitor's tick said of each scrape (body size)")
    for size in sizes:
        print(f"{size:>9} {bodies.get(size, 0) / 1e6:6.1f} MB  {seen.get(size, '?')}")
    print("\nratios, other tool / monitor (medians; wall, CPU)")
    for size in sizes:
        mon = medians.get((size, "monitor"))
        if not mon or mon[3] or " series in " not in seen.get(size, ""):
            print(f"{size:>9} monitor did not judge this scrape: no ratios")
            continue
        parts = []
        for tool in tools[1:]:
            other = medians.get((size, tool))
            if other:
                parts.append(f"{tool} {other[0] / mon[0]:.1f}x, {other[1] / max(mon[1], 0.001):.1f}x")
        print(f"{size:>9} " + "; ".join(parts))


if __name__ == "__main__":
    main()
