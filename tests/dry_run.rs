//! `--dry-run`: checks run and rules are evaluated, but nothing is sent and
//! not one byte under the state folder changes (it is not even created).

use crate::common::*;

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn config(hook: &str, flag: &Path) -> String {
    format!(
        r#"version: 1
host: test-host
notifiers:
  console: {{ type: stdout }}
  hook: {{ type: webhook, url: "{hook}" }}
defaults: {{ cooldown: 5m }}
profiles:
  p:
    cron: "* * * * *"
    announce: false
    notify: [console, hook]
    tasks:
      - name: disk
        command: {{ argv: ["sh", "-c", "if [ -e '{flag}' ]; then echo 'OK - fine'; else echo 'CRITICAL - disk full | used=99'; exit 2; fi"] }}
      - name: quiet
        command: {{ argv: "echo 'OK - nothing to see'", shell: true }}
"#,
        flag = flag.display()
    )
}

/// Every entry under `dir`: relative path → (kind, size, mtime in ns, mode,
/// SHA-256 of the content).
type Snapshot = BTreeMap<String, (char, u64, i128, u32, String)>;

fn snapshot(dir: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.insert(relative, ('d', 0, mtime, meta.mode(), String::new()));
                walk(root, &path, out);
            } else {
                let hash = format!("{:x}", Sha256::digest(std::fs::read(&path).unwrap()));
                out.insert(relative, ('f', meta.len(), mtime, meta.mode(), hash));
            }
        }
    }
    let mut out = Snapshot::new();
    let meta = std::fs::metadata(dir).unwrap();
    let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    out.insert(".".into(), ('d', 0, mtime, meta.mode(), String::new()));
    walk(dir, dir, &mut out);
    out
}

#[track_caller]
fn assert_same(before: &Snapshot, after: &Snapshot) {
    if before == after {
        return;
    }
    let mut diff = Vec::new();
    for (path, entry) in before {
        match after.get(path) {
            None => diff.push(format!("removed {path}")),
            Some(other) if other != entry => {
                diff.push(format!("changed {path}: {entry:?} -> {other:?}"))
            }
            _ => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diff.push(format!("created {path}"));
    }
    panic!("--dry-run changed the state folder:\n{}", diff.join("\n"));
}

struct Setup {
    hook: TestServer,
    ws: Workspace,
    flag_dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let hook = TestServer::start(Reply::status(200));
        let flag_dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(&config(&hook.url("/hook"), &flag_dir.path().join("flag")));
        Setup { hook, ws, flag_dir }
    }

    fn state(&self) -> std::path::PathBuf {
        self.ws.path().join("state")
    }

    fn set_healthy(&self, healthy: bool) {
        let flag = self.flag_dir.path().join("flag");
        if healthy {
            std::fs::write(flag, "").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// Two real ticks while the webhook answers 503: a firing alert and
    /// undelivered outbox rows for `hook`.
    fn with_firing_alert_and_undelivered_outbox(self) -> Setup {
        self.hook.set(Reply::status(503));
        self.set_healthy(false);
        assert_exit(&self.ws.run_at(minute(0), "p", &[]), 1);
        assert_exit(&self.ws.run_at(minute(1), "p", &[]), 1);
        assert_eq!(
            self.ws
                .count("SELECT count(*) FROM alert_state WHERE status = 'firing'"),
            1
        );
        assert_eq!(
            self.ws.count("SELECT count(*) FROM outbox WHERE notifier = 'hook' AND delivered_at IS NULL AND attempts > 0"),
            1,
            "an undelivered webhook message"
        );
        assert!(
            !self.hook.requests().is_empty(),
            "the real ticks tried the webhook"
        );
        self.hook.clear();
        self.hook.set(Reply::status(200));
        self
    }
}

#[test]
fn dry_run_on_a_fresh_workspace_prints_what_it_would_send_and_creates_nothing() {
    let s = Setup::new();
    let out = s.ws.run_at(minute(0), "p", &["--dry-run"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.starts_with("DRY RUN"), "{text}");
    assert!(
        text.contains("CRITICAL - disk full"),
        "the check ran: {text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("would send to hook: ")
            && l.contains("FIRING critical p/disk/health")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("would send to console: ")),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("sent to ") || l.starts_with("NOT sent to ")),
        "{text}"
    );
    assert!(
        s.hook.requests().is_empty(),
        "the webhook received {:?}",
        s.hook.requests()
    );
    assert!(
        !s.state().exists(),
        "--dry-run created {}",
        s.state().display()
    );
    let entries: Vec<_> = std::fs::read_dir(s.ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["jobs.yaml"], "nothing beside jobs.yaml");
}

#[test]
fn dry_run_json_marks_would_send_and_stores_nothing() {
    let s = Setup::new();
    let out =
        s.ws.run_at(minute(0), "p", &["--dry-run", "--format", "json"]);
    assert_exit(&out, 1);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["dry_run"], true);
    // (Today the result is nested: `"result": {"result": "would_send"}`.)
    let results: Vec<&str> = json["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["result"]
                .as_str()
                .or(n["result"]["result"].as_str())
                .unwrap_or("?")
        })
        .collect();
    assert!(
        !results.is_empty() && results.iter().all(|r| *r == "would_send"),
        "{results:?}"
    );
    assert!(s.hook.requests().is_empty());
    assert!(!s.state().exists());
}

#[test]
fn dry_run_changes_nothing_in_an_existing_state_folder_and_sends_nothing() {
    let s = Setup::new().with_firing_alert_and_undelivered_outbox();
    let runs = s.ws.count("SELECT count(*) FROM runs");
    let before = snapshot(&s.state());
    // Past the 5 m cooldown and the retry time: a real tick would remind
    // and re-send; the dry run only says so.
    let out = s.ws.run_at(minute(10), "p", &["--dry-run"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.starts_with("DRY RUN"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("would send to hook: ") && l.contains("p/disk/health")),
        "{text}"
    );
    assert_same(&before, &snapshot(&s.state()));
    assert!(
        s.hook.requests().is_empty(),
        "the webhook received {:?}",
        s.hook.requests()
    );

    // A healthy dry run would resolve — and still stores and sends nothing.
    s.set_healthy(true);
    let out = s.ws.run_at(minute(11), "p", &["--dry-run"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("RESOLVED"), "{}", stdout(&out));
    assert_same(&before, &snapshot(&s.state()));
    assert!(
        s.hook.requests().is_empty(),
        "the webhook received {:?}",
        s.hook.requests()
    );

    // The real tick afterwards sees the state the dry runs left alone.
    assert_eq!(s.ws.count("SELECT count(*) FROM runs"), runs);
    assert_eq!(
        s.ws.count("SELECT count(*) FROM alert_state WHERE status = 'firing'"),
        1
    );
    let out = s.ws.run_at(minute(12), "p", &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("RESOLVED"), "{}", stdout(&out));
    assert!(!s.hook.requests().is_empty(), "the real tick delivers");
}

#[test]
fn dry_run_with_a_pending_wal_reads_it_and_changes_nothing() {
    let s = Setup::new().with_firing_alert_and_undelivered_outbox();
    // Another connection holds a committed write that is still only in the
    // write-ahead log: forget the firing alert there.
    let held = s.ws.sqlite();
    let mode: String = held
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    held.execute_batch("PRAGMA wal_autocheckpoint = 0; DELETE FROM alert_state;")
        .unwrap();
    let wal = s.state().join("monitor.db-wal");
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "a -wal file with content"
    );

    let before = snapshot(&s.state());
    let out = s.ws.run_at(minute(2), "p", &["--dry-run"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    // It saw the WAL-only change: with no prior alert, the failure fires anew.
    assert!(text.contains("health FIRING"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("would send to hook: ")
            && l.contains("FIRING critical p/disk/health")),
        "{text}"
    );
    assert_same(&before, &snapshot(&s.state()));
    assert!(
        s.hook.requests().is_empty(),
        "the webhook received {:?}",
        s.hook.requests()
    );
    drop(held);
}

/// Regression: --dry-run used to list only this tick's new notifications,
/// not the waiting outbox entries a real tick would (re-)send.
#[test]
fn dry_run_lists_the_retries_a_real_tick_would_send() {
    let s = Setup::new().with_firing_alert_and_undelivered_outbox();
    // Still firing, inside the cooldown: nothing new, but the undelivered
    // FIRING message to `hook` is due for a retry.
    let out = s.ws.run_at(minute(4), "p", &["--dry-run"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.starts_with("would send to hook: ")
            && l.contains("FIRING critical p/disk/health")),
        "{text}"
    );
    assert!(s.hook.requests().is_empty());
    // What the real tick then does.
    let out = s.ws.run_at(minute(4), "p", &[]);
    assert_exit(&out, 1);
    assert_eq!(s.hook.requests().len(), 1, "the real tick re-sends it");
}
