//! The alert lifecycle end to end: a real HTTP server on 127.0.0.1, the real
//! binary, a real SQLite file, and a pinned clock.

use crate::common::*;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn config(url: &str, extra: &str) -> String {
    profile_p(&format!(
        "      - name: api\n        http: {{ url: \"{url}\", timeout: 2s }}\n{extra}"
    ))
}

/// A jobs.yaml with one profile `p` whose tasks are `tasks` (already
/// indented as list items under `tasks:`). With `hook`, messages also go to
/// a webhook notifier named `hook` at that URL.
fn jobs(hook: Option<&str>, tasks: &str) -> String {
    let (notifiers, notify) = match hook {
        Some(url) => (
            format!("notifiers:\n  hook: {{ type: webhook, url: \"{url}\" }}\n"),
            "    notify: [console, hook]\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        "version: 1\nhost: test-host\n{notifiers}profiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n{notify}    tasks:\n{tasks}"
    )
}

/// One http task named `api` with extra task keys (each a `key: value` line).
fn api_task(url: &str, extra: &[&str]) -> String {
    let mut task = format!("      - name: api\n        http: {{ url: \"{url}\", timeout: 2s }}\n");
    for line in extra {
        task.push_str(&format!("        {line}\n"));
    }
    task
}

/// (task, rule, status, severity) of every history row, oldest first.
fn history(ws: &Workspace) -> Vec<(String, String, String, String)> {
    ws.history()
        .into_iter()
        .map(|h| (h.task, h.rule, h.status, h.severity))
        .collect()
}

/// The history statuses of one rule, oldest first.
fn statuses(ws: &Workspace, rule: &str) -> Vec<String> {
    history(ws)
        .into_iter()
        .filter(|(_, r, _, _)| r == rule)
        .map(|(_, _, status, _)| status)
        .collect()
}

/// (rule, status, severity) of every live (pending or firing) alert; a
/// resolved one stays `quiet` for its cooldown, as the same incident.
fn live_alerts(ws: &Workspace) -> Vec<(String, String, String)> {
    let db = ws.sqlite();
    let mut statement = db
        .prepare(
            "SELECT rule, status, severity FROM alert_state WHERE status != 'quiet' ORDER BY key",
        )
        .unwrap();
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Asserts the tick fired exactly one critical alert for p/api/health and
/// said so in exactly one notification; returns that notification.
#[track_caller]
fn assert_fired_once(ws: &Workspace, out: &Output) -> String {
    assert_exit(out, 1);
    let lines = notifications(out);
    assert_eq!(lines.len(), 1, "one notification\n{}", stdout(out));
    assert!(
        lines[0].starts_with("[test-host] FIRING critical p/api/health: http"),
        "{}",
        lines[0]
    );
    assert_eq!(
        history(ws),
        vec![(
            "api".to_string(),
            "health".to_string(),
            "firing".to_string(),
            "critical".to_string()
        )]
    );
    assert_eq!(
        live_alerts(ws),
        vec![(
            "health".to_string(),
            "firing".to_string(),
            "critical".to_string()
        )]
    );
    lines[0].clone()
}

// ------------------------------------------------------------ TLS server

/// `openssl s_server -www` on 127.0.0.1 with a fresh self-signed
/// certificate; killed when dropped.
struct TlsServer {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=127.0.0.1", "-days", "1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is installed");
        assert!(status.success(), "openssl req failed");
        let port = closed_port();
        let child = Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .args(["-www", "-quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let mut server = TlsServer {
            port,
            child,
            _dir: dir,
        };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("openssl s_server exited: {status}");
            }
            assert!(Instant::now() < deadline, "openssl s_server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ command checks

/// A Nagios-style plugin in the workspace whose output and exit code the
/// test sets between ticks.
struct Plugin {
    dir: PathBuf,
}

impl Plugin {
    fn new(dir: &Path) -> Plugin {
        std::fs::write(
            dir.join("check.sh"),
            "dir=$(dirname \"$0\")\ncat \"$dir/out\"\nexit \"$(cat \"$dir/code\")\"\n",
        )
        .unwrap();
        Plugin {
            dir: dir.to_path_buf(),
        }
    }

    fn set(&self, code: i32, output: &str) {
        std::fs::write(self.dir.join("out"), format!("{output}\n")).unwrap();
        std::fs::write(self.dir.join("code"), code.to_string()).unwrap();
    }

    /// A task named `disk` running the plugin, with extra task lines.
    fn task(&self, extra: &str) -> String {
        format!(
            "      - name: disk\n        command: {{ argv: [\"/bin/sh\", \"{}\"] }}\n{extra}",
            self.dir.join("check.sh").display()
        )
    }
}

// ------------------------------------------------------------ tests

#[test]
fn healthy_exits_zero_and_failing_fires_once() {
    let server = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&config(&server.url("/health"), ""));
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("HTTP 200"), "{}", stdout(&out));

    server.set(Reply::status(500));
    let out = ws.run_at(minute(1), "p", &[]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert_eq!(
        text.matches("[test-host] FIRING critical p/api/health")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("HTTP 500 (expected 200-399)"), "{text}");
    assert_eq!(
        ws.count("SELECT count(*) FROM alert_history WHERE status = 'firing'"),
        1
    );
}

#[test]
fn healthy_service_exits_zero_without_notifications_or_history() {
    let server = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&jobs(None, &api_task(&server.url("/health"), &[])));
    for n in 0..3 {
        let out = ws.run_at(minute(n), "p", &[]);
        assert_exit(&out, 0);
        assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    }
    assert!(history(&ws).is_empty());
    assert!(live_alerts(&ws).is_empty());
    assert_eq!(server.requests().len(), 3, "one request per tick");
    assert_eq!(ws.count("SELECT count(*) FROM runs WHERE status = 'ok'"), 3);
}

#[test]
fn http_500_fires_one_alert_and_one_notification() {
    let server = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(None, &api_task(&server.url("/health"), &[])));
    let out = ws.run_at(minute(0), "p", &[]);
    let line = assert_fired_once(&ws, &out);
    let expected = format!("{}: HTTP 500 (expected 200-399)", server.url("/health"));
    assert!(line.contains(&expected), "{line}");
}

#[test]
fn answer_slower_than_the_task_timeout_fires_one_alert() {
    let server = TestServer::start(Reply::status(200).delayed(Duration::from_secs(2)));
    let task = format!(
        "      - name: api\n        timeout: 1s\n        http: {{ url: \"{}\" }}\n",
        server.url("/slow")
    );
    let ws = Workspace::new(&jobs(None, &task));
    // The tick does not wait for the answer: it fails the task at its timeout.
    let out = ws.run_at(minute(0), "p", &[]);
    let line = assert_fired_once(&ws, &out);
    assert!(
        line.ends_with("no answer within 1s"),
        "names the configured timeout: {line}"
    );
}

#[test]
fn connection_refused_fires_one_alert() {
    let url = format!("http://127.0.0.1:{}/health", closed_port());
    let ws = Workspace::new(&jobs(None, &api_task(&url, &[])));
    let out = ws.run_at(minute(0), "p", &[]);
    let line = assert_fired_once(&ws, &out);
    assert!(line.contains("connection refused"), "{line}");
    assert!(line.contains(&url), "the message names the URL: {line}");
}

#[test]
fn self_signed_tls_without_tls_verify_false_fires_one_alert() {
    let tls = TlsServer::start();
    let ws = Workspace::new(&jobs(None, &api_task(&tls.url(), &[])));
    let out = ws.run_at(minute(0), "p", &[]);
    let line = assert_fired_once(&ws, &out);
    assert!(line.contains(&tls.url()), "{line}");
    assert!(line.contains("certificate"), "{line}");
}

#[test]

fn self_signed_tls_failure_says_how_to_fix_it() {
    let tls = TlsServer::start();
    let ws = Workspace::new(&jobs(None, &api_task(&tls.url(), &[])));
    let out = ws.run_at(minute(0), "p", &[]);
    let line = assert_fired_once(&ws, &out);
    assert!(line.contains("TLS certificate not trusted"), "{line}");
    assert!(
        line.contains("tls_verify: false"),
        "the message says how to fix it: {line}"
    );
}

#[test]
fn self_signed_tls_with_tls_verify_false_is_healthy() {
    let tls = TlsServer::start();
    let task = format!(
        "      - name: api\n        http: {{ url: \"{}\", timeout: 2s, tls_verify: false }}\n",
        tls.url()
    );
    let ws = Workspace::new(&jobs(None, &task));
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("HTTP 200"), "{}", stdout(&out));
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    assert!(history(&ws).is_empty());
}

#[test]
fn repeated_failure_is_silent_inside_the_cooldown_and_reminds_once_after() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&jobs(
        Some(&hook.url("/hook")),
        &api_task(&api.url("/health"), &[]),
    ));
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 1);
    assert_eq!(notifications(&out).len(), 1, "{}", stdout(&out));
    assert_eq!(hook.requests().len(), 1);

    // Same failure, minutes later: nothing new anywhere.
    for n in 1..=5 {
        let out = ws.run_at(minute(n), "p", &[]);
        assert_exit(&out, 1);
        assert!(notifications(&out).is_empty(), "tick {n}\n{}", stdout(&out));
    }
    // Just inside the cooldown: 2 h after the firing minus two seconds (a
    // tick up to a second early counts as on time: cron start jitter).
    let out = ws.run_at(minute(0) + 7198, "p", &[]);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(
        hook.requests().len(),
        1,
        "no webhook POST inside the cooldown"
    );

    // The cooldown has passed: exactly one reminder, on both notifiers.
    let out = ws.run_at(minute(0) + 7200, "p", &[]);
    assert_exit(&out, 1);
    let lines = notifications(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert!(
        lines[0].starts_with("[test-host] STILL FIRING for 2h 0m critical p/api/health: http"),
        "{}",
        lines[0]
    );
    let posts = hook.requests();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].json()["kind"], "reminder");
    assert_eq!(posts[1].json()["text"], lines[0].as_str());

    // Right after the reminder: quiet again.
    for at in [minute(0) + 7260, minute(0) + 7320] {
        let out = ws.run_at(at, "p", &[]);
        assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    }
    assert_eq!(hook.requests().len(), 2, "no second reminder");
    assert_eq!(statuses(&ws, "health"), vec!["firing", "reminder"]);
}

#[test]
fn recovery_resolves_once_and_clears_the_live_alert() {
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(None, &api_task(&api.url("/health"), &[])));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 1);
    assert_exit(&ws.run_at(minute(1), "p", &[]), 1);

    api.set(Reply::status(200));
    let out = ws.run_at(minute(2), "p", &[]);
    assert_exit(&out, 0);
    let lines = notifications(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert!(
        lines[0].starts_with("[test-host] RESOLVED after 2m 0s p/api/health: "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("HTTP 200"),
        "a resolution says what is seen now: {}",
        lines[0]
    );
    assert_eq!(statuses(&ws, "health"), vec!["firing", "resolved"]);
    assert!(live_alerts(&ws).is_empty(), "the alert_state row is gone");

    // Staying healthy says nothing more.
    let out = ws.run_at(minute(3), "p", &[]);
    assert_exit(&out, 0);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(statuses(&ws, "health"), vec!["firing", "resolved"]);
}

#[test]
fn for_three_fires_on_the_third_consecutive_failing_tick() {
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(None, &api_task(&api.url("/health"), &["for: 3"])));
    for n in 0..2 {
        let out = ws.run_at(minute(n), "p", &[]);
        assert!(notifications(&out).is_empty(), "tick {n}\n{}", stdout(&out));
        assert_eq!(
            live_alerts(&ws),
            vec![("health".into(), "pending".into(), "critical".into())]
        );
    }
    assert_eq!(statuses(&ws, "health"), vec!["pending"]);

    let out = ws.run_at(minute(2), "p", &[]);
    assert_exit(&out, 1);
    let lines = notifications(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert!(
        lines[0].starts_with("[test-host] FIRING critical p/api/health: "),
        "{}",
        lines[0]
    );
    assert_eq!(statuses(&ws, "health"), vec!["pending", "firing"]);
    assert_eq!(
        live_alerts(&ws),
        vec![("health".into(), "firing".into(), "critical".into())]
    );
}

#[test]
fn a_healthy_tick_restarts_the_for_count() {
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(None, &api_task(&api.url("/health"), &["for: 3"])));
    ws.run_at(minute(0), "p", &[]);
    ws.run_at(minute(1), "p", &[]);
    api.set(Reply::status(200));
    let out = ws.run_at(minute(2), "p", &[]);
    assert_exit(&out, 0);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    assert!(live_alerts(&ws).is_empty());

    api.set(Reply::status(500));
    for n in 3..5 {
        let out = ws.run_at(minute(n), "p", &[]);
        assert!(notifications(&out).is_empty(), "tick {n}\n{}", stdout(&out));
    }
    let out = ws.run_at(minute(5), "p", &[]);
    assert_eq!(notifications(&out).len(), 1, "{}", stdout(&out));
    assert_eq!(
        statuses(&ws, "health"),
        vec!["pending", "cleared", "pending", "firing"]
    );
}

#[test]
fn resolve_after_two_needs_two_healthy_ticks() {
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(
        None,
        &api_task(&api.url("/health"), &["resolve_after: 2"]),
    ));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 1);

    api.set(Reply::status(200));
    let out = ws.run_at(minute(1), "p", &[]);
    assert!(
        notifications(&out).is_empty(),
        "one healthy tick is not enough\n{}",
        stdout(&out)
    );
    assert_eq!(
        live_alerts(&ws),
        vec![("health".into(), "firing".into(), "critical".into())]
    );

    // A failure in between starts the count again.
    api.set(Reply::status(500));
    let out = ws.run_at(minute(2), "p", &[]);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    api.set(Reply::status(200));
    let out = ws.run_at(minute(3), "p", &[]);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));

    let out = ws.run_at(minute(4), "p", &[]);
    assert_exit(&out, 0);
    let lines = notifications(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert!(
        lines[0].starts_with("[test-host] RESOLVED after 4m 0s p/api/health"),
        "{}",
        lines[0]
    );
    assert_eq!(statuses(&ws, "health"), vec!["firing", "resolved"]);
    assert!(live_alerts(&ws).is_empty());
}

#[test]
fn command_warning_fires_a_warning_and_critical_escalates() {
    let ws = Workspace::new("version: 1\nprofiles: {}\n");
    let plugin = Plugin::new(ws.path());
    ws.write_config(&jobs(None, &plugin.task("")));

    plugin.set(1, "DISK WARNING - 85% used | used=85%;80;90;0;100");
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 1);
    let lines = notifications(&out);
    assert_eq!(
        lines,
        vec!["[test-host] FIRING warning p/disk/health: command WARNING: DISK WARNING - 85% used"],
        "{}",
        stdout(&out)
    );
    assert_eq!(
        live_alerts(&ws),
        vec![("health".into(), "firing".into(), "warning".into())]
    );

    plugin.set(2, "DISK CRITICAL - 95% used | used=95%;80;90;0;100");
    let out = ws.run_at(minute(1), "p", &[]);
    assert_exit(&out, 1);
    let lines = notifications(&out);
    assert_eq!(
        lines,
        vec![
            "[test-host] ESCALATED to critical p/disk/health: command CRITICAL: DISK CRITICAL - 95% used"
        ],
        "{}",
        stdout(&out)
    );
    assert_eq!(
        live_alerts(&ws),
        vec![("health".into(), "firing".into(), "critical".into())]
    );
    let rows = history(&ws);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[1].2.as_str(), rows[1].3.as_str()),
        ("escalated", "critical")
    );

    // Still critical: nothing new.
    let out = ws.run_at(minute(2), "p", &[]);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));

    // The perfdata became signals.
    let out = ws.run_at(minute(3), "p", &["--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tasks"][0]["signals"]["used"], 95.0, "{report:#}");
    assert_eq!(report["tasks"][0]["signals"]["status"], 2.0, "{report:#}");
}

#[test]
fn perfdata_signal_rule_fires_above_its_threshold() {
    let ws = Workspace::new("version: 1\nprofiles: {}\n");
    let plugin = Plugin::new(ws.path());
    ws.write_config(&jobs(
        None,
        &plugin.task(
            "        rules:\n          - { name: used, signal: used, value: \"> 90\", severity: warning }\n",
        ),
    ));
    for (n, used) in [(0, 85), (1, 90)] {
        plugin.set(0, &format!("DISK OK | used={used}%;80;90;0;100"));
        let out = ws.run_at(minute(n), "p", &[]);
        assert_exit(&out, 0);
        assert!(
            notifications(&out).is_empty(),
            "used={used}\n{}",
            stdout(&out)
        );
    }

    plugin.set(0, "DISK OK | used=91%;80;90;0;100");
    let out = ws.run_at(minute(2), "p", &[]);
    assert_exit(&out, 1);
    assert_eq!(
        notifications(&out),
        vec!["[test-host] FIRING warning p/disk/used: used = 91 (> 90)"],
        "{}",
        stdout(&out)
    );
    let (value, threshold): (f64, String) = ws
        .sqlite()
        .query_row(
            "SELECT value, threshold FROM alert_history WHERE status = 'firing'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((value, threshold.as_str()), (91.0, "> 90"));

    plugin.set(0, "DISK OK | used=70%;80;90;0;100");
    let out = ws.run_at(minute(3), "p", &[]);
    assert_exit(&out, 0);
    let lines = notifications(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert!(
        lines[0].starts_with("[test-host] RESOLVED after 1m 0s p/disk/used: used = 70"),
        "{}",
        lines[0]
    );
}

#[test]
fn hex_value_extracted_from_json_rpc_drives_a_rule() {
    let node = TestServer::start(Reply::json(serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "result": { "number": "0x1a2b" }
    })));
    let task = format!(
        "      - name: node\n        http: {{ url: \"{}\", timeout: 2s, jsonrpc: {{ method: chain_getHeader }}, extract: {{ height: /result/number }} }}\n        rules:\n          - {{ name: height, signal: height, value: \"< 7000\" }}\n",
        node.url("/")
    );
    let ws = Workspace::new(&jobs(None, &task));
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 1);
    assert_eq!(
        notifications(&out),
        vec!["[test-host] FIRING critical p/node/height: height = 6699 (< 7000)"],
        "{}",
        stdout(&out)
    );
    let request = &node.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.json()["method"], "chain_getHeader");
    assert_eq!(request.json()["jsonrpc"], "2.0");

    node.set(Reply::json(
        serde_json::json!({ "result": { "number": "0x1b59" } }),
    ));
    let out = ws.run_at(minute(1), "p", &[]);
    assert_exit(&out, 0);
    let lines = notifications(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert!(
        lines[0].contains("RESOLVED") && lines[0].contains("height = 7001"),
        "{}",
        lines[0]
    );
}

#[test]
fn json_format_reports_the_firing_alert_without_console_lines() {
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(None, &api_task(&api.url("/health"), &[])));
    let out = ws.run_at(minute(0), "p", &["--format", "json"]);
    assert_exit(&out, 1);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(report["healthy"], false);
    assert_eq!(report["host"], "test-host");
    let task = &report["tasks"][0];
    assert_eq!(task["name"], "api");
    assert_eq!(task["healthy"], false);
    assert_eq!(task["signals"]["status"], 500.0);
    assert_eq!(task["rules"][0]["rule"], "health");
    assert_eq!(task["rules"][0]["transition"], "firing");
    let sent = report["notifications"].as_array().unwrap();
    assert_eq!(sent.len(), 1, "{report:#}");
    assert_eq!(sent[0]["notifier"], "console");
    assert!(
        sent[0]["result"] == "delivered" || sent[0]["result"]["result"] == "delivered",
        "{report:#}"
    );
    assert!(
        sent[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("[test-host] FIRING critical p/api/health")
    );
}

#[test]
fn for_as_a_duration_counts_clock_time_not_ticks() {
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(None, &api_task(&api.url("/health"), &["for: 120s"])));
    for n in 0..2 {
        let out = ws.run_at(minute(n), "p", &[]);
        assert!(notifications(&out).is_empty(), "tick {n}\n{}", stdout(&out));
    }
    let out = ws.run_at(minute(2), "p", &[]);
    assert_eq!(
        notifications(&out).len(),
        1,
        "fires once 120 s have passed\n{}",
        stdout(&out)
    );

    // Two ticks far apart are enough when the time has passed.
    let sparse = Workspace::new(&jobs(None, &api_task(&api.url("/health"), &["for: 120s"])));
    assert!(notifications(&sparse.run_at(minute(0), "p", &[])).is_empty());
    let out = sparse.run_at(minute(0) + 150, "p", &[]);
    assert_eq!(notifications(&out).len(), 1, "{}", stdout(&out));
    assert_eq!(statuses(&sparse, "health"), vec!["pending", "firing"]);
}

#[test]
fn a_task_cooldown_replaces_the_two_hour_default() {
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(
        None,
        &api_task(&api.url("/health"), &["cooldown: 10m"]),
    ));
    let mut reminded = Vec::new();
    for n in 0..=21 {
        let out = ws.run_at(minute(n), "p", &[]);
        if notifications(&out)
            .iter()
            .any(|l| l.contains("STILL FIRING"))
        {
            reminded.push(n);
        }
    }
    assert_eq!(reminded, vec![10, 20]);
}

#[test]
fn notify_resolved_false_records_the_resolution_silently() {
    let api = TestServer::start(Reply::status(500));
    let yaml = jobs(None, &api_task(&api.url("/health"), &[])).replace(
        "host: test-host\n",
        "host: test-host\ndefaults: { notify_resolved: false }\n",
    );
    let ws = Workspace::new(&yaml);
    assert_eq!(notifications(&ws.run_at(minute(0), "p", &[])).len(), 1);
    api.set(Reply::status(200));
    let out = ws.run_at(minute(1), "p", &[]);
    assert_exit(&out, 0);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(statuses(&ws, "health"), vec!["firing", "resolved"]);
    assert!(live_alerts(&ws).is_empty());
}

/// A server that answers its headers and then stops sending the body (a
/// hung backend behind a proxy): the task fails at its timeout, naming it,
/// not "timeout: global".
#[test]
fn a_body_that_stops_arriving_fails_naming_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = std::io::Read::read(&mut stream, &mut request);
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"ok\":";
        std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(2500));
    });
    let task =
        format!("      - name: api\n        timeout: 1s\n        http: {{ url: \"{url}\" }}\n");
    let ws = Workspace::new(&jobs(None, &task));
    let out = ws.run_at(minute(0), "p", &[]);
    let line = assert_fired_once(&ws, &out);
    assert!(
        line.contains("the body was not all read within 1s"),
        "{line}"
    );
    server.join().unwrap();
}
