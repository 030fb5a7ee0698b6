//! The alertmanager notifier against a real Alertmanager (Debian's
//! `prometheus-alertmanager`, which `.ci/run` installs): the monitor binary
//! ticks on a pinned clock, and the test reads back what Alertmanager's own
//! API shows a user — the alert with its labels, its end moving forward
//! while it fires, its resolution, a cluster of two, one of them down.

mod common;
use common::*;

use monitor::clock::Timestamp;
use monitor::config::{Severity, Text};
use monitor::notify::{self, Message, MessageKind, Payload};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ------------------------------------------------------------ Alertmanager

/// One route to a receiver that notifies no one; short waits so alerts
/// are processed at once.
const ALERTMANAGER_CONFIG: &str = "\
route:
  receiver: nobody
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: nobody
";

/// Where Debian installs Alertmanager; other names are looked up in PATH.
const DEBIAN_BINARY: &str = "/usr/bin/prometheus-alertmanager";

fn alertmanager_binary() -> PathBuf {
    if Path::new(DEBIAN_BINARY).is_file() {
        return PathBuf::from(DEBIAN_BINARY);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["prometheus-alertmanager", "alertmanager"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Alertmanager to test against: these tests start a real one from \
                 {DEBIAN_BINARY}. `.ci/run` installs it (Debian package prometheus-alertmanager); \
                 or run `sudo apt-get install -y --no-install-recommends prometheus-alertmanager`"
            )
        })
}

/// A real Alertmanager on 127.0.0.1, alone (no cluster port), with its
/// config, data and log in a temp folder. Killed when dropped.
struct Alertmanager {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Alertmanager {
        // A port found free can be taken before Alertmanager binds it: try
        // another one then.
        for _ in 0..3 {
            if let Ok(alertmanager) = Alertmanager::try_start(closed_port()) {
                return alertmanager;
            }
        }
        Alertmanager::start_on(closed_port())
    }

    fn start_on(port: u16) -> Alertmanager {
        Alertmanager::try_start(port).unwrap_or_else(|log| panic!("{log}"))
    }

    /// Starts it and waits until `/-/ready` answers 200; or returns its log.
    fn try_start(port: u16) -> Result<Alertmanager, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, ALERTMANAGER_CONFIG).unwrap();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let child = Command::new(alertmanager_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no HA gossip listener on 0.0.0.0:9094.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", alertmanager_binary().display()));
        let mut alertmanager = Alertmanager { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = alertmanager.child.try_wait() {
                return Err(format!(
                    "Alertmanager on port {port} exited ({status}) before it was ready:\n{}",
                    alertmanager.log()
                ));
            }
            if get(&alertmanager.url("/-/ready")).is_ok_and(|(status, _)| status == 200) {
                return Ok(alertmanager);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Alertmanager on port {port} not ready within 30 s:\n{}",
                    alertmanager.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// `GET /api/v2/alerts{query}`.
    fn alerts(&self, query: &str) -> Vec<Value> {
        let url = self.url(&format!("/api/v2/alerts{query}"));
        let (status, body) = get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(status, 200, "GET {url}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
    }

    /// The one alert it lists.
    fn only_alert(&self) -> Value {
        let alerts = self.alerts("");
        assert_eq!(alerts.len(), 1, "one alert: {alerts:#?}");
        alerts[0].clone()
    }

    /// `alertmanager_alerts_received_total` of the v2 API for `status`
    /// (`firing` or `resolved`, as Alertmanager judged it on arrival).
    fn received(&self, status: &str) -> u64 {
        let (_, metrics) = get(&self.url("/metrics")).unwrap();
        metrics
            .lines()
            .find(|line| {
                line.starts_with("alertmanager_alerts_received_total{")
                    && line.contains(&format!("status=\"{status}\""))
                    && line.contains("version=\"v2\"")
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no received count for {status} in\n{metrics}"))
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET from the test, with the status and body whatever the status.
fn get(url: &str) -> Result<(u16, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent.get(url).call()?;
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string()?))
}

// ------------------------------------------------------------ monitor

/// The pinned clock: ticks one minute apart, tick 2 at the real time the
/// test began. Alertmanager judges `endsAt` by its own clock, so the pinned
/// times must be real ones: a firing alert is valid three intervals
/// (3 min) after its tick, so alerts of ticks 0 to 2 stay firing for at
/// least a minute of real time — plenty for a test — while a resolution at
/// tick 2 or before ends in Alertmanager's past and counts as resolved at
/// once (a pinned time in the future would keep it active until then).
struct Clock {
    start: i64,
}

impl Clock {
    fn now() -> Clock {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Clock {
            start: i64::try_from(real).unwrap() - 120,
        }
    }

    /// Unix seconds of tick `n`.
    fn at(&self, n: i64) -> i64 {
        self.start + 60 * n
    }
}

const GENERATOR_URL: &str = "http://127.0.0.1:8923/v1/alerts";

/// jobs.yaml: profile `p` notifying the Alertmanager notifier `am` (every
/// URL in `urls`) about task `api`, labelled `team: node`: an http check of
/// `api` whose rule `server-error` fires on a 5xx (the probe itself takes
/// any status, so the rule alone judges it).
fn jobs(urls: &[String], api: &str) -> String {
    let urls = urls
        .iter()
        .map(|url| format!("\"{url}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "version: 1
host: test-host
notifiers:
  am: {{ type: alertmanager, urls: [{urls}], generator_url: \"{GENERATOR_URL}\" }}
profiles:
  p:
    cron: \"* * * * *\"
    notify: [am]
    tasks:
      - name: api
        http: {{ url: \"{api}\", timeout: 2s, expect_status: \"100-599\" }}
        rules: [{{ name: server-error, signal: status, value: \">= 500\", severity: warning }}]
        labels: {{ team: node }}
"
    )
}

/// `(delivered, last_error)` of each outbox entry for `am`, oldest first.
fn outbox(ws: &Workspace) -> Vec<(bool, Option<String>)> {
    let db = ws.sqlite();
    let mut statement = db
        .prepare("SELECT delivered_at IS NOT NULL, last_error FROM outbox WHERE notifier = 'am' ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// An alert's labels as a map.
fn labels(alert: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(alert["labels"].clone()).unwrap()
}

fn expected_labels() -> BTreeMap<String, String> {
    [
        ("alertname", "server-error"),
        ("profile", "p"),
        ("task", "api"),
        ("rule", "server-error"),
        ("severity", "warning"),
        ("host", "test-host"),
        ("team", "node"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A time as Alertmanager writes it (`…:00.000Z`), as Unix seconds.
fn seconds(time: &Value) -> i64 {
    let text = time.as_str().expect("a time");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp()
}

// ------------------------------------------------------------ tests

#[test]
fn a_failing_task_fires_in_alertmanager_with_its_labels_and_annotations() {
    let alertmanager = Alertmanager::start();
    let api = TestServer::start(Reply::status(500));
    let clock = Clock::now();
    let ws = Workspace::new(&jobs(&[alertmanager.url("")], &api.url("/health")));

    let out = ws.run_at(clock.at(0), "p", &[]);
    assert_exit(&out, 1);
    assert!(!stdout(&out).contains("NOT sent"), "{}", stdout(&out));

    let alert = alertmanager.only_alert();
    assert_eq!(labels(&alert), expected_labels());
    assert_eq!(
        alert["annotations"],
        serde_json::json!({
            "summary": "status = 500 (>= 500)",
            "description": "value 500, threshold >= 500",
        })
    );
    assert_eq!(alert["status"]["state"], "active");
    assert_eq!(seconds(&alert["startsAt"]), clock.at(0));
    // Valid for three intervals of the profile's `* * * * *`.
    assert_eq!(seconds(&alert["endsAt"]), clock.at(0) + 180);
    assert_eq!(alert["generatorURL"], GENERATOR_URL);
    assert_eq!(outbox(&ws), vec![(true, None)]);
}

#[test]
fn the_next_tick_resends_the_alert_and_its_end_moves_forward() {
    let alertmanager = Alertmanager::start();
    let api = TestServer::start(Reply::status(500));
    let clock = Clock::now();
    let ws = Workspace::new(&jobs(&[alertmanager.url("")], &api.url("/health")));

    assert_exit(&ws.run_at(clock.at(0), "p", &[]), 1);
    let first = alertmanager.only_alert();
    assert_exit(&ws.run_at(clock.at(1), "p", &[]), 1);
    let second = alertmanager.only_alert();

    assert_eq!(
        second["fingerprint"], first["fingerprint"],
        "the same alert"
    );
    assert_eq!(seconds(&second["startsAt"]), clock.at(0));
    assert_eq!(seconds(&first["endsAt"]), clock.at(0) + 180);
    assert_eq!(seconds(&second["endsAt"]), clock.at(1) + 180);
    assert!(
        second["updatedAt"].as_str() > first["updatedAt"].as_str(),
        "updated: {first:#} then {second:#}"
    );
    assert_eq!(second["status"]["state"], "active");
    assert_eq!(alertmanager.received("firing"), 2);
    assert_eq!(outbox(&ws), vec![(true, None), (true, None)]);
}

/// What a user of Alertmanager 0.25 sees: the resolved alert is gone from
/// `GET /api/v2/alerts` whatever the filters (the v2 API lists only alerts
/// whose `endsAt` is still ahead); Alertmanager counted it as received
/// resolved, and receivers with `send_resolved` hear of it.
#[test]
fn recovery_resolves_the_alert_and_alertmanager_stops_listing_it() {
    let alertmanager = Alertmanager::start();
    let api = TestServer::start(Reply::status(500));
    let clock = Clock::now();
    let ws = Workspace::new(&jobs(&[alertmanager.url("")], &api.url("/health")));

    assert_exit(&ws.run_at(clock.at(0), "p", &[]), 1);
    assert_eq!(alertmanager.alerts("?active=true").len(), 1);

    api.set(Reply::status(200));
    let out = ws.run_at(clock.at(1), "p", &[]);
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains("NOT sent"), "{}", stdout(&out));

    assert_eq!(alertmanager.alerts("?active=true"), Vec::<Value>::new());
    assert_eq!(alertmanager.alerts(""), Vec::<Value>::new());
    assert_eq!(
        alertmanager.alerts("?active=true&silenced=true&inhibited=true&unprocessed=true"),
        Vec::<Value>::new()
    );
    assert_eq!(alertmanager.received("firing"), 1);
    assert_eq!(alertmanager.received("resolved"), 1);
    assert_eq!(outbox(&ws), vec![(true, None), (true, None)]);

    // Healthy and nothing resolved: nothing more to tell Alertmanager.
    assert_exit(&ws.run_at(clock.at(2), "p", &[]), 0);
    assert_eq!(outbox(&ws).len(), 2);
}

#[test]
fn both_alertmanagers_of_a_cluster_receive_the_alert() {
    let first = Alertmanager::start();
    let second = Alertmanager::start();
    let api = TestServer::start(Reply::status(500));
    let clock = Clock::now();
    let ws = Workspace::new(&jobs(
        &[first.url(""), second.url("/")],
        &api.url("/health"),
    ));

    assert_exit(&ws.run_at(clock.at(0), "p", &[]), 1);
    for alertmanager in [&first, &second] {
        let alert = alertmanager.only_alert();
        assert_eq!(labels(&alert), expected_labels());
        assert_eq!(seconds(&alert["endsAt"]), clock.at(0) + 180);
    }
    assert_eq!(outbox(&ws), vec![(true, None)]);
}

#[test]
fn an_alertmanager_that_is_down_gets_the_alert_once_it_is_back() {
    let up = Alertmanager::start();
    let down_port = closed_port();
    let down_url = format!("http://127.0.0.1:{down_port}");
    let api = TestServer::start(Reply::status(500));
    let clock = Clock::now();
    let ws = Workspace::new(&jobs(&[up.url(""), down_url.clone()], &api.url("/health")));

    let out = ws.run_at(clock.at(0), "p", &[]);
    assert_exit(&out, 1);
    let report = stdout(&out);
    assert!(
        report.contains(&format!(
            "NOT sent to am (1 of 2 Alertmanagers did not take the alerts: {down_url}: connection refused"
        )),
        "{report}"
    );
    let waiting = outbox(&ws);
    assert_eq!(waiting.len(), 1);
    assert!(!waiting[0].0, "the batch waits in the outbox");
    assert!(
        waiting[0]
            .1
            .as_deref()
            .is_some_and(|e| e.contains(&down_url) && !e.contains(&up.url(""))),
        "the error names the URL that failed: {waiting:?}"
    );
    // The healthy one got it all the same.
    assert_eq!(seconds(&up.only_alert()["endsAt"]), clock.at(0) + 180);

    let back = Alertmanager::start_on(down_port);
    let out = ws.run_at(clock.at(1), "p", &[]);
    assert_exit(&out, 1);
    assert!(!stdout(&out).contains("NOT sent"), "{}", stdout(&out));
    assert_eq!(outbox(&ws), vec![(true, None), (true, None)]);
    for alertmanager in [&up, &back] {
        let alert = alertmanager.only_alert();
        assert_eq!(labels(&alert), expected_labels());
        assert_eq!(seconds(&alert["startsAt"]), clock.at(0));
        assert_eq!(seconds(&alert["endsAt"]), clock.at(1) + 180);
    }
    // The waiting batch's firing alert was not re-posted with its old end:
    // the current batch restated it.
    assert_eq!(back.received("firing"), 1);
}

/// A resolution waiting in the outbox is delivered late, alone: the
/// Alertmanager that was down hears that the alert ended (at tick 1), and
/// never the stale firing alert of tick 0.
#[test]
fn a_resolution_waiting_in_the_outbox_arrives_without_the_stale_alert_before_it() {
    let up = Alertmanager::start();
    let down_port = closed_port();
    let api = TestServer::start(Reply::status(500));
    let clock = Clock::now();
    let ws = Workspace::new(&jobs(
        &[up.url(""), format!("http://127.0.0.1:{down_port}")],
        &api.url("/health"),
    ));

    assert_exit(&ws.run_at(clock.at(0), "p", &[]), 1);
    api.set(Reply::status(200));
    let out = ws.run_at(clock.at(1), "p", &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("NOT sent to am"), "{}", stdout(&out));
    assert_eq!(
        up.alerts(""),
        Vec::<Value>::new(),
        "resolved where it was up"
    );
    // Tick 0's batch went out (its alert restated by tick 1's), tick 1's
    // resolution waits for the one that is down.
    let waiting = outbox(&ws);
    assert_eq!(waiting.len(), 2);
    assert!(waiting[0].0 && !waiting[1].0, "{waiting:?}");

    let back = Alertmanager::start_on(down_port);
    let out = ws.run_at(clock.at(2), "p", &[]);
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains("NOT sent"), "{}", stdout(&out));
    assert!(outbox(&ws).iter().all(|(delivered, _)| *delivered));
    assert_eq!(back.received("firing"), 0);
    assert_eq!(back.received("resolved"), 1);
    assert_eq!(back.alerts(""), Vec::<Value>::new());
}

// ------------------------------------------------------------ send()

fn message(kind: MessageKind, started_at: i64, at: i64) -> Message {
    Message {
        id: format!("{kind:?}"),
        kind,
        host: "test-host".into(),
        profile: "p".into(),
        task: format!("{kind:?}").to_lowercase(),
        rule: "health".into(),
        severity: Severity::Critical,
        summary: "HTTP 500".into(),
        value: None,
        threshold: None,
        started_at: Some(Timestamp::from_secs(started_at)),
        at: Timestamp::from_secs(at),
        remediation: None,
        labels: BTreeMap::new(),
        related: Vec::new(),
    }
}

fn send(urls: &[String], alerts: Vec<Message>, now: i64) -> Result<(), notify::Failure> {
    let urls: Vec<Text> = urls.iter().map(|u| Text(u.clone())).collect();
    let payload = Payload::Alerts {
        alerts,
        valid_until: Timestamp::from_secs(now + 180),
    };
    let context = notify::Context {
        timeout: Duration::from_secs(5),
        now: Timestamp::from_secs(now),
        telegram_test: None,
    };
    notify::alertmanager::send(&urls, None, &payload, &context)
}

/// Alertmanager stores the valid alerts of a batch and answers 400 for the
/// rest: retrying cannot help, so the batch is given up.
#[test]
fn an_alert_alertmanager_refuses_fails_the_batch_for_good() {
    let alertmanager = Alertmanager::start();
    let clock = Clock::now();
    let now = clock.at(2);
    let valid = message(MessageKind::Firing, now, now);
    // Resolved before it started: Alertmanager refuses it.
    let invalid = message(MessageKind::Resolved, now, now - 60);

    let failure = send(&[alertmanager.url("")], vec![valid, invalid], now).unwrap_err();
    assert!(failure.permanent, "{failure:?}");
    assert_eq!(
        failure.error,
        format!(
            "{} answered HTTP 400: start time must be before end time",
            alertmanager.url("")
        )
    );
    let alert = alertmanager.only_alert();
    assert_eq!(alert["labels"]["task"], "firing");
}

#[test]
fn a_server_error_from_one_url_is_retried() {
    let alertmanager = Alertmanager::start();
    let broken = TestServer::start(Reply::status(503));
    let clock = Clock::now();
    let now = clock.at(2);

    let failure = send(
        &[alertmanager.url(""), broken.url("")],
        vec![message(MessageKind::Firing, now, now)],
        now,
    )
    .unwrap_err();
    assert!(!failure.permanent, "{failure:?}");
    assert_eq!(
        failure.error,
        format!(
            "1 of 2 Alertmanagers did not take the alerts: {} answered HTTP 503: ok",
            broken.url("")
        )
    );
    let posts = broken.requests();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].method, "POST");
    assert_eq!(posts[0].path, "/api/v2/alerts");
    assert_eq!(posts[0].header("content-type"), Some("application/json"));
    assert_eq!(posts[0].json()[0]["labels"]["alertname"], "health");
    assert_eq!(alertmanager.only_alert()["labels"]["task"], "firing");
}
