//! `depends_on` and `every:` over real ticks at pinned times: real command
//! checks whose health the test flips with files, a real restart command,
//! a real SQLite history.

use crate::common::*;

/// A command check that fails (CRITICAL) while `file` is missing.
fn check(file: &str) -> String {
    format!("command: {{ argv: [\"/bin/sh\", \"-c\", \"test -e {file} || exit 2\"], cwd: . }}")
}

/// How many lines `file` holds (0 when it is not there): restarts run.
fn lines_in(file: &std::path::Path) -> usize {
    std::fs::read_to_string(file)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// (task, rule, status) of every history row, oldest first, with the
/// minute of the tick that wrote it.
fn rows(ws: &Workspace) -> Vec<(String, String, String)> {
    ws.history()
        .into_iter()
        .map(|h| (h.task, h.rule, h.status))
        .collect()
}

#[test]
fn a_dependents_alerts_and_restarts_wait_while_its_dependency_fails() {
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: rpc\n        {}\n\
         \x20     - name: sync\n        {}\n        depends_on: [rpc]\n        remediate: {{ command: {{ argv: [\"/bin/sh\", \"-c\", \"echo restarted >> restarts; touch sync_ok\"], cwd: . }} }}\n",
        check("rpc_up"),
        check("sync_ok"),
    )));
    let touch = |f: &str| std::fs::write(ws.path().join(f), "").unwrap();
    let remove = |f: &str| std::fs::remove_file(ws.path().join(f)).unwrap();
    let restarts = || lines_in(&ws.path().join("restarts"));
    touch("rpc_up");
    touch("sync_ok");
    assert_exit(&Tick::new(&ws).at(minute(0)).run("p"), 0);
    // The RPC node dies, and the sync check fails with it.
    remove("rpc_up");
    remove("sync_ok");
    let out = Tick::new(&ws).at(minute(1)).run("p");
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("held: depends on rpc, which is failing"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        rows(&ws),
        [("rpc".into(), "health".into(), "firing".into())]
    );
    assert_eq!(restarts(), 0, "no restart while its dependency fails");
    // The held breach is said, in text and in JSON alike.
    assert!(
        stdout(&out).contains("└ health breaching (held): held: depends on rpc, which is failing; now: command CRITICAL"),
        "{}",
        stdout(&out)
    );
    let json = Tick::new(&ws)
        .at(minute(1) + 10)
        .arg("--dry-run")
        .arg("--format")
        .arg("json")
        .run("p");
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let sync = json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "sync")
        .unwrap();
    let health = &sync["rules"][0];
    assert_eq!(
        (
            health["rule"].as_str(),
            health["verdict"].as_str(),
            health["held"].as_bool(),
            health["status"].as_str(),
            health["severity"].as_str()
        ),
        (
            Some("health"),
            Some("held"),
            Some(true),
            Some("breaching"),
            Some("critical")
        ),
        "{sync}"
    );
    let sync = stdout(&out)
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("sync"))
        .unwrap_or_default()
        .to_string();
    assert!(
        !sync.starts_with("  ok"),
        "a failing task held is not ok: {}",
        stdout(&out)
    );
    // Asked alone, it still says it fails.
    let alone = Tick::new(&ws)
        .at(minute(1) + 30)
        .arg("--task")
        .arg("sync")
        .run("p");
    assert_exit(&alone, 1);
    assert_eq!(restarts(), 0);
    Tick::new(&ws).at(minute(2)).run("p");
    assert_eq!(rows(&ws).len(), 1, "still held on the second tick");
    assert_eq!(restarts(), 0);
    // The RPC comes back; sync is still broken: now it is judged.
    touch("rpc_up");
    let out = Tick::new(&ws).at(minute(3)).run("p");
    let after: Vec<_> = rows(&ws).into_iter().skip(1).collect();
    assert!(
        after.contains(&("rpc".into(), "health".into(), "resolved".into()))
            && after.contains(&("sync".into(), "health".into(), "firing".into())),
        "{after:?}\n{}",
        stdout(&out)
    );
    assert_eq!(restarts(), 1, "judged again, restarted: {}", stdout(&out));
    // The restart fixed it (its command made sync_ok).
    Tick::new(&ws).at(minute(4)).run("p");
    assert_eq!(
        rows(&ws).last().unwrap(),
        &("sync".into(), "health".into(), "resolved".into())
    );
}

#[test]
fn every_runs_a_task_only_when_due_and_holds_its_alert_between_runs() {
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: cert\n        every: 5m\n        {}\n\
         \x20     - name: web\n        {}\n",
        check("cert_ok"),
        check("web_ok"),
    )));
    let touch = |f: &str| std::fs::write(ws.path().join(f), "").unwrap();
    touch("web_ok");
    let runs_of_cert = |out: &std::process::Output| {
        stdout(out)
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("cert"))
    };
    // Minute 0: due (never ran), failing: fires.
    let out = Tick::new(&ws).at(minute(0)).run("p");
    assert!(runs_of_cert(&out));
    assert_exit(&out, 1);
    touch("cert_ok");
    // Minutes 1–4: not due; the alert holds (not resolved, not retired)
    // and the tick still says it is firing.
    for m in 1..5 {
        let out = Tick::new(&ws).at(minute(m)).run("p");
        assert!(!runs_of_cert(&out), "minute {m}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("cert (next at") && stdout(&out).contains("still firing: health"),
            "{}",
            stdout(&out)
        );
        assert_exit(&out, 1);
    }
    assert_eq!(
        rows(&ws),
        [("cert".into(), "health".into(), "firing".into())]
    );
    // Minute 5: due again; now fine: resolves on this tick.
    let out = Tick::new(&ws).at(minute(5)).run("p");
    assert!(runs_of_cert(&out));
    assert_eq!(
        rows(&ws).last().unwrap(),
        &("cert".into(), "health".into(), "resolved".into())
    );
    assert_exit(&out, 0);
    // `--task cert` runs it whenever asked.
    let out = Tick::new(&ws)
        .at(minute(6))
        .arg("--task")
        .arg("cert")
        .run("p");
    assert!(runs_of_cert(&out), "{}", stdout(&out));
}

#[test]
fn depends_on_names_tasks_of_the_profile_and_no_circle() {
    for (tasks, why) in [
        (
            "      - name: a\n        command: { argv: [\"true\"] }\n        depends_on: [b]\n",
            "depends_on `b`, which is not a task of this profile",
        ),
        (
            "      - name: a\n        command: { argv: [\"true\"] }\n        depends_on: [a]\n",
            "depends_on itself",
        ),
        (
            "      - name: a\n        command: { argv: [\"true\"] }\n        depends_on: [b]\n      - name: b\n        command: { argv: [\"true\"] }\n        depends_on: [a]\n",
            "depends_on goes in a circle: a → b → a",
        ),
        (
            "      - name: a\n        command: { argv: [\"true\"] }\n        every: 0s\n",
            "`every` is how long between runs",
        ),
    ] {
        let ws = Workspace::new(&profile_p(tasks));
        let out = ws.command().arg("check-config").output().unwrap();
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        assert!(stderr(&out).contains("jobs.yaml:"), "{}", stderr(&out));
    }
}

/// Review of issue 15: after a restart, `for: "3 of 5"` counts three new
/// breaching ticks before the next one, as `for: 3` does.
#[test]
fn three_of_five_counts_anew_after_a_restart() {
    let ws = Workspace::new("");
    let log = ws.path().join("restarts");
    ws.write_config(&profile_p(&format!(
        "      - name: app\n        for: \"3 of 5\"\n        {}\n        remediate:\n          restart:\n            stop: {{ command: \"true\" }}\n            start: {{ command: \"echo r >> {}\" }}\n            wait_healthy: 1s\n          cooldown: 1m\n",
        check("app_ok"),
        log.display()
    )));
    let restarts = || lines_in(&log);
    let mut seen = Vec::new();
    for m in 0..8 {
        Tick::new(&ws).at(minute(m)).run("p");
        seen.push(restarts());
    }
    // Fires and restarts on the third failing tick (2); then three new
    // failing ticks (3, 4, 5) before the next (5); and again at 8 = never
    // within these ticks but 5+3.
    assert_eq!(seen, [0, 0, 1, 1, 1, 2, 2, 2], "restarts after each tick");
}

/// Review of issue 15: under `for: "3 of 5"` one failing tick is pending
/// (exit 1, PEND), but the healthy ticks after it are healthy (exit 0),
/// though the window still remembers the blip: two more failures within
/// the five ticks fire it.
#[test]
fn one_blip_under_three_of_five_is_healthy_on_the_next_tick() {
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: app\n        for: \"3 of 5\"\n        {}\n",
        check("app_ok")
    )));
    let touch = || std::fs::write(ws.path().join("app_ok"), "").unwrap();
    let remove = || std::fs::remove_file(ws.path().join("app_ok")).unwrap();
    touch();
    assert_exit(&Tick::new(&ws).at(minute(0)).run("p"), 0);
    remove();
    let blip = Tick::new(&ws).at(minute(1)).run("p");
    assert_exit(&blip, 1);
    assert!(stdout(&blip).contains("PEND"), "{}", stdout(&blip));
    touch();
    let next = Tick::new(&ws).at(minute(2)).run("p");
    assert_exit(&next, 0);
    assert!(!stdout(&next).contains("PEND"), "{}", stdout(&next));
    assert_exit(&Tick::new(&ws).at(minute(3)).run("p"), 0);
    // Failures at 4 and 5: with 1 they are three within five ticks.
    remove();
    assert_exit(&Tick::new(&ws).at(minute(4)).run("p"), 1);
    let fired = Tick::new(&ws).at(minute(5)).run("p");
    assert_exit(&fired, 1);
    assert!(
        rows(&ws).contains(&("app".into(), "health".into(), "firing".into())),
        "{:?}",
        rows(&ws)
    );
}

/// Review of issue 15: a dependency fails by its rules too, not only by
/// a failed probe. The RPC answers, but its ledger is 40 s old: its
/// critical `behind` alert fires, so the dependent's alerts and restarts
/// wait. A warning-level rule of the dependency holds nothing.
#[test]
fn a_dependency_failing_by_a_critical_rule_holds_its_dependents() {
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: rpc\n        command: {{ argv: [\"/bin/sh\", \"-c\", \"echo \\\"OK | age=$(cat age) slow=$(cat slow)\\\"\"], cwd: . }}\n\
         \x20       rules:\n          - {{ name: behind, signal: age, value: \"> 30\", severity: critical }}\n\
         \x20         - {{ name: sluggish, signal: slow, value: \"> 1\", severity: warning }}\n\
         \x20     - name: sync\n        {}\n        depends_on: [rpc]\n        remediate: {{ command: {{ argv: [\"/bin/sh\", \"-c\", \"echo restarted >> restarts; touch sync_ok\"], cwd: . }} }}\n",
        check("sync_ok"),
    )));
    let write = |f: &str, text: &str| std::fs::write(ws.path().join(f), text).unwrap();
    let restarts = || lines_in(&ws.path().join("restarts"));
    write("age", "5");
    write("slow", "0");
    write("sync_ok", "");
    assert_exit(&Tick::new(&ws).at(minute(0)).run("p"), 0);
    // The ledger stalls; the sync check fails with it.
    write("age", "40");
    std::fs::remove_file(ws.path().join("sync_ok")).unwrap();
    let out = Tick::new(&ws).at(minute(1)).run("p");
    assert!(
        stdout(&out).contains("held: depends on rpc, which is failing"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        rows(&ws),
        [("rpc".into(), "behind".into(), "firing".into())],
        "{}",
        stdout(&out)
    );
    assert_eq!(restarts(), 0, "no restart while rpc is behind");
    // The ledger catches up, but the RPC is slow (a warning): sync is
    // judged, fires and is restarted.
    write("age", "5");
    write("slow", "3");
    let out = Tick::new(&ws).at(minute(2)).run("p");
    let now: Vec<_> = rows(&ws).into_iter().skip(1).collect();
    assert!(
        now.contains(&("rpc".into(), "sluggish".into(), "firing".into()))
            && now.contains(&("sync".into(), "health".into(), "firing".into())),
        "{now:?}\n{}",
        stdout(&out)
    );
    assert_eq!(restarts(), 1, "{}", stdout(&out));
}

/// Stranger review of issue 15: a chain of `depends_on` holds all the
/// way down. The RPC dies; horizon (which reads it) answers but its error
/// ratio breaches, held; leaf (which reads horizon) fails too, and is
/// held as well, not paged.
#[test]
fn a_chain_of_dependencies_holds_every_task_below_the_failing_one() {
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: rpc\n        {}\n\
         \x20     - name: horizon\n        command: {{ argv: [\"/bin/sh\", \"-c\", \"echo \\\"OK | errors=$(cat errors)\\\"\"], cwd: . }}\n\
         \x20       depends_on: [rpc]\n\
         \x20       rules:\n          - {{ name: errors, signal: errors, value: \"> 0.5\", severity: critical }}\n\
         \x20     - name: leaf\n        {}\n        depends_on: [horizon]\n",
        check("rpc_up"),
        check("leaf_ok"),
    )));
    let write = |f: &str, text: &str| std::fs::write(ws.path().join(f), text).unwrap();
    write("rpc_up", "");
    write("leaf_ok", "");
    write("errors", "0.1");
    assert_exit(&Tick::new(&ws).at(minute(0)).run("p"), 0);
    std::fs::remove_file(ws.path().join("rpc_up")).unwrap();
    std::fs::remove_file(ws.path().join("leaf_ok")).unwrap();
    write("errors", "0.9");
    for at in [minute(1), minute(2)] {
        let out = Tick::new(&ws).at(at).run("p");
        assert_eq!(
            rows(&ws),
            [("rpc".into(), "health".into(), "firing".into())],
            "only the RPC pages: {}",
            stdout(&out)
        );
        assert!(
            stdout(&out).contains("held: depends on horizon, which is failing"),
            "{}",
            stdout(&out)
        );
    }
    // The RPC comes back: both are judged again.
    write("rpc_up", "");
    let out = Tick::new(&ws).at(minute(3)).run("p");
    let fired: Vec<String> = rows(&ws)
        .into_iter()
        .filter(|(_, _, s)| s == "firing")
        .map(|(task, rule, _)| format!("{task}/{rule}"))
        .collect();
    assert!(
        fired.contains(&"horizon/errors".to_string()),
        "{fired:?}\n{}",
        stdout(&out)
    );
}

/// Stranger review of issue 15: a dependency at WARNING (a plugin's exit
/// 1, a certificate in its warning window) is not failing: its
/// dependents' alerts are not held.
#[test]
fn a_dependency_only_at_warning_holds_nothing() {
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: front\n        command: {{ argv: [\"/bin/sh\", \"-c\", \"echo 'WARNING - degraded'; exit 1\"] }}\n\
         \x20     - name: backend\n        {}\n        depends_on: [front]\n",
        check("backend_ok"),
    )));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    assert!(
        rows(&ws).contains(&("backend".into(), "health".into(), "firing".into())),
        "{:?}\n{}",
        rows(&ws),
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("held: depends on front"),
        "{}",
        stdout(&out)
    );
}
