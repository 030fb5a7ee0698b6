//! The exposition parser alone, on the expositions `scrape_scale.py`
//! generates (about 20 families, 10-bucket histograms), with the 30 rules
//! of that bench deciding what is kept, as a tick's scrape does: the body
//! read as it streams in (64 KiB reads) and as one slice, with and without
//! the rules' selectors. No network, no tick: what the parser costs.
//!
//!     cargo bench --bench scrape_parse                  # 100 000 series
//!     SCRAPE_SERIES=1000000 cargo bench --bench scrape_parse
//!
//! Prints milliseconds per scrape (best and median of the rounds) and MB/s;
//! `SCRAPE_CASE=streamed` runs only the cases whose name holds that text.

use monitor::config::Selector;
use monitor::probe::metrics::parse::{Dialect, parse_exposition_capped, parse_exposition_streamed};
use std::time::Instant;

const GAUGES: [&str; 8] = [
    "app_queue_depth",
    "app_inflight_requests",
    "app_memory_bytes",
    "app_open_fds",
    "app_goroutines",
    "app_cache_entries",
    "app_peers",
    "app_sync_lag",
];
const COUNTERS: [&str; 8] = [
    "app_requests_total",
    "app_errors_total",
    "app_bytes_sent_total",
    "app_retries_total",
    "app_timeouts_total",
    "app_restarts_total",
    "app_dropped_total",
    "app_processed_total",
];
const HISTOGRAMS: [&str; 4] = [
    "app_request_duration_seconds",
    "app_queue_wait_seconds",
    "app_block_close_seconds",
    "app_rpc_latency_seconds",
];
const BUCKETS: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];
const REASONS: [&str; 8] = [
    "ok", "timeout", "refused", "reset", "tls", "dns", "busy", "other",
];

/// The same bytes as `scrape_scale.py`'s `exposition(series, 1)`.
fn exposition(series: usize) -> String {
    let families = GAUGES.len() + COUNTERS.len() + HISTOGRAMS.len() * (BUCKETS.len() + 2);
    let per_label_set = (series / families).max(1);
    let tick = 1;
    let mut out = String::with_capacity(series * 80);
    for name in GAUGES {
        out.push_str(&format!("# HELP {name} A gauge.\n# TYPE {name} gauge\n"));
        for i in 0..per_label_set {
            out.push_str(&format!(
                "{name}{{instance=\"node-{i}\",job=\"app\",reason=\"{}\"}} {}\n",
                REASONS[i % 8],
                (i * 7 + tick) % 1000
            ));
        }
    }
    for name in COUNTERS {
        out.push_str(&format!(
            "# HELP {name} A counter.\n# TYPE {name} counter\n"
        ));
        for i in 0..per_label_set {
            out.push_str(&format!(
                "{name}{{instance=\"node-{i}\",job=\"app\",reason=\"{}\"}} {}\n",
                REASONS[i % 8],
                i * 100 + tick * (i % 5)
            ));
        }
    }
    for name in HISTOGRAMS {
        out.push_str(&format!(
            "# HELP {name} A histogram.\n# TYPE {name} histogram\n"
        ));
        for i in 0..per_label_set {
            let labels = format!("instance=\"node-{i}\",job=\"app\"");
            let count = 1000 + tick * 10 + i;
            for (b, bound) in BUCKETS.iter().enumerate() {
                let cumulative = if *bound == "+Inf" {
                    count
                } else {
                    count * (b + 1) / BUCKETS.len()
                };
                out.push_str(&format!(
                    "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}\n"
                ));
            }
            out.push_str(&format!(
                "{name}_sum{{{labels}}} {:.3}\n",
                count as f64 * 0.12
            ));
            out.push_str(&format!("{name}_count{{{labels}}} {count}\n"));
        }
    }
    out
}

/// The selectors `scrape_scale.py`'s 30 rules read, as jobs.yaml gives
/// them to the probe.
fn wanted() -> Vec<Selector> {
    let mut rules = Vec::new();
    for (k, name) in GAUGES.iter().enumerate() {
        rules.push(format!(
            "{{ name: g{k}, gauge: '{name}{{instance=\"node-{k}\"}}', value: \"> 100000\" }}"
        ));
        rules.push(format!(
            "{{ name: gs{k}, gauge: '{name}{{reason=\"timeout\",instance=~\"node-1.*\"}}', value: \"> 1e12\" }}"
        ));
    }
    for (k, name) in COUNTERS.iter().enumerate() {
        rules.push(format!(
            "{{ name: c{k}, counter: '{name}{{instance=\"node-{k}\"}}', delta: \"> 1e12\" }}"
        ));
    }
    for (k, name) in HISTOGRAMS.iter().enumerate() {
        rules.push(format!(
            "{{ name: h{k}, histogram: '{name}{{instance=\"node-{k}\"}}', quantile: 0.99, value: \"> 100\" }}"
        ));
    }
    rules.push("{ name: r0, ratio: { numerator: 'app_errors_total{instance=\"node-1\"}', denominator: 'app_requests_total{instance=\"node-1\"}' }, value: \"> 2\" }".into());
    rules.push("{ name: r1, gauge_ratio: ['app_queue_depth{instance=\"node-2\"}', 'app_peers{instance=\"node-2\"}'], value: \"> 1e9\" }".into());
    rules.truncate(30);
    let rules: String = rules.iter().map(|r| format!("          - {r}\n")).collect();
    let yaml = format!(
        "version: 1\nhost: bench\nprofiles:\n  scrape:\n    cron: \"* * * * *\"\n    tasks:\n      - name: app\n        metrics: {{ url: \"http://127.0.0.1:1/metrics\" }}\n        rules:\n{rules}"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("jobs.yaml");
    std::fs::write(&path, yaml).expect("jobs.yaml written");
    let config = monitor::config::load(&path, None).expect("the bench's jobs.yaml loads");
    let task = &config.profiles[0].tasks[0];
    task.probes
        .iter()
        .find_map(|probe| match probe {
            monitor::config::Probe::Metrics(metrics) => metrics.wanted.clone(),
            _ => None,
        })
        .expect("a metrics probe with the rules' selectors")
}

fn main() {
    let series: usize = std::env::var("SCRAPE_SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let rounds: usize = std::env::var("SCRAPE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let body = exposition(series);
    let wanted = wanted();
    let megabytes = body.len() as f64 / 1e6;
    println!(
        "{series} series requested: {megabytes:.1} MB, {} selectors from 30 rules, {rounds} rounds",
        wanted.len()
    );
    type Run<'a> = Box<dyn Fn() -> (usize, usize) + 'a>;
    let bytes = body.as_bytes();
    let cases: [(&str, Run); 5] = [
        (
            "baseline: count lines",
            Box::new(|| (0, memchr::memchr_iter(b'\n', bytes).count())),
        ),
        (
            "baseline: lines, UTF-8, floats",
            Box::new(|| {
                let text = std::str::from_utf8(bytes).expect("UTF-8");
                let mut sum = 0.0;
                let count = text
                    .lines()
                    .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                    .map(|value| sum += value)
                    .count();
                std::hint::black_box(sum);
                (0, count)
            }),
        ),
        (
            "streamed, rules' selectors",
            Box::new(|| {
                let (kept, count) = parse_exposition_streamed(
                    bytes,
                    Dialect::Text,
                    u64::MAX,
                    usize::MAX,
                    Some(&wanted),
                )
                .expect("the exposition parses");
                (kept.series.len(), count)
            }),
        ),
        (
            "whole body, rules' selectors",
            Box::new(|| {
                let (kept, count) =
                    parse_exposition_capped(bytes, Dialect::Text, usize::MAX, Some(&wanted))
                        .expect("the exposition parses");
                (kept.series.len(), count)
            }),
        ),
        (
            "whole body, every series kept",
            Box::new(|| {
                let (kept, count) = parse_exposition_capped(bytes, Dialect::Text, usize::MAX, None)
                    .expect("the exposition parses");
                (kept.series.len(), count)
            }),
        ),
    ];
    let only = std::env::var("SCRAPE_CASE").unwrap_or_default();
    for (what, run) in cases
        .iter()
        .filter(|(what, _)| what.contains(only.as_str()))
    {
        let mut times = Vec::with_capacity(rounds);
        let mut shape = (0, 0);
        for _ in 0..rounds {
            let started = Instant::now();
            shape = std::hint::black_box(run());
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{what:>30}: {:>4} of {} series kept; best {:.1} ms, median {median:.1} ms ({:.0} MB/s)",
            shape.0,
            shape.1,
            times[0],
            megabytes / (median / 1000.0)
        );
    }
}
