//! `monitor serve` end to end: a real server child on a free 127.0.0.1
//! port, over a database filled by real ticks of the binary (and, for
//! volume, by SQL into a database a tick created), asked over raw HTTP.
//!
//! Over 800 lines: it is one area of the integration suite (one module of
//! `tests/main.rs`), each test a scenario with its own fixture; the helpers
//! they share live in `tests/common/`.

use crate::common::*;

use monitor::alert::HistoryStatus;
use monitor::api::{HEAD_DEADLINE, PER_CLIENT, WORKERS, parse_alert_query};
use monitor::probe::metrics::parse::{Dialect, Series, parse};
use monitor::store::RESTART_COUNTS_SQL;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `monitor serve` child, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Server {
    /// Starts `monitor serve` on a free loopback port and waits until it
    /// answers.
    fn start(ws: &Workspace, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        Server::start_bound(ws, &format!("127.0.0.1:{port}"), port, env)
    }

    /// Starts `monitor serve` with its clock pinned to `at` (Unix seconds).
    fn at(ws: &Workspace, at: i64) -> Server {
        Server::start(ws, &[("MONITOR_NOW", &at.to_string())])
    }

    fn start_bound(ws: &Workspace, bind: &str, port: u16, env: &[(&str, &str)]) -> Server {
        let log = ws.path().join(format!("serve-{port}.log"));
        let child = serve_command(ws, bind, env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("monitor serve exited with {status}: {}", server.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "monitor serve did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Reply {
        request(self.port, "GET", path, &[])
    }

    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.port, "GET", path, headers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `monitor serve --bind <bind>`, its clock pinned just after the last
/// tick of [`ticked_workspace`] unless `env` pins it elsewhere.
fn serve_command(ws: &Workspace, bind: &str, env: &[(&str, &str)]) -> Command {
    let mut command = ws.command();
    command
        .env("MONITOR_NOW", (minute(2) + 30).to_string())
        .env_remove("MONITOR_API_TOKEN")
        .args(["serve", "--bind", bind])
        .envs(env.iter().copied());
    command
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A response as the client read it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The body of a 200 JSON answer.
    #[track_caller]
    fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        self.json()
    }
}

/// One HTTP/1.1 request over a fresh connection; reads to the end.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let reply = read_reply(&mut stream);
    if method != "HEAD" {
        let length: usize = reply.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, reply.body.len(), "Content-Length");
    }
    reply
}

fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head end: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Profile `p` every minute: `good` (exit 0), `flappy` (exits with the
/// number in a file), `warn` (exit 1, severity from the plugin); notifying
/// the console and a webhook nobody listens on (so the outbox backs up).
/// Profile `hourly` and a disabled profile `off`.
fn jobs(ws_dir: &std::path::Path) -> String {
    let code = ws_dir.join("flappy.code");
    std::fs::write(&code, "2").unwrap();
    format!(
        r#"version: 1
host: test-host
notifiers:
  hook: {{ type: webhook, url: "http://127.0.0.1:{closed}/hook" }}
profiles:
  p:
    cron: "* * * * *"
    announce: false
    notify: [console, hook]
    tasks:
      - name: good
        command: {{ argv: ["true"] }}
      - name: flappy
        command: {{ argv: ["sh", "-c", "exit $(cat '{code}')"] }}
      - name: warn
        command: {{ argv: ["sh", "-c", "echo 'WARNING - low'; exit 1"] }}
  hourly:
    cron: "0 * * * *"
    announce: false
    maintenance: [{{ cron: "0 * * * *", duration: 30m, reason: "backups" }}]
    tasks:
      - name: good
        command: {{ argv: ["true"] }}
  off:
    cron: "* * * * *"
    announce: false
    enabled: false
    tasks:
      - name: good
        command: {{ argv: ["true"] }}
"#,
        closed = closed_port(),
        code = code.display()
    )
}

/// A workspace after three ticks of `p` (flappy critical, then critical,
/// then healthy) and one of `hourly`, all at minutes 0–2.
fn ticked_workspace() -> Workspace {
    let ws = Workspace::new("");
    ws.write_config(&jobs(ws.path()));
    ws.run_at(minute(0), "p", &[]);
    ws.run_at(minute(0), "hourly", &[]);
    ws.run_at(minute(1), "p", &[]);
    std::fs::write(ws.path().join("flappy.code"), "0").unwrap();
    ws.run_at(minute(2), "p", &[]);
    ws
}

fn rfc3339(secs: i64) -> String {
    monitor::clock::Timestamp::from_secs(secs).rfc3339()
}

/// Unix seconds of an RFC 3339 time in a reply.
fn secs(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    monitor::clock::parse(text).unwrap().0.div_euclid(1000)
}

/// History rows are stamped when their tick finished: a moment after the
/// tick's pinned start.
#[track_caller]
fn assert_during_tick(value: &Value, tick_at: i64) {
    let at = secs(value);
    assert!(
        (tick_at..tick_at + 10).contains(&at),
        "{value} is not during the tick at {tick_at}"
    );
}

fn alerts(server: &Server, query: &str) -> Vec<Value> {
    let body = server.get(&format!("/v1/alerts{query}")).ok();
    body["alerts"].as_array().unwrap().clone()
}

fn field<'a>(rows: &'a [Value], name: &str) -> Vec<&'a str> {
    rows.iter().map(|r| r[name].as_str().unwrap()).collect()
}

/// Every status the store writes can be asked for, by `monitor alerts
/// --status` and by `/v1/alerts?status=`, and each finds exactly its rows
/// (`--status restarted` used to be refused while ticks wrote such rows).
#[test]
fn every_history_status_the_store_writes_can_be_filtered_on() {
    use strum::VariantArray;
    let ws = ticked_workspace();
    {
        let db = ws.sqlite();
        for (i, status) in HistoryStatus::VARIANTS.iter().enumerate() {
            db.execute(
                "INSERT INTO alert_history (at, host, profile, task, rule, source, status, severity, summary)
                 VALUES (?1, 'h', 'p', 'all', 'r', 'all', ?2, 'info', ?3)",
                rusqlite::params![(minute(3) + i as i64) * 1000, status.as_str(), format!("row {i}")],
            )
            .unwrap();
        }
    }
    let server = Server::at(&ws, minute(30));
    for status in HistoryStatus::VARIANTS {
        let name = status.as_str();
        let listed = ws
            .command()
            .env("MONITOR_NOW", minute(30).to_string())
            .args([
                "alerts", "--status", name, "--format", "json", "--source", "all",
            ])
            .output()
            .unwrap();
        assert_exit(&listed, 0);
        let rows: Vec<Value> = serde_json::from_str(&stdout(&listed)).unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| r["status"].as_str().unwrap())
                .collect::<Vec<_>>(),
            [name],
            "monitor alerts --status {name}"
        );
        let served = alerts(&server, &format!("?status={name}&source=all"));
        assert_eq!(field(&served, "status"), [name], "/v1/alerts?status={name}");
    }
    // The refusal names every status, from the same list.
    let refused = ws
        .command()
        .args(["alerts", "--status", "restart"])
        .output()
        .unwrap();
    assert_exit(&refused, 2);
    for status in HistoryStatus::VARIANTS {
        assert!(
            stderr(&refused).contains(status.as_str()),
            "{}",
            stderr(&refused)
        );
    }
    let reply = server.get("/v1/alerts?status=restart");
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("restart_failed"), "{}", reply.body);
}

#[test]
fn alerts_are_newest_first_and_filter_by_each_parameter() {
    let ws = ticked_workspace();
    let server = Server::at(&ws, minute(2));

    // flappy fired (minute 0) and resolved (minute 2); warn fired (minute 0).
    let all = alerts(&server, "");
    assert_eq!(all.len(), 3, "{all:?}");
    let keys = [
        "id",
        "at",
        "host",
        "profile",
        "task",
        "rule",
        "source",
        "status",
        "severity",
        "summary",
        "value",
        "threshold",
    ];
    for row in &all {
        for key in keys {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
        assert_eq!(row["host"], "test-host");
        assert_eq!(row["source"], row["task"]);
    }
    let order: Vec<(String, i64)> = all
        .iter()
        .map(|r| {
            (
                r["at"].as_str().unwrap().to_string(),
                r["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut newest_first = order.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, newest_first);
    assert_during_tick(&all[0]["at"], minute(2));

    let flappy = alerts(&server, "?source=flappy");
    assert_eq!(field(&flappy, "status"), ["resolved", "firing"]);
    assert!(field(&flappy, "source").iter().all(|s| *s == "flappy"));
    assert_eq!(field(&flappy, "severity"), ["critical", "critical"]);

    let resolved = alerts(&server, "?status=resolved");
    assert_eq!(field(&resolved, "task"), ["flappy"]);
    let warnings = alerts(&server, "?severity=warning");
    assert!(!warnings.is_empty());
    assert!(field(&warnings, "task").iter().all(|t| *t == "warn"));
    let criticals = alerts(&server, "?severity=critical&source=flappy&status=firing");
    assert_eq!(criticals.len(), 1);
    assert_during_tick(&criticals[0]["at"], minute(0));

    // `since` as RFC 3339 and as Unix seconds, inclusive.
    let since = alerts(
        &server,
        &format!("?since={}", rfc3339(minute(1)).replace(':', "%3A")),
    );
    assert_eq!(field(&since, "status"), ["resolved"]);
    assert_eq!(since, alerts(&server, &format!("?since={}", minute(1))));
    assert_eq!(alerts(&server, &format!("?since={}.5", minute(1))), since);
    assert!(alerts(&server, &format!("?since={}", minute(3))).is_empty());

    // `limit`: default 50, clamped to 1..=1000.
    assert_eq!(server.get("/v1/alerts").ok()["limit"], 50);
    assert_eq!(alerts(&server, "?limit=1").len(), 1);
    assert_eq!(alerts(&server, "?limit=1")[0], all[0]);
    assert_eq!(server.get("/v1/alerts?limit=0").ok()["limit"], 1);
    assert_eq!(server.get("/v1/alerts?limit=-7").ok()["limit"], 1);
    assert_eq!(server.get("/v1/alerts?limit=5000").ok()["limit"], 1000);
    assert_eq!(
        server.get("/v1/alerts?limit=99999999999999999999999").ok()["limit"],
        1000
    );
    // A source nobody has is an empty list, not an error.
    assert!(alerts(&server, "?source=nobody%20here").is_empty());
}

#[test]
fn runs_are_newest_first_and_filter_by_profile() {
    let ws = ticked_workspace();
    let server = Server::at(&ws, minute(2));

    let runs = server.get("/v1/runs").ok()["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0]["started_at"], rfc3339(minute(2)));
    assert_eq!(runs[0]["status"], "failing"); // `warn` still fails
    for key in [
        "id",
        "profile",
        "host",
        "started_at",
        "finished_at",
        "duration_ms",
        "status",
        "tasks",
        "failing",
        "summary",
    ] {
        assert!(runs[0].get(key).is_some(), "{key} missing in {}", runs[0]);
    }
    let p = server.get("/v1/runs?profile=p").ok()["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        field(&p, "started_at"),
        [rfc3339(minute(2)), rfc3339(minute(1)), rfc3339(minute(0))]
    );
    let hourly = server.get("/v1/runs?profile=hourly&limit=5").ok();
    assert_eq!(hourly["runs"].as_array().unwrap().len(), 1);
    assert_eq!(hourly["runs"][0]["status"], "ok");
    assert_eq!(
        server.get("/v1/runs?limit=2").ok()["runs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(server.get("/v1/runs?limit=0").ok()["limit"], 1);
    assert!(
        server.get("/v1/runs?profile=gone").ok()["runs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// profile, task, rule, starts_at, ends_at, reason, removed_at
type Silence = (
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
    i64,
    i64,
    &'static str,
    Option<i64>,
);

#[test]
fn silences_lists_only_active_ones() {
    let ws = ticked_workspace();
    let db = ws.sqlite();
    let now = minute(2) * 1000;
    let insert = "INSERT INTO silences (profile, task, rule, starts_at, ends_at, reason, created_by, created_at, removed_at)
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'ops', ?4, ?7)";
    let rows: [Silence; 4] = [
        (
            Some("p"),
            "flappy",
            Some("health"),
            now - 60_000,
            now + 3_600_000,
            "deploying",
            None,
        ),
        (
            None,
            "warn",
            None,
            now - 60_000,
            now + 60_000,
            "known issue",
            None,
        ),
        (
            Some("p"),
            "good",
            None,
            now - 7_200_000,
            now - 1,
            "over",
            None,
        ),
        (
            Some("p"),
            "good",
            None,
            now - 60_000,
            now + 3_600_000,
            "removed",
            Some(now - 1),
        ),
    ];
    for (profile, task, rule, starts, ends, reason, removed) in rows {
        db.execute(
            insert,
            rusqlite::params![profile, task, rule, starts, ends, reason, removed],
        )
        .unwrap();
    }
    drop(db);
    let server = Server::at(&ws, minute(2));
    let silences = server.get("/v1/silences").ok()["silences"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(field(&silences, "reason"), ["known issue", "deploying"]);
    let first = &silences[0];
    assert_eq!(first["profile"], Value::Null);
    assert_eq!(first["rule"], Value::Null);
    assert_eq!(first["task"], "warn");
    assert_eq!(first["created_by"], "ops");
    assert_eq!(first["starts_at"], rfc3339(minute(1)));
    assert_eq!(first["ends_at"], rfc3339(minute(3)));
    assert!(first["id"].is_i64());
    assert_eq!(silences[1]["profile"], "p");
    assert_eq!(silences[1]["rule"], "health");
}

/// The value of the series `name` with `labels` (and `host="test-host"`,
/// which every series of /metrics carries).
fn sample(series: &[Series], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !labels.iter().any(|(k, _)| k == "host") {
        labels.push(("host".into(), "test-host".into()));
    }
    labels.sort();
    series
        .iter()
        .find(|s| s.name == name && s.labels == labels)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {series:?}"))
        .value
}

#[test]
fn metrics_are_prometheus_text_that_our_parser_reads() {
    let ws = ticked_workspace();
    // Restarts, with a task name that needs escaping in a label value.
    let db = ws.sqlite();
    let restart = "INSERT INTO alert_history (at, host, profile, task, rule, source, status, severity, summary)
                   VALUES (?1, 'test-host', 'p', ?2, 'restart', ?2, ?3, 'critical', 'restart')";
    let odd = "we\"ird\\task\nname";
    for (task, status) in [
        ("flappy", "restarted"),
        ("flappy", "restarted"),
        ("flappy", "restart_failed"),
        (odd, "restarted"),
    ] {
        db.execute(restart, rusqlite::params![minute(2) * 1000, task, status])
            .unwrap();
    }
    db.execute(
        "INSERT INTO silences (profile, task, starts_at, ends_at, reason, created_by, created_at)
         VALUES ('p', 'warn', 0, ?1, 'x', 'ops', 0)",
        [minute(5) * 1000],
    )
    .unwrap();
    let backlog: i64 = db
        .query_row(
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(backlog > 0, "the webhook to a closed port leaves a backlog");
    drop(db);

    let server = Server::at(&ws, minute(2));
    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let series = parse(reply.body.as_bytes(), Dialect::Text)
        .unwrap_or_else(|e| panic!("{e}\n{}", reply.body));
    for name in [
        "monitor_last_run_timestamp_seconds",
        "monitor_last_run_duration_seconds",
        "monitor_last_run_ok",
        "monitor_runs_recorded",
        "monitor_alerts_firing",
        "monitor_outbox_backlog",
        "monitor_restarts_recorded",
        "monitor_silences_active",
    ] {
        assert!(
            reply.body.contains(&format!("# HELP {name} ")),
            "HELP {name}"
        );
        assert!(
            reply.body.contains(&format!("# TYPE {name} ")),
            "TYPE {name}"
        );
    }
    let p = [("profile", "p")];
    assert_eq!(
        sample(&series, "monitor_last_run_timestamp_seconds", &p),
        minute(2) as f64
    );
    assert_eq!(
        sample(
            &series,
            "monitor_last_run_timestamp_seconds",
            &[("profile", "hourly")]
        ),
        minute(0) as f64
    );
    assert!(sample(&series, "monitor_last_run_duration_seconds", &p) >= 0.0);
    assert_eq!(sample(&series, "monitor_last_run_ok", &p), 0.0);
    assert_eq!(
        sample(&series, "monitor_last_run_ok", &[("profile", "hourly")]),
        1.0
    );
    assert_eq!(sample(&series, "monitor_runs_recorded", &p), 3.0);
    assert_eq!(
        sample(&series, "monitor_runs_recorded", &[("profile", "hourly")]),
        1.0
    );
    assert_eq!(
        sample(
            &series,
            "monitor_alerts_firing",
            &[("severity", "critical")]
        ),
        0.0
    );
    assert_eq!(
        sample(&series, "monitor_alerts_firing", &[("severity", "warning")]),
        1.0
    );
    assert_eq!(
        sample(&series, "monitor_alerts_firing", &[("severity", "info")]),
        0.0
    );
    assert_eq!(
        sample(&series, "monitor_outbox_backlog", &[]),
        backlog as f64
    );
    let restarts = |task: &str, result: &str| {
        sample(
            &series,
            "monitor_restarts_recorded",
            &[("profile", "p"), ("result", result), ("task", task)],
        )
    };
    assert_eq!(restarts("flappy", "ok"), 2.0);
    assert_eq!(restarts("flappy", "failed"), 1.0);
    assert_eq!(restarts(odd, "ok"), 1.0);
    assert!(
        reply.body.contains(r#"task="we\"ird\\task\nname""#),
        "escaped label value:\n{}",
        reply.body
    );
    assert_eq!(sample(&series, "monitor_silences_active", &[]), 1.0);
}

#[test]
fn healthz_names_an_overdue_profile_but_not_a_disabled_one() {
    let ws = ticked_workspace();
    // Two minutes after p's last run: within two intervals.
    let server = Server::at(&ws, minute(2) + 30);
    let reply = server.get("/healthz");
    let body = reply.ok();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["overdue"], Value::Array(vec![]));
    // The webhook nobody listens on: healthy, with a warning that says so.
    let warnings = body["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{body}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.starts_with(&format!(
            "3 notifications to hook waiting since {}",
            rfc3339(minute(0))
        )) && warning.contains("(last error: ")
            && warning.contains("connection refused"),
        "{warning}"
    );
    let profiles = body["profiles"].as_array().unwrap();
    assert_eq!(field(profiles, "profile"), ["p", "hourly", "off"]);
    assert_eq!(profiles[0]["last_run"], rfc3339(minute(2)));
    assert_eq!(profiles[2]["enabled"], false);
    assert_eq!(profiles[2]["last_run"], Value::Null);
    // The hourly profile's half-hour maintenance window is open now.
    assert_eq!(profiles[1]["maintenance"]["reason"], "backups", "{body}");
    assert!(profiles[1]["maintenance"]["until"].is_string(), "{body}");
    assert_eq!(profiles[0]["maintenance"], Value::Null);
    drop(server);

    // Ten minutes on: `p` (every minute) missed its runs; `hourly` has
    // not; `off` is disabled and never ran, and does not count.
    let server = Server::at(&ws, minute(12));
    let reply = server.get("/healthz");
    assert_eq!(reply.status, 503, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "unavailable");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("profile p is overdue"), "{reason}");
    assert!(reason.contains(&rfc3339(minute(2))), "{reason}");
    assert!(
        !reason.contains("hourly") && !reason.contains("off"),
        "{reason}"
    );
    let overdue = body["overdue"].as_array().unwrap();
    assert_eq!(field(overdue, "profile"), ["p"]);
    assert_eq!(overdue[0]["last_run"], rfc3339(minute(2)));
    assert_eq!(overdue[0]["cron"], "* * * * *");
}

#[test]
fn a_missing_database_is_503_on_healthz_and_empty_elsewhere_and_is_not_created() {
    let ws = Workspace::new("");
    ws.write_config(&jobs(ws.path()));
    let server = Server::start(&ws, &[]);
    let reply = server.get("/healthz");
    assert_eq!(reply.status, 503);
    let reason = reply.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("does not exist yet"), "{reason}");
    assert!(reason.contains(&ws.db().display().to_string()), "{reason}");
    assert!(alerts(&server, "?source=x").is_empty());
    assert!(
        server.get("/v1/runs").ok()["runs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        server.get("/v1/silences").ok()["silences"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    let series = parse(metrics.body.as_bytes(), Dialect::Text).unwrap();
    assert_eq!(
        sample(
            &series,
            "monitor_alerts_firing",
            &[("severity", "critical")]
        ),
        0.0
    );
    assert_eq!(sample(&series, "monitor_outbox_backlog", &[]), 0.0);
    assert!(!ws.db().exists(), "serve created the database");
    assert!(
        !ws.db().parent().unwrap().exists(),
        "serve created the state folder"
    );

    // The first tick creates it; the running server picks it up.
    ws.run_at(minute(0), "p", &[]);
    assert_eq!(server.get("/healthz").ok()["status"], "ok");
    for _ in 0..WORKERS {
        let runs = server.get("/v1/runs").ok()["runs"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(runs, 1);
    }
}

#[test]
fn healthz_follows_edits_to_jobs_yaml() {
    let ws = ticked_workspace();
    let server = Server::at(&ws, minute(12));
    assert_eq!(server.get("/healthz").status, 503, "p is overdue");

    // p disabled for maintenance, and a new profile that has not run yet:
    // healthy, without restarting the server.
    let config = std::fs::read_to_string(ws.config()).unwrap();
    let edited = config.replace(
        "  p:\n    cron: \"* * * * *\"\n    announce: false\n",
        "  p:\n    cron: \"* * * * *\"\n    announce: false\n    enabled: false\n",
    ) + "  fresh:\n    cron: \"*/5 * * * *\"\n    announce: false\n    tasks:\n      - name: good\n        command: { argv: [\"true\"] }\n";
    assert_ne!(edited, config);
    ws.write_config(&edited);
    let body = server.get("/healthz").ok();
    assert_eq!(body["status"], "ok");
    let profiles = body["profiles"].as_array().unwrap();
    assert_eq!(field(profiles, "profile"), ["p", "hourly", "off", "fresh"]);
    assert_eq!(profiles[3]["last_run"], Value::Null);

    // A jobs.yaml that no longer loads fails the check, naming the error.
    ws.write_config("version: 1\nprofiles: {");
    let reply = server.get("/healthz");
    assert_eq!(reply.status, 503);
    let reason = reply.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("jobs.yaml no longer loads"), "{reason}");
    assert!(reason.contains("jobs.yaml:"), "{reason}");
    // The lists still answer from the last good configuration.
    assert_eq!(server.get("/v1/runs").status, 200);
}

#[test]
fn serving_never_writes_the_database() {
    let ws = ticked_workspace();
    // The database and its write-ahead log, byte for byte.
    let files = || {
        let wal = ws.path().join("state/monitor.db-wal");
        (
            std::fs::read(ws.db()).unwrap(),
            std::fs::read(wal).unwrap_or_default(),
        )
    };
    let before = files();
    let server = Server::start(&ws, &[]);
    for path in [
        "/healthz",
        "/v1/alerts",
        "/v1/runs",
        "/v1/silences",
        "/metrics",
    ] {
        assert_eq!(server.get(path).status, 200, "{path}");
    }
    drop(server);
    assert!(files() == before, "monitor serve changed the database");
}

#[test]
fn bad_parameters_are_400_naming_the_parameter_and_the_value() {
    let ws = ticked_workspace();
    let server = Server::start(&ws, &[]);
    let cases = [
        ("/v1/alerts?limit=abc", "limit", "abc"),
        ("/v1/alerts?limit=1.5", "limit", "1.5"),
        ("/v1/alerts?limit=", "limit", ""),
        ("/v1/alerts?severity=huge", "severity", "huge"),
        ("/v1/alerts?status=exploded", "status", "exploded"),
        ("/v1/alerts?since=yesterday", "since", "yesterday"),
        (
            "/v1/alerts?since=2026-13-01T00%3A00%3A00Z",
            "since",
            "2026-13-01T00:00:00Z",
        ),
        ("/v1/alerts?since=NaN", "since", "NaN"),
        ("/v1/alerts?source=", "source", ""),
        ("/v1/alerts?colour=red", "colour", "red"),
        ("/v1/alerts?limit=1&limit=2", "limit", "2"),
        ("/v1/alerts?source=%ZZ", "source", "%ZZ"),
        ("/v1/runs?limit=ten", "limit", "ten"),
        ("/v1/runs?profile=", "profile", ""),
        ("/v1/runs?source=p", "source", "p"),
        ("/v1/silences?all=1", "all", "1"),
        ("/metrics?name=x", "name", "x"),
        ("/healthz?verbose=1", "verbose", "1"),
    ];
    for (path, parameter, value) in cases {
        let reply = server.get(path);
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
        assert_eq!(body["value"], value, "{path}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(parameter), "{path}: {error}");
        assert!(error.contains(&format!("{value:?}")), "{path}: {error}");
    }
}

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let ws = ticked_workspace();
    let server = Server::start(&ws, &[]);
    let reply = server.get("/v1/nothing");
    assert_eq!(reply.status, 404);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("/v1/nothing")
    );
    for method in ["POST", "DELETE", "PUT", "PATCH"] {
        let reply = request(server.port, method, "/v1/alerts", &[]);
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        assert!(reply.json()["error"].as_str().unwrap().contains(method));
    }
    // A POST with a body still gets its 405 whole.
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let body = "x".repeat(100_000);
    let head = format!(
        "POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body.as_bytes());
    assert_eq!(read_reply(&mut stream).status, 405);
}

#[test]
fn the_token_guards_every_endpoint_but_healthz() {
    let ws = ticked_workspace();
    let server = Server::start(&ws, &[("MONITOR_API_TOKEN", "s3cret-token")]);
    for path in [
        "/v1/alerts",
        "/v1/runs",
        "/v1/silences",
        "/metrics",
        "/nowhere",
    ] {
        for headers in [
            vec![],
            vec![("Authorization", "Bearer wrong")],
            vec![("Authorization", "Bearer s3cret-toke")],
            vec![("Authorization", "Basic czNjcmV0LXRva2Vu")],
            vec![("Authorization", "s3cret-token")],
        ] {
            let reply = server.get_with(path, &headers);
            assert_eq!(reply.status, 401, "{path} {headers:?}");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
            assert!(
                reply.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("MONITOR_API_TOKEN")
            );
        }
    }
    let right = [("Authorization", "Bearer s3cret-token")];
    for path in ["/v1/alerts", "/v1/runs", "/v1/silences", "/metrics"] {
        assert_eq!(server.get_with(path, &right).status, 200, "{path}");
    }
    assert_eq!(
        server
            .get_with("/v1/alerts", &[("authorization", "bearer s3cret-token")])
            .status,
        200
    );
    assert_eq!(server.get_with("/nowhere", &right).status, 404);
    // A browser is asked for the token as a password (any user name), on
    // the page and its badges; the API keeps asking for a bearer.
    let asked = server.get("/");
    assert_eq!(asked.status, 401);
    assert_eq!(
        asked.header("www-authenticate"),
        Some("Basic realm=\"monitor\", charset=\"UTF-8\"")
    );
    // base64 of "ops:s3cret-token" and of "ops:wrong".
    let browser = [("Authorization", "Basic b3BzOnMzY3JldC10b2tlbg==")];
    assert_eq!(server.get_with("/", &browser).status, 200);
    assert_eq!(server.get_with("/v1/alerts", &browser).status, 200);
    let wrong = [("Authorization", "Basic b3BzOndyb25n")];
    assert_eq!(server.get_with("/", &wrong).status, 401);
    // /healthz stays open for the load balancer and systemd.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn binding_beyond_loopback_needs_a_token() {
    let ws = ticked_workspace();
    let port = free_port();
    let output = serve_command(&ws, &format!("0.0.0.0:{port}"), &[])
        .output()
        .unwrap();
    assert_exit(&output, 2);
    let message = stderr(&output);
    assert!(message.contains("refusing to serve"), "{message}");
    assert!(message.contains("MONITOR_API_TOKEN"), "{message}");
    assert!(message.contains(&format!("0.0.0.0:{port}")), "{message}");

    let output = serve_command(&ws, "no-such-host.invalid:80", &[])
        .output()
        .unwrap();
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("--bind"), "{}", stderr(&output));

    // With the token it starts; ask it over loopback only, then kill it.
    let server = Server::start_bound(
        &ws,
        &format!("0.0.0.0:{port}"),
        port,
        &[("MONITOR_API_TOKEN", "t0ken")],
    );
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/v1/runs").status, 401);
    assert_eq!(
        server
            .get_with("/v1/runs", &[("Authorization", "Bearer t0ken")])
            .status,
        200
    );
}

#[test]
fn silent_and_slow_clients_do_not_block_other_requests() {
    let ws = ticked_workspace();
    let server = Server::start(&ws, &[]);
    // One connects and says nothing, one sends half a request head, one
    // sends a request and never reads the answer.
    let silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut partial = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    partial
        .write_all(b"GET /v1/alerts HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut deaf = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    deaf.write_all(b"GET /v1/alerts?limit=1000 HTTP/1.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(server.get("/healthz").status, 200);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "5 requests took {took:?}");

    // The silent ones are dropped after the head deadline, with a 408.
    for mut stream in [silent, partial] {
        stream
            .set_read_timeout(Some(HEAD_DEADLINE + Duration::from_secs(5)))
            .unwrap();
        let waited = Instant::now();
        let reply = read_reply(&mut stream);
        assert_eq!(reply.status, 408);
        assert!(waited.elapsed() < HEAD_DEADLINE + Duration::from_secs(2));
    }
    drop(deaf);
    assert_eq!(server.get("/healthz").status, 200);
}

/// 1 000 000 history rows over 100 sources and a year: `limit=50&source=x`
/// walks the `(source, at DESC, id DESC)` index and answers in under 10 ms.
#[test]
fn a_million_history_rows_answer_a_source_query_in_under_10_ms() {
    let test_started = Instant::now();
    let ws = Workspace::new(&profile_p(
        "      - name: good\n        command: { argv: [\"true\"] }\n",
    ));
    ws.run_at(minute(0), "p", &[]);
    let db = ws.sqlite();
    let year_ms: i64 = 365 * 24 * 3600 * 1000;
    let rows: i64 = 1_000_000;
    let inserting = Instant::now();
    // One INSERT ... SELECT from a recursive CTE, in one transaction. In a
    // debug build it takes ~15 s on a 2-core machine, about what a prepared
    // statement executed a million times takes (200 000 rows: 3.1 s): the
    // time goes to SQLite keeping alert_history's five indexes, not to Rust.
    db.execute_batch("BEGIN").unwrap();
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?3 - 1)
         INSERT INTO alert_history (at, host, profile, task, rule, source, status, severity, summary, value, threshold)
         SELECT ?1 - ?2 + i * (?2 / ?3), 'test-host', 'bulk', 'src-' || (i % 100), 'rule-' || (i % 7),
                'src-' || (i % 100),
                CASE i % 4 WHEN 0 THEN 'firing' WHEN 1 THEN 'resolved' WHEN 2 THEN 'pending' ELSE 'event' END,
                CASE i % 3 WHEN 0 THEN 'info' WHEN 1 THEN 'warning' ELSE 'critical' END,
                'bulk row ' || i, i * 0.5, '> 1'
         FROM n",
        rusqlite::params![minute(0) * 1000, year_ms, rows],
    )
    .unwrap();
    db.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let inserted = inserting.elapsed();
    let total: i64 = db
        .query_row("SELECT count(*) FROM alert_history", [], |r| r.get(0))
        .unwrap();
    assert!(total >= rows);
    println!("inserted {rows} rows in {inserted:?}");

    // The exact SQL the API runs for this query, planned by SQLite.
    let query = parse_alert_query("limit=50&source=src-42").unwrap();
    let (sql, values) = query.sql();
    let plan = query_plan(&db, &sql, &values);
    println!("SQL: {sql}\nEXPLAIN QUERY PLAN:\n{plan}");
    assert!(plan.contains("alert_history_by_source"), "{plan}");
    assert!(!plan.contains("USE TEMP B-TREE"), "{plan}");
    // Every other filter also reads an index in order, without a sort.
    for other in [
        "",
        "status=firing",
        "severity=info",
        "since=1790000000",
        "source=src-1&status=event",
    ] {
        let (sql, values) = parse_alert_query(other).unwrap().sql();
        let plan = query_plan(&db, &sql, &values);
        assert!(!plan.contains("USE TEMP B-TREE"), "{other}: {plan}");
        assert!(
            !plan.starts_with("SCAN alert_history\n") && plan != "SCAN alert_history",
            "{other}: {plan}"
        );
    }
    drop(db);

    let server = Server::start(&ws, &[]);
    let path = "/v1/alerts?limit=50&source=src-42";
    // Steady state: every worker has opened its connection and the pages
    // are in the OS cache.
    for _ in 0..2 * WORKERS {
        server.get(path).ok();
    }
    let mut timings = Vec::new();
    let mut body = Value::Null;
    for _ in 0..20 {
        let started = Instant::now();
        let reply = server.get(path);
        timings.push(started.elapsed());
        body = reply.ok();
    }
    timings.sort();
    let median = (timings[9] + timings[10]) / 2;
    println!(
        "limit=50&source=src-42 over {total} rows: median {median:?}, fastest {:?}, slowest {:?}",
        timings[0], timings[19]
    );
    let rows = body["alerts"].as_array().unwrap();
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|r| r["source"] == "src-42"));
    let ats: Vec<&str> = field(rows, "at");
    assert!(ats.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(
        median < Duration::from_millis(10),
        "median {median:?}: {timings:?}"
    );
    println!("whole test: {:?}", test_started.elapsed());
}

/// `EXPLAIN QUERY PLAN` as indented lines.
fn query_plan(db: &rusqlite::Connection, sql: &str, values: &[rusqlite::types::Value]) -> String {
    let mut statement = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), |r| {
            r.get::<_, String>(3)
        })
        .unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
}

/// Issue 11, item 4 (the runbook's "one profile never runs" row): a
/// profile that never completed a tick was never overdue — `list` said
/// "never", `/healthz` counted from when `serve` started, `/metrics` had
/// no series. It is now judged from when it first appeared in jobs.yaml
/// (recorded by the ticks of any profile), the same in all three.
#[test]
fn a_profile_that_never_ran_is_overdue_after_three_missed_fire_times() {
    let ws = Workspace::new(
        "version: 1\nhost: test-host\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    tasks:\n      - name: good\n        command: { argv: [\"true\"] }\n  daily:\n    cron: \"*/5 * * * *\"\n    announce: false\n    tasks:\n      - name: good\n        command: { argv: [\"true\"] }\n",
    );
    let list = |at: i64| -> Value {
        let out = ws
            .command()
            .env("MONITOR_NOW", at.to_string())
            .args(["list", "--format", "json"])
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let all: Value = serde_json::from_str(&stdout(&out)).unwrap();
        all["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["profile"] == "daily")
            .unwrap()
            .clone()
    };
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);
    // Two fire times of */5 missed: not yet.
    assert_eq!(list(minute(8))["overdue"], false);
    assert_exit(&ws.run_at(minute(15), "p", &[]), 0);
    // Three missed (p kept running, daily never did).
    let daily = list(minute(16));
    assert_eq!(daily["overdue"], true, "{daily}");
    let text = ws
        .command()
        .env("MONITOR_NOW", minute(16).to_string())
        .arg("list")
        .output()
        .unwrap();
    let line = stdout(&text)
        .lines()
        .find(|l| l.starts_with("daily"))
        .unwrap()
        .to_string();
    assert!(line.contains("OVERDUE: never"), "{line}");

    // A serve started now (it used to count from its own start).
    let server = Server::at(&ws, minute(16));
    let reply = server.get("/healthz");
    assert_eq!(reply.status, 503, "{}", reply.body);
    let reason = reply.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("profile daily is overdue"), "{reason}");
    assert!(!reason.contains("profile p "), "{reason}");
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    let series = parse(metrics.body.as_bytes(), Dialect::Text).unwrap();
    assert_eq!(
        sample(&series, "monitor_profile_overdue", &[("profile", "daily")]),
        1.0
    );
    assert_eq!(
        sample(&series, "monitor_profile_overdue", &[("profile", "p")]),
        0.0
    );
}

/// Issue 11, item 9: `/metrics` passes `promtool check metrics` (Debian's
/// prometheus package; .ci/run installs it): no `_total` on gauges, HELP
/// and TYPE for every family, every series with `host`. HEAD answers where
/// GET does, with the same headers and no body.
#[test]
fn metrics_pass_promtool_and_head_answers_like_get() {
    let ws = ticked_workspace();
    let server = Server::at(&ws, minute(2) + 30);
    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool: .ci/run installs Debian's prometheus package");
    let mut child = promtool;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(reply.body.as_bytes())
        .unwrap();
    let checked = child.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
        reply.body
    );
    for line in reply.body.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.contains("host=\"test-host\""), "{line}");
    }
    for path in ["/metrics", "/healthz", "/v1/alerts", "/v1/runs"] {
        let get = server.get(path);
        let head = request(server.port, "HEAD", path, &[]);
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        assert_eq!(head.body, "", "{path}");
    }
}

/// Issue 11, item 9: the restart counts behind `/metrics` took 57–86 ms
/// per scrape on 30 000 restart rows (a scan of the history). They now
/// read a covering index.
#[test]
fn restart_counts_on_30_000_restarts_read_an_index() {
    let ws = ticked_workspace();
    let db = ws.sqlite();
    db.execute_batch("BEGIN").unwrap();
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999)
         INSERT INTO alert_history (at, host, profile, task, rule, source, status, severity, summary)
         SELECT ?1 + i, 'test-host', 'p', 'task-' || (i % 40), 'health', 'task-' || (i % 40),
                CASE WHEN i % 10 < 3 THEN (CASE i % 2 WHEN 0 THEN 'restarted' ELSE 'restart_failed' END)
                     ELSE 'firing' END,
                'critical', 'row ' || i
         FROM n",
        [minute(0) * 1000],
    )
    .unwrap();
    db.execute_batch("COMMIT; ANALYZE;").unwrap();
    let restarts: i64 = db
        .query_row(
            "SELECT count(*) FROM alert_history WHERE status IN ('restarted', 'restart_failed')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(restarts, 30_000);
    let plan = query_plan(&db, RESTART_COUNTS_SQL, &[]);
    assert!(
        plan.contains("USING COVERING INDEX alert_history_restarts"),
        "{plan}"
    );
    drop(db);
    let server = Server::at(&ws, minute(2) + 30);
    for _ in 0..2 * WORKERS {
        assert_eq!(server.get("/metrics").status, 200);
    }
    let mut timings = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        assert_eq!(server.get("/metrics").status, 200);
        timings.push(started.elapsed());
    }
    timings.sort();
    println!("/metrics over 30 000 restarts: median {:?}", timings[5]);
    assert!(timings[5] < Duration::from_millis(40), "{timings:?}");
}

/// A TCP connection to 127.0.0.1:`port` made from the loopback address
/// `source` (any of 127.0.0.0/8 works on Linux), as a client on another
/// host would be seen.
fn connect_from(source: std::net::Ipv4Addr, port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    fn address(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // addresses are valid sockaddr_in values that outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let local = address(source, 0);
        let bound = libc::bind(fd, (&raw const local).cast(), length);
        assert_eq!(
            bound,
            0,
            "bind {source}: {}",
            std::io::Error::last_os_error()
        );
        let remote = address(std::net::Ipv4Addr::LOCALHOST, port);
        let connected = libc::connect(fd, (&raw const remote).cast(), length);
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// Whether the server has neither written to nor closed `stream`.
fn still_idle(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let idle =
        matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    idle
}

/// Times `count` `/healthz` requests; each must be answered 200.
fn healthz_timings(server: &Server, count: usize) -> Vec<Duration> {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            let reply = server.get("/healthz");
            assert_eq!(reply.status, 200, "{}", reply.body);
            started.elapsed()
        })
        .collect()
}

/// Slowloris: 200 connections from four client addresses that never send
/// a byte (a worker used to sit on each until its head deadline, and the
/// API answered nothing, or 503, for as long as they were renewed).
#[test]
fn two_hundred_idle_connections_do_not_hold_the_api() {
    let ws = ticked_workspace();
    let server = Server::start(&ws, &[]);
    let accepted = Instant::now();
    let idle: Vec<TcpStream> = (0..200)
        .map(|i| {
            connect_from(
                std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % 4) as u8),
                server.port,
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let timings = healthz_timings(&server, 10);
    let slowest = timings.iter().max().unwrap();
    println!("/healthz with 200 idle connections open: {timings:?}");
    assert!(*slowest < Duration::from_millis(100), "{timings:?}");
    // The idle connections are held, not dropped to make room...
    assert_eq!(idle.iter().filter(|s| still_idle(s)).count(), 200);
    // ...until the head deadline, counted from accept: then each gets a 408.
    for mut stream in idle {
        stream
            .set_read_timeout(Some(HEAD_DEADLINE + Duration::from_secs(5)))
            .unwrap();
        let reply = read_reply(&mut stream);
        assert_eq!(reply.status, 408, "{}", reply.body);
    }
    let waited = accepted.elapsed();
    assert!(
        waited < HEAD_DEADLINE + Duration::from_secs(2),
        "the last idle connection was answered {waited:?} after it connected"
    );
}

/// One client address holds at most PER_CLIENT connections: past that its
/// oldest idle connection is closed (with a 503 saying why), so one
/// address cannot use up the server, and a real request from that same
/// address still gets in.
#[test]
fn one_client_address_cannot_hold_more_than_its_share() {
    let ws = ticked_workspace();
    let server = Server::start(&ws, &[]);
    let flood = std::net::Ipv4Addr::new(127, 0, 0, 9);
    let idle: Vec<TcpStream> = (0..PER_CLIENT + 50)
        .map(|_| connect_from(flood, server.port))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A request from the flooding address itself is answered.
    let mut own = connect_from(flood, server.port);
    own.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    own.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut own);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert!(*healthz_timings(&server, 5).iter().max().unwrap() < Duration::from_millis(100));
    // The 51 oldest were closed to make room, oldest first; the rest wait.
    let open: Vec<bool> = idle.iter().map(still_idle).collect();
    assert_eq!(open.iter().filter(|o| !**o).count(), 51, "{open:?}");
    assert!(open[..51].iter().all(|o| !o), "{open:?}");
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let reply = read_reply(&mut first);
    assert_eq!(reply.status, 503);
    assert!(
        reply.body.contains("too many connections from 127.0.0.9"),
        "{}",
        reply.body
    );
}

/// Out of file descriptors (a 64-file limit, 100 idle connections): the
/// oldest idle connections are closed to make room, and /healthz answers
/// (it answered 503 "unable to open database file": the connections had
/// taken every file the workers needed).
#[test]
fn out_of_file_descriptors_the_api_makes_room_and_answers() {
    let ws = ticked_workspace();
    let port = free_port();
    let binary = env!("CARGO_BIN_EXE_monitor");
    let log = ws.path().join("serve.log");
    let command = serve_command(&ws, &format!("127.0.0.1:{port}"), &[]);
    let args: Vec<String> = command
        .get_args()
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("ulimit -n 64 && exec {binary} {}", args.join(" ")))
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("MONITOR_API_TOKEN")
        .current_dir(command.get_current_dir().unwrap_or(ws.path()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = shell.spawn().unwrap();
    let mut server = Server { child, port, log };
    // The workers must still open the database: the server keeps fewer
    // connections (16 under 64 files) instead of failing /healthz.
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle: Vec<TcpStream> = (0..100)
        .map(|i| connect_from(std::net::Ipv4Addr::new(127, 0, 1, 1 + (i % 2) as u8), port))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let timings = healthz_timings(&server, 5);
    assert!(
        *timings.iter().max().unwrap() < Duration::from_millis(250),
        "{timings:?}"
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "{}",
        server.log()
    );
    let closed = idle.iter().filter(|s| !still_idle(s)).count();
    println!("64 files, 100 idle connections: {closed} closed to make room, /healthz {timings:?}");
    assert!(closed >= 100 - 16, "{closed} closed");
}

/// Issue 16: every tick records its numbers; `monitor history` draws them
/// and `/v1/signals` serves them, raw for the last days and as hourly
/// summaries once the full-resolution window has passed.
#[test]
fn the_signal_history_is_told_by_monitor_history_and_v1_signals() {
    let ws = Workspace::new(&profile_p(
        "      - name: web\n        command: { argv: [\"/bin/sh\", \"-c\", \"echo \\\"OK | latency=$(cat lat)ms;;\\\"\"], cwd: . }\n\
         \x20       rules:\n          - { name: slow, signal: latency, value: \"> 300\" }\n\
         \x20     - name: port\n        tcp: { host: 127.0.0.1, port: 1 }\n",
    ));
    // 90 ticks, a minute apart: latency 0, 10, … 490, 0, 10 …
    for i in 0..90 {
        std::fs::write(ws.path().join("lat"), ((i * 10) % 500).to_string()).unwrap();
        Tick::new(&ws).at(minute(i)).run("p");
    }
    let history = |args: &[&str], at: i64| {
        ws.command()
            .env("MONITOR_NOW", at.to_string())
            .arg("history")
            .args(args)
            .output()
            .unwrap()
    };
    let out = history(&["web"], minute(90));
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("latency")
            && text.contains("min 0")
            && text.contains("max 490")
            && text.contains("(90 samples)"),
        "{text}"
    );
    let out = history(&["web", "latency", "--format", "json"], minute(90));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 90, "{json}");
    assert_eq!(points[49]["value"], 490.0);
    assert_eq!(points[50]["value"], 0.0);
    assert_eq!(
        (json["min"].as_f64(), json["max"].as_f64()),
        (Some(0.0), Some(490.0))
    );
    // A refused port: its `up` is recorded, 0 every tick.
    let out = history(&["port", "up", "--format", "json"], minute(90));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["max"], 0.0, "{json}");
    // A signal nothing recorded: exit 2, naming what there is.
    let out = history(&["web", "latncy"], minute(90));
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recorded are healthy, latency"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::at(&ws, minute(90));
    let series = server.get("/v1/signals?task=web").ok();
    let latency = series["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"] == "latency")
        .unwrap_or_else(|| panic!("{series}"));
    assert_eq!(latency["last"], 390.0, "{series}");
    let hourly = server
        .get("/v1/signals?task=web&signal=latency&step=1h&since=2h")
        .ok();
    let counts: i64 = hourly["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_i64().unwrap())
        .sum();
    assert_eq!(counts, 90, "{hourly}");
    assert_eq!(server.get("/v1/signals?signal=latency").status, 400);
    // A misspelt signal is not an empty window: 404 naming what is there.
    let typo = server.get("/v1/signals?task=web&signal=latncy");
    assert_eq!(typo.status, 404, "{}", typo.body);
    let why = typo.json()["error"].as_str().unwrap().to_string();
    assert!(
        why.contains("did you mean `latency`?") && why.contains("healthy"),
        "{why}"
    );
    // A window that ends before it starts is a mistake, not "no data".
    let backwards = server.get("/v1/signals?task=web&signal=latency&since=1h&until=2h");
    assert_eq!(backwards.status, 400, "{}", backwards.body);
    assert!(
        backwards.body.contains("is not before until"),
        "{}",
        backwards.body
    );
    let far = server.get("/v1/signals?task=web&signal=latency&step=100000d");
    assert_eq!(far.status, 400);
    assert!(!far.body.contains("of a second or more"), "{}", far.body);
    drop(server);
    // A time as RFC 3339 (with its Z) is a time, in both.
    let at = time::OffsetDateTime::from_unix_timestamp(minute(60))
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let out = history(&["web", "latency", "--since", &at], minute(90));
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("(30 samples)"), "{}", stdout(&out));
    // `--since 24` is 24h mistyped, not a time in 1970.
    let out = history(&["web", "--since", "24"], minute(90));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("24h"), "{}", stderr(&out));
    // Eight days on (a tick an hour), past the 7-day window: the first
    // hours keep their summary only.
    let hourly_ticks = 8 * 24;
    for hour in 1..=hourly_ticks {
        Tick::new(&ws).at(minute(90 + 60 * hour)).run("p");
    }
    let end = minute(90 + 60 * hourly_ticks);
    let out = history(
        &["web", "latency", "--since", "9d", "--format", "json"],
        end,
    );
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let points = json["points"].as_array().unwrap();
    let summaries: Vec<i64> = points
        .iter()
        .filter(|p| p["count"].as_i64() > Some(1))
        .map(|p| p["count"].as_i64().unwrap())
        .collect();
    assert_eq!(summaries, [47, 43], "the first two hours, whole: {json}");
    let total: i64 = points.iter().map(|p| p["count"].as_i64().unwrap()).sum();
    assert_eq!(total, 90 + hourly_ticks, "{json}");
    assert_eq!(
        (json["min"].as_f64(), json["max"].as_f64()),
        (Some(0.0), Some(490.0))
    );
}
