//! The lag probe end to end: two JSON-RPC (or plain GET) servers on
//! 127.0.0.1 whose heights change between ticks a minute apart on a pinned
//! clock; the report shows lag, progress, rate and ETA, and a side that
//! fails leaves the rules without data instead of raising a lag alert. Two
//! tests call the probe directly for what the command line does not reach
//! (a recheck after a restart, a timeout).

use crate::common::*;

use monitor::clock::Timestamp;
use monitor::probe::lag::LagConfig;
use monitor::probe::{CheckStatus, Context, Mode, Observation, TaskMemory};
use serde_json::json;
use std::process::Output;
use std::time::{Duration, Instant};

/// A `chain_getHeader` answer: the height as a hex string.
fn header(height: u64) -> Reply {
    Reply::json(json!({
        "jsonrpc": "2.0",
        "id": 1,
        "result": { "number": format!("0x{height:x}"), "parentHash": "0x00" },
    }))
}

/// A local node and a reference, both answering `chain_getHeader`.
struct Chain {
    local: TestServer,
    reference: TestServer,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            local: TestServer::start(header(0)),
            reference: TestServer::start(header(0)),
        }
    }

    fn heights(&self, local: u64, reference: u64) {
        self.local.set(header(local));
        self.reference.set(header(reference));
    }

    /// Task `node` with a lag probe over both servers, and `rules`.
    fn config(&self, local_url: &str, rules: &str) -> String {
        profile_p(&format!(
            r#"      - name: node
        lag:
          local:     {{ jsonrpc: {{ url: "{local_url}", method: chain_getHeader }}, extract: /result/number }}
          reference: {{ jsonrpc: {{ url: "{}", method: chain_getHeader, params: [] }}, extract: /result/number }}
{rules}"#,
            self.reference.url("/")
        ))
    }
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// The task's signals, check summary and rules from `--format json`.
fn task(out: &Output) -> serde_json::Value {
    report(out)["tasks"][0].clone()
}

fn summary(out: &Output) -> String {
    task(out)["checks"][0]["summary"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `(rule, status, verdict)` of every rule the report lists.
fn rule_results(out: &Output) -> Vec<(String, String, String)> {
    task(out)["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |name: &str| r[name].as_str().unwrap_or_default().to_string();
            (field("rule"), field("status"), field("verdict"))
        })
        .collect()
}

/// The texts of the notifications the tick delivered.
fn delivered(out: &Output) -> Vec<String> {
    report(out)["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["text"].as_str().map(str::to_string))
        .collect()
}

fn remembered(ws: &Workspace) -> Vec<(String, String)> {
    let db = ws.sqlite();
    let mut statement = db
        .prepare("SELECT key, value FROM monitor_state WHERE namespace = 'p/node' AND key LIKE 'lag.%' ORDER BY key")
        .unwrap();
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn jsonrpc_heights_a_minute_apart_give_lag_progress_rate_and_eta() {
    let chain = Chain::new();
    let ws = Workspace::new(&chain.config(&chain.local.url("/"), ""));

    chain.heights(988, 1051);
    let out = ws.run_at(minute(0), "p", &["--format", "json"]);
    assert_exit(&out, 0);
    let signals = &task(&out)["signals"];
    assert_eq!(
        (&signals["local"], &signals["reference"], &signals["lag"]),
        (&json!(988.0), &json!(1051.0), &json!(63.0))
    );
    assert!(
        signals.get("progress").is_none() && signals.get("rate").is_none(),
        "no progress on the first reading: {signals}"
    );
    assert_eq!(
        summary(&out),
        "lag 63 (local 988, reference 1051); first reading, progress from the next tick"
    );

    chain.heights(1000, 1057);
    let out = ws.run_at(minute(1), "p", &["--format", "json"]);
    assert_exit(&out, 0);
    let signals = &task(&out)["signals"];
    for (name, value) in [
        ("local", 1000.0),
        ("reference", 1057.0),
        ("lag", 57.0),
        ("progress", 12.0),
        ("rate", 0.2),
        ("closing_rate", 0.1),
        ("eta_s", 570.0),
    ] {
        assert_eq!(signals[name], json!(value), "{name} in {signals}");
    }
    assert_eq!(
        summary(&out),
        "lag 57 (local 1000, reference 1057); +12 since last tick, 0.2 blocks/s, caught up in ~9m 30s",
        "the ETA is at the closing speed: the lag shrank by 6 in a minute"
    );
    assert_eq!(
        remembered(&ws),
        [
            ("lag.at".to_string(), (minute(1) * 1000).to_string()),
            ("lag.local".to_string(), "1000".to_string()),
            ("lag.moved_at".to_string(), (minute(1) * 1000).to_string()),
            ("lag.pair_at".to_string(), (minute(1) * 1000).to_string()),
            ("lag.pair_local".to_string(), "1000".to_string()),
            ("lag.reference".to_string(), "1057".to_string())
        ]
    );

    // Both sides were asked the same JSON-RPC question by POST.
    for (side, server) in [("local", &chain.local), ("reference", &chain.reference)] {
        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{side}: one call per tick");
        for request in requests {
            assert_eq!(request.method, "POST", "{side}");
            assert_eq!(request.header("content-type"), Some("application/json"));
            let body = request.json();
            assert_eq!(body["jsonrpc"], "2.0", "{side}: {body}");
            assert_eq!(body["method"], "chain_getHeader", "{side}: {body}");
            assert_eq!(body["params"], json!([]), "{side}: {body}");
        }
    }

    // The text summary shows the same figures; caught up has no ETA.
    chain.heights(1057, 1057);
    let out = ws.run_at(minute(2), "p", &[]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(
            "ok    node  caught up (lag 0) at height 1057; +57 since last tick, 0.95 blocks/s\n"
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn get_sources_read_decimal_heights_and_a_node_ahead_keeps_a_negative_lag() {
    let local = TestServer::start(Reply::json(json!({ "height": 1060 })));
    let reference = TestServer::start(Reply::json(
        json!({ "block": { "header": { "height": "1057" } } }),
    ));
    let ws = Workspace::new(&profile_p(&format!(
        r#"      - name: node
        lag:
          local:     {{ url: "{}", extract: /height }}
          reference: {{ url: "{}", extract: /block/header/height }}
"#,
        local.url("/status"),
        reference.url("/blocks/latest")
    )));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);
    local.set(Reply::json(json!({ "height": 1072 })));
    reference.set(Reply::json(
        json!({ "block": { "header": { "height": "1069" } } }),
    ));
    let out = ws.run_at(minute(1), "p", &["--format", "json"]);
    assert_exit(&out, 0);
    assert_eq!(task(&out)["signals"]["lag"], json!(-3.0));
    assert!(
        task(&out)["signals"].get("eta_s").is_none(),
        "nothing to catch up"
    );
    assert_eq!(
        summary(&out),
        "ahead of the reference by 3 (lag -3, local 1072, reference 1069); +12 since last tick, 0.2 blocks/s"
    );
    let request = &local.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/status")
    );
}

#[test]
fn one_side_down_gives_the_rules_no_data_not_a_lag_alert_and_progress_spans_the_gap() {
    let chain = Chain::new();
    let rules = "        rules:\n          - { name: behind, signal: lag, value: \"> 20\" }\n";
    let ws = Workspace::new(&chain.config(&chain.local.url("/"), rules));

    chain.heights(1000, 1010);
    assert_exit(&ws.run_at(minute(0), "p", &["--format", "json"]), 0);

    // The reference answers with a JSON-RPC error.
    chain.heights(1010, 1020);
    chain.reference.set(Reply::json(json!({
        "jsonrpc": "2.0", "id": 1, "error": { "code": -32000, "message": "busy" },
    })));
    let out = ws.run_at(minute(1), "p", &["--format", "json"]);
    assert_exit(&out, 1);
    let text = summary(&out);
    assert!(
        text.starts_with(&format!(
            "reference {} chain_getHeader: JSON-RPC error",
            chain.reference.url("/")
        )) && text.contains("busy")
            && text.ends_with("(local height 1010)"),
        "{text}"
    );
    assert_eq!(task(&out)["checks"][0]["status"], "failed");
    assert!(task(&out)["signals"].get("lag").is_none());
    // The probe failed: a critical alert on the task (its health), and the
    // rule has no data (a warning); not a lag alert.
    assert_eq!(
        rule_results(&out),
        [
            ("health".into(), "firing".into(), "breach".into()),
            ("behind".into(), "ok".into(), "no_data".into()),
            ("behind:no-data".into(), "firing".into(), "breach".into())
        ]
    );
    // One message: the rule's missing data is the probe's failure, which
    // the health alert tells.
    let sent = delivered(&out);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].starts_with("[test-host] FIRING critical p/node/health: lag: reference "),
        "{}",
        sent[0]
    );

    // The local node refuses connections.
    let closed = format!("http://127.0.0.1:{}/", closed_port());
    ws.write_config(&chain.config(&closed, rules));
    chain.heights(1020, 1030);
    let out = ws.run_at(minute(2), "p", &["--format", "json"]);
    assert_exit(&out, 1);
    assert_eq!(
        summary(&out),
        format!(
            "local {closed} chain_getHeader: connection refused (is the service listening?) (reference height 1030)"
        )
    );
    assert!(
        rule_results(&out)
            .iter()
            .all(|(rule, status, _)| rule != "behind" || status == "ok"),
        "{:?}",
        rule_results(&out)
    );

    // Both back: progress spans the two minutes since the local height was
    // last read (minute 1, while the reference failed); the closing speed
    // the three since both were read together (minute 0).
    ws.write_config(&chain.config(&chain.local.url("/"), rules));
    chain.heights(1030, 1036);
    let out = ws.run_at(minute(3), "p", &["--format", "json"]);
    assert_exit(&out, 0);
    let signals = &task(&out)["signals"];
    assert_eq!(signals["progress"], json!(20.0), "{signals}");
    assert_eq!(
        signals["eta_s"],
        json!(270.0),
        "lag 10 → 6 in 3 minutes: 6 blocks at 4 per 180 s"
    );
    assert!(
        summary(&out).starts_with(
            "lag 6 (local 1030, reference 1036); +20 since the last reading 2m 0s ago, 0.1667 blocks/s, caught up in ~4m 30s"
        ),
        "{}",
        summary(&out)
    );
    let sent = delivered(&out);
    assert!(
        sent.len() == 1 && sent[0].contains("RESOLVED") && sent[0].contains("p/node/health"),
        "{sent:?}"
    );
}

fn probe(yaml: &str) -> LagConfig {
    serde_yaml::from_str(yaml).unwrap()
}

fn context(state: &TaskMemory, mode: Mode, timeout: Duration) -> Context<'_> {
    Context {
        now: Timestamp::from_secs(minute(1)),
        mode,
        deadline: Instant::now() + timeout,
        timeout,
        state,
    }
}

#[test]
fn a_recheck_reads_both_heights_but_remembers_nothing() {
    let chain = Chain::new();
    chain.heights(1000, 1057);
    let probe = probe(&format!(
        "local: {{ jsonrpc: {{ url: '{}', method: chain_getHeader }}, extract: /result/number }}\nreference: {{ jsonrpc: {{ url: '{}', method: chain_getHeader }}, extract: /result/number }}\n",
        chain.local.url("/"),
        chain.reference.url("/")
    ));
    let state: TaskMemory = [
        ("lag.local".to_string(), "988".to_string()),
        ("lag.at".to_string(), (minute(0) * 1000).to_string()),
    ]
    .into();

    let mut out = Observation::default();
    monitor::probe::lag::observe(
        &probe,
        &context(&state, Mode::Recheck, Duration::from_secs(5)),
        &mut out,
    );
    assert_eq!(out.checks[0].status, CheckStatus::Ok, "{:?}", out.checks);
    assert_eq!(out.signals.get_name("progress"), Some(12.0));
    assert!(out.state.is_empty(), "{:?}", out.state);

    let mut out = Observation::default();
    monitor::probe::lag::observe(
        &probe,
        &context(&state, Mode::Tick, Duration::from_secs(5)),
        &mut out,
    );
    assert_eq!(out.state.get("lag.local").map(String::as_str), Some("1000"));
}

#[test]
fn a_slow_side_is_named_with_the_limit_it_missed() {
    let chain = Chain::new();
    chain.heights(1000, 1057);
    chain
        .reference
        .set(header(1057).delayed(Duration::from_secs(3)));
    let probe = probe(&format!(
        "local: {{ jsonrpc: {{ url: '{}', method: chain_getHeader }}, extract: /result/number }}\nreference: {{ jsonrpc: {{ url: '{}', method: chain_getHeader }}, extract: /result/number }}\ntimeout: 300ms\n",
        chain.local.url("/"),
        chain.reference.url("/")
    ));
    let state = TaskMemory::new();
    let mut out = Observation::default();
    monitor::probe::lag::observe(
        &probe,
        &context(&state, Mode::Tick, Duration::from_secs(5)),
        &mut out,
    );
    assert_eq!(out.checks[0].status, CheckStatus::Failed);
    assert_eq!(
        out.checks[0].summary,
        format!(
            "reference {} chain_getHeader: no answer within 300ms (local height 1000)",
            chain.reference.url("/")
        )
    );
    // The local height was read: it is remembered (progress, a stall), the
    // last pair of heights is not touched.
    assert_eq!(out.state.get("lag.local").map(String::as_str), Some("1000"));
    assert!(!out.state.contains_key("lag.reference"), "{:?}", out.state);
    assert_eq!(out.signals.get_name("local"), Some(1000.0));
    assert_eq!(out.signals.get_name("lag"), None);
}

#[test]
fn a_height_that_is_no_block_height_is_a_failed_read() {
    let chain = Chain::new();
    let ws = Workspace::new(&chain.config(&chain.local.url("/"), ""));
    for bad in ["-5", "1040.5", "1e300"] {
        chain.local.set(Reply::json(json!({
            "jsonrpc": "2.0", "id": 1, "result": { "number": bad.parse::<f64>().unwrap() },
        })));
        chain.reference.set(header(1000));
        let out = ws.run_at(minute(0), "p", &["--format", "json"]);
        assert_exit(&out, 1);
        assert!(
            summary(&out).contains("is not a block height"),
            "{bad}: {}",
            summary(&out)
        );
    }
}
