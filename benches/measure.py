#!/usr/bin/env python3
"""Measuring driver for benches/tick_vs_python.sh.

  measure.py run -- ARGV...        run ARGV once; print "wall_ms<TAB>peak_rss_kib<TAB>exit"
  measure.py run [--cpu] [--stdin FILE] -- ARGV...
                                   also print "<TAB>cpu_ms" (user + system), and
                                   give ARGV the file FILE as its stdin
  measure.py report RESULTS.tsv    print the summary table of the collected runs

Run it as `python3 -I -S measure.py ...`. Why: the peak RSS the kernel reports
for a child (wait4's ru_maxrss) is the maximum over the child's whole life,
*including the moment between fork() and exec()*, when the child is still a
copy of this driver. So every figure has a floor: this driver's anonymous
memory at fork time. -I -S skips site-packages, `run` imports only builtin
modules, and the child calls only os.dup2 and os.execv: that keeps the
floor near 5 MiB. (subprocess and os.posix_spawn use vfork: the child then
reports this driver's whole peak, ~14 MiB with subprocess imported.) The
script measures the floors with `true` and prints them beside the results.
GNU /usr/bin/time has a ~1 MiB floor but is not installed everywhere.
"""
import os
import sys
import time


def resolve(name):
    """The PATH lookup of execvp, done before forking: os.execvp runs Python
    code in the child, which alone raises the floor by ~2 MiB."""
    if "/" in name:
        return name
    for folder in os.environ.get("PATH", "").split(":"):
        path = os.path.join(folder or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return name


def run(argv, cpu=False, stdin=None):
    program = resolve(argv[0])
    stdin_fd = os.open(stdin, os.O_RDONLY) if stdin else None
    pid = os.fork()
    if pid == 0:
        # Child: keep the result line on our stdout clean; the command's own
        # output (tracebacks, error messages) goes to stderr where it is seen.
        # Only calls into C between fork and exec (see the floor, above).
        try:
            if stdin_fd is not None:
                os.dup2(stdin_fd, 0)
            os.dup2(2, 1)
            os.execv(program, argv)
        except OSError as error:
            os.write(2, f"measure.py: cannot run {argv[0]}: {error}\n".encode())
        os._exit(127)
    # The clock starts once fork() has returned in the parent: copying this
    # driver's page tables (~0.3 ms) is the driver's cost, not the measured
    # tool's. The child may already be running: it gains a few microseconds.
    start = time.perf_counter_ns()
    _, status, usage = os.wait4(pid, 0)
    wall_ms = (time.perf_counter_ns() - start) / 1e6
    if stdin_fd is not None:
        os.close(stdin_fd)
    # Linux reports ru_maxrss in KiB.
    line = f"{wall_ms:.3f}\t{usage.ru_maxrss}\t{os.waitstatus_to_exitcode(status)}"
    if cpu:
        line += f"\t{(usage.ru_utime + usage.ru_stime) * 1000:.3f}"
    print(line)


# Targets of the brief, shown beside the figures (never a reason to fail).
WALL_RATIO_A = 20.0  # workload A: python wall / monitor wall at least this
RSS_MIB_A = 10.0  # workload A: monitor peak RSS at most this
WALL_S_B = 0.5  # workload B: monitor wall at most this

WORKLOADS = [("one", "A: 1 x /delay/0"), ("twenty", "B: 20 x /delay/200")]
TOOLS = ["monitor", "python"]


def report(path):
    import statistics

    rows = {}
    with open(path) as results:
        for line in results:
            tool, workload, _iteration, wall_ms, rss_kib, code = line.split("\t")
            rows.setdefault((tool, workload), []).append(
                (float(wall_ms), int(rss_kib) / 1024, int(code))
            )

    def stats(tool, workload):
        runs = rows.get((tool, workload), [])
        walls = [wall for wall, _, _ in runs]
        rss = [mib for _, mib, _ in runs]
        return {
            "n": len(runs),
            "failed": sum(1 for _, _, code in runs if code != 0),
            "wall_med": statistics.median(walls),
            "wall_min": min(walls),
            "wall_max": max(walls),
            "rss_med": statistics.median(rss),
            "rss_max": max(rss),
        }

    table = {(t, w): stats(t, w) for t in TOOLS for w, _ in WORKLOADS}
    print(f"{'workload':<20} {'tool':<8} {'runs':>4} {'wall med':>10} {'wall min':>10} {'RSS med':>9}")
    for workload, label in WORKLOADS:
        for tool in TOOLS:
            s = table[(tool, workload)]
            failed = f"  {s['failed']} FAILED" if s["failed"] else ""
            print(
                f"{label:<20} {tool:<8} {s['n']:>4} {s['wall_med']:>7.1f} ms {s['wall_min']:>7.1f} ms"
                f" {s['rss_med']:>5.1f} MiB{failed}"
            )
    print()
    print("python/monitor (medians)")
    for workload, label in WORKLOADS:
        mon, py = table[("monitor", workload)], table[("python", workload)]
        print(
            f"  {label:<20} wall {py['wall_med'] / mon['wall_med']:6.1f}x"
            f"   RSS {py['rss_med'] / mon['rss_med']:5.1f}x"
        )
    print()
    mon_a, py_a = table[("monitor", "one")], table[("python", "one")]
    mon_b = table[("monitor", "twenty")]
    ratio_a = py_a["wall_med"] / mon_a["wall_med"]
    targets = [
        (f"A: monitor wall >= {WALL_RATIO_A:.0f}x less than python",
         f"{ratio_a:.1f}x", ratio_a >= WALL_RATIO_A),
        (f"A: monitor peak RSS <= {RSS_MIB_A:.0f} MiB",
         f"{mon_a['rss_med']:.1f} MiB (max {mon_a['rss_max']:.1f})", mon_a["rss_med"] <= RSS_MIB_A),
        (f"B: monitor wall <= {WALL_S_B} s",
         f"{mon_b['wall_med'] / 1000:.3f} s (max {mon_b['wall_max'] / 1000:.3f})",
         mon_b["wall_med"] / 1000 <= WALL_S_B),
    ]
    print("targets (judged on medians)")
    for what, value, ok in targets:
        print(f"  {what:<42} {value:<24} {'PASS' if ok else 'MISS'}")
    floor = rows.get(("floor", "true"), [])
    if floor:
        print(
            f"\ndriver floors, from `true` measured the same way: wall"
            f" {statistics.median(wall for wall, _, _ in floor):.1f} ms,"
            f" peak RSS {statistics.median(mib for _, mib, _ in floor):.1f} MiB"
            " (an RSS at the floor means 'at most this')"
        )

if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "run" and "--" in sys.argv[2:]:
        split = sys.argv.index("--")
        options, command = sys.argv[2:split], sys.argv[split + 1:]
        stdin = options[options.index("--stdin") + 1] if "--stdin" in options else None
        run(command, cpu="--cpu" in options, stdin=stdin)
    elif len(sys.argv) == 3 and sys.argv[1] == "report":
        report(sys.argv[2])
    else:
        sys.exit(__doc__)
