//! The exposition parser on real captures (node_exporter, Prometheus, the
//! Python client in both formats, a henyey-shaped scrape), generated and
//! mutated inputs that must never panic, its speed, and the `metrics` probe
//! end to end through the real binary.
//!
//! Captures live in tests/fixtures/metrics/; their README says how they
//! were taken.
//!
//! Over 800 lines: it is one area of the integration suite (one module of
//! `tests/main.rs`), each test a scenario with its own fixture; the helpers
//! they share live in `tests/common/`.

use crate::common::*;

use monitor::probe::metrics::parse::{Dialect, Series, for_each_sample, parse};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// Every capture, its dialect, and how many series it holds.
const FIXTURES: [(&str, Dialect, usize); 5] = [
    ("node_exporter.prom", Dialect::Text, 507),
    ("prometheus.prom", Dialect::Text, 351),
    ("python_client.prom", Dialect::Text, 65),
    ("python_client.openmetrics", Dialect::OpenMetrics, 65),
    ("henyey.prom", Dialect::Text, 140),
];

fn parsed(name: &str, dialect: Dialect) -> Vec<Series> {
    parse(&fixture(name), dialect).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of the one series `name` with exactly `labels`.
fn value(series: &[Series], name: &str, with: &[(&str, &str)]) -> f64 {
    let wanted = labels(with);
    let found: Vec<f64> = series
        .iter()
        .filter(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value)
        .collect();
    assert_eq!(found.len(), 1, "{name}{with:?}: {found:?}");
    found[0]
}

#[test]
fn every_fixture_parses_with_its_series_count() {
    for (name, dialect, count) in FIXTURES {
        let series = parsed(name, dialect);
        assert_eq!(series.len(), count, "{name}");
        for one in &series {
            assert!(
                one.labels.windows(2).all(|pair| pair[0].0 < pair[1].0),
                "{name}: labels not sorted and unique: {one:?}"
            );
        }
    }
}

#[test]
fn node_exporter_capture_has_known_values() {
    let series = parsed("node_exporter.prom", Dialect::Text);
    let build = labels(&[
        ("branch", "debian/sid"),
        ("goarch", "amd64"),
        ("goos", "linux"),
        ("goversion", "go1.19.8"),
        ("revision", "1.5.0-1+b6"),
        ("version", "1.5.0"),
    ]);
    assert!(
        series
            .iter()
            .any(|s| s.name == "node_exporter_build_info" && s.labels == build && s.value == 1.0)
    );
    assert_eq!(value(&series, "go_threads", &[]), 7.0);
    assert_eq!(value(&series, "go_goroutines", &[]), 8.0);
    assert_eq!(value(&series, "go_info", &[("version", "go1.19.8")]), 1.0);
    let quantiles: Vec<&str> = series
        .iter()
        .filter(|s| s.name == "go_gc_duration_seconds")
        .map(|s| s.labels[0].1.as_str())
        .collect();
    assert_eq!(quantiles, ["0", "0.25", "0.5", "0.75", "1"]);
}

#[test]
fn prometheus_capture_has_known_values() {
    let series = parsed("prometheus.prom", Dialect::Text);
    let build = series
        .iter()
        .find(|s| s.name == "prometheus_build_info")
        .unwrap();
    assert!(
        build
            .labels
            .contains(&("version".into(), "2.42.0+ds".into()))
    );
    assert_eq!(value(&series, "go_threads", &[]), 9.0);
    // A histogram's buckets are plain series ending at +Inf.
    let buckets: Vec<&Series> = series
        .iter()
        .filter(|s| {
            s.name == "prometheus_http_request_duration_seconds_bucket"
                && s.labels.contains(&("handler".into(), "/metrics".into()))
        })
        .collect();
    assert!(buckets.len() > 2, "{buckets:?}");
    let last = buckets.last().unwrap();
    assert!(last.labels.contains(&("le".into(), "+Inf".into())));
    let count = value(
        &series,
        "prometheus_http_request_duration_seconds_count",
        &[("handler", "/metrics")],
    );
    assert_eq!(last.value, count);
}

#[test]
fn python_client_capture_keeps_escapes_exemplars_and_units() {
    let series = parsed("python_client.openmetrics", Dialect::OpenMetrics);
    assert_eq!(
        value(
            &series,
            "app_errors_total",
            &[("kind", "quote \" and \\ backslash")]
        ),
        2.0
    );
    assert_eq!(
        value(&series, "app_errors_total", &[("kind", "multi\nline")]),
        1.0
    );
    // This line carries an exemplar: the value is the sample's, not the exemplar's.
    assert_eq!(
        value(&series, "app_errors_total", &[("kind", "timeout")]),
        5.0
    );
    assert_eq!(
        value(
            &series,
            "app_requests_total",
            &[("method", "GET"), ("path", "/search?q=\"a,b\"{c}")]
        ),
        3.0
    );
    assert_eq!(value(&series, "app_temperature_celsius", &[]), -12.5);
    assert_eq!(
        value(
            &series,
            "app_request_duration_seconds_bucket",
            &[("le", "+Inf"), ("method", "GET")]
        ),
        9.0
    );
    assert_eq!(
        value(&series, "app_state", &[("app_state", "running")]),
        1.0
    );
    assert!(series.iter().any(|s| s.name.ends_with("_created")));
}

#[test]
fn text_and_openmetrics_captures_give_the_same_series() {
    let key = |series: Vec<Series>| -> BTreeMap<(String, Vec<(String, String)>), f64> {
        series
            .into_iter()
            .filter(|s| !s.name.ends_with("_created"))
            .map(|s| ((s.name, s.labels), s.value))
            .collect()
    };
    let text = key(parsed("python_client.prom", Dialect::Text));
    let open = key(parsed("python_client.openmetrics", Dialect::OpenMetrics));
    assert_eq!(
        text.keys().collect::<BTreeSet<_>>(),
        open.keys().collect::<BTreeSet<_>>()
    );
    // The application's own series did not move between the two captures.
    for ((name, labels), value) in &text {
        if name.starts_with("app_") {
            assert_eq!(
                open[&(name.clone(), labels.clone())],
                *value,
                "{name}{labels:?}"
            );
        }
    }
    assert!(text.len() > 50);
}

#[test]
fn text_captures_are_rejected_as_openmetrics_for_lack_of_eof() {
    let body = fixture("node_exporter.prom");
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    let error = parse(&body, Dialect::OpenMetrics).unwrap_err();
    assert_eq!(error.line, lines + 1, "{error}");
    assert!(error.message.contains("without `# EOF`"), "{error}");
}

#[test]
fn henyey_capture_has_the_seed_003_families() {
    let series = parsed("henyey.prom", Dialect::Text);
    let reasons: Vec<&str> = series
        .iter()
        .filter(|s| s.name == "henyey_scp_post_verify_total")
        .map(|s| s.labels[0].1.as_str())
        .collect();
    assert_eq!(reasons.len(), 14, "{reasons:?}");
    assert!(reasons.contains(&"accepted") && reasons.contains(&"processed_directly"));
    let total: f64 = series
        .iter()
        .filter(|s| s.name == "henyey_scp_post_verify_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 788_186.0);
    assert_eq!(value(&series, "stellar_peer_count", &[]), 23.0);
    assert_eq!(
        value(
            &series,
            "henyey_recovery_stalled_tick_total",
            &[("reason", "forcing_catchup_behind")]
        ),
        2.0
    );
    let edges: Vec<&str> = series
        .iter()
        .filter(|s| s.name == "henyey_ledger_close_handle_complete_seconds_bucket")
        .map(|s| s.labels[0].1.as_str())
        .collect();
    assert_eq!(
        edges,
        [
            "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "30", "+Inf"
        ]
    );
    assert_eq!(
        value(
            &series,
            "henyey_ledger_close_handle_complete_seconds_count",
            &[]
        ),
        1000.0
    );
}

/// A scrape of about 1 MiB made of the largest capture, repeated.
fn one_mebibyte() -> Vec<u8> {
    let body = fixture("node_exporter.prom");
    body.repeat((1 << 20) / body.len() + 1)
}

#[test]
fn a_mebibyte_scrape_parses_quickly_even_unoptimised() {
    let body = one_mebibyte();
    let started = Instant::now();
    let series = parse(&body, Dialect::Text).unwrap();
    assert!(series.len() > 9_000);
    // A debug build on a loaded 2-core runner: generous on purpose. The
    // release figure comes from `parse_speed` below.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Prints the parser's throughput:
/// `cargo test --release --test metrics_parse parse_speed -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check: run in release"]
fn parse_speed() {
    let body = one_mebibyte();
    let rounds = 50;
    let report = |what: &str, seconds: f64, series: usize| {
        let megabytes = (body.len() * rounds) as f64 / 1e6;
        println!(
            "{what}: {megabytes:.1} MB, {series} series in {seconds:.3} s: {:.0} MB/s, {:.2} ms per MiB",
            megabytes / seconds,
            seconds * 1000.0 / rounds as f64
        );
    };
    let started = Instant::now();
    let mut series = 0;
    for _ in 0..rounds {
        series += for_each_sample(&body, Dialect::Text, |sample| {
            std::hint::black_box(sample);
        })
        .unwrap();
    }
    report("borrowed samples", started.elapsed().as_secs_f64(), series);
    let started = Instant::now();
    let mut series = 0;
    for _ in 0..rounds {
        series += parse(&body, Dialect::Text).unwrap().len();
    }
    report("owned series", started.elapsed().as_secs_f64(), series);
}

/// Small edits a truncated, corrupted or concatenated scrape could show.
#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, u8),
    Delete(usize, usize),
    Replace(usize, u8),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes the grammar cares about, weighted above arbitrary ones.
    let special = prop::sample::select(b"{}\",=\\ \t\r\n#+-.eEIN0_:".to_vec());
    let byte = prop_oneof![3 => special, 1 => any::<u8>()];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), byte).prop_map(|(at, b)| Edit::Replace(at, b)),
        (any::<usize>(), 1usize..256).prop_map(|(at, n)| Edit::Duplicate(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(body: &mut Vec<u8>, edit: &Edit) {
    let at = |position: usize, body: &Vec<u8>| position % (body.len() + 1);
    match *edit {
        Edit::Insert(position, byte) => {
            let i = at(position, body);
            body.insert(i, byte);
        }
        Edit::Delete(position, length) => {
            let i = at(position, body);
            let end = (i + length).min(body.len());
            body.drain(i..end);
        }
        Edit::Replace(position, byte) => {
            if !body.is_empty() {
                let i = position % body.len();
                body[i] = byte;
            }
        }
        Edit::Duplicate(position, length) => {
            let i = at(position, body);
            let end = (i + length).min(body.len());
            let copy = body[i..end].to_vec();
            body.splice(i..i, copy);
        }
        Edit::Truncate(position) => {
            let i = at(position, body);
            body.truncate(i);
        }
    }
}

/// What must hold of any outcome: series well formed, errors on a real line.
fn check_outcome(body: &[u8], dialect: Dialect) -> Result<(), TestCaseError> {
    let lines = body.iter().filter(|&&b| b == b'\n').count() + 1;
    match parse(body, dialect) {
        Ok(series) => {
            for one in series {
                prop_assert!(!one.name.is_empty());
                prop_assert!(one.labels.windows(2).all(|pair| pair[0].0 < pair[1].0));
            }
        }
        Err(error) => {
            prop_assert!(
                error.line >= 1 && error.line <= lines + 1,
                "{error} of {lines}"
            );
            prop_assert!(!error.message.is_empty());
        }
    }
    Ok(())
}

/// One series in the text format, label values escaped.
fn render(name: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{escaped}\"")
        })
        .collect();
    format!("{name}{{{}}} {value:?}\n", pairs.join(","))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_outcome(&body, Dialect::Text)?;
        check_outcome(&body, Dialect::OpenMetrics)?;
    }

    #[test]
    fn mutated_captures_never_panic(
        which in 0usize..FIXTURES.len(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let (name, dialect, _) = FIXTURES[which];
        let mut body = fixture(name);
        for edit in &edits {
            apply(&mut body, edit);
        }
        check_outcome(&body, dialect)?;
        check_outcome(&body, Dialect::Text)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rendered_series_parse_back(
        name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
        labels in prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", any::<String>(), 0..5),
        value in any::<f64>(),
    ) {
        let text = render(&name, &labels, value);
        let series = parse(text.as_bytes(), Dialect::Text)
            .map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        prop_assert_eq!(series.len(), 1);
        prop_assert_eq!(&series[0].name, &name);
        // A label with an empty value is no label, as Prometheus stores it.
        let expected: Vec<(String, String)> =
            labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        prop_assert_eq!(&series[0].labels, &expected);
        if value.is_nan() {
            prop_assert!(series[0].value.is_nan());
        } else {
            prop_assert_eq!(series[0].value, value);
        }
    }
}

/// The probe end to end: the real binary scrapes a real server serving the
/// henyey capture, and a `gauge` rule reads a scraped series.
#[test]
fn metrics_task_scrapes_and_reports_its_signals() {
    let body = String::from_utf8(fixture("henyey.prom")).unwrap();
    let server = TestServer::start(Reply {
        status: 200,
        body,
        delay: Duration::ZERO,
    });
    let url = server.url("/metrics");
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: node\n        metrics: {{ url: \"{url}\" }}\n        rules:\n          - {{ name: x, gauge: \"stellar_peer_count\", value: \"> 0\" }}\n"
    )));
    let out = ws.run_at(minute(0), "p", &["--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- stdout\n{}\n--- stderr\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    let task = &json["tasks"][0];
    let check = &task["checks"][0];
    assert_eq!(check["probe"], "metrics", "{json:#}");
    assert_eq!(check["status"], "ok", "{json:#}");
    let summary = check["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("{url}: 140 series in ")),
        "{summary}"
    );
    let signals = &task["signals"];
    assert_eq!(signals["scraped_series"], 140, "{json:#}");
    // Only what the rule reads is kept.
    assert_eq!(signals["kept_series"], 1, "{json:#}");
    assert_eq!(signals["metrics.up"], 1.0, "{json:#}");
    assert_eq!(signals["metrics.series"], 140.0, "{json:#}");
    assert!(signals["metrics.scrape_ms"].is_number(), "{json:#}");
    let rule = task["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "x")
        .unwrap();
    assert_eq!(rule["verdict"], "breach", "{json:#}");
    assert_eq!(rule["value"], 23.0, "{json:#}");
    let request = &server.requests()[0];
    assert!(
        request
            .header("accept")
            .is_some_and(|accept| accept.starts_with("application/openmetrics-text")),
        "{request:?}"
    );
}

/// A dead endpoint is a failed check with up = 0 and no series.
#[test]
fn metrics_task_reports_a_dead_endpoint() {
    let url = format!("http://127.0.0.1:{}/metrics", closed_port());
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: node\n        metrics: {{ url: \"{url}\", timeout: 2s }}\n"
    )));
    let out = ws.run_at(minute(0), "p", &["--format", "json"]);
    assert_exit(&out, 1);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let task = &json["tasks"][0];
    assert_eq!(task["checks"][0]["status"], "failed", "{json:#}");
    let summary = task["checks"][0]["summary"].as_str().unwrap();
    assert!(summary.contains("connection refused"), "{summary}");
    assert_eq!(task["signals"]["metrics.up"], 0.0, "{json:#}");
    assert!(task["signals"].get("scraped_series").is_none(), "{json:#}");
}

// ------------------------------------------ a real exporter, PromQL matchers

/// Debian's node_exporter, on 127.0.0.1 only (`.ci/run` installs it).
struct NodeExporter {
    port: u16,
    child: std::process::Child,
}

impl NodeExporter {
    fn start() -> NodeExporter {
        const BINARY: &str = "/usr/bin/prometheus-node-exporter";
        assert!(
            Path::new(BINARY).is_file(),
            "no node_exporter to test against at {BINARY}: `.ci/run` installs it (Debian package \
             prometheus-node-exporter); or run `sudo apt-get install -y --no-install-recommends \
             prometheus-node-exporter`"
        );
        let port = closed_port();
        let child = std::process::Command::new(BINARY)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let exporter = NodeExporter { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "node_exporter did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        exporter
    }

    /// One scrape, as text.
    fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"
        )
        .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
        body.to_string()
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An independent reading of `node_cpu_seconds_total{cpu="…",mode="…"} v`
/// lines: (cpu, mode) → value. Not monitor's parser.
fn cpu_seconds(body: &str) -> BTreeMap<(String, String), f64> {
    body.lines()
        .filter(|l| l.starts_with("node_cpu_seconds_total{"))
        .map(|l| {
            let (labels, value) = l.rsplit_once(' ').unwrap();
            let label = |name: &str| {
                let start = labels.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                labels[start..].split('"').next().unwrap().to_string()
            };
            ((label("cpu"), label("mode")), value.parse::<f64>().unwrap())
        })
        .collect()
}

/// Selectors written as Prometheus users write them, against a real
/// node_exporter: the summed deltas monitor reports equal an independent
/// sum over the very same two scrapes (served to monitor by a relay).
#[test]
fn promql_matchers_on_a_real_node_exporter_sum_what_they_select() {
    let exporter = NodeExporter::start();
    let relay = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: node
        metrics: {{ url: \"{}\" }}
        rules:
          - {{ name: busy, counter: 'node_cpu_seconds_total{{mode!=\"idle\"}}', delta: \">= 0\" }}
          - {{ name: user-system, counter: 'node_cpu_seconds_total{{ mode =~ \"user|system\" }}', delta: \">= 0\" }}
          - {{ name: not-iowait-cpu0, counter: 'node_cpu_seconds_total{{cpu=\"0\",mode!~\"io.*|idle\"}}', delta: \">= 0\" }}
",
        relay.url("/metrics")
    )));
    let first = exporter.scrape();
    relay.set(Reply {
        status: 200,
        body: first.clone(),
        delay: Duration::ZERO,
    });
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);
    std::thread::sleep(Duration::from_millis(1100));
    let second = exporter.scrape();
    relay.set(Reply {
        status: 200,
        body: second.clone(),
        delay: Duration::ZERO,
    });
    let out = ws.run_at(minute(1), "p", &["--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rules = json["tasks"][0]["rules"].as_array().unwrap().clone();
    let reported = |rule: &str| {
        rules
            .iter()
            .find(|r| r["rule"] == rule)
            .and_then(|r| r["value"].as_f64())
            .unwrap_or_else(|| panic!("no value for {rule}: {rules:#?}"))
    };
    let (before, after) = (cpu_seconds(&first), cpu_seconds(&second));
    assert!(
        before.len() >= 8,
        "node_exporter reports CPU modes: {before:?}"
    );
    let independent = |keep: &dyn Fn(&str, &str) -> bool| -> f64 {
        after
            .iter()
            .filter(|((cpu, mode), _)| keep(cpu, mode))
            .map(|(key, now)| now - before.get(key).copied().unwrap_or(0.0))
            .sum()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    for (rule, expected) in [
        ("busy", independent(&|_, mode| mode != "idle")),
        (
            "user-system",
            independent(&|_, mode| mode == "user" || mode == "system"),
        ),
        (
            "not-iowait-cpu0",
            independent(&|cpu, mode| cpu == "0" && !mode.starts_with("io") && mode != "idle"),
        ),
    ] {
        let got = reported(rule);
        assert!(
            close(got, expected),
            "{rule}: monitor {got}, independent {expected}"
        );
    }
    assert!(
        reported("busy") >= reported("user-system") && reported("user-system") > 0.0,
        "busy counts more modes than user and system, and the CPU did some work"
    );
}

// ------------------------------------------- the peers' own parser suites

/// The cases of a vendored suite, `(name, body)`, whose file name starts
/// with `kind` (`good` or `bad`).
fn suite(folder: &str, kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exposition")
        .join(folder);
    let mut cases: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{kind}.")))
        })
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    cases.sort();
    cases
}

/// No valid input is rejected: every case the OpenMetrics test suite marks
/// `shouldParse` parses as OpenMetrics, and every scenario of
/// prometheus/common's text parser parses as text. Their values are read
/// as Prometheus reads them (spot-checked below).
#[test]
fn every_valid_case_of_the_openmetrics_and_expfmt_suites_parses() {
    let openmetrics = suite("openmetrics", "good");
    let expfmt = suite("expfmt", "good");
    assert_eq!((openmetrics.len(), expfmt.len()), (44, 18));
    let mut refused = Vec::new();
    for (name, body) in &openmetrics {
        if let Err(e) = parse(body, Dialect::OpenMetrics) {
            refused.push(format!("{name}: {e}"));
        }
    }
    for (name, body) in &expfmt {
        if let Err(e) = parse(body, Dialect::Text) {
            refused.push(format!("{name}: {e}"));
        }
    }
    assert!(
        refused.is_empty(),
        "valid input refused:\n{}",
        refused.join("\n")
    );
}

/// What the bad cases of both suites do: rejected, or read leniently where
/// Prometheus's own scraper reads them too (it keeps unknown escapes, takes
/// a second `# TYPE`, does not check counter semantics) or where only
/// OpenMetrics' whitespace rules are broken (`a  1`, a trailing blank: the
/// text format allows them, and the value is not in doubt). Never a panic;
/// the syntax errors a scraper must refuse are refused.
#[test]
fn the_suites_bad_cases_never_panic_and_syntax_errors_are_refused() {
    let mut rejected = 0;
    let cases: Vec<(String, Vec<u8>, Dialect)> = suite("openmetrics", "bad")
        .into_iter()
        .map(|(n, b)| (n, b, Dialect::OpenMetrics))
        .chain(
            suite("expfmt", "bad")
                .into_iter()
                .map(|(n, b)| (n, b, Dialect::Text)),
        )
        .collect();
    assert_eq!(cases.len(), 167 + 47);
    let mut accepted_syntax_errors = Vec::new();
    for (name, body, dialect) in &cases {
        let result = parse(body, *dialect);
        if result.is_err() {
            rejected += 1;
        }
        let syntax_error = [
            "bad_no_eof",
            "bad_text_after_eof",
            "bad_missing_value",
            "bad_value_0",
            "bad_value_4",
            "bad_value_5",
            "bad_value_6",
            "bad_value_7",
            "bad_value_8",
            "bad_value_9",
            "bad_value_10",
            "bad_value_11",
            "bad_value_12",
            "bad_missing_or_wrong_quotes_on_label_value",
            "bad_missing_equal_or_label_value",
            "bad_timestamp_",
            "bad_metric_names",
        ]
        .iter()
        .any(|prefix| name.contains(prefix));
        if syntax_error && result.is_ok() {
            accepted_syntax_errors.push(name.clone());
        }
    }
    assert!(
        accepted_syntax_errors.is_empty(),
        "syntax errors read as valid: {accepted_syntax_errors:#?}"
    );
    eprintln!("bad cases rejected: {rejected} of {}", cases.len());
}

/// Values of the suites' cases, as Prometheus's scraper reads them.
#[test]
fn suite_values_are_read_as_prometheus_reads_them() {
    let case = |name: &str| -> Vec<Series> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/exposition")
            .join(name);
        let dialect = if name.ends_with(".om") {
            Dialect::OpenMetrics
        } else {
            Dialect::Text
        };
        parse(&std::fs::read(&path).unwrap(), dialect).unwrap()
    };
    // `\f` is no escape: kept as written, backslash included.
    let escaping = case("openmetrics/good.escaping.om");
    assert_eq!(value(&escaping, "a_total", &[("foo", "b\\a\\z")]), 2.0);
    assert_eq!(value(&escaping, "a_total", &[("foo", "b\"a\nr # ")]), 3.0);
    let escaped = case("openmetrics/good.label_escaping.om");
    assert_eq!(
        value(&escaped, "a1_total", &[("bar", "baz"), ("foo", "\\foo")]),
        1.0
    );
    // `foo=""` is no label: that series is `a_total` alone.
    let empty = case("openmetrics/good.empty_label.om");
    assert_eq!(value(&empty, "a_total", &[]), 2.0);
    assert_eq!(empty[1].labels, Vec::<(String, String)>::new());
    let hash = case("openmetrics/good.hash_in_label_value.om");
    assert_eq!(value(&hash, "a_total", &[("foo", "} foo # bar # ")]), 1.0);
    assert_eq!(
        value(&case("openmetrics/good.uint64_counter.om"), "a_total", &[]),
        9_223_372_036_854_775_808.0
    );
    assert_eq!(
        value(
            &case("openmetrics/good.leading_zeros_float_gauge.om"),
            "a",
            &[]
        ),
        0.12
    );
    // prometheus/common's scenarios: quoted UTF-8 names, gauge_histogram.
    let quoted = case("expfmt/good.08.prom");
    assert_eq!(
        value(
            &quoted,
            "gauge.name",
            &[("name*2", "佖佥"), ("name.1", "Björn")]
        ),
        3.14e42
    );
    let gauge_histogram = case("expfmt/good.16.prom");
    assert_eq!(
        value(
            &gauge_histogram,
            "request_duration_microseconds_bucket",
            &[("le", "+Inf")]
        ),
        2693.0
    );
    let whitespace = case("expfmt/good.02.prom");
    assert_eq!(
        value(&whitespace, "name2", &[("labelname", "val1")]),
        f64::NEG_INFINITY
    );
    assert_eq!(
        value(
            &whitespace,
            "name",
            &[("basename", "base\"v\\al\nue"), ("labelname", "val2")]
        ),
        0.23
    );
}

/// A `/federate`-style endpoint exposes `up` for two targets. The probe's
/// own `up` (1: the scrape worked) must not shadow the scraped series, and
/// a firing alert held by `skip_when` still makes the tick exit 1.
#[test]
fn a_scraped_up_is_judged_as_scraped_and_a_held_alert_is_still_unhealthy() {
    let server = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: fleet
        metrics: {{ url: \"{}\" }}
        skip_when: [\"maintenance_mode > 0\"]
        rules:
          - {{ name: targets-down, gauge: up, value: \"< 2\" }}
          - {{ name: scrape, signal: up, value: \"< 1\" }}
          - name: errors
            ratio: {{ numerator: 'http_requests_total{{code=~\"5..\"}}', denominator: http_requests_total, min_denominator: 10 }}
            value: \"> 0.5\"
",
        server.url("/federate")
    )));
    let scrape = |up_b: u32, errors: u32, total_ok: u32, maintenance: u32| {
        let body = format!(
            "up{{job=\"a\"}} 1\nup{{job=\"b\"}} {up_b}\nmaintenance_mode {maintenance}\nhttp_requests_total{{code=\"200\"}} {total_ok}\nhttp_requests_total{{code=\"503\"}} {errors}\n"
        );
        server.set(Reply {
            status: 200,
            body,
            delay: Duration::ZERO,
        });
    };
    scrape(1, 0, 100, 0);
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 0);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    // Target b goes down, and 5xx flood in.
    scrape(0, 50, 110, 0);
    let out = ws.run_at(minute(1), "p", &[]);
    assert_exit(&out, 1);
    let told = notifications(&out);
    assert!(
        told.iter()
            .any(|l| l.contains("FIRING critical p/fleet/targets-down: up = 1 (< 2)"))
            && told.iter().any(|l| l.contains("p/fleet/errors"))
            && !told.iter().any(|l| l.contains("p/fleet/scrape")),
        "{told:#?}"
    );
    // Maintenance mode: the ratio is skipped, but its alert is still firing.
    scrape(0, 100, 120, 1);
    let out = ws.run_at(minute(2), "p", &[]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("errors firing (held)"),
        "{}",
        stdout(&out)
    );
}

/// Runs `monitor run p` at `at` and returns its output (stdout and
/// stderr together) and its peak resident memory in MiB. It runs under
/// benches/measure.py: a child's ru_maxrss counts the process it was
/// forked from until its exec, and this test process, running its
/// neighbours' big scrapes, can hold hundreds of MiB; the small driver
/// keeps that floor near 5 MiB.
fn run_measured(ws: &Workspace, at: i64) -> (std::process::Output, f64) {
    let measure = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/measure.py");
    let out = std::process::Command::new("python3")
        .args(["-I", "-S"])
        .arg(&measure)
        .args(["run", "--"])
        .arg(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(ws.config())
        .args(["run", "p"])
        .current_dir(std::env::temp_dir())
        .env_remove("MONITOR_DB")
        .env_remove("MONITOR_CONFIG")
        .env("MONITOR_NOW", at.to_string())
        .output()
        .expect("python3 runs benches/measure.py");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let fields: Vec<&str> = line.split('\t').collect();
    let (rss_kib, code): (f64, i32) = match fields.as_slice() {
        [_, rss, code, ..] => (rss.parse().unwrap(), code.parse().unwrap()),
        _ => panic!(
            "measure.py said {line:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    let output = std::process::Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(code << 8),
        stdout: out.stderr,
        stderr: Vec::new(),
    };
    (output, rss_kib / 1024.0)
}

/// An exporter gone wild: 600 000 series in a 10 MB scrape. The tick used
/// to keep them all (278 MiB). Now a scrape keeps only the series its
/// rules read: a rule on another metric costs about the body; a rule on
/// the flood itself meets `max_series` (default 100 000) and the scrape
/// fails naming the count and the key. Raising the cap takes them in.
#[test]
fn a_scrape_with_more_series_than_max_series_fails_and_memory_stays_bounded() {
    let mut body = String::with_capacity(12 << 20);
    body.push_str("node_up 1\n");
    for i in 0..600_000 {
        body.push_str(&format!("m{{i=\"{i}\"}} 1\n"));
    }
    println!("exposition of {:.1} MB", body.len() as f64 / 1e6);
    let exporter = TestServer::start(Reply {
        status: 200,
        body,
        delay: Duration::ZERO,
    });
    let task = |rule: &str, cap: &str| {
        profile_p(&format!(
            "      - name: wild\n        metrics: {{ url: \"{}\"{cap} }}\n        rules: [{{ name: r, gauge: '{rule}', value: \"> 10\", severity: warning }}]\n",
            exporter.url("/metrics")
        ))
    };
    let ws = Workspace::new(&task("node_up", ""));
    let (out, other) = run_measured(&ws, minute(0));
    println!("600 000 series, the rule reads another metric: peak RSS {other:.1} MiB");
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("600001 series in"),
        "{}",
        stdout(&out)
    );
    assert!(other < 80.0, "peak RSS {other:.1} MiB");

    // A rule on one label value of the flood keeps just that series.
    ws.write_config(&task("m{i=\"5\"}", ", max_series: 1000"));
    let (out, one) = run_measured(&ws, minute(1));
    println!("600 000 series, the rule reads one of them: peak RSS {one:.1} MiB");
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("600001 series in"),
        "{}",
        stdout(&out)
    );

    ws.write_config(&task("m", ""));
    let (out, capped) = run_measured(&ws, minute(1) + 30);
    println!("600 000 series, the rule reads them, default cap: peak RSS {capped:.1} MiB");
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("600000 of its 600001 series are ones the rules read, more than max_series 100000: none kept"),
        "{text}"
    );
    assert!(capped < 120.0, "peak RSS {capped:.1} MiB");

    ws.write_config(&task("m", ", max_series: 1000000"));
    let (out, big) = run_measured(&ws, minute(2));
    println!("600 000 series kept (max_series 1000000): peak RSS {big:.1} MiB");
    let text = stdout(&out);
    assert!(text.contains("600001 series in"), "{text}");
    assert!(
        big > capped,
        "keeping every series costs more: {big:.1} vs {capped:.1} MiB"
    );

    // A cap of 0 is a broken jobs.yaml: the tick runs on the last good one
    // and says where.
    ws.write_config(&task("node_up", ", max_series: 0"));
    let out = ws.run_at(minute(3), "p", &[]);
    assert_exit(&out, 1);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("max_series"), "{said}");
}

/// Thirty tasks each scraping 99 900 series (just under the cap), their
/// rules reading one metric: memory follows what the rules read, not
/// what thirty exporters send (it was 2 GB, 66 MB a task).
#[test]
fn thirty_big_scrapes_cost_what_their_rules_read() {
    let mut body = String::with_capacity(8 << 20);
    body.push_str("node_up 1\n");
    for i in 0..99_900 {
        body.push_str(&format!("m{{i=\"{i}\"}} 1\n"));
    }
    let exporter = TestServer::start(Reply {
        status: 200,
        body,
        delay: Duration::ZERO,
    });
    let tasks: String = (0..30)
        .map(|n| {
            format!(
                "      - name: t{n}\n        metrics: {{ url: \"{}\" }}\n        rules: [{{ name: r, gauge: node_up, value: \"< 1\" }}]\n",
                exporter.url(&format!("/metrics/{n}"))
            )
        })
        .collect();
    let ws = Workspace::new(&profile_p(&tasks));
    let (out, rss) = run_measured(&ws, minute(0));
    println!("30 tasks × 99 901 series, rules on node_up: peak RSS {rss:.1} MiB");
    assert_exit(&out, 0);
    assert!(rss < 150.0, "peak RSS {rss:.1} MiB");
}

/// A body that arrives a few bytes at a time, so lines are cut at every
/// place a network read can cut them.
struct Trickle<'a> {
    body: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.step = self.step % 13 + 1;
        let n = self.step.min(buffer.len()).min(self.body.len());
        buffer[..n].copy_from_slice(&self.body[..n]);
        self.body = &self.body[n..];
        Ok(n)
    }
}

/// The scrape reads its body as it streams in (issue 14): on every case of
/// both suites, good and bad, and every capture, the streamed parse gives
/// exactly what the whole-body parse gives (the same series, values and families,
/// or the same error at the same line), and a body over `max_body` is
/// refused.
#[test]
fn a_streamed_scrape_reads_exactly_what_the_whole_body_reads() {
    use monitor::probe::metrics::parse::{
        Capped, parse_exposition_capped, parse_exposition_streamed,
    };
    let mut cases: Vec<(String, Vec<u8>, Dialect)> = Vec::new();
    for (folder, dialect) in [
        ("openmetrics", Dialect::OpenMetrics),
        ("expfmt", Dialect::Text),
    ] {
        for kind in ["good", "bad"] {
            for (name, body) in suite(folder, kind) {
                cases.push((name, body, dialect));
            }
        }
    }
    for (name, dialect) in [
        ("node_exporter.prom", Dialect::Text),
        ("prometheus.prom", Dialect::Text),
        ("henyey.prom", Dialect::Text),
        ("python_client.openmetrics", Dialect::OpenMetrics),
    ] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/metrics")
            .join(name);
        cases.push((name.to_string(), std::fs::read(path).unwrap(), dialect));
    }
    assert!(cases.len() > 200, "{}", cases.len());
    for (name, body, dialect) in &cases {
        let whole = parse_exposition_capped(body, *dialect, usize::MAX, None);
        let streamed = parse_exposition_streamed(
            Trickle { body, step: 0 },
            *dialect,
            u64::MAX,
            usize::MAX,
            None,
        );
        // Compared as printed: NaN is a value here, and NaN != NaN.
        assert_eq!(format!("{streamed:?}"), format!("{whole:?}"), "{name}");
    }
    // Through the filter too: exact names, label matchers, names picked by
    // pattern, on the bodies the streamed parse cuts into many blocks.
    let selectors: Vec<monitor::config::Selector> = [
        "node_cpu_seconds_total{mode=\"idle\"}",
        "{__name__=~\"go_.*\"}",
        "prometheus_http_requests_total{code!=\"200\"}",
        "a",
        "{__name__=~\".+_bucket\", le=~\"0.*\"}",
    ]
    .iter()
    .map(|text| text.parse().unwrap())
    .collect();
    let mut kept = 0;
    for (name, body, dialect) in &cases {
        let whole = parse_exposition_capped(body, *dialect, usize::MAX, Some(&selectors));
        let streamed = parse_exposition_streamed(
            Trickle { body, step: 0 },
            *dialect,
            u64::MAX,
            usize::MAX,
            Some(&selectors),
        );
        assert_eq!(format!("{streamed:?}"), format!("{whole:?}"), "{name}");
        kept += whole.map_or(0, |(exposition, _)| exposition.series.len());
    }
    assert!(kept > 100, "the selectors kept only {kept} series");
    let (_, body, dialect) = cases.last().unwrap();
    let limit = body.len() as u64 - 1;
    let refused =
        parse_exposition_streamed(Trickle { body, step: 0 }, *dialect, limit, usize::MAX, None);
    assert_eq!(refused, Err(Capped::TooBig));
}
