//! What an operator sees when jobs.yaml, the profile name or the database is
//! wrong: exit 2 (or 3 for an unusable database) and one line on stderr that
//! names the file, the line and the offending key.
//!
//! Over 800 lines: it is one area of the integration suite (one module of
//! `tests/main.rs`), each test a scenario with its own fixture; the helpers
//! they share live in `tests/common/`.

use crate::common::*;

use std::path::Path;
use std::process::Output;

/// The first `monitor: ` line of stderr.
fn error_line(output: &Output) -> String {
    let text = stderr(output);
    text.lines()
        .find(|l| l.starts_with("monitor: "))
        .unwrap_or_else(|| panic!("no `monitor: ` line on stderr:\n{text}"))
        .to_string()
}

/// Splits `monitor: <file>:<line>:<column>: <rest>` for `file`.
#[track_caller]
fn locate(line: &str, file: &Path) -> (usize, usize, String) {
    let prefix = format!("monitor: {}:", file.display());
    let rest = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("expected `{prefix}…`, got: {line}"));
    let mut parts = rest.splitn(3, ':');
    let row = parts.next().and_then(|s| s.parse().ok());
    let column = parts.next().and_then(|s| s.parse().ok());
    let message = parts.next().unwrap_or("").trim_start().to_string();
    match (row, column) {
        (Some(row), Some(column)) => (row, column, message),
        _ => panic!("no line:column after the file name: {line}"),
    }
}

/// Asserts that both `check-config` and `run p` reject `yaml` with exit 2,
/// naming the file, `line` and `key`, with a message containing `why`; and
/// that the rejected run created no state folder.
#[track_caller]
fn assert_config_error(yaml: &str, line: usize, key: Option<&str>, why: &str) {
    let ws = Workspace::new(yaml);
    let check = ws
        .command()
        .env_remove("NOT_SET_VAR")
        .arg("check-config")
        .output()
        .unwrap();
    let run = ws
        .command()
        .env_remove("NOT_SET_VAR")
        .env("MONITOR_NOW", minute(0).to_string())
        .args(["run", "p"])
        .output()
        .unwrap();
    for output in [&check, &run] {
        assert_exit(output, 2);
        assert!(
            stdout(output).is_empty(),
            "nothing on stdout: {}",
            stdout(output)
        );
        let text = error_line(output);
        let (row, column, message) = locate(&text, &ws.config());
        assert_eq!(row, line, "line number in: {text}");
        assert!(column >= 1, "{text}");
        if let Some(key) = key {
            assert!(
                message.starts_with(&format!("{key}: ")),
                "expected key `{key}` in: {text}"
            );
        }
        assert!(message.contains(why), "expected `{why}` in: {text}");
    }
    assert_eq!(
        error_line(&check),
        error_line(&run),
        "check-config and run report the same error"
    );
    assert!(
        !ws.path().join("state").exists(),
        "a rejected config must not create the state folder"
    );
}

#[test]
fn unknown_key_in_a_task_names_line_and_key() {
    let yaml = r#"version: 1
profiles:
  p:
    cron: "* * * * *"
    tasks:
      - name: api
        timout: 5s
        http: { url: "http://127.0.0.1:1/" }
"#;
    assert_config_error(
        yaml,
        7,
        Some("profiles.p.tasks[0].timout"),
        "unknown field `timout`",
    );
}

#[test]
fn duration_without_a_unit_names_line_and_key() {
    let yaml = r#"version: 1
profiles:
  p:
    cron: "* * * * *"
    tasks:
      - name: api
        http: { url: "http://127.0.0.1:1/" }
        timeout: 5 minutes
"#;
    assert_config_error(
        yaml,
        8,
        Some("profiles.p.tasks[0].timeout"),
        "invalid duration \"5 minutes\"",
    );
}

#[test]
fn duration_inside_a_probe_names_line_and_key() {
    let yaml = r#"version: 1
profiles:
  p:
    cron: "* * * * *"
    tasks:
      - name: ok
        command: { argv: ["true"] }
      - name: plugin
        command: { argv: ["true"], timeout: 5 minutes }
"#;
    assert_config_error(
        yaml,
        9,
        Some("profiles.p.tasks[1].command.timeout"),
        "invalid duration",
    );
}

#[test]
fn invalid_cron_minute_names_line_and_key() {
    let yaml = r#"version: 1
profiles:
  good:
    cron: "*/5 * * * *"
    tasks:
      - name: a
        command: { argv: ["true"] }
  p:
    cron: "61 * * * *"
    tasks:
      - name: a
        command: { argv: ["true"] }
"#;
    assert_config_error(yaml, 9, Some("profiles.p.cron"), "61");
}

#[test]
fn missing_environment_variable_is_named_with_line_and_key() {
    let yaml = r#"version: 1
notifiers:
  console: { type: stdout }
  hook: { type: webhook, url: "${NOT_SET_VAR}" }
profiles:
  p:
    cron: "* * * * *"
    notify: [console, hook]
    tasks:
      - name: a
        command: { argv: ["true"] }
"#;
    assert_config_error(
        yaml,
        4,
        Some("notifiers.hook.url"),
        "NOT_SET_VAR is not set",
    );
}

/// Regression: an error on a value containing `:` (a URL) used to get a
/// bogus key suffix (`profiles.p.tasks[0].http.url.http`).
#[test]
fn missing_environment_variable_in_a_url_names_the_url_key() {
    let yaml = r#"version: 1
profiles:
  p:
    cron: "* * * * *"
    tasks:
      - name: api
        http: { url: "http://127.0.0.1:1/${NOT_SET_VAR}" }
"#;
    assert_config_error(
        yaml,
        7,
        Some("profiles.p.tasks[0].http.url"),
        "NOT_SET_VAR is not set",
    );
}

#[test]
fn undefined_notifier_in_notify_names_line_and_key() {
    let yaml = r#"version: 1
notifiers:
  console: { type: stdout }
profiles:
  p:
    cron: "* * * * *"
    tasks:
      - name: a
        command: { argv: ["true"] }
        notify: [console, pager]
"#;
    assert_config_error(
        yaml,
        10,
        Some("profiles.p.tasks[a].notify"),
        "notifier `pager` is not defined",
    );
}

/// A rate limit on an Alertmanager would hold back the state it must get
/// every tick (its alerts would expire): refused, saying so.
#[test]
fn a_rate_limit_on_an_alertmanager_notifier_is_refused() {
    let yaml = r#"version: 1
notifiers:
  am: { type: alertmanager, urls: ["http://127.0.0.1:9093"], rate_limit: { messages: 5, per: 1m } }
profiles:
  p:
    cron: "* * * * *"
    tasks:
      - name: a
        command: { argv: ["true"] }
"#;
    assert_config_error(
        yaml,
        3,
        Some("notifiers.am"),
        "`rate_limit` does not apply to an alertmanager notifier",
    );
}

#[test]
fn undefined_notifier_in_profile_notify_names_line_and_key() {
    let yaml = r#"version: 1
profiles:
  p:
    cron: "* * * * *"
    notify: [console, pager]
    tasks:
      - name: a
        command: { argv: ["true"] }
"#;
    assert_config_error(
        yaml,
        5,
        Some("profiles.p.notify"),
        "notifier `pager` is not defined",
    );
}

#[test]
fn yaml_syntax_error_names_the_line() {
    let yaml = r#"version: 1
profiles:
  p:
    cron: "* * * * *"
    tasks:
      - name: a: b
        command: { argv: ["true"] }
"#;
    assert_config_error(yaml, 6, None, "mapping values are not allowed");
}

#[test]
fn tab_indentation_names_the_line() {
    let yaml = "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n\t  - name: a\n        command: { argv: [\"true\"] }\n";
    assert_config_error(yaml, 6, None, "cannot start any token");
}

const TWO_PROFILES: &str = r#"version: 1
profiles:
  minutely:
    cron: "* * * * *"
    tasks:
      - name: a
        command: { argv: ["true"] }
  hourly:
    cron: "0 * * * *"
    tasks:
      - name: b
        command: { argv: ["true"] }
"#;

#[test]
fn unknown_profile_exits_2_and_lists_the_profiles() {
    let ws = Workspace::new(TWO_PROFILES);
    let out = ws.run_at(minute(0), "nightly", &[]);
    assert_exit(&out, 2);
    let text = error_line(&out);
    assert!(text.contains("nightly"), "{text}");
    assert!(
        text.contains("minutely, hourly"),
        "lists the profiles: {text}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(
        !ws.path().join("state").exists(),
        "an unknown profile must not create the state folder"
    );
}

#[test]
fn missing_config_file_exits_2_and_names_it() {
    let ws = Workspace::new(TWO_PROFILES);
    let missing = ws.path().join("nothere.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
        .current_dir(ws.path())
        .env_remove("MONITOR_CONFIG")
        .env_remove("MONITOR_DB")
        .arg("--config")
        .arg(&missing)
        .args(["run", "minutely"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let text = error_line(&out);
    assert!(
        text.starts_with(&format!("monitor: {}: ", missing.display())),
        "{text}"
    );
    assert!(text.contains("cannot read the config file"), "{text}");
}

#[test]
fn missing_default_config_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
        .current_dir(dir.path())
        .env_remove("MONITOR_CONFIG")
        .env_remove("MONITOR_DB")
        .args(["run", "minutely"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let text = error_line(&out);
    assert!(text.contains("jobs.yaml"), "{text}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing created in the current folder"
    );
}

#[test]
fn database_path_that_is_a_directory_exits_3_naming_it() {
    let ws = Workspace::new(TWO_PROFILES);
    std::fs::create_dir_all(ws.db()).unwrap();
    let out = ws.run_at(minute(0), "minutely", &[]);
    assert_exit(&out, 3);
    let text = error_line(&out);
    assert!(
        text.contains(&ws.db().display().to_string()),
        "names the database path: {text}"
    );
    assert!(ws.db().is_dir(), "the directory is left alone");
}

fn garbage_bytes() -> Vec<u8> {
    b"this is not an SQLite database, it is a text file an operator put here\n"
        .iter()
        .copied()
        .cycle()
        .take(8192)
        .collect()
}

/// A workspace whose database file holds garbage bytes; returns its mtime.
fn garbage_workspace() -> (Workspace, std::time::SystemTime) {
    let ws = Workspace::new(TWO_PROFILES);
    std::fs::create_dir_all(ws.db().parent().unwrap()).unwrap();
    std::fs::write(ws.db(), garbage_bytes()).unwrap();
    let mtime = std::fs::metadata(ws.db()).unwrap().modified().unwrap();
    (ws, mtime)
}

#[track_caller]
fn assert_unusable_db(ws: &Workspace, mtime: std::time::SystemTime, out: &Output, what: &str) {
    assert_exit(out, 3);
    let text = error_line(out);
    assert!(text.contains("not a database"), "{what}: {text}");
    assert!(
        text.contains(&ws.db().display().to_string()),
        "{what}: the message names the database path: {text}"
    );
    assert_eq!(
        std::fs::read(ws.db()).unwrap(),
        garbage_bytes(),
        "{what}: the garbage file's bytes are untouched"
    );
    assert_eq!(
        std::fs::metadata(ws.db()).unwrap().modified().unwrap(),
        mtime,
        "{what}: mtime untouched"
    );
}

#[test]
fn garbage_database_exits_3_naming_it_and_is_left_untouched() {
    let (ws, mtime) = garbage_workspace();
    let out = ws.run_at(minute(0), "minutely", &[]);
    assert_unusable_db(&ws, mtime, &out, "run");
    // A second tick sees the same file, still untouched.
    let out = ws.run_at(minute(1), "minutely", &[]);
    assert_unusable_db(&ws, mtime, &out, "second run");
}

/// Regression: these used to say "monitor: file is not a database" without
/// naming the file.
#[test]
fn garbage_database_is_named_by_dry_run_list_and_alerts() {
    let (ws, mtime) = garbage_workspace();
    let out = ws.run_at(minute(0), "minutely", &["--dry-run"]);
    assert_unusable_db(&ws, mtime, &out, "run --dry-run");
    let out = ws.command().arg("list").output().unwrap();
    assert_unusable_db(&ws, mtime, &out, "list");
    let out = ws.command().arg("alerts").output().unwrap();
    assert_unusable_db(&ws, mtime, &out, "alerts");
}

/// `check-config` on a copy of a repository file in a fresh workspace, with
/// the spec's secrets set to dummies except those in `unset`.
fn check_config_on_copy(file: &str, unset: &[&str]) -> (Workspace, Output) {
    let ws = Workspace::new(
        &std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    );
    let mut command = ws.command();
    for (name, value) in [
        ("TELEGRAM_BOT_TOKEN", "123:dummy"),
        ("TELEGRAM_CHAT_ID", "-100123"),
        ("FEISHU_WEBHOOK", "http://127.0.0.1:1/feishu"),
        ("GITHUB_TOKEN", "dummy-token"),
    ] {
        if unset.contains(&name) {
            command.env_remove(name);
        } else {
            command.env(name, value);
        }
    }
    let out = command.arg("check-config").output().unwrap();
    (ws, out)
}

#[test]
fn check_config_accepts_the_shipped_jobs_yaml() {
    let (ws, out) = check_config_on_copy("jobs.yaml", &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains(": ok"), "{}", stdout(&out));
    assert!(
        !ws.path().join("state").exists(),
        "check-config stores nothing"
    );
}

#[test]
fn check_config_accepts_every_spec_example() {
    let (ws, out) = check_config_on_copy("tests/fixtures/spec.yaml", &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains(": ok"), "{}", stdout(&out));
    assert!(
        !ws.path().join("state").exists(),
        "check-config stores nothing"
    );
}

#[test]
fn check_config_on_spec_example_names_a_missing_secret() {
    let (ws, out) = check_config_on_copy("tests/fixtures/spec.yaml", &["TELEGRAM_BOT_TOKEN"]);
    assert_exit(&out, 2);
    let text = error_line(&out);
    let (row, _, message) = locate(&text, &ws.config());
    assert_eq!(row, 9, "{text}");
    assert!(message.starts_with("notifiers.ops.token: "), "{text}");
    assert!(message.contains("TELEGRAM_BOT_TOKEN is not set"), "{text}");
}

#[test]
fn check_config_accepts_the_seed_003_catalog() {
    let (_ws, out) = check_config_on_copy("tests/fixtures/seed003_catalog.yaml", &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("1 task"), "{}", stdout(&out));
}

/// `${VAR}` works in every scalar, numbers and flags included, and a bad
/// expansion is an error at its line that never shows the value.
#[test]
fn numbers_flags_and_paths_take_environment_variables() {
    let yaml = "version: 1
host: test-host
profiles:
  p:
    cron: \"* * * * *\"
    enabled: ${MONITOR_TEST_ON:-true}
    concurrency: ${MONITOR_TEST_CONCURRENCY:-4}
    tasks:
      - name: node
        metrics: { url: \"http://127.0.0.1:1/metrics\", tls_verify: \"${MONITOR_TEST_VERIFY:-true}\" }
        warmup: ${MONITOR_TEST_WARMUP:-2}
        rules:
          - name: stalled
            counter: x_total
            delta: \">= ${MONITOR_TEST_DELTA:-1}\"
            streak: ${MONITOR_TEST_STREAK:-3}
            burst: ${MONITOR_TEST_BURST:-10}
      - name: disk
        disk: { dir: \"${MONITOR_TEST_DIR}/data\", max_size: \"${MONITOR_TEST_SIZE:-1GiB}\" }
";
    let ws = Workspace::new(yaml);
    let check = |envs: &[(&str, &str)]| {
        let mut command = ws.command();
        command.env("MONITOR_TEST_DIR", "/srv");
        for (k, v) in envs {
            command.env(k, v);
        }
        command.arg("check-config").output().unwrap()
    };
    let out = check(&[("MONITOR_TEST_BURST", "25"), ("MONITOR_TEST_ON", "false")]);
    assert_exit(&out, 0);
    let out = check(&[("MONITOR_TEST_STREAK", "api-token-123")]);
    assert_exit(&out, 2);
    let line = error_line(&out);
    let (row, _, message) = locate(&line, &ws.config());
    assert_eq!(row, 16, "{line}");
    assert!(
        message.contains("\"${MONITOR_TEST_STREAK:-3}\" expands to a value that is not a number"),
        "{line}"
    );
    assert!(!stderr(&out).contains("api-token-123"), "{}", stderr(&out));
    let out = check(&[("MONITOR_TEST_ON", "maybe")]);
    assert_exit(&out, 2);
    let (row, _, message) = locate(&error_line(&out), &ws.config());
    assert_eq!(row, 6);
    assert!(message.contains("not true or false"), "{message}");
    // Inside `{ … }` YAML reads `{` as a mapping: the error says to quote.
    ws.write_config(&yaml.replace(
        "tls_verify: \"${MONITOR_TEST_VERIFY:-true}\"",
        "tls_verify: ${MONITOR_TEST_VERIFY:-true}",
    ));
    let out = check(&[]);
    assert_exit(&out, 2);
    let (row, _, message) = locate(&error_line(&out), &ws.config());
    assert_eq!(row, 10);
    assert!(message.contains("quote it"), "{message}");
}

/// Whatever the key, a bad value from the environment is named by its
/// variable, never shown.
#[test]
fn a_bad_value_from_the_environment_is_named_never_shown() {
    let yaml = "version: 1
host: test-host
defaults:
  timeout: ${MONITOR_TEST_TIMEOUT:-10s}
profiles:
  p:
    cron: \"${MONITOR_TEST_CRON:-* * * * *}\"
    tasks:
      - name: api
        http: { url: \"http://127.0.0.1:1/\", expect_status: \"${MONITOR_TEST_STATUS:-200-399}\" }
        for: ${MONITOR_TEST_FOR:-1}
        rules:
          - { name: slow, signal: latency_ms, value: \"> ${MONITOR_TEST_LIMIT:-500}\" }
";
    let ws = Workspace::new(yaml);
    for (variable, line) in [
        ("MONITOR_TEST_TIMEOUT", 4),
        ("MONITOR_TEST_CRON", 7),
        ("MONITOR_TEST_STATUS", 10),
        ("MONITOR_TEST_FOR", 11),
        ("MONITOR_TEST_LIMIT", 13),
    ] {
        let out = ws
            .command()
            .env(variable, "hunter2-secret-token")
            .arg("check-config")
            .output()
            .unwrap();
        assert_exit(&out, 2);
        let error = error_line(&out);
        let (row, _, message) = locate(&error, &ws.config());
        assert_eq!(row, line, "{variable}: {error}");
        assert!(
            !stderr(&out).contains("hunter2") && message.contains(&format!("${{{variable}}}")),
            "{variable}: {}",
            stderr(&out)
        );
    }
}

/// Rule kinds that read scraped series need a `metrics` probe, and say
/// what to write instead.
#[test]
fn scraped_series_rules_need_a_metrics_probe() {
    for (rule, says) in [
        (
            "{ name: r, gauge: rss_bytes, value: \"> 1GiB\" }",
            "`gauge:` reads scraped series",
        ),
        (
            "{ name: r, signal: 'up{}', value: \"< 1\" }",
            "names scraped series (braces)",
        ),
        (
            "{ name: r, counter: x_total, delta: \">= 1\" }",
            "`counter:` reads scraped series",
        ),
    ] {
        let ws = Workspace::new(&profile_p(&format!(
            "      - name: api\n        http: {{ url: \"http://127.0.0.1:1/\" }}\n        rules:\n          - {rule}\n"
        )));
        let out = ws.command().arg("check-config").output().unwrap();
        assert_exit(&out, 2);
        assert!(error_line(&out).contains(says), "{rule}: {}", stderr(&out));
    }
}

#[test]
fn a_trend_goes_with_a_signal_rule_only() {
    let ws = Workspace::new(&profile_p(
        "      - name: node\n        metrics: { url: \"http://127.0.0.1:1/\" }\n        rules:\n          - { name: r, gauge: x, value: \"> 1\", trend: falling, window: 5m }\n",
    ));
    let out = ws.command().arg("check-config").output().unwrap();
    assert_exit(&out, 2);
    assert!(
        error_line(&out).contains("`trend` and `window` go with `signal:`"),
        "{}",
        stderr(&out)
    );
}

/// README's examples load: the whole jobs.yaml at the top of its
/// "jobs.yaml" section, and the task examples (prover, aleph, node…)
/// put in a profile.
#[test]
fn the_readme_examples_load() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    let mut tried = 0;
    for block in &blocks {
        let yaml = if block.starts_with("version: 1") {
            block.to_string()
        } else if block.trim_start().starts_with("- name:") {
            profile_p(block)
        } else {
            continue;
        };
        tried += 1;
        let ws = Workspace::new(&yaml);
        // check-config reads each `ca_file`: the example's, made here.
        for line in yaml.lines().filter(|l| l.contains("ca_file: ")) {
            let path = line.split("ca_file: ").nth(1).unwrap_or_default();
            let path = path.split([' ', ',', '}']).next().unwrap_or_default();
            let path = ws.path().join(path);
            let (cert, _) = certificate(ws.path(), "example", "rpc.internal", 30);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::rename(cert, path).unwrap();
        }
        let out = ws
            .command()
            .env("HOOK_URL", "http://127.0.0.1:9/hook")
            .env("HOOK_TOKEN", "t0ken")
            .arg("check-config")
            .output()
            .unwrap();
        assert_exit(&out, 0);
        assert!(stderr(&out).is_empty(), "{}\n{yaml}", stderr(&out));
    }
    assert!(tried >= 4, "{tried} README examples tried");
}

/// Issue 10 review: keys of the restart and log changes that would quietly
/// turn a safety off or pass a typo on are refused where they are.
#[test]
fn an_empty_identity_a_placeholder_typo_and_zero_connections_are_refused() {
    let restart = |identity: &str| {
        format!(
            "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: prover\n        log: {{ path: /tmp/x.log }}\n        remediate:\n          restart:\n            stop: {{ tmux: cysic }}\n            start: {{ tmux: cysic, command: ./start2.sh }}\n            identity: {identity}\n"
        )
    };
    for empty in ["{}", "{ pattern: \"\" }", "{ port: 0 }"] {
        assert_config_error(
            &restart(empty),
            12,
            Some("profiles.p.tasks[0].remediate.restart.identity"),
            "`identity` names nothing real",
        );
    }
    assert_config_error(
        &restart("{ port: 1 }").replace("tmux: cysic }", "tmux: cysic.gpu0 }"),
        10,
        None,
        "tmux session name \"cysic.gpu0\" cannot be used",
    );
    assert_config_error(
        "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: node\n        log:\n          command: [docker, logs, --since, \"{since}\", --until, \"{untill}\", node]\n",
        8,
        Some("profiles.p.tasks[0].log.command"),
        "a `log` command has a placeholder that is neither `{since}` nor `{until}`",
    );
    assert_config_error(
        "version: 1\ndefaults:\n  connections_per_host: 0\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: t\n        command: { argv: [\"true\"] }\n",
        3,
        Some("defaults.connections_per_host"),
        "must be at least 1",
    );
}

/// Issue 11, item 1: every cron line runs `--quiet`, and cron has no
/// environment (`env -i`). A jobs.yaml that stops the tick (a typo, an
/// unset `${FEISHU_WEBHOOK}`) exited 2 with nothing on stderr and nothing
/// in the log: monitoring stopped without a trace. Quiet is for when
/// monitoring works: the error reaches stderr (cron's mail) and log_file.
#[test]
fn an_error_that_stops_a_quiet_tick_reaches_stderr_and_the_log_file() {
    let lark = "notifiers:\n  lark: { type: feishu, url: \"${FEISHU_WEBHOOK}\" }\n";
    for (top, broken, expected) in [
        (
            "",
            "        timout: 5s\n",
            "profiles.p.tasks[0].timout: unknown field `timout`",
        ),
        (
            lark,
            "        notify: [lark]\n",
            "environment variable FEISHU_WEBHOOK is not set",
        ),
    ] {
        let ws = Workspace::new(&format!(
            "version: 1\nlog_file: state/monitor.log\n{top}profiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n{broken}        command: {{ argv: [\"true\"] }}\n"
        ));
        let out = ws
            .command()
            .env_clear()
            .args(["run", "p", "--quiet"])
            .output()
            .unwrap();
        assert_exit(&out, 2);
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        let said = stderr(&out);
        assert!(
            said.starts_with("monitor: ") && said.contains(expected) && said.lines().count() == 1,
            "once on stderr: {said}"
        );
        let log = std::fs::read_to_string(ws.path().join("state/monitor.log"))
            .unwrap_or_else(|e| panic!("no log file ({e}); stderr: {said}"));
        assert!(
            log.contains("[ERROR] monitor: ") && log.contains(expected),
            "{log}"
        );
    }
}

/// Issue 11, item 1: the error that stops a tick also reaches syslog (the
/// journal on a systemd host). The test stands in for the syslog daemon:
/// it listens on /dev/log itself (root only, and only where no syslog
/// daemon owns it), so it reads what monitor sends there.
#[test]
fn an_error_that_stops_a_quiet_tick_reaches_syslog() {
    let dev_log = Path::new("/dev/log");
    if unsafe { libc::geteuid() } != 0 || dev_log.exists() {
        eprintln!("skipped: needs root and no syslog daemon on /dev/log");
        return;
    }
    let socket = std::os::unix::net::UnixDatagram::bind(dev_log).unwrap();
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(dev_log);
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let ws = Workspace::new(
        "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        timout: 5s\n        command: { argv: [\"true\"] }\n",
    );
    let child = ws
        .command()
        .env_clear()
        .args(["run", "p", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Other tests' ticks log to the same /dev/log meanwhile: ours is the
    // line tagged with this child's pid.
    let tag = format!("monitor[{}]", child.id());
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 2);
    let mut buffer = [0u8; 8192];
    let mut seen = Vec::new();
    while let Ok(n) = socket.recv(&mut buffer) {
        let line = String::from_utf8_lossy(&buffer[..n]).into_owned();
        let ours = line.contains(&tag) && line.contains("unknown field `timout`");
        seen.push(line);
        if ours {
            break;
        }
    }
    let ours = seen
        .iter()
        .find(|l| l.contains(&tag) && l.contains("unknown field `timout`"))
        .unwrap_or_else(|| panic!("not in syslog: {seen:?}"));
    // <11>: facility user (1), severity error (3); tagged monitor[pid].
    assert!(ours.starts_with("<11>"), "{ours}");
    assert!(ours.contains("monitor["), "{ours}");
    assert!(ours.contains("jobs.yaml:7"), "file:line: {ours}");
}

/// Issue 11, item 6: what could only fail later is caught at load, at its
/// own line and key — notifier URLs that cannot work, bad header names,
/// CRLF in header values, `{placeholders}` with no such group, an unknown
/// notifier type (was blamed on the first notifier), a `start:` error (was
/// blamed on `stop:`), a block-style `notify:` list (had no line). A
/// secret URL is never echoed.
#[test]
fn what_could_only_fail_later_is_refused_at_its_own_line() {
    let with_notifier = |notifier: &str| {
        format!(
            "version: 1\nnotifiers:\n  good: {{ type: webhook, url: \"http://127.0.0.1:9/x\" }}\n{notifier}profiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        command: {{ argv: [\"true\"] }}\n"
        )
    };
    for (notifier, why) in [
        ("  n: { type: webhook, url: \"htp:/k3y\" }\n", "no scheme"),
        (
            "  n: { type: webhook, url: \"http://user:k3y@127.0.0.1:99999/\" }\n",
            "port 99999",
        ),
        (
            "  n: { type: alertmanager, urls: [\"http://user:k3y@127.0.0.1:99999/\"] }\n",
            "port 99999",
        ),
        (
            "  n: { type: telegram, token: \"1:a\", chat_id: \"-1\", api_url: \"http://u:k3y@:99/\" }\n",
            "no host",
        ),
        (
            "  n: { type: webhook, url: \"http://[::1/k3y\" }\n",
            "not a URL",
        ),
        (
            "  n: { type: webhook, url: \"http://127.0.0.1:99999/k3y\" }\n",
            "port 99999",
        ),
        (
            "  n: { type: webhook, url: \"http:///k3y\" }\n",
            "not a URL",
        ),
        (
            "  n: { type: webhook, url: \"127.0.0.1:8080/k3y\" }\n",
            "no scheme",
        ),
        (
            "  n: { type: feishu, url: \"https://:443/k3y\" }\n",
            "no host",
        ),
        (
            "  n: { type: webhook, url: \"http://h/k3y\", headers: { \"Bad Name\": v } }\n",
            "header name \"Bad Name\"",
        ),
        (
            "  n: { type: webhook, url: \"http://h/k3y\", headers: { X-A: \"v\\r\\nX-Evil: k3y\" } }\n",
            "line break",
        ),
        (
            "  n: { type: telegram, token: \"1:k3y\", chat_id: \"-1\", api_url: \"api.telegram.org\" }\n",
            "no scheme",
        ),
        (
            "  n: { type: alertmanager, urls: [\"http://127.0.0.1:9093\", \"http://:9093\"] }\n",
            "no host",
        ),
    ] {
        let ws = Workspace::new(&with_notifier(notifier));
        let out = ws.command().arg("check-config").output().unwrap();
        assert_exit(&out, 2);
        let line = error_line(&out);
        let (row, _, message) = locate(&line, &ws.config());
        assert_eq!(row, 4, "{notifier}: {line}");
        assert!(message.starts_with("notifiers.n: "), "{line}");
        assert!(message.contains(why), "{notifier}: {line}");
        assert!(!line.contains("k3y"), "a secret is never echoed: {line}");
    }
    // A URL with a user and password is a URL.
    let ws = Workspace::new(&with_notifier(
        "  n: { type: webhook, url: \"http://user:k3y@127.0.0.1:8080/hook\" }\n",
    ));
    assert_exit(&ws.command().arg("check-config").output().unwrap(), 0);
    // An unknown type among block-style notifiers: its own line and key.
    assert_config_error(
        "version: 1\nnotifiers:\n  good:\n    type: webhook\n    url: \"http://127.0.0.1:9/x\"\n  n:\n    type: tgram\n    token: x\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        command: { argv: [\"true\"] }\n",
        7,
        Some("notifiers.n.type"),
        "unknown notifier type \"tgram\"",
    );
    // Probe URLs and headers, at the value.
    let with_task = |task: &str| {
        format!(
            "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n{task}"
        )
    };
    assert_config_error(
        &with_task("        http:\n          url: \"localhost:8080/health\"\n"),
        8,
        Some("profiles.p.tasks[0].http.url"),
        "no scheme",
    );
    assert_config_error(
        &with_task("        metrics: { url: \"http://127.0.0.1:0/metrics\" }\n"),
        7,
        Some("profiles.p.tasks[0].metrics.url"),
        "port 0",
    );
    assert_config_error(
        &with_task(
            "        http:\n          url: \"http://127.0.0.1:8080/\"\n          headers:\n            \"X Bad\": v\n",
        ),
        10,
        Some("profiles.p.tasks[0].http.headers"),
        "header name \"X Bad\"",
    );
    // A placeholder with no such group.
    assert_config_error(
        &with_task(
            "        log:\n          path: /tmp/x.log\n          events:\n            - { regex: \"started: (?P<id>\\\\d+)\", message: \"Started: {idd}\" }\n",
        ),
        10,
        Some("profiles.p.tasks[0].log.events[0]"),
        "no group `idd`: its named groups are id",
    );
    // An error in `start:` names `start`, not `stop`.
    assert_config_error(
        &with_task(
            "        command: { argv: [\"true\"] }\n        remediate:\n          restart:\n            stop: { tmux: cysic }\n            start: { tmux: cysic }\n",
        ),
        11,
        Some("profiles.p.tasks[0].remediate.restart.start"),
        "needs the `command`",
    );
    // A block-style notify list: the unknown name's own line.
    let yaml = "version: 1\nnotifiers:\n  good: { type: webhook, url: \"http://127.0.0.1:9/x\" }\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    notify:\n      - good\n      - nope\n    tasks:\n      - name: a\n        command: { argv: [\"true\"] }\n";
    let ws = Workspace::new(yaml);
    let out = ws.command().arg("check-config").output().unwrap();
    let line = error_line(&out);
    let (row, column, message) = locate(&line, &ws.config());
    assert_eq!((row, column), (9, 9), "{line}");
    assert!(
        message.starts_with("profiles.p.notify: notifier `nope`"),
        "{line}"
    );
}

/// Issue 12, item 5: no input panics the loader. A seeded mutation corpus
/// of the shipped jobs.yaml (deleted, inserted and doubled characters and
/// lines, hostile values), plus the cases that did panic or crawl: a
/// non-ASCII key before a badly typed value (byte slicing), a duration of
/// 10^26 days, 20 000 nested brackets. Each must give an Ok or a located
/// error, fast, without echoing a literal token.
#[test]
fn no_mutation_of_jobs_yaml_panics_the_loader() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.yaml");
    let mut cases: Vec<String> = vec![
        "version: 1\nnotifiers:\n  é: 1\nprofiles: {}\n".into(),
        "version: 1\nnotifiers:\n  日本: { type: webhook, url: 1 }\nprofiles: {}\n".into(),
        shipped.replace("timeout: 30s", "timeout: 99999999999999999999999999d"),
        shipped.replace("timeout: 30s", "timeout: 1e308s"),
        format!("version: 1\nprofiles: {}{}\n", "[".repeat(20_000), "]".repeat(20_000)),
        format!("version: 1\nprofiles:\n  p:\n    cron: \"{}\"\n", "*".repeat(100_000)),
        "version: 1\nprofiles:\n  p: { cron: \"* * * * *\", tasks: [ { name: \"a\u{0}b\", command: { argv: [x] } } ] }\n".into(),
    ];
    // A small linear congruential generator: the same corpus every run.
    let mut seed: u64 = 0x5eed_1234;
    let mut next = |bound: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % bound.max(1)
    };
    let inserts = [
        "é",
        "{",
        "[",
        "}",
        "]",
        ":",
        " ",
        "\n",
        "-",
        "\"",
        "'",
        "9",
        "d",
        "${X}",
        "\t",
        "#",
        "*",
        "\u{0}",
        "99999999999999999999",
    ];
    let lines: Vec<&str> = shipped.lines().collect();
    for _ in 0..600 {
        let mut text: Vec<char> = shipped.chars().collect();
        match next(4) {
            0 => {
                let at = next(text.len());
                text.remove(at);
            }
            1 => {
                let at = next(text.len());
                let insert = inserts[next(inserts.len())];
                for (k, c) in insert.chars().enumerate() {
                    text.insert(at + k, c);
                }
            }
            2 => {
                let line = lines[next(lines.len())];
                let at = next(text.len());
                for (k, c) in format!("{line}\n").chars().enumerate() {
                    text.insert(at + k, c);
                }
            }
            _ => {
                let at = next(text.len());
                let end = (at + next(40)).min(text.len());
                text.drain(at..end);
            }
        }
        cases.push(text.into_iter().collect());
    }
    for (n, case) in cases.iter().enumerate() {
        std::fs::write(&path, case).unwrap();
        let started = std::time::Instant::now();
        let result = std::panic::catch_unwind(|| monitor::config::load(&path, None).map(|_| ()));
        assert!(result.is_ok(), "case {n} panicked:\n{case}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "case {n} took {:?}",
            started.elapsed()
        );
        if let Ok(Err(error)) = result {
            assert!(
                !error.to_string().contains("123456:ABC"),
                "case {n}: {error}"
            );
        }
    }
}

/// A jobs.yaml nested 100 000 deep (200 KB): refused at once, and the
/// process ends at once too (finding the log and the database of a broken
/// file parsed it whole: 44 s for check-config, 85 s for a tick).
#[test]
fn a_deeply_nested_jobs_yaml_ends_the_process_at_once() {
    let ws = Workspace::new(&format!(
        "version: 1\nlog_file: state/monitor.log\nx: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    ));
    for args in [&["check-config"][..], &["run", "p"][..]] {
        let started = std::time::Instant::now();
        let out = ws.command().args(args).output().unwrap();
        let took = started.elapsed();
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("nested more than 64 deep"),
            "{}",
            stderr(&out)
        );
        assert!(
            took < std::time::Duration::from_secs(2),
            "{args:?} took {took:?}"
        );
    }
    let log = std::fs::read_to_string(ws.path().join("state/monitor.log")).unwrap();
    assert!(log.contains("nested more than 64 deep"), "{log}");
}

/// `retention: 0d` deleted every history row as it was written, and
/// `concurrency: 0`, `max_age: 0s` were taken (second review of issue 12).
#[test]
fn settings_that_would_erase_or_stall_everything_are_refused() {
    for (setting, why) in [
        (
            "retention: 0d",
            "would delete the history as soon as it is written",
        ),
        ("concurrency: 0", "how many tasks of a profile run at once"),
        ("max_age: 0s", "at least a minute"),
    ] {
        let yaml = format!(
            "version: 1\ndefaults:\n  {setting}\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        command: {{ argv: [\"true\"] }}\n"
        );
        let key = format!("defaults.{}", setting.split(':').next().unwrap());
        assert_config_error(&yaml, 3, Some(&key), why);
    }
}

/// Each notifier type owns its keys: a misspelt one is placed at its own
/// line and answered with the keys it could have meant (the type's own and
/// the shared ones), whether it is written before or after `type:`; a
/// shared key written twice is refused at the second.
#[test]
fn a_notifier_key_is_judged_by_its_own_type_at_its_line() {
    let with = |notifier: &str| {
        format!(
            "version: 1\nnotifiers:\n{notifier}profiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        command: {{ argv: [\"true\"] }}\n"
        )
    };
    assert_config_error(
        &with("  n:\n    token: abcdef\n    type: telegram\n    chat_id: 1\n    topic: 3\n"),
        7,
        Some("notifiers.n.topic"),
        "unknown field `topic`, expected one of `type`, `min_severity`, `digest`, `rate_limit`, `token`, `chat_id`, `topic_id`, `api_url`",
    );
    // Before `type:`, the key is judged against every type's keys.
    assert_config_error(
        &with("  n:\n    token: abcdef\n    chat_id: 1\n    topic: 3\n    type: telegram\n"),
        6,
        Some("notifiers.n.topic"),
        "unknown field `topic`, expected one of `type`, `min_severity`, `digest`",
    );
    // A shared key misspelt is offered the shared keys too.
    assert_config_error(
        &with("  n: { type: webhook, url: \"http://127.0.0.1:9/x\", min_sevrity: info }\n"),
        3,
        Some("notifiers.n.min_sevrity"),
        "expected one of `type`, `min_severity`, `digest`, `rate_limit`, `url`, `headers`, `format`, `template`",
    );
    assert_config_error(
        &with(
            "  n:\n    type: webhook\n    url: \"http://127.0.0.1:9/x\"\n    digest: true\n    digest: false\n",
        ),
        7,
        Some("notifiers.n.digest"),
        "duplicate field `digest`",
    );
    assert_config_error(
        &with("  n: { type: stdout, url: \"http://127.0.0.1:9/x\" }\n"),
        3,
        Some("notifiers.n.url"),
        "unknown field `url`, expected one of `type`, `min_severity`, `digest`, `rate_limit`",
    );
}

#[test]
fn flap_windows_clear_levels_and_ranges_are_checked_where_written() {
    let yaml = |rule: &str| {
        format!(
            "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: api\n        http: {{ url: \"http://127.0.0.1:1/\" }}\n        rules:\n          - {rule}\n"
        )
    };
    for (rule, why) in [
        (
            "{ name: a, signal: latency_ms, value: \"> 5\", for: \"6 of 5\" }",
            "`N of M` needs 1 ≤ N ≤ M ≤ 64",
        ),
        (
            "{ name: a, signal: latency_ms, value: \"> 5\", for: \"3 out of 5\" }",
            "\"3 of 5\"",
        ),
        (
            "{ name: a, signal: latency_ms, value: \"> 5\", resolve_after: \"3 of 5\" }",
            "`N of M` goes with `for`",
        ),
        (
            "{ name: a, signal: latency_ms, value: \"> 0.5\", clear: \"< 0.6\" }",
            "it must lie on the healthy side",
        ),
        (
            "{ name: a, signal: latency_ms, value: \"20:10\" }",
            "its start is above its end",
        ),
        (
            "{ name: a, signal: latency_ms, value: \"> 0.5\", clear: \"> 0.6\" }",
            "must look the other way",
        ),
        (
            "{ name: a, signal: latency_ms, value: \"> 0.5\", clear: \"0:0.4\" }",
            "a level written with one",
        ),
        // Review of issue 15: `3d` on a count of days compared 30 with
        // 259200 and fired on a healthy certificate.
        (
            "{ name: a, signal: cert_days_left, value: \"< 3d\" }",
            "`cert_days_left` counts days, and a duration (5m, 3d) is read as seconds",
        ),
        (
            "{ name: a, signal: latency_ms, value: \"> 2s\" }",
            "`latency_ms` counts milliseconds",
        ),
    ] {
        assert_config_error(&yaml(rule), 9, None, why);
    }
}

#[test]
fn every_and_resolve_after_are_refused_at_their_own_key() {
    let yaml = |line: &str| {
        format!(
            "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: api\n        http: {{ url: \"http://127.0.0.1:1/\" }}\n        {line}\n"
        )
    };
    assert_config_error(
        &yaml("every: 0s"),
        8,
        Some("profiles.p.tasks[0].every"),
        "`every` is how long between runs",
    );
    assert_config_error(
        &yaml("resolve_after: \"3 of 5\""),
        8,
        Some("profiles.p.tasks[0].resolve_after"),
        "`N of M` goes with `for`",
    );
}

/// Issue 15: every key of the new probes, and `depends_on`, is refused at
/// its own line and named by its whole path, though some are judged only
/// once the probe's mapping (or the profile) was read whole.
#[test]
fn the_new_probes_keys_are_refused_at_their_own_line() {
    let yaml = |probe: &str, keys: &[&str]| {
        let mut text = format!(
            "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        {probe}:\n"
        );
        for key in keys {
            text.push_str(&format!("          {key}\n"));
        }
        text
    };
    let cases: &[(&str, &[&str], usize, &str, &str)] = &[
        (
            "tcp",
            &["host: 127.0.0.1", "port: 22", "server_name: x"],
            10,
            "tcp.server_name",
            "add `tls: true`",
        ),
        (
            "tcp",
            &["host: 127.0.0.1", "port: 22", "cert_warn_days: 5"],
            10,
            "tcp.cert_warn_days",
            "add `tls: true`",
        ),
        (
            "tcp",
            &["host: \"127.0.0.1:22\"", "port: 22"],
            8,
            "tcp.host",
            "holds a port",
        ),
        (
            "tcp",
            &["host: 127.0.0.256", "port: 22"],
            8,
            "tcp.host",
            "is not an IPv4 address",
        ),
        (
            "tcp",
            &["host: \"127.0.0.1 \"", "port: 22"],
            8,
            "tcp.host",
            "has blanks around it",
        ),
        (
            "tcp",
            &["host: 127.0.0.1", "port: 0"],
            9,
            "tcp.port",
            "port 0",
        ),
        (
            "tcp",
            &["host: 127.0.0.1", "port: 22", "max_read: 0"],
            10,
            "tcp.max_read",
            "reads no answer",
        ),
        (
            "tls",
            &["host: 127.0.0.1", "server_name: \"bad name!\""],
            9,
            "tls.server_name",
            "is not a host name",
        ),
        (
            "tls",
            &[
                "host: 127.0.0.1",
                "cert_warn_days: 2",
                "cert_critical_days: 3",
            ],
            9,
            "tls.cert_warn_days",
            "at least cert_critical_days (3)",
        ),
        (
            "tls",
            &["host: 127.0.0.1", "cert_critical_days: -1"],
            9,
            "tls.cert_critical_days",
            "0 or more",
        ),
        (
            "tls",
            &[
                "host: 127.0.0.1",
                "tls_verify: false",
                "pin_sha256: \"sha256//n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=\"",
            ],
            10,
            "tls.pin_sha256",
            "drop one",
        ),
        (
            "http",
            &["url: http://127.0.0.1:1/", "cert_warn_days: 30"],
            9,
            "http.cert_warn_days",
            "the url is not https",
        ),
        (
            "http",
            &["url: http://127.0.0.1:1/", "ca_file: ca.pem"],
            9,
            "http.ca_file",
            "the url is not https",
        ),
        (
            "http",
            &["url: http://127.0.0.1:1/", "extract:", "  status: /status"],
            10,
            "http.extract.status",
            "would replace the http probe's own",
        ),
        (
            "ping",
            &["host: 127.0.0.1", "count: 500"],
            9,
            "ping.count",
            "count 500 is not 1 to 100",
        ),
        (
            "ping",
            &["host: 127.0.0.1", "interval: 1ms"],
            9,
            "ping.interval",
            "under the least, 10ms",
        ),
        (
            "ping",
            &["host: 127.0.0.1", "count: 40"],
            9,
            "ping.count",
            "more than the task's timeout 30s",
        ),
        (
            "dns",
            &["name: \"a..b\""],
            8,
            "dns.name",
            "is not a domain name",
        ),
        (
            "dns",
            &["name: example.test", "server: resolver"],
            9,
            "dns.server",
            "is not an address",
        ),
        (
            "dns",
            &["name: example.test", "type: SRV"],
            9,
            "dns.type",
            "A, AAAA, CNAME, TXT, MX or NS",
        ),
        (
            "dns",
            &["name: example.test", "expect: [\"::1\"]"],
            9,
            "dns.expect",
            "is not an IPv4 address",
        ),
        (
            "dns",
            &[
                "name: example.test",
                "expect: [127.0.0.1]",
                "contains: [127.0.0.1]",
            ],
            10,
            "dns.contains",
            "not both",
        ),
    ];
    for (probe, keys, line, key, why) in cases {
        assert_config_error(
            &yaml(probe, keys),
            *line,
            Some(&format!("profiles.p.tasks[0].{key}")),
            why,
        );
    }
    let more: &[(&str, &[&str], usize, &str, &str)] = &[
        (
            "ping",
            &["host: \"127.0.0.1:80\""],
            8,
            "ping.host",
            "ICMP has no ports",
        ),
        (
            "tls",
            &["host: 127.0.0.1", "cert_critical_days: 20"],
            9,
            "tls.cert_critical_days",
            "give cert_warn_days too, at least 20",
        ),
        (
            "tls",
            &["host: 127.0.0.1", "tls_verify: false", "ca_file: own.crt"],
            10,
            "tls.ca_file",
            "drop one",
        ),
    ];
    for (probe, keys, line, key, why) in more {
        assert_config_error(
            &yaml(probe, keys),
            *line,
            Some(&format!("profiles.p.tasks[0].{key}")),
            why,
        );
    }
    // A rule's `clear` at its line; an unquoted `!=` is a YAML tag.
    let rule = |lines: &str| {
        format!(
            "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        http: {{ url: \"http://127.0.0.1:1/\", extract: {{ health: /status }} }}\n        rules:\n          - name: r\n{lines}"
        )
    };
    assert_config_error(
        &rule(
            "            signal: latency_ms\n            value: \"> 1\"\n            clear: \"< 2\"\n",
        ),
        12,
        Some("profiles.p.tasks[0].rules[0].clear"),
        "holds at the firing level itself",
    );
    assert_config_error(
        &rule("            signal: health\n            value: != \"healthy\"\n"),
        11,
        Some("profiles.p.tasks[0].rules[0].value"),
        "quote the whole value",
    );
    // `depends_on` is judged across the profile: still at its own line.
    let deps = "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        http: { url: \"http://127.0.0.1:1/\" }\n      - name: b\n        http: { url: \"http://127.0.0.1:1/\" }\n        # the RPC node\n        depends_on: [rpc]\n";
    assert_config_error(
        deps,
        11,
        Some("profiles.p.tasks[1].depends_on"),
        "depends_on `rpc`, which is not a task of this profile (tasks: a, b)",
    );
    // Record types are read in either case, as dig takes them.
    let ws = Workspace::new(&yaml("dns", &["name: example.test", "type: txt"]));
    assert_exit(&ws.command().arg("check-config").output().unwrap(), 0);
}

/// Issue 15: `check-config` reads a `ca_file` (a missing or empty one is
/// refused at its line); a tick whose `ca_file` went missing fails that
/// check only, and the rest of the profile is monitored.
#[test]
fn check_config_reads_the_ca_file_and_a_tick_survives_one_gone() {
    // It accepts and never answers: the probe gets as far as its TLS setup.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let yaml = format!(
        "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        tls:\n          host: 127.0.0.1\n          port: {port}\n          ca_file: certs/ca.pem\n      - name: b\n        command: {{ argv: [\"true\"] }}\n"
    );
    let ws = Workspace::new(&yaml);
    let out = ws.command().arg("check-config").output().unwrap();
    assert_exit(&out, 2);
    let text = error_line(&out);
    let (row, _, message) = locate(&text, &ws.path().join("jobs.yaml"));
    assert_eq!(row, 10, "{text}");
    assert!(
        message.starts_with("profiles.p.tasks[0].tls.ca_file: ")
            && message.contains("certs/ca.pem")
            && message.contains("No such file"),
        "{text}"
    );
    std::fs::create_dir(ws.path().join("certs")).unwrap();
    std::fs::write(ws.path().join("certs/ca.pem"), "not a certificate\n").unwrap();
    let out = ws.command().arg("check-config").output().unwrap();
    assert_exit(&out, 2);
    assert!(
        error_line(&out).contains("holds no PEM certificate"),
        "{}",
        error_line(&out)
    );
    std::fs::remove_file(ws.path().join("certs/ca.pem")).unwrap();
    let out = Tick::new(&ws).at(minute(0)).run("p");
    assert_exit(&out, 1);
    let b = stdout(&out)
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("b"))
        .unwrap_or_default()
        .to_string();
    assert!(
        b.starts_with("  ok"),
        "the other task still runs: {}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("reading ca_file"), "{}", stdout(&out));
}

#[test]
fn a_rule_on_a_signal_its_probes_never_give_is_refused_with_a_suggestion() {
    let yaml = |probe: &str, rule: &str| {
        format!(
            "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        {probe}\n        rules:\n          - name: r\n            {rule}\n            value: \"> 1\"\n"
        )
    };
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "tcp: { host: 127.0.0.1, port: 22 }",
            "signal: conect_ms",
            "signal",
            "did you mean `connect_ms`",
        ),
        (
            "tcp: { host: 127.0.0.1, port: 22 }",
            "signal: cert_days_left",
            "signal",
            "only with `tls: true`",
        ),
        (
            "dns: { name: example.test, server: \"127.0.0.1:1\" }",
            "signal: dns.resolv_ms",
            "signal",
            "did you mean `dns.resolve_ms`",
        ),
        (
            "http: { url: \"http://127.0.0.1:1/\", extract: { close_time: /closeTime } }",
            "signal: age_s(close_tme)",
            "signal",
            "did you mean `close_time`",
        ),
        (
            "ping: { host: 127.0.0.1 }",
            "signal: loss",
            "signal",
            "ping gives up, loss_ratio, replies, rtt_ms, rtt_max_ms",
        ),
    ];
    for (probe, rule, key, why) in cases {
        assert_config_error(
            &yaml(probe, rule),
            10,
            Some(&format!("profiles.p.tasks[0].rules[0].{key}")),
            why,
        );
    }
    // A guard reads signals too.
    let guarded = yaml(
        "tcp: { host: 127.0.0.1, port: 22 }",
        "signal: connect_ms\n            when: [\"upp == 1\"]",
    );
    assert_config_error(
        &guarded,
        11,
        Some("profiles.p.tasks[0].rules[0].when"),
        "did you mean `up`",
    );
    // A ratio is 0 to 1: "> 5" (meant 5 %) would never fire.
    assert_config_error(
        "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        ping: { host: 127.0.0.1 }\n        rules:\n          - name: r\n            signal: loss_ratio\n            value: \"> 5\"\n",
        9,
        Some("profiles.p.tasks[0].rules[0]"),
        "is a ratio from 0 to 1",
    );
    // Written as a flow mapping, the line is still found.
    assert_config_error(
        "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        ping: { host: 127.0.0.1 }\n        rules: [ { name: r, signal: loss_ratoi, value: \"> 0.5\" } ]\n",
        8,
        Some("profiles.p.tasks[0].rules[0].signal"),
        "did you mean `loss_ratio`",
    );
    // A command's perfdata labels or a scrape's series are the target's to
    // name: nothing is refused there.
    for probe in [
        "command: { argv: [echo, ok] }",
        "metrics: { url: \"http://127.0.0.1:1/metrics\" }",
    ] {
        let ws = Workspace::new(&yaml(probe, "signal: anything_at_all"));
        let out = ws.command().arg("check-config").output().unwrap();
        assert_exit(&out, 0);
    }
}

#[test]
fn a_number_out_of_range_is_said_in_words_not_rust_types() {
    let yaml = |probe: &str| {
        format!(
            "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: a\n        {probe}\n"
        )
    };
    let cases = [
        (
            "tcp: { host: 127.0.0.1, port: 99999 }",
            "tcp.port",
            "a whole number from 0 to 65535",
        ),
        (
            "ping: { host: 127.0.0.1, count: 2.5 }",
            "ping.count",
            "a whole number from 0 to 4294967295",
        ),
        (
            "tls: { host: 127.0.0.1, cert_warn_days: soon }",
            "tls.cert_warn_days",
            "expected a number",
        ),
        ("tcp: 127.0.0.1:80", "tcp", "expected a mapping of keys"),
    ];
    for (probe, key, why) in cases {
        assert_config_error(
            &yaml(probe),
            7,
            Some(&format!("profiles.p.tasks[0].{key}")),
            why,
        );
    }
}

#[test]
fn a_name_out_of_ascii_says_which_character() {
    let yaml = r#"version: 1
profiles:
  p:
    cron: "* * * * *"
    tasks:
      - name: prover-é
        command: { argv: ["true"] }
"#;
    assert_config_error(
        yaml,
        6,
        Some("profiles.p.tasks[0]"),
        "task name \"prover-é\" must be ASCII letters, digits, `_`, `-` or `.` (it names files, crontab lines and URLs): 'é' is not one of them",
    );
}
