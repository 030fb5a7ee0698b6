//! The alertmanager notifier against a real Alertmanager (Debian's
//! `prometheus-alertmanager`, which `.ci/run` installs): the monitor binary
//! ticks on a pinned clock, and the test reads back what Alertmanager's own
//! API shows a user — the alert with its labels, its end moving forward
//! while it fires, its resolution, a cluster of two, one of them down.
//!
//! Over 800 lines: it is one area of the integration suite (one module of
//! `tests/main.rs`), each test a scenario with its own fixture; the helpers
//! they share live in `tests/common/`.

use crate::common::*;

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
    args: Vec<String>,
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
        std::fs::write(dir.path().join("alertmanager.yml"), ALERTMANAGER_CONFIG).unwrap();
        // Empty: no HA gossip listener on 0.0.0.0:9094.
        let args = vec!["--cluster.listen-address=".to_string()];
        Alertmanager::launch(port, dir, args)
    }

    /// Runs Alertmanager on `port` with the config, data and log in `dir`.
    fn launch(
        port: u16,
        dir: tempfile::TempDir,
        args: Vec<String>,
    ) -> Result<Alertmanager, String> {
        let config = dir.path().join("alertmanager.yml");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("alertmanager.log"))
            .unwrap();
        let child = Command::new(alertmanager_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", alertmanager_binary().display()));
        let mut alertmanager = Alertmanager {
            port,
            child,
            dir,
            args,
        };
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

    /// A cluster of `size` peers gossiping on 127.0.0.1, each notifying
    /// the webhook `hook`, one notification per task.
    fn cluster(size: usize, hook: &str) -> Vec<Alertmanager> {
        let web: Vec<u16> = (0..size).map(|_| closed_port()).collect();
        let gossip: Vec<u16> = (0..size).map(|_| closed_port()).collect();
        let config = format!(
            "route:\n  receiver: hook\n  group_by: [task]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: \"{hook}\"\n        send_resolved: true\n"
        );
        (0..size)
            .map(|i| {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("alertmanager.yml"), &config).unwrap();
                let mut args = vec![
                    format!("--cluster.listen-address=127.0.0.1:{}", gossip[i]),
                    format!("--cluster.advertise-address=127.0.0.1:{}", gossip[i]),
                    "--cluster.peer-timeout=1s".to_string(),
                    "--cluster.settle-timeout=2s".to_string(),
                    "--cluster.pushpull-interval=1s".to_string(),
                    "--cluster.reconnect-interval=1s".to_string(),
                ];
                args.extend(
                    (0..size)
                        .filter(|j| *j != i)
                        .map(|j| format!("--cluster.peer=127.0.0.1:{}", gossip[j])),
                );
                Alertmanager::launch(web[i], dir, args).unwrap_or_else(|log| panic!("{log}"))
            })
            .collect()
    }

    /// Kills it (SIGKILL: no goodbye to its peers).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again, on its ports, with its data.
    fn restart(self) -> Alertmanager {
        let mut old = self;
        old.kill();
        let dir = tempfile::tempdir().unwrap();
        let moved = std::mem::replace(&mut old.dir, dir);
        let (port, args) = (old.port, std::mem::take(&mut old.args));
        Alertmanager::launch(port, moved, args).unwrap_or_else(|log| panic!("{log}"))
    }

    /// Its alerts by task: `(state, endsAt)` as it shows them.
    fn by_task(&self) -> BTreeMap<String, (String, i64)> {
        self.alerts("")
            .iter()
            .map(|a| {
                (
                    a["labels"]["task"].as_str().unwrap().to_string(),
                    (
                        a["status"]["state"].as_str().unwrap().to_string(),
                        seconds(&a["endsAt"]),
                    ),
                )
            })
            .collect()
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
    ws.outbox("am")
        .into_iter()
        .map(|row| (row.delivered_at.is_some(), row.last_error))
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
    // One queue per URL.
    assert_eq!(outbox(&ws), vec![(true, None), (true, None)]);
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
        report.contains(&format!("NOT sent to am at {down_url} (connection refused")),
        "{report}"
    );
    assert!(
        report.contains(&format!("sent to am at {}", up.url(""))),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "UNDELIVERED: 1 notification to am at {down_url} waiting since"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "FIRING (notified, but NOT delivered to am at {down_url})"
        )),
        "{report}"
    );
    let waiting = outbox(&ws);
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert_eq!(
        waiting[0],
        (true, None),
        "the URL that is up took its batch"
    );
    assert!(!waiting[1].0, "the other URL's batch waits in the outbox");
    assert!(
        waiting[1]
            .1
            .as_deref()
            .is_some_and(|e| e.starts_with("connection refused")),
        "{waiting:?}"
    );
    // The healthy one got it all the same.
    assert_eq!(seconds(&up.only_alert()["endsAt"]), clock.at(0) + 180);

    let back = Alertmanager::start_on(down_port);
    let out = ws.run_at(clock.at(1), "p", &[]);
    assert_exit(&out, 1);
    assert!(!stdout(&out).contains("NOT sent"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("UNDELIVERED"), "{}", stdout(&out));
    assert_eq!(outbox(&ws), vec![(true, None); 4]);
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
    // Every task is healthy, but a receiver did not hear: exit 4.
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains("NOT sent to am at"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("UNDELIVERED: 1 notification to am at"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        up.alerts(""),
        Vec::<Value>::new(),
        "resolved where it was up"
    );
    // Tick 0's batch for the URL that is down is done with (tick 1 says
    // all it said); tick 1's resolution waits for it.
    let waiting = outbox(&ws);
    assert_eq!(waiting.len(), 4);
    assert!(
        waiting[0].0 && waiting[1].0 && waiting[2].0 && !waiting[3].0,
        "{waiting:?}"
    );

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

/// POSTs what one URL's queue holds for `alerts`, as a tick does.
fn send(url: &str, alerts: Vec<Message>, now: i64) -> Result<(), notify::Failure> {
    let payload = Payload::Alerts {
        alerts,
        valid_until: Timestamp::from_secs(now + 180),
        to: None,
    };
    let context = notify::Context {
        timeout: Duration::from_secs(5),
        now: Timestamp::from_secs(now),
        telegram_test: None,
    };
    let postable = notify::alertmanager::merged(&[&payload], None, Timestamp::from_secs(now));
    notify::alertmanager::send_to(&Text(url.to_string()), &postable, &context)
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

    let failure = send(&alertmanager.url(""), vec![valid, invalid], now).unwrap_err();
    assert!(failure.permanent, "{failure:?}");
    assert_eq!(
        failure.error,
        "answered HTTP 400: start time must be before end time"
    );
    let alert = alertmanager.only_alert();
    assert_eq!(alert["labels"]["task"], "firing");
}

#[test]
fn a_server_error_is_retried() {
    let broken = TestServer::start(Reply::status(503));
    let clock = Clock::now();
    let now = clock.at(2);

    let failure = send(
        &broken.url(""),
        vec![message(MessageKind::Firing, now, now)],
        now,
    )
    .unwrap_err();
    assert!(!failure.permanent, "{failure:?}");
    assert_eq!(failure.error, "answered HTTP 503: ok");
    let posts = broken.requests();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].method, "POST");
    assert_eq!(posts[0].path, "/api/v2/alerts");
    assert_eq!(posts[0].header("content-type"), Some("application/json"));
    assert_eq!(posts[0].json()[0]["labels"]["alertname"], "health");
}

// ------------------------------------------------------------ a cluster

/// jobs.yaml for the cluster: tasks `api` and `db`, each failing on a 5xx.
fn two_tasks(urls: &[String], api: &str, db: &str) -> String {
    let mut yaml = jobs(urls, api);
    yaml.push_str(&format!(
        "      - name: db\n        http: {{ url: \"{db}\", timeout: 2s, expect_status: \"100-599\" }}\n        rules: [{{ name: server-error, signal: status, value: \">= 500\", severity: critical }}]\n"
    ));
    yaml
}

/// A tick at the real time (Alertmanager judges `endsAt` by its clock),
/// one second after the last at least.
fn real_tick(ws: &Workspace, last: &mut i64) -> std::process::Output {
    let real = || {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        i64::try_from(now.as_secs()).unwrap()
    };
    // Never ahead of the real clock: a resolution must end in the past.
    while real() <= *last {
        std::thread::sleep(Duration::from_millis(50));
    }
    *last = real();
    ws.run_at(*last, "p", &[])
}

/// The notifications the cluster sent the hook: `(status, task)` of each.
fn notified(hook: &TestServer) -> Vec<(String, String)> {
    hook.requests()
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["status"].as_str().unwrap().to_string(),
                body["groupLabels"]["task"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits until the hook has `count` notifications, then a little longer
/// for any duplicate to show.
fn settled_notifications(hook: &TestServer, count: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while notified(hook).len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(4));
    let mut all = notified(hook);
    all.sort();
    all
}

/// Three real Alertmanagers gossiping on 127.0.0.1; one is killed while an
/// alert fires and resolves, and a new one starts, then comes back. The
/// live peers hear every tick on that tick (the alert's end keeps moving,
/// so they never let it lapse into a false "resolved"), the new failure
/// reaches them at once (a resolution waiting for the dead peer used to
/// hold everything behind it), the one that was down hears the resolution
/// it missed exactly once, and no peer is sent twice what it took.
#[test]
fn one_dead_peer_of_a_cluster_changes_nothing_for_the_others() {
    let hook = TestServer::start(Reply::status(200));
    let mut peers = Alertmanager::cluster(3, &hook.url("/hook"));
    let api = TestServer::start(Reply::status(500));
    let db = TestServer::start(Reply::status(200));
    let urls: Vec<String> = peers.iter().map(|p| p.url("")).collect();
    let ws = Workspace::new(&two_tasks(&urls, &api.url("/health"), &db.url("/health")));
    let dead_url = urls[2].clone();
    let mut last = 0;

    // Tick 0, all up: every peer has the alert; the cluster tells the hook once.
    assert_exit(&real_tick(&ws, &mut last), 1);
    for peer in &peers {
        assert_eq!(peer.by_task()["api"], ("active".to_string(), last + 180));
    }
    assert_deduplicated(&settled_notifications(&hook, 1), &[("firing", "api")]);

    // Tick 1, the third peer dead: the live ones see the alert's end move.
    peers[2].kill();
    let out = real_tick(&ws, &mut last);
    let failing_since = Timestamp::from_secs(last).to_string();
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("NOT sent to am at {dead_url} (")),
        "{text}"
    );
    assert!(
        text.contains(&format!("UNDELIVERED: 1 notification to am at {dead_url}")),
        "{text}"
    );
    for peer in &peers[..2] {
        assert_eq!(peer.by_task()["api"], ("active".to_string(), last + 180));
    }

    // Tick 2: api recovers. The live peers hear it now; the dead one's
    // resolution waits. Every task healthy, a receiver deaf: exit 4.
    api.set(Reply::status(200));
    let out = real_tick(&ws, &mut last);
    assert_exit(&out, 4);
    for peer in &peers[..2] {
        assert!(!peer.by_task().contains_key("api"), "{:?}", peer.by_task());
    }

    // Tick 3: db fails. The live peers have it on this very tick.
    db.set(Reply::status(500));
    let out = real_tick(&ws, &mut last);
    assert_exit(&out, 1);
    // The backlog is as old as the failure, not as this tick's batch.
    assert!(
        stdout(&out).contains(&format!(
            "to am at {dead_url} waiting since {failing_since}"
        )),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(&format!(
            "FIRING (notified, but NOT delivered to am at {dead_url})"
        )),
        "{}",
        stdout(&out)
    );
    for peer in &peers[..2] {
        assert_eq!(peer.by_task()["db"], ("active".to_string(), last + 180));
    }

    // /healthz names the URL that is failing, and since when.
    let port = closed_port();
    let mut serve = ws
        .command()
        .env("MONITOR_NOW", last.to_string())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    let body = loop {
        if let Ok((_, body)) = get(&healthz) {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "monitor serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = serve.kill();
    let _ = serve.wait();
    let health: Value = serde_json::from_str(&body).unwrap();
    let warning = health["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        warning.contains(&format!("to am at {dead_url} since ")),
        "{health:#}"
    );

    // The dead peer comes back. Tick 4: it hears the resolution it missed
    // and the current alert; nothing is undelivered any more.
    let back = peers.pop().unwrap().restart();
    peers.push(back);
    let out = real_tick(&ws, &mut last);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        !text.contains("NOT sent") && !text.contains("UNDELIVERED"),
        "{text}"
    );
    let outbox = outbox(&ws);
    assert!(outbox.iter().all(|(delivered, _)| *delivered), "{outbox:?}");
    for peer in &peers {
        let alerts = peer.by_task();
        assert_eq!(
            alerts["db"],
            ("active".to_string(), last + 180),
            "{alerts:?}"
        );
        assert!(!alerts.contains_key("api"), "{alerts:?}");
    }
    // Exactly what each peer was sent: the live ones api at ticks 0 and 1,
    // db at 3 and 4, the resolution once; the one back (a new process) the
    // resolution it missed and db, once each.
    for peer in &peers[..2] {
        assert_eq!((peer.received("firing"), peer.received("resolved")), (4, 1));
    }
    assert_eq!(
        (peers[2].received("firing"), peers[2].received("resolved")),
        (1, 1)
    );
    // And the cluster deduplicated what the peers were told alike.
    assert_deduplicated(
        &settled_notifications(&hook, 3),
        &[("firing", "api"), ("firing", "db"), ("resolved", "api")],
    );
}

/// The cluster told the hook each of `expected` (status, group), and no
/// more often than once a peer: the peers agreed on every alert's labels.
/// Alertmanager's own gossip is at least once (a peer that hears of a
/// notification late sends it again, which a loaded 2-core test machine
/// shows), so exactly once is what it usually does, not what it promises.
#[track_caller]
fn assert_deduplicated(told: &[(String, String)], expected: &[(&str, &str)]) {
    let mut distinct: Vec<(&str, &str)> =
        told.iter().map(|(s, t)| (s.as_str(), t.as_str())).collect();
    distinct.dedup();
    assert_eq!(distinct, expected, "{told:?}");
    for one in expected {
        let times = told
            .iter()
            .filter(|(s, t)| (s.as_str(), t.as_str()) == *one)
            .count();
        assert!(
            times <= 3,
            "{one:?} told {times} times by 3 peers: {told:?}"
        );
    }
    println!(
        "the cluster told the hook {} times for {} groups and states: {told:?}",
        told.len(),
        expected.len()
    );
}

/// An Alertmanager that accepts and never answers costs its own timeout,
/// once per tick, and the others are told on time all the same.
#[test]
fn a_hung_alertmanager_costs_its_timeout_once_per_tick() {
    let up = Alertmanager::start();
    let hung = TestServer::start(Reply::status(200).delayed(Duration::from_secs(60)));
    let api = TestServer::start(Reply::status(500));
    let clock = Clock::now();
    let ws = Workspace::new(&jobs(&[up.url(""), hung.url("")], &api.url("/health")));
    for n in 0..2 {
        let started = Instant::now();
        let out = ws.run_at(clock.at(n), "p", &[]);
        let took = started.elapsed();
        assert_exit(&out, 1);
        assert!(took < Duration::from_secs(13), "tick {n} took {took:?}");
        assert!(
            stdout(&out).contains("(no answer within 10s)"),
            "{}",
            stdout(&out)
        );
        assert_eq!(seconds(&up.only_alert()["endsAt"]), clock.at(n) + 180);
    }
    assert_eq!(hung.requests().len(), 2, "one POST per tick");
}
