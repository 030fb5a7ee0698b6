//! The `process` and `disk` probes end to end: real child processes found
//! by pattern and pidfile, real mounts and folders, the real binary.

use crate::common::*;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A marker unique to this test run, for a child's command line.
fn marker(name: &str) -> String {
    format!("monitor-test-{}-{name}", std::process::id())
}

/// A child that waits on its stdin with `marker` ending its command line
/// (`sh -c SCRIPT MARKER` makes MARKER its `$0`). Returns once the child
/// has exec'd, so /proc shows the marker.
struct Marked {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Marked {
    fn spawn(marker: &str, script: &str) -> Marked {
        let mut child = Command::new("sh")
            .args(["-c", script, marker])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n", "the child started");
        Marked { child, stdout }
    }

    /// A child that does nothing but wait.
    fn idle(marker: &str) -> Marked {
        Marked::spawn(marker, "echo ready; read x")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a line and waits for the child's answer.
    fn ask(&mut self, answer: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), answer);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One tick at minute `n` with JSON output.
fn tick(ws: &Workspace, n: i64) -> (Output, Value) {
    let out = ws.run_at(minute(n), "p", &["--format", "json"]);
    let json = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- stdout\n{}\n--- stderr\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out, json)
}

fn task<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {json:#}"))
}

fn signal(json: &Value, task_name: &str, name: &str) -> Option<f64> {
    task(json, task_name)["signals"][name].as_f64()
}

/// (status, summary) of the task's only check.
fn check(json: &Value, task_name: &str) -> (String, String) {
    let checks = task(json, task_name)["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    (
        checks[0]["status"].as_str().unwrap().to_string(),
        checks[0]["summary"].as_str().unwrap().to_string(),
    )
}

/// The text of every notification of the tick.
fn sent(json: &Value) -> Vec<String> {
    json["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// (verdict, status) of one rule of a task.
fn rule(json: &Value, task_name: &str, rule: &str) -> (String, String) {
    let rules = task(json, task_name)["rules"].as_array().unwrap();
    let found = rules
        .iter()
        .find(|r| r["rule"] == rule)
        .unwrap_or_else(|| panic!("no rule {rule} in {rules:?}"));
    (
        found["verdict"].as_str().unwrap().to_string(),
        found["status"].as_str().unwrap().to_string(),
    )
}

// ---------------------------------------------------------------- process

#[test]
fn a_child_is_found_by_pattern_and_by_pidfile_until_it_is_killed() {
    let name = marker("found");
    let mut child = Marked::idle(&name);
    let ws = Workspace::new("");
    let pidfile = ws.path().join("child.pid");
    std::fs::write(&pidfile, format!("{}\n", child.pid())).unwrap();
    ws.write_config(&profile_p(&format!(
        "      - name: by-pattern\n        process: {{ pattern: \"{name}$\" }}\n      - name: by-pidfile\n        process: {{ pidfile: \"{}\" }}\n",
        pidfile.display()
    )));

    let (out, json) = tick(&ws, 0);
    assert_exit(&out, 0);
    let pid = f64::from(child.pid());
    for name in ["by-pattern", "by-pidfile"] {
        assert_eq!(signal(&json, name, "up"), Some(1.0), "{name}");
        assert_eq!(signal(&json, name, "process.up"), Some(1.0), "{name}");
        assert_eq!(signal(&json, name, "pid"), Some(pid), "{name}");
        assert_eq!(signal(&json, name, "processes"), Some(1.0), "{name}");
        assert!(signal(&json, name, "rss_bytes").unwrap() > 0.0, "{name}");
        assert!(signal(&json, name, "open_fds").unwrap() >= 3.0, "{name}");
        let ratio = signal(&json, name, "fds_ratio").unwrap();
        assert!(ratio > 0.0 && ratio < 1.0, "{name}: {ratio}");
        assert!(signal(&json, name, "uptime_s").unwrap() >= 0.0, "{name}");
        assert_eq!(
            signal(&json, name, "restarted"),
            None,
            "{name}: first sight"
        );
        let (status, summary) = check(&json, name);
        assert_eq!(status, "ok");
        assert!(
            summary.starts_with(&format!("pid {} up ", child.pid())) && summary.contains(", RSS "),
            "{summary}"
        );
    }

    let dead = child.pid();
    child.kill();
    let (out, json) = tick(&ws, 1);
    assert_exit(&out, 1);
    assert_eq!(signal(&json, "by-pattern", "up"), Some(0.0));
    assert_eq!(signal(&json, "by-pidfile", "up"), Some(0.0));
    assert_eq!(
        check(&json, "by-pattern"),
        (
            "critical".to_string(),
            format!("no process matches /{name}$/")
        )
    );
    assert_eq!(
        check(&json, "by-pidfile"),
        (
            "critical".to_string(),
            format!(
                "pidfile {} names pid {dead} which is not running",
                pidfile.display()
            )
        )
    );
    let texts = sent(&json);
    assert!(
        texts.iter().any(
            |t| t.starts_with("[test-host] FIRING critical p/by-pattern/health")
                && t.contains(&format!("no process matches /{name}$/"))
        ),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(
            |t| t.starts_with("[test-host] FIRING critical p/by-pidfile/health")
                && t.contains("which is not running")
        ),
        "{texts:?}"
    );
}

#[test]
fn a_new_process_counts_as_restarted_once_and_resets_rss_growth() {
    let name = marker("restart");
    let mut first = Marked::idle(&name);
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: proc\n        process: {{ pattern: \"{name}$\" }}\n"
    )));

    let (out, json) = tick(&ws, 0);
    assert_exit(&out, 0);
    assert_eq!(signal(&json, "proc", "restarted"), None, "first sight");
    assert_eq!(
        signal(&json, "proc", "rss_growth_bytes"),
        None,
        "first sight"
    );

    let (_, json) = tick(&ws, 1);
    assert_eq!(signal(&json, "proc", "restarted"), Some(0.0), "same run");
    assert!(
        signal(&json, "proc", "rss_growth_bytes").is_some(),
        "same run"
    );

    first.kill();
    let (out, json) = tick(&ws, 2);
    assert_exit(&out, 1);
    assert_eq!(signal(&json, "proc", "up"), Some(0.0));
    assert_eq!(
        signal(&json, "proc", "restarted"),
        None,
        "nothing to compare"
    );

    let second = Marked::idle(&name);
    let (out, json) = tick(&ws, 3);
    assert_exit(&out, 0);
    assert_eq!(signal(&json, "proc", "pid"), Some(f64::from(second.pid())));
    assert_eq!(
        signal(&json, "proc", "restarted"),
        Some(1.0),
        "a new identity"
    );
    assert_eq!(
        signal(&json, "proc", "rss_growth_bytes"),
        None,
        "no growth across a restart"
    );

    let (out, json) = tick(&ws, 4);
    assert_exit(&out, 0);
    assert_eq!(signal(&json, "proc", "restarted"), Some(0.0));
    assert!(signal(&json, "proc", "rss_growth_bytes").is_some());
}

#[test]
fn memory_allocated_between_ticks_shows_as_rss_growth() {
    let name = marker("grows");
    // On "go", the shell keeps a 40 MB string in a variable.
    let mut child = Marked::spawn(
        &name,
        "echo ready; read x; big=$(head -c 40000000 /dev/zero | tr '\\0' a); echo grown; read x",
    );
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: proc\n        process: {{ pattern: \"{name}$\" }}\n"
    )));
    let (out, json) = tick(&ws, 0);
    assert_exit(&out, 0);
    let before = signal(&json, "proc", "rss_bytes").unwrap();

    child.ask("grown");
    let (out, json) = tick(&ws, 1);
    assert_exit(&out, 0);
    let after = signal(&json, "proc", "rss_bytes").unwrap();
    let growth = signal(&json, "proc", "rss_growth_bytes").unwrap();
    assert_eq!(growth, after - before);
    assert!(growth > 30e6, "grew by {growth} bytes only");
}

#[test]
fn rss_rules_fire_above_a_tiny_limit_and_stay_clear_below_a_huge_one() {
    let name = marker("rules");
    let _child = Marked::idle(&name);
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: proc\n        process: {{ pattern: \"{name}$\" }}\n        rules:\n          - {{ name: huge, signal: rss_bytes, value: \"> 1GiB\" }}\n          - {{ name: tiny, signal: rss_bytes, value: \"> 1KiB\" }}\n"
    )));
    let (out, json) = tick(&ws, 0);
    assert_exit(&out, 1);
    assert_eq!(
        rule(&json, "proc", "huge"),
        ("clear".to_string(), "ok".to_string())
    );
    assert_eq!(
        rule(&json, "proc", "tiny"),
        ("breach".to_string(), "firing".to_string())
    );
    let texts = sent(&json);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].starts_with("[test-host] FIRING critical p/proc/tiny: rss_bytes = "),
        "{texts:?}"
    );
}

#[test]
fn a_systemd_unit_without_systemctl_fails_naming_the_unit() {
    let ws = Workspace::new(&profile_p(
        "      - name: unit\n        process: { systemd: monitor-test.service }\n",
    ));
    let empty = tempfile::tempdir().unwrap();
    let out = ws
        .command()
        .env("MONITOR_NOW", minute(0).to_string())
        .env("PATH", empty.path())
        .args(["run", "p", "--format", "json"])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let (status, summary) = check(&json, "unit");
    assert_eq!(status, "failed");
    assert!(
        summary.starts_with("cannot run systemctl for unit monitor-test.service: "),
        "{summary}"
    );
    assert_eq!(signal(&json, "unit", "up"), None, "no data, not down");
}

// ---------------------------------------------------------------- disk

#[test]
fn root_mount_reports_usage_and_limits_no_machine_can_meet_fire() {
    let ws = Workspace::new(&profile_p(concat!(
        "      - name: root\n        disk: { path: / }\n",
        "      - name: roomy\n        disk: { path: /, min_free: 1KiB, max_used: \"100%\" }\n",
        "      - name: no-room\n        disk: { path: /, min_free: 1000TiB }\n",
        "      - name: never-empty\n        disk: { path: /, max_used: \"0%\" }\n",
    )));
    let (out, json) = tick(&ws, 0);
    assert_exit(&out, 1);
    let ratio = signal(&json, "root", "used_ratio").unwrap();
    assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
    let free = signal(&json, "root", "free_bytes").unwrap();
    let total = signal(&json, "root", "total_bytes").unwrap();
    assert!(free > 0.0 && free < total, "{free} of {total}");
    assert_eq!(signal(&json, "root", "disk.used_ratio"), Some(ratio));
    let (status, summary) = check(&json, "root");
    assert_eq!(status, "ok");
    assert!(
        summary.starts_with("/: ") && summary.contains("% used, ") && summary.ends_with(" free"),
        "{summary}"
    );
    assert_eq!(check(&json, "roomy").0, "ok");

    let (status, summary) = check(&json, "no-room");
    assert_eq!(status, "critical");
    assert!(
        summary.contains("free is under the 1000 TiB minimum"),
        "{summary}"
    );
    let (status, summary) = check(&json, "never-empty");
    assert_eq!(status, "critical");
    assert!(summary.contains("used is over the 0% limit"), "{summary}");

    let mut failing: Vec<String> = sent(&json)
        .iter()
        .filter(|t| t.starts_with("[test-host] FIRING critical p/"))
        .map(|t| t.split(':').next().unwrap().to_string())
        .collect();
    failing.sort();
    assert_eq!(
        failing,
        [
            "[test-host] FIRING critical p/never-empty/health",
            "[test-host] FIRING critical p/no-room/health"
        ]
    );
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("a.log"), vec![b'a'; 1000]).unwrap();
    std::fs::write(root.join("sub/b.log"), vec![b'b'; 2345]).unwrap();
    std::fs::write(root.join("sub/deeper/c.log"), vec![b'c'; 17]).unwrap();
}

#[test]
fn a_folder_size_is_exact_and_max_size_fires() {
    let data = tempfile::tempdir().unwrap();
    write_tree(data.path());
    // Symlinks are not followed: neither the big file nor the folder counts.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("big"), vec![0u8; 1_000_000]).unwrap();
    std::os::unix::fs::symlink(outside.path().join("big"), data.path().join("big-link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), data.path().join("dir-link")).unwrap();
    let dir = data.path().display();
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: fits\n        disk: {{ dir: \"{dir}\", max_size: 4KiB }}\n      - name: too-big\n        disk: {{ dir: \"{dir}\", max_size: 3000 }}\n"
    )));
    let (out, json) = tick(&ws, 0);
    assert_exit(&out, 1);
    assert_eq!(signal(&json, "fits", "dir_bytes"), Some(3362.0));
    assert_eq!(signal(&json, "fits", "disk.dir_bytes"), Some(3362.0));
    assert_eq!(
        check(&json, "fits"),
        ("ok".to_string(), format!("{dir}: 3.3 KiB in 3 files"))
    );
    assert_eq!(
        check(&json, "too-big"),
        (
            "critical".to_string(),
            format!("{dir}: 3.3 KiB in 3 files, over the 2.9 KiB limit")
        )
    );
    let texts = sent(&json);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].starts_with("[test-host] FIRING critical p/too-big/health"),
        "{texts:?}"
    );
}

#[test]
fn a_walk_that_runs_out_of_time_fails_without_a_size() {
    // Enough entries that a 1 ms budget cannot cover them.
    let data = tempfile::tempdir().unwrap();
    for d in 0..20 {
        let sub = data.path().join(format!("d{d}"));
        std::fs::create_dir(&sub).unwrap();
        for f in 0..100 {
            std::fs::write(sub.join(format!("f{f}")), "x").unwrap();
        }
    }
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: walk\n        timeout: 1ms\n        disk: {{ dir: \"{}\" }}\n",
        data.path().display()
    )));
    let started = Instant::now();
    let (out, json) = tick(&ws, 0);
    assert_exit(&out, 1);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(signal(&json, "walk", "dir_bytes"), None);
    let checks = task(&json, "walk")["checks"].as_array().unwrap();
    let summary = checks[0]["summary"].as_str().unwrap();
    assert_eq!(checks[0]["status"], "failed", "{summary}");
    let expected = format!(
        "walk of {} did not finish within 1ms (",
        data.path().display()
    );
    assert!(summary.starts_with(&expected), "{summary}");
}
