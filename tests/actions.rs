//! Action tasks end to end: trimming a real log in place (also while a
//! writer appends to it), and command actions, through the real binary.

use crate::common::*;

use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Line `n` of the test logs: fixed width, so any torn line shows.
fn line(n: u64) -> String {
    format!("{n:08}\n")
}

fn numbered(range: std::ops::RangeInclusive<u64>) -> String {
    range.map(line).collect()
}

fn trim_config(path: &Path, keep: u64) -> String {
    profile_p(&format!(
        "      - name: trim\n        action: {{ trim_log: {{ path: \"{}\", keep_lines: {keep} }} }}\n",
        path.display()
    ))
}

fn tick(ws: &Workspace, n: i64, args: &[&str]) -> (Output, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = ws.run_at(minute(n), "p", &all);
    let json = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- stdout\n{}\n--- stderr\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out, json)
}

/// (status, summary) of every check of a task.
fn checks(json: &Value, task_name: &str) -> Vec<(String, String)> {
    let task = json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == task_name)
        .unwrap_or_else(|| panic!("no task {task_name} in {json:#}"));
    task["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_string(),
                c["summary"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sent(json: &Value) -> Vec<String> {
    json["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap_or("").to_string())
        .collect()
}

// ---------------------------------------------------------------- trim_log

#[test]
fn trim_log_keeps_exactly_the_last_lines_in_the_same_file() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    std::fs::write(&log, numbered(1..=250_000)).unwrap();
    let inode = std::fs::metadata(&log).unwrap().ino();
    ws.write_config(&trim_config(&log, 100_000));

    let (out, json) = tick(&ws, 0, &[]);
    assert_exit(&out, 0);
    // 150000 lines of 9 bytes: 1.29 MiB.
    assert_eq!(
        checks(&json, "trim"),
        [(
            "ok".to_string(),
            format!(
                "trimmed {} from 250000 to 100000 lines (freed 1.3 MiB)",
                log.display()
            )
        )]
    );
    assert!(sent(&json).is_empty(), "a successful action is quiet");
    assert!(
        std::fs::read_to_string(&log).unwrap() == numbered(150_001..=250_000),
        "exactly the last 100000 lines"
    );
    assert_eq!(std::fs::metadata(&log).unwrap().ino(), inode, "same inode");

    let (out, json) = tick(&ws, 1, &[]);
    assert_exit(&out, 0);
    assert_eq!(
        checks(&json, "trim"),
        [(
            "ok".to_string(),
            format!(
                "kept all 100000 lines of {} (keep_lines 100000)",
                log.display()
            )
        )]
    );
}

/// A writer holding the log open with O_APPEND, as the prover's shell
/// redirection does: numbered lines in bursts of ten, 10 ms apart. The
/// pause is what a trim cannot do without: a line appended between its
/// last size check and its cut would be lost, so the trim cuts only in a
/// pause of the writer (see `action::trim_file`), and a writer that never
/// pauses could lose one line.
struct Writer {
    last: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(path: &Path, after: u64) -> Writer {
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        let last = Arc::new(AtomicU64::new(after));
        let stop = Arc::new(AtomicBool::new(false));
        let (written, stopped) = (last.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut n = after;
            while !stopped.load(Ordering::SeqCst) {
                for _ in 0..10 {
                    n += 1;
                    // One write(2) per line: a line is never torn.
                    file.write_all(line(n).as_bytes()).unwrap();
                    written.store(n, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Writer {
            last,
            stop,
            thread: Some(thread),
        }
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.last()
    }
}

#[test]
fn trim_log_while_a_writer_appends_loses_and_repeats_nothing() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    let initial = 1_000_000;
    let keep = 400_000;
    std::fs::write(&log, numbered(1..=initial)).unwrap();
    let size_before = std::fs::metadata(&log).unwrap().len();
    let inode = std::fs::metadata(&log).unwrap().ino();
    ws.write_config(&trim_config(&log, keep));

    let writer = Writer::start(&log, initial);
    std::thread::sleep(Duration::from_millis(50));
    let before_trim = writer.last();
    let (out, json) = tick(&ws, 0, &[]);
    let after_trim = writer.last();
    assert_exit(&out, 0);
    // Lines appended after the trim go to the trimmed file.
    std::thread::sleep(Duration::from_millis(100));
    let last = writer.stop();
    assert!(after_trim > before_trim, "the writer wrote during the tick");
    assert!(last > after_trim, "the writer wrote after the tick");

    let (status, summary) = &checks(&json, "trim")[0];
    assert_eq!(status, "ok");
    assert!(
        summary.starts_with(&format!("trimmed {} from ", log.display())),
        "{summary}"
    );
    assert_eq!(std::fs::metadata(&log).unwrap().ino(), inode, "same inode");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!((text.len() as u64) < size_before, "the file shrank");
    assert!(text.ends_with('\n'));
    let numbers: Vec<u64> = text
        .lines()
        .map(|l| {
            assert_eq!(l.len(), 8, "a whole line: {l:?}");
            l.parse().unwrap()
        })
        .collect();
    let first = numbers[0];
    assert_eq!(*numbers.last().unwrap(), last, "nothing lost at the end");
    assert_eq!(
        numbers,
        (first..=last).collect::<Vec<_>>(),
        "consecutive: no gap, no duplicate"
    );
    // The trim kept the last `keep` lines of what had been written when it
    // looked, which was between `before_trim` and `after_trim`.
    assert!(
        first > before_trim.saturating_sub(keep),
        "first kept line {first} is more than {keep} lines before {before_trim}"
    );
    assert!(
        first <= after_trim - keep + 1,
        "first kept line {first}: fewer than {keep} lines kept"
    );
}

#[test]
fn trim_log_dry_run_counts_and_leaves_the_file_untouched() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    std::fs::write(&log, numbered(1..=3000)).unwrap();
    let before = std::fs::metadata(&log).unwrap();
    ws.write_config(&trim_config(&log, 1000));

    let (out, json) = tick(&ws, 0, &["--dry-run"]);
    assert_exit(&out, 0);
    assert_eq!(
        checks(&json, "trim"),
        [(
            "ok".to_string(),
            format!(
                "would trim {} to its last 1000 lines (now 3000 lines)",
                log.display()
            )
        )]
    );
    let after = std::fs::metadata(&log).unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), numbered(1..=3000));
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec()),
        (before.len(), before.mtime(), before.mtime_nsec())
    );
}

#[test]
fn trim_log_of_a_missing_file_fails_naming_it() {
    let ws = Workspace::new("");
    let log = ws.path().join("missing.log");
    ws.write_config(&trim_config(&log, 10));
    let (out, json) = tick(&ws, 0, &[]);
    assert_exit(&out, 1);
    let expected = format!("cannot trim {}: it does not exist", log.display());
    assert_eq!(
        checks(&json, "trim"),
        [("failed".to_string(), expected.clone())]
    );
    let texts = sent(&json);
    assert!(
        texts.iter().any(
            |t| t.starts_with("[test-host] FIRING critical p/trim/health") && t.contains(&expected)
        ),
        "{texts:?}"
    );
}

// ---------------------------------------------------------------- command

fn command_task(name: &str, script: &str) -> String {
    format!(
        "      - name: {name}\n        action: {{ command: {{ argv: [\"sh\", \"-c\", \"{script}\"] }} }}\n"
    )
}

#[test]
fn a_command_action_exiting_two_fires_and_exiting_zero_does_not() {
    let ws = Workspace::new(&profile_p(&format!(
        "{}{}",
        command_task(
            "broken",
            "echo 'CRITICAL - backup failed | copied=0'; exit 2"
        ),
        command_task("fine", "echo 'OK - backup done | copied=12'; exit 0"),
    )));
    let (out, json) = tick(&ws, 0, &[]);
    assert_exit(&out, 1);
    assert_eq!(
        checks(&json, "broken"),
        [(
            "critical".to_string(),
            "CRITICAL - backup failed".to_string()
        )]
    );
    assert_eq!(
        checks(&json, "fine"),
        [("ok".to_string(), "OK - backup done".to_string())]
    );
    let fine = &json["tasks"][1];
    assert_eq!(fine["signals"]["copied"], 12.0, "perfdata becomes signals");
    let texts = sent(&json);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].starts_with("[test-host] FIRING critical p/broken/health")
            && texts[0].contains("CRITICAL - backup failed"),
        "{texts:?}"
    );
}

#[test]
fn a_dry_run_does_not_run_a_command_action() {
    let ws = Workspace::new("");
    let marker: PathBuf = ws.path().join("ran");
    ws.write_config(&profile_p(&command_task(
        "touch",
        &format!("touch {}", marker.display()),
    )));

    let (out, json) = tick(&ws, 0, &["--dry-run"]);
    assert_exit(&out, 0);
    assert!(!marker.exists(), "the dry run ran the command");
    let (status, summary) = &checks(&json, "touch")[0];
    assert_eq!(status, "ok");
    assert!(summary.starts_with("would run sh -c touch "), "{summary}");

    let (out, _) = tick(&ws, 1, &[]);
    assert_exit(&out, 0);
    assert!(marker.exists(), "a real tick runs it");
}
