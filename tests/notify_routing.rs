//! Routing and noise control end to end: digests, event routes, rate
//! limits, Slack-style and templated webhooks, a receiver down for ten
//! ticks, and secrets that never leak into output, logs or the database.

use crate::common::*;

use std::collections::BTreeSet;

/// jobs.yaml with `tasks` failing http tasks against `api` and the given
/// notifiers / profile keys.
fn jobs(api: &str, tasks: usize, notifiers: &str, profile_extra: &str, top: &str) -> String {
    let mut yaml = format!(
        "version: 1\nhost: test-host\n{top}notifiers:\n{notifiers}profiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n{profile_extra}    tasks:\n"
    );
    for n in 0..tasks {
        yaml.push_str(&format!(
            "      - name: api-{n}\n        http: {{ url: \"{api}\", timeout: 2s }}\n"
        ));
    }
    yaml
}

#[test]
fn five_failing_tasks_make_one_digest_listing_all_five() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&jobs(
        &api.url("/health"),
        5,
        &format!(
            "  hook: {{ type: webhook, url: \"{}\", format: slack, digest: true }}\n",
            hook.url("/hook")
        ),
        "    notify: [console, hook]\n",
        "",
    ));
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 1);
    let posts = hook.requests();
    assert_eq!(posts.len(), 1, "one message for the whole tick");
    let text = posts[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("[test-host] p: 5 changes"), "{text}");
    for n in 0..5 {
        assert!(
            text.contains(&format!("FIRING critical p/api-{n}/health")),
            "{text}"
        );
    }
    // The console is not a digest: five lines.
    assert_eq!(notifications(&out).len(), 5);
    // A quiet tick sends nothing; recovery is one digest again.
    assert_exit(&ws.run_at(minute(1), "p", &[]), 1);
    assert_eq!(hook.requests().len(), 1);
    api.set(Reply::status(200));
    assert_exit(&ws.run_at(minute(2), "p", &[]), 0);
    assert_eq!(hook.requests().len(), 2);
    assert!(
        hook.requests()[1].json()["text"]
            .as_str()
            .unwrap()
            .contains("5 changes")
    );
}

#[test]
fn events_can_go_where_alerts_do_not() {
    let hook = TestServer::start(Reply::status(200));
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    std::fs::write(&log, "").unwrap();
    ws.write_config(&format!(
        r#"version: 1
host: test-host
notifiers:
  events: {{ type: webhook, url: "{}" }}
profiles:
  p:
    cron: "* * * * *"
    announce: false
    notify: [console]
    notify_events: [events]
    tasks:
      - name: prover
        log:
          path: prover.log
          events: [{{ regex: "task started: (?P<id>\\d+)", message: "Task Started: {{id}}" }}]
"#,
        hook.url("/events")
    ));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);
    std::fs::write(&log, "task started: 42\n").unwrap();
    let out = ws.run_at(minute(1), "p", &[]);
    assert!(
        notifications(&out).is_empty(),
        "events skip the console: {}",
        stdout(&out)
    );
    let posts = hook.requests();
    assert_eq!(posts.len(), 1, "{}", stdout(&out));
    assert_eq!(posts[0].json()["text"], "[test-host] Task Started: 42");
}

#[test]
fn a_rate_limit_holds_the_rest_for_later_ticks_and_loses_nothing() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&jobs(
        &api.url("/health"),
        5,
        &format!(
            "  hook: {{ type: webhook, url: \"{}\", rate_limit: {{ messages: 2, per: 1m }} }}\n",
            hook.url("/hook")
        ),
        "    notify: [hook]\n",
        "",
    ));
    let mut per_tick = Vec::new();
    for n in 0..4 {
        ws.run_at(minute(n), "p", &[]);
        per_tick.push(hook.requests().len());
    }
    assert_eq!(
        per_tick,
        [2, 4, 5, 5],
        "two a minute until the five are out"
    );
    let ids: BTreeSet<String> = hook
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5);
}

#[test]
fn a_template_shapes_the_body() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&jobs(
        &api.url("/health"),
        1,
        &format!(
            "  hook: {{ type: webhook, url: \"{}\", template: {{ title: \"{{severity}} on {{host}}\", body: \"{{summary}}\", n: 1 }} }}\n",
            hook.url("/hook")
        ),
        "    notify: [hook]\n",
        "",
    ));
    ws.run_at(minute(0), "p", &[]);
    let body = hook.requests()[0].json();
    assert_eq!(body["title"], "critical on test-host");
    assert!(body["body"].as_str().unwrap().contains("HTTP 500"));
    assert_eq!(body["n"], 1);
}

#[test]
fn a_receiver_down_for_ten_ticks_gets_every_message_once_after() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(503));
    let ws = Workspace::new(&jobs(
        &api.url("/health"),
        1,
        &format!(
            "  hook: {{ type: webhook, url: \"{}\" }}\n",
            hook.url("/hook")
        ),
        "    notify: [console, hook]\n",
        "defaults: { cooldown: 3m }\n",
    ));
    let mut console = Vec::new();
    let mut tick = 0;
    // Ten ticks down: firing, reminders, a resolution and a new firing.
    for n in 0..10 {
        api.set(Reply::status(if n == 6 { 200 } else { 500 }));
        console.extend(notifications(&ws.run_at(minute(n), "p", &[])));
        tick = n + 1;
    }
    assert!(hook.requests().iter().all(|_| true));
    hook.clear();
    hook.set(Reply::status(200));
    // Back up: later ticks deliver the backlog (retries back off to 4 min).
    api.set(Reply::status(200));
    for n in tick..tick + 20 {
        console.extend(notifications(&ws.run_at(minute(n), "p", &[])));
    }
    let received: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    let ids: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no message twice: {received:#?}");
    assert_eq!(received, console, "every message, in order, once");
    assert!(console.len() >= 5, "{console:#?}");
    assert_eq!(
        ws.count("SELECT count(*) FROM outbox WHERE delivered_at IS NULL"),
        0
    );
}

#[test]
fn secrets_never_reach_output_logs_or_the_database() {
    let api = TestServer::start(Reply::status(500));
    let down = closed_port();
    let hook_key = "hook-key-7f3a9c";
    let token = "123456:TOKEN-s3cr3t-abc";
    let ws = Workspace::new("");
    ws.write_config(&format!(
        r#"version: 1
host: test-host
log_file: monitor.log
notifiers:
  hook: {{ type: webhook, url: "http://127.0.0.1:{down}/{hook_key}", headers: {{ Authorization: "Bearer ${{HOOK_TOKEN}}" }} }}
  tg: {{ type: telegram, token: "${{TG_TOKEN}}", chat_id: "-100", api_url: "http://127.0.0.1:{down}" }}
profiles:
  p:
    cron: "* * * * *"
    announce: false
    notify: [console, hook, tg]
    tasks:
      - name: api
        http: {{ url: "{}", timeout: 2s }}
"#,
        api.url("/health")
    ));
    // Trace too: the HTTP client's records held request lines and headers.
    let run = |args: &[&str], at: i64, level: &str| {
        ws.command()
            .env("MONITOR_NOW", at.to_string())
            .env("HOOK_TOKEN", "bearer-s3cr3t-xyz")
            .env("TG_TOKEN", token)
            .args(["--log-level", level, "run", "p"])
            .args(args)
            .output()
            .unwrap()
    };
    let mut seen = String::new();
    for (n, args, level) in [
        (0, &[][..], "trace"),
        (1, &["--dry-run"][..], "debug"),
        (5, &[][..], "debug"),
        (6, &["--format", "json"][..], "trace"),
    ] {
        let out = run(args, minute(n), level);
        seen.push_str(&stdout(&out));
        seen.push_str(&stderr(&out));
    }
    let out = ws
        .command()
        .args(["alerts", "--format", "json"])
        .output()
        .unwrap();
    seen.push_str(&stdout(&out));
    assert!(
        seen.contains("NOT sent to hook"),
        "the failures were reported: {seen}"
    );
    let mut files = vec![ws.path().join("monitor.log")];
    for entry in std::fs::read_dir(ws.path().join("state")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in files.iter().filter(|f| f.is_file()) {
        seen.push_str(&String::from_utf8_lossy(&std::fs::read(file).unwrap()));
    }
    for secret in [hook_key, token, "TOKEN-s3cr3t", "bearer-s3cr3t-xyz"] {
        assert!(!seen.contains(secret), "{secret} leaked");
    }
}

/// Seed 000 says "Monitor script started" when it starts watching. The
/// first tick of a profile, and the first after its jobs.yaml changed,
/// tell what it now watches; the ticks between say nothing of it.
#[test]
fn the_first_tick_and_the_first_after_a_change_say_what_is_now_watched() {
    let yaml = |extra: &str| {
        format!(
            "version: 1\nhost: test-host\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: prover\n        log: {{ path: prover.log, stale_after: 1h }}\n        remediate:\n          restart:\n            stop: {{ tmux: cysic }}\n            start: {{ tmux: cysic, command: \"./start2.sh\", cwd: . }}\n      - name: disk\n        disk: {{ path: / }}\n{extra}"
        )
    };
    let ws = Workspace::new(&yaml(""));
    std::fs::write(ws.path().join("prover.log"), "started\n").unwrap();
    let told = |out: &std::process::Output| -> Vec<String> {
        notifications(out)
            .into_iter()
            .filter(|l| l.contains("now watching"))
            .collect()
    };
    let first = ws.run_at(minute(0), "p", &[]);
    assert_exit(&first, 0);
    assert_eq!(
        told(&first),
        [
            "[test-host] monitor is now watching profile p (first run): 2 tasks — prover (log, restarts: tmux cysic); disk (disk)"
        ],
        "{}",
        stdout(&first)
    );
    let again = ws.run_at(minute(1), "p", &[]);
    assert_eq!(told(&again), Vec::<String>::new());
    ws.write_config(&yaml(
        "      - name: api\n        command: { argv: [\"true\"] }\n",
    ));
    let changed = ws.run_at(minute(2), "p", &[]);
    assert_eq!(
        told(&changed),
        [
            "[test-host] monitor is now watching profile p (jobs.yaml changed): 3 tasks — prover (log, restarts: tmux cysic); disk (disk); api (command)"
        ]
    );
    let quiet = ws.run_at(minute(3), "p", &["--task", "api"]);
    assert_eq!(told(&quiet), Vec::<String>::new());
    // `announce: false` keeps it to itself.
    ws.write_config(&yaml("").replace("    tasks:\n", "    announce: false\n    tasks:\n"));
    assert_eq!(told(&ws.run_at(minute(4), "p", &[])), Vec::<String>::new());
}

/// Every kind of secret jobs.yaml can hold.
const SECRETS: [&str; 14] = [
    "PROBE-USERINFO-s3cret1",
    "PROBE-QUERY-s3cret2",
    "PROBE-HEADER-s3cret3",
    "METRICS-HEADER-s3cret4",
    "HOOK-PATH-s3cret5",
    "HOOK-HEADER-s3cret6",
    "123456:TELEGRAM-s3cret7",
    "FEISHU-KEY-s3cret8",
    "FEISHU-SIGN-s3cret9",
    "ghp_GITHUB-s3cret10",
    "AM-PASSWORD-s3cret11",
    "HEARTBEAT-UUID-s3cret12",
    "RPC-PATH-KEY-s3cret13",
    "TOKEN-ONLY-USERINFO-s3cret14",
];

/// A GET of `path` from a `monitor serve` on `port`: the whole answer.
fn api_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer api-t0ken\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    answer
}

/// The secret scan: every kind of secret (URL userinfo, a token as the
/// whole userinfo, query keys, a path token from a `${…_KEY}` variable,
/// probe and webhook headers, webhook path, Telegram and GitHub tokens,
/// Feishu key and signing secret, Alertmanager password, heartbeat id) is
/// absent from stdout, stderr, log_file, the database with its WAL and
/// SHM, every API answer and every payload a receiver got, at every log
/// level, with the receivers answering 200, 401, 500 or not there at all.
#[test]
fn no_secret_of_any_kind_shows_anywhere_whatever_the_level_and_the_receivers() {
    for answer in [Some(200), Some(401), Some(500), None] {
        let receiver = answer.map(|status| TestServer::start(Reply::status(status)));
        let base = match &receiver {
            Some(server) => server.url(""),
            None => format!("http://127.0.0.1:{}", closed_port()),
        };
        let am = base.replacen("http://", &format!("http://ops:{}@", SECRETS[10]), 1);
        let service = TestServer::start(Reply::status(500));
        let service_url =
            service
                .url("/health")
                .replacen("http://", &format!("http://probe:{}@", SECRETS[0]), 1);
        let ws = Workspace::new("");
        ws.write_config(&format!(
            r#"version: 1
host: test-host
log_file: monitor.log
notifiers:
  hook: {{ type: webhook, url: "${{HOOK_URL}}", headers: {{ X-Key: "${{HOOK_KEY}}" }} }}
  tg: {{ type: telegram, token: "${{TG_TOKEN}}", chat_id: "-100", api_url: "{base}" }}
  lark: {{ type: feishu, url: "${{FEISHU_URL}}", secret: "${{FEISHU_SECRET}}" }}
  gh: {{ type: github, repo: org/node, token: "${{GH_TOKEN}}", api_url: "{base}" }}
  am: {{ type: alertmanager, urls: ["{am}"] }}
profiles:
  p:
    cron: "* * * * *"
    notify: [console, hook, tg, lark, gh, am]
    heartbeat: {{ url: "${{HB_URL}}" }}
    tasks:
      - name: api
        http: {{ url: "{service_url}/${{RPC_KEY}}?token={query}&x=1", headers: {{ Authorization: "Bearer ${{PROBE_TOKEN}}" }}, timeout: 2s }}
      - name: exporter
        metrics: {{ url: "{metrics}", headers: {{ Authorization: "Bearer ${{METRICS_TOKEN}}" }}, timeout: 2s }}
"#,
            query = SECRETS[1],
            metrics = service
                .url("/metrics")
                .replacen("http://", &format!("http://{}@", SECRETS[13]), 1),
        ));
        let env = [
            ("PROBE_TOKEN", SECRETS[2].to_string()),
            ("METRICS_TOKEN", SECRETS[3].to_string()),
            ("HOOK_URL", format!("{base}/hooks/{}", SECRETS[4])),
            ("HOOK_KEY", SECRETS[5].to_string()),
            ("TG_TOKEN", SECRETS[6].to_string()),
            (
                "FEISHU_URL",
                format!("{base}/open-apis/bot/v2/hook/{}", SECRETS[7]),
            ),
            ("FEISHU_SECRET", SECRETS[8].to_string()),
            ("GH_TOKEN", SECRETS[9].to_string()),
            ("HB_URL", format!("{base}/ping/{}", SECRETS[11])),
            ("MONITOR_API_TOKEN", "api-t0ken".to_string()),
            ("RPC_KEY", SECRETS[12].to_string()),
        ];
        let command = || {
            let mut command = ws.command();
            command.envs(env.iter().map(|(k, v)| (k, v.as_str())));
            command
        };
        let mut outputs = Vec::new();
        for (n, level, args) in [
            (0, "trace", &[][..]),
            (1, "debug", &["--dry-run"][..]),
            (2, "info", &["--format", "json"][..]),
            (3, "warn", &[][..]),
            (4, "trace", &["--format", "json"][..]),
        ] {
            if n == 3 {
                service.set(Reply::status(200));
            }
            outputs.push(
                command()
                    .env("MONITOR_NOW", minute(n).to_string())
                    .args(["--log-level", level, "run", "p"])
                    .args(args)
                    .output()
                    .unwrap(),
            );
        }
        for args in [
            &["alerts", "--format", "json"][..],
            &["alerts"][..],
            &["list"][..],
            &["check-config"][..],
            &["--log-level", "trace", "state", "export"][..],
        ] {
            outputs.push(command().args(args).output().unwrap());
        }
        let said: String = outputs
            .iter()
            .map(|o| format!("{}{}", stdout(o), stderr(o)))
            .collect();
        // The ticks ran and told: the API check failed, notifiers were
        // tried (so a leak had every chance).
        assert!(said.contains("FIRING"), "{said}");
        assert!(
            said.contains("to am at http://ops:***@127.0.0.1:"),
            "{said}"
        );
        if std::env::var_os("SHOW_SCAN").is_some() {
            println!("{said}");
        }

        // The API, every endpoint.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut serve = command()
            .env("MONITOR_NOW", minute(4).to_string())
            .args([
                "--log-level",
                "trace",
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(ws.path().join("serve.err")).unwrap())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed().as_secs() < 20,
                "monitor serve did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut api = String::new();
        for path in [
            "/healthz",
            "/v1/alerts?limit=1000",
            "/v1/runs",
            "/v1/silences",
            "/metrics",
        ] {
            api.push_str(&api_get(port, path));
        }
        let _ = serve.kill();
        let _ = serve.wait();

        let mut texts: Vec<(String, Vec<u8>)> = vec![
            ("what the commands said".into(), said.into_bytes()),
            ("the API's answers".into(), api.into_bytes()),
            (
                "monitor serve's stderr".into(),
                std::fs::read(ws.path().join("serve.err")).unwrap(),
            ),
            (
                "log_file".into(),
                std::fs::read(ws.path().join("monitor.log")).unwrap(),
            ),
        ];
        let mut state_files = Vec::new();
        for entry in std::fs::read_dir(ws.path().join("state")).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                state_files.push(path.file_name().unwrap().to_string_lossy().to_string());
                texts.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
        if let Some(server) = &receiver {
            let requests = server.requests();
            assert!(
                requests.len() >= 8,
                "the receivers were sent to: {requests:#?}"
            );
            for request in requests {
                texts.push((
                    format!("the body of {} {}", request.method, request.path),
                    request.body,
                ));
            }
        }
        for (name, bytes) in &texts {
            for secret in SECRETS {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "receivers answering {answer:?}: {secret:?} appears in {name}:\n{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
        println!(
            "receivers {answer:?}: {} texts scanned (state files {state_files:?}), no secret in any",
            texts.len()
        );
    }
}
