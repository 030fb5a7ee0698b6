//! The log probe end to end: the real binary follows real files that are
//! appended to, rotated, truncated, trimmed and backdated, and a real
//! command's output, on a pinned clock. A few tests call the probe directly
//! for the modes the command line does not reach (recheck after a restart).
//!
//! Over 800 lines: it is one area of the integration suite (one module of
//! `tests/main.rs`), each test a scenario with its own fixture; the helpers
//! they share live in `tests/common/`.

use crate::common::*;

use monitor::clock::Timestamp;
use monitor::probe::log::LogConfig;
use monitor::probe::{CheckStatus, Context, Mode, Observation, TaskMemory};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// An event per line that says `seen N`: the way these tests count lines.
const SEEN: &str = r"events: [{ name: seen, regex: 'seen (?P<n>\d+)', message: 'seen {n}' }]";

/// Profile `p` with one task `prover` following `path`, with more `log:`
/// keys (one YAML line each).
fn log_task(path: &Path, keys: &[&str]) -> String {
    let mut task = format!(
        "      - name: prover\n        log:\n          path: \"{}\"\n",
        path.display()
    );
    for key in keys {
        task.push_str(&format!("          {key}\n"));
    }
    profile_p(&task)
}

fn append(path: &Path, bytes: impl AsRef<[u8]>) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes.as_ref()).unwrap();
}

/// Sets the file's last write time (Unix seconds): staleness without sleeping.
fn set_mtime(path: &Path, secs: i64) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap()))
        .unwrap();
}

/// Numbered lines `seen first..=last`, padded to look like a log.
fn numbered(first: u64, last: u64) -> String {
    (first..=last)
        .map(|n| format!("2026-11-26T20:15:00Z INFO worker: seen {n} ok\n"))
        .collect()
}

/// The N of every `[test-host] seen N` notification, in order.
fn seen(out: &Output) -> Vec<u64> {
    notifications(out)
        .iter()
        .filter_map(|l| l.strip_prefix("[test-host] seen "))
        .map(|n| n.parse().unwrap())
        .collect()
}

/// One tick at `at`, and the N of every `seen N` event it raised, in order.
///
/// The events are read from a `--dry-run` preview of the same tick (the
/// log does not change in between): it lists every message the tick would
/// send, while the outbox keeps one message per event name per tick (see
/// `two_lines_of_one_event_in_a_tick_are_two_notifications`).
fn tick_seen(ws: &Workspace, at: i64, code: i32) -> (Output, Vec<u64>) {
    tick_seen_exiting(ws, at, &[code])
}

/// [`tick_seen`] for a tick that may exit with any of `codes` (a tick left
/// with a backlog beyond `max_read` warns: exit 1).
fn tick_seen_exiting(ws: &Workspace, at: i64, codes: &[i32]) -> (Output, Vec<u64>) {
    let preview = ws.run_at(at, "p", &["--dry-run", "--format", "json"]);
    assert!(
        codes.contains(&preview.status.code().unwrap_or(-1)),
        "exit {:?}, expected one of {codes:?}\n{}",
        preview.status.code(),
        stdout(&preview)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&preview)).unwrap();
    let numbers = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["text"].as_str()?.strip_prefix("[test-host] seen "))
        .map(|n| n.parse().unwrap())
        .collect();
    let out = ws.run_at(at, "p", &["--format", "json"]);
    assert_eq!(
        out.status.code(),
        preview.status.code(),
        "the tick and its preview agree\n{}",
        stdout(&out)
    );
    (out, numbers)
}

/// The first task's signals from `--format json`.
fn signals(out: &Output) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)));
    report["tasks"][0]["signals"].clone()
}

/// The first check's summary from `--format json`.
fn check_summary(out: &Output) -> String {
    let report: serde_json::Value = serde_json::from_str(&stdout(out)).unwrap();
    report["tasks"][0]["checks"][0]["summary"]
        .as_str()
        .unwrap()
        .to_string()
}

fn signal(out: &Output, name: &str) -> f64 {
    signals(out)[name]
        .as_f64()
        .unwrap_or_else(|| panic!("no signal {name} in {}", signals(out)))
}

#[test]
fn ten_ticks_of_appends_rotation_truncation_and_bad_utf8_miss_no_line_and_count_none_twice() {
    let ws = Workspace::new("");
    let log = ws.path().join("app.log");
    // Lines from before the first look are history, not news.
    fs::write(&log, format!("boot\n{}", numbered(900, 905))).unwrap();
    ws.write_config(&log_task(&log, &[SEEN, r"counters: { lines: 'seen \d+' }"]));
    let (out, first) = tick_seen(&ws, minute(0), 0);
    assert_eq!(first, Vec::<u64>::new());
    // The counter learnt the history (6 lines) without raising anything.
    assert_eq!(signal(&out, "lines"), 6.0);

    let mut all = Vec::new();
    let mut expected_last = 0;
    for tick in 1..=10 {
        match tick {
            1 => append(&log, numbered(1, 3)),
            // A line still being written waits for its newline.
            2 => append(&log, format!("{}partial: seen 6", numbered(4, 5))),
            3 => append(&log, format!(" done\n{}", numbered(7, 8))),
            // Rotation by rename, the old file ending without a newline;
            // the new file already has lines.
            4 => {
                append(&log, format!("{}last words: seen 11", numbered(9, 10)));
                fs::rename(&log, ws.path().join("app.log.1")).unwrap();
                fs::write(&log, numbered(12, 14)).unwrap();
            }
            5 => append(&log, numbered(15, 15)),
            // Truncation to fewer bytes than were read.
            6 => {
                File::options()
                    .write(true)
                    .open(&log)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
                append(&log, numbered(16, 17));
            }
            // Invalid UTF-8 around the number.
            7 => append(
                &log,
                b"\xff\xfe\x80 seen 18 \xc3\x28 broken\n2026 \xe2\x82 seen 19\n".as_slice(),
            ),
            // Rewritten in place, longer than what was read: same inode,
            // bigger size, different bytes.
            8 => {
                fs::write(&log, numbered(20, 29)).unwrap();
            }
            9 => append(&log, numbered(30, 79)),
            _ => {}
        }
        expected_last = match tick {
            1 => 3,
            2 => 5,
            3 => 8,
            4 => 14,
            5 => 15,
            6 => 17,
            7 => 19,
            8 => 29,
            9 | 10 => 79,
            _ => unreachable!(),
        };
        let (out, this_tick) = tick_seen(&ws, minute(tick), 0);
        assert_eq!(
            signal(&out, "lines"),
            (6 + expected_last) as f64,
            "tick {tick}: lines counted"
        );
        assert!(
            this_tick.windows(2).all(|w| w[0] < w[1]),
            "tick {tick}: lines out of order: {this_tick:?}"
        );
        all.extend(this_tick);
        assert_eq!(
            all.last().copied().unwrap_or(0),
            expected_last,
            "tick {tick}: {all:?}\n{}",
            check_summary(&out)
        );
    }
    let expected: Vec<u64> = (1..=expected_last).collect();
    assert_eq!(all, expected, "every line once, in order");
}

#[test]
fn a_log_trimmed_in_place_is_not_read_again() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    fs::write(&log, "").unwrap();
    ws.write_config(&log_task(&log, &[SEEN]));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);
    append(&log, numbered(1, 40));
    assert_eq!(tick_seen(&ws, minute(1), 0).1, (1..=40).collect::<Vec<_>>());
    // Seed 000's hourly trim: keep the last 10 lines in the same file.
    let kept: String = numbered(31, 40);
    fs::write(&log, &kept).unwrap();
    append(&log, numbered(41, 45));
    assert_eq!(
        tick_seen(&ws, minute(2), 0).1,
        (41..=45).collect::<Vec<_>>()
    );
}

#[test]
fn a_log_rotated_away_is_finished_and_read_from_the_start_when_it_reappears() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    fs::write(&log, "").unwrap();
    ws.write_config(&log_task(&log, &[SEEN]));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);
    append(&log, numbered(1, 3));
    assert_eq!(tick_seen(&ws, minute(1), 0).1, vec![1, 2, 3]);

    append(&log, numbered(4, 5));
    fs::rename(&log, ws.path().join("prover.log.1")).unwrap();
    let (out, lines) = tick_seen(&ws, minute(2), 1);
    assert_eq!(
        check_summary(&out),
        format!("log file {} does not exist", log.display())
    );
    assert_eq!(lines, vec![4, 5], "the rotated file's last lines");

    assert_eq!(tick_seen(&ws, minute(3), 1).1, Vec::<u64>::new());

    fs::write(&log, numbered(6, 7)).unwrap();
    assert_eq!(tick_seen(&ws, minute(4), 0).1, vec![6, 7]);
}

#[test]
fn a_backlog_beyond_max_read_is_read_on_the_following_ticks() {
    let ws = Workspace::new("");
    let log = ws.path().join("app.log");
    fs::write(&log, "").unwrap();
    ws.write_config(&log_task(&log, &[SEEN, "max_read: 1KiB"]));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);
    append(&log, numbered(1, 60));
    let mut all = Vec::new();
    for tick in 1..=4 {
        let this_tick = tick_seen_exiting(&ws, minute(tick), &[0, 1]).1;
        assert!(this_tick.len() <= 1024 / 40, "tick {tick}: {this_tick:?}");
        all.extend(this_tick);
    }
    assert_eq!(all, (1..=60).collect::<Vec<_>>());

    // A line longer than the cap is taken in cap-sized pieces, not waited for.
    append(
        &log,
        format!("seen 61 {}\n{}", "x".repeat(2500), numbered(62, 62)),
    );
    let mut all = Vec::new();
    for tick in 5..=8 {
        all.extend(tick_seen_exiting(&ws, minute(tick), &[0, 1]).1);
    }
    assert_eq!(all, vec![61, 62]);
}

#[test]
fn first_sight_of_a_1_gib_sparse_log_is_not_read_whole() {
    let ws = Workspace::new("");
    let log = ws.path().join("huge.log");
    File::create(&log).unwrap().set_len(1 << 30).unwrap();
    ws.write_config(&log_task(&log, &[SEEN]));
    let started = Instant::now();
    let out = ws.run_at(minute(0), "p", &[]);
    let took = started.elapsed();
    assert_exit(&out, 0);
    assert!(took < Duration::from_secs(2), "first tick took {took:?}");
    append(&log, numbered(1, 1));
    assert_eq!(tick_seen(&ws, minute(1), 0).1, vec![1]);
}

#[test]
fn a_stale_log_raises_the_critical_health_alert_and_a_fresh_line_clears_it() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    fs::write(&log, numbered(1, 2)).unwrap();
    set_mtime(&log, minute(0) - 10);
    ws.write_config(&log_task(&log, &["stale_after: 300s"]));
    let out = ws.run_at(minute(0), "p", &["--format", "json"]);
    assert_exit(&out, 0);
    assert_eq!(signal(&out, "log_age_s"), 10.0);

    // Nothing written for 6m 40s.
    let out = ws.run_at(minute(0) + 390, "p", &[]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("FIRING critical p/prover/health"), "{text}");
    assert!(
        text.contains("no new line for 6m 40s (stale_after 5m)"),
        "{text}"
    );

    append(&log, numbered(3, 3));
    set_mtime(&log, minute(8) - 2);
    let out = ws.run_at(minute(8), "p", &["--format", "json"]);
    assert_exit(&out, 0);
    assert_eq!(signal(&out, "log_age_s"), 2.0);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let summary = report["tasks"][0]["checks"][0]["summary"].as_str().unwrap();
    assert_eq!(
        summary,
        format!("{}: 1 new line, last 2s ago", log.display())
    );
    let resolved = ws
        .count("SELECT COUNT(*) FROM alert_history WHERE rule = 'health' AND status = 'resolved'");
    assert_eq!(resolved, 1);
}

#[test]
fn states_and_session_counters_survive_across_ticks() {
    let ws = Workspace::new("");
    let log = ws.path().join("aleph.log");
    // Seed 004: the node was in major sync before the monitor first looked.
    fs::write(
        &log,
        "2026-11-26 20:00:00 Running session 41\n2026-11-26 20:00:01 Prepared block for proposing\n2026-11-26 20:00:02 Switched to major sync state.\n",
    )
    .unwrap();
    ws.write_config(&log_task(
        &log,
        &[
            r#"states: { major_sync: { enter: "Switched to major sync state", leave: "No longer in major sync state" } }"#,
            r#"session: "Running session (?P<session>\\d+)""#,
            r#"counters: { producing: "Prepared block for proposing|Pre-sealed block for proposal" }"#,
        ],
    ));
    let json = ["--format", "json"];
    let expect = |out: &Output, sync: f64, session: f64, producing: f64| {
        assert_exit(out, 0);
        let signals = signals(out);
        assert_eq!(
            (
                signal(out, "major_sync"),
                signal(out, "session"),
                signal(out, "producing")
            ),
            (sync, session, producing),
            "{signals}"
        );
    };
    // Primed from the end of the file on first sight.
    expect(&ws.run_at(minute(0), "p", &json), 1.0, 41.0, 1.0);

    append(
        &log,
        "Running session 42\nPrepared block for proposing\nPre-sealed block for proposal\n",
    );
    expect(&ws.run_at(minute(1), "p", &json), 1.0, 42.0, 2.0);

    append(&log, "Prepared block for proposing\n");
    expect(&ws.run_at(minute(2), "p", &json), 1.0, 42.0, 3.0);

    // Nothing new: everything stays as the log last said.
    expect(&ws.run_at(minute(3), "p", &json), 1.0, 42.0, 3.0);

    append(&log, "No longer in major sync state.\nRunning session 43\n");
    expect(&ws.run_at(minute(4), "p", &json), 0.0, 43.0, 0.0);

    let stored = ws.count(
        "SELECT COUNT(*) FROM monitor_state WHERE namespace = 'p/prover' AND key IN ('log.state.major_sync', 'log.session', 'log.counter.producing')",
    );
    assert_eq!(stored, 3);
}

#[test]
fn a_fatal_line_raises_a_critical_pattern_alert_with_the_line() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    fs::write(&log, "starting\n").unwrap();
    ws.write_config(&log_task(
        &log,
        &[r#"patterns: [{ name: tls, regex: "(?i)tls (handshake|error)", severity: critical }]"#],
    ));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);

    append(
        &log,
        "fine\n2026-11-26 ERROR tls handshake failed: certificate expired\nstill fine\n",
    );
    let out = ws.run_at(minute(1), "p", &["--format", "json"]);
    assert_exit(&out, 1);
    assert_eq!(signal(&out, "tls"), 1.0);
    let history = ws.sqlite();
    let (severity, summary): (String, String) = history
        .query_row(
            "SELECT severity, summary FROM alert_history WHERE rule = 'tls' AND status = 'firing'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(severity, "critical");
    assert!(
        summary.contains("2026-11-26 ERROR tls handshake failed: certificate expired"),
        "{summary}"
    );

    // No new match: healthy again, but a log line is an occurrence, not a
    // state: nothing is announced as "resolved" a minute later.
    append(&log, "recovered\n");
    let out = ws.run_at(minute(2), "p", &[]);
    assert_exit(&out, 0);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    // A second TLS line within the cooldown is the same incident: recorded,
    // not told again.
    append(&log, "ERROR TLS error: bad record mac\n");
    let out = ws.run_at(minute(3), "p", &[]);
    assert_exit(&out, 1);
    assert!(notifications(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(
        ws.count("SELECT count(*) FROM alert_history WHERE rule = 'tls' AND status = 'firing'"),
        2
    );
    // Two quiet hours later the incident ends, and that is said.
    assert!(notifications(&ws.run_at(minute(4), "p", &[])).is_empty());
    let out = ws.run_at(minute(4 + 120), "p", &[]);
    assert_exit(&out, 0);
    let told = notifications(&out);
    assert!(
        told.len() == 1
            && told[0].contains("RESOLVED")
            && told[0].contains("p/prover/tls")
            && told[0].contains("no new occurrence for 2h"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn task_start_and_finish_lines_notify_once_each_with_the_id() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    fs::write(&log, "[host] task started: 1\n").unwrap();
    ws.write_config(&log_task(
        &log,
        &[
            r#"events:"#,
            r#"  - { regex: "task started: (?P<id>\\d+)", message: "Task Started: {id}" }"#,
            r#"  - { regex: "task finished: (?P<id>\\d+)", message: "Task Finished: {id}" }"#,
        ],
    ));
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 0);
    assert_eq!(
        notifications(&out),
        Vec::<String>::new(),
        "history is not news"
    );

    append(
        &log,
        "[host] task started: 123\nproving…\n[host] task finished: 123\n",
    );
    let out = ws.run_at(minute(1), "p", &[]);
    assert_exit(&out, 0);
    assert_eq!(
        notifications(&out),
        vec![
            "[test-host] Task Started: 123".to_string(),
            "[test-host] Task Finished: 123".to_string()
        ]
    );
    let out = ws.run_at(minute(2), "p", &[]);
    assert_exit(&out, 0);
    assert_eq!(notifications(&out), Vec::<String>::new());
}

#[test]
fn a_command_source_reads_lines_since_the_last_tick() {
    let ws = Workspace::new("");
    // A stand-in for `docker logs --since {since} --until {until}`: lines
    // are `<unix ts> text`; the windows meet end to end.
    let lines = ws.path().join("container.log");
    let asked = ws.path().join("asked.txt");
    fs::write(
        &lines,
        format!("{} seen 900\n{} seen 901\n", minute(0) - 100, minute(0) - 1),
    )
    .unwrap();
    let task = format!(
        "      - name: aleph\n        log:\n          command: [\"sh\", \"-c\", \"echo \\\"$1\\\" >> \\\"$3\\\"; awk -v s=\\\"$1\\\" -v u=\\\"$4\\\" '$1 >= s && $1 < u' \\\"$2\\\"\", \"sh\", \"{{since}}\", \"{}\", \"{}\", \"{{until}}\"]\n          stale_after: 90s\n          {SEEN}\n",
        lines.display(),
        asked.display()
    );
    ws.write_config(&profile_p(&task));

    // The first run looks back an hour, and only primes.
    assert_eq!(tick_seen(&ws, minute(0), 0).1, Vec::<u64>::new());

    append(
        &lines,
        format!("{} seen 1\n{} seen 2\n", minute(0) + 10, minute(0) + 30),
    );
    // From the previous tick on: `seen 901`, a second before it, was in
    // the first window; the new window starts where that one ended.
    assert_eq!(tick_seen(&ws, minute(1), 0).1, vec![1, 2]);

    let (out, lines) = tick_seen(&ws, minute(2), 0);
    assert_eq!(lines, Vec::<u64>::new());
    assert_eq!(signal(&out, "log_age_s"), 60.0);

    let (out, _) = tick_seen(&ws, minute(3), 1);
    let summary = check_summary(&out);
    assert!(summary.starts_with("`sh -c "), "{summary}");
    assert!(
        summary.ends_with("`: no new line for 2m (stale_after 1m 30s)"),
        "{summary}"
    );

    // Each tick asked once for real and once in its preview.
    let asked: Vec<i64> = fs::read_to_string(&asked)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let mut once = asked.clone();
    once.dedup();
    assert_eq!(asked.len(), 8);
    assert_eq!(
        once,
        vec![minute(0) - 3600, minute(0), minute(1), minute(2)]
    );
}

#[test]
fn a_failing_command_source_is_a_failed_check_and_is_asked_again() {
    let ws = Workspace::new("");
    let asked = ws.path().join("asked.txt");
    let task = format!(
        "      - name: aleph\n        log:\n          command: \"echo {{since}} >> '{}'; echo 'Error: No such container: aleph-node'; exit 1\"\n",
        asked.display()
    );
    ws.write_config(&profile_p(&task));
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("exited 1: Error: No such container: aleph-node"),
        "{}",
        stdout(&out)
    );
    assert_exit(&ws.run_at(minute(1), "p", &[]), 1);
    let asked = fs::read_to_string(&asked).unwrap();
    // No run succeeded: each is still the first, looking back an hour.
    let expected = format!("{}\n{}\n", minute(0) - 3600, minute(1) - 3600);
    assert_eq!(asked, expected);
}

#[test]
fn two_lines_of_one_event_in_a_tick_are_two_notifications() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    fs::write(&log, "").unwrap();
    ws.write_config(&log_task(&log, &[SEEN]));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);
    append(&log, numbered(1, 2));
    let out = ws.run_at(minute(1), "p", &[]);
    assert_exit(&out, 0);
    assert_eq!(seen(&out), vec![1, 2]);
}

// ------------------------------------------------ the probe called directly

fn probe(yaml: &str) -> LogConfig {
    serde_yaml::from_str(yaml).unwrap()
}

fn observe(probe: &LogConfig, mode: Mode, state: &TaskMemory, now: i64) -> Observation {
    let context = Context {
        now: Timestamp::from_secs(now),
        mode,
        deadline: Instant::now() + Duration::from_secs(10),
        timeout: Duration::from_secs(10),
        state,
    };
    let mut out = Observation::default();
    monitor::probe::log::observe(probe, &context, &mut out);
    out
}

#[test]
fn recheck_asks_whether_the_file_moved_and_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("prover.log");
    fs::write(&log, "started\n").unwrap();
    let probe = probe(&format!(
        "path: \"{}\"\nevents: [{{ regex: 'task started: (?P<id>\\d+)', message: 'Task Started: {{id}}' }}]\n",
        log.display()
    ));
    let tick = observe(&probe, Mode::Tick, &TaskMemory::new(), minute(0));
    assert!(tick.healthy(), "{:?}", tick.checks);

    let still = observe(&probe, Mode::Recheck, &tick.state, minute(0));
    assert_eq!(still.checks[0].status, CheckStatus::Critical);
    assert!(
        still.checks[0]
            .summary
            .ends_with("log has not moved since the restart")
    );

    append(&log, "task started: 7\n");
    let moved = observe(&probe, Mode::Recheck, &tick.state, minute(0));
    assert_eq!(
        moved.checks[0].status,
        CheckStatus::Ok,
        "{:?}",
        moved.checks
    );
    assert!(moved.events.is_empty() && moved.state.is_empty() && moved.matches.is_empty());

    // The line a recheck saw is still news for the next tick.
    let next = observe(&probe, Mode::Tick, &tick.state, minute(1));
    assert_eq!(next.events.len(), 1);
    assert_eq!(next.events[0].message, "Task Started: 7");

    // A new file after a restart is movement too.
    fs::rename(&log, dir.path().join("prover.log.1")).unwrap();
    fs::write(&log, "").unwrap();
    let rotated = observe(&probe, Mode::Recheck, &next.state, minute(1));
    assert_eq!(
        rotated.checks[0].status,
        CheckStatus::Ok,
        "{:?}",
        rotated.checks
    );
}

#[test]
fn recheck_of_a_command_source_wants_any_output() {
    let quiet = probe("command: \"true\"\n");
    let out = observe(&quiet, Mode::Recheck, &TaskMemory::new(), minute(0));
    assert_eq!(out.checks[0].status, CheckStatus::Critical);
    assert!(out.state.is_empty());
    let talking = probe("command: [\"echo\", \"up since {since}\"]\n");
    let out = observe(&talking, Mode::Recheck, &TaskMemory::new(), minute(0));
    assert_eq!(out.checks[0].status, CheckStatus::Ok, "{:?}", out.checks);
    assert!(out.state.is_empty());

    // Only lines after the newest the tick's own run saw are movement
    // (timestamped, as `docker logs --timestamps` prints them): the same
    // text again is movement too.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.txt");
    fs::write(
        &log,
        "2026-12-01T10:00:00.1Z beat\n2026-12-01T10:00:10.1Z beat\n",
    )
    .unwrap();
    let cat = probe(&format!("command: [\"cat\", \"{}\"]\n", log.display()));
    let tick = observe(&cat, Mode::Tick, &TaskMemory::new(), minute(0));
    let out = observe(&cat, Mode::Recheck, &tick.state, minute(0) + 5);
    assert_eq!(
        out.checks[0].status,
        CheckStatus::Critical,
        "{:?}",
        out.checks
    );
    append(&log, "2026-12-01T10:00:20.1Z beat\n");
    let out = observe(&cat, Mode::Recheck, &tick.state, minute(0) + 10);
    assert_eq!(out.checks[0].status, CheckStatus::Ok, "{:?}", out.checks);
    assert!(out.events.is_empty() && out.state.is_empty());
}

#[test]
fn dry_run_observes_like_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    fs::write(&log, "").unwrap();
    let probe = probe(&format!("path: \"{}\"\n{SEEN}\n", log.display()));
    let first = observe(&probe, Mode::Tick, &TaskMemory::new(), minute(0));
    append(&log, numbered(1, 2));
    let dry = observe(&probe, Mode::DryRun, &first.state, minute(1));
    let tick = observe(&probe, Mode::Tick, &first.state, minute(1));
    let messages = |o: &Observation| {
        o.events
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(messages(&dry), vec!["seen 1", "seen 2"]);
    assert_eq!(messages(&dry), messages(&tick));
    assert_eq!(dry.state, tick.state);
}

/// Neither or both of `path` and `command` is refused as the probe is
/// read (check-config says so), never left for a tick to fail on.
#[test]
fn a_log_probe_needs_exactly_one_source() {
    for yaml in ["stale_after: 5m\n", "path: /x\ncommand: \"true\"\n"] {
        let refused = serde_yaml::from_str::<LogConfig>(yaml).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("either `path` (a file) or `command` (its output)"),
            "{yaml}: {refused}"
        );
    }
}

#[test]
fn a_changed_path_is_a_first_sight_not_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.log"), dir.path().join("new.log"));
    fs::write(&old, "").unwrap();
    fs::write(&new, numbered(1, 5)).unwrap();
    let follow = |path: &Path| probe(&format!("path: \"{}\"\n{SEEN}\n", path.display()));
    let first = observe(&follow(&old), Mode::Tick, &TaskMemory::new(), minute(0));
    let moved = observe(&follow(&new), Mode::Tick, &first.state, minute(1));
    assert!(moved.events.is_empty(), "{:?}", moved.events);
    append(&new, numbered(6, 6));
    let next = observe(&follow(&new), Mode::Tick, &moved.state, minute(2));
    let messages: Vec<&str> = next.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, vec!["seen 6"]);
}

/// A FIFO at a log path never blocks the tick (opening one waits for a
/// writer): it is a failed check that says what it is and what to use.
#[test]
fn a_fifo_at_the_log_path_fails_at_once_and_says_what_to_use() {
    let ws = Workspace::new("");
    let fifo = ws.path().join("prover.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    ws.write_config(&log_task(&fifo, &[]));
    let started = std::time::Instant::now();
    let out = ws.run_at(minute(0), "p", &["--format", "json"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the tick took {:?}",
        started.elapsed()
    );
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("it is a FIFO (named pipe), not a regular file"),
        "{}",
        stdout(&out)
    );
}

/// A log written faster than `max_read` a tick says so (a warning and a
/// `backlog_bytes` signal) instead of "last 0s ago" while falling behind.
#[test]
fn a_log_growing_faster_than_max_read_warns_on_the_first_tick_it_falls_behind() {
    let ws = Workspace::new("");
    let log = ws.path().join("prover.log");
    fs::write(&log, "start\n").unwrap();
    ws.write_config(&log_task(&log, &["max_read: 1MiB"]));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 0);
    let line = "x".repeat(99) + "\n";
    append(&log, line.repeat(30_000)); // 3 000 000 bytes
    let out = ws.run_at(minute(1), "p", &["--format", "json"]);
    assert_exit(&out, 1);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let task = &json["tasks"][0];
    assert_eq!(task["checks"][0]["status"], "warning", "{task:#}");
    let summary = task["checks"][0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("falling behind: 1.9 MiB not read yet (max_read 1 MiB a tick"),
        "{summary}"
    );
    let backlog = task["signals"]["log.backlog_bytes"].as_f64().unwrap();
    assert!(
        (1_951_424.0..1_951_524.0).contains(&backlog),
        "3 000 006 bytes less the whole lines of the first MiB: {backlog}"
    );
    // Two more ticks catch up: no backlog, healthy again.
    ws.run_at(minute(2), "p", &[]);
    let out = ws.run_at(minute(3), "p", &["--format", "json"]);
    assert_exit(&out, 0);
}

/// A stand-in for `docker logs [--since S] [--until U] [--timestamps]
/// NAME`, built on what the real one prints: `NAME.lines` beside it holds
/// `<unix seconds> text` lines; `--since`/`--until` bound them inclusively
/// (docker compares nanosecond times), `--timestamps` prefixes each with
/// its RFC 3339 time. Not the real docker: a contract test.
const FAKE_DOCKER: &str = r#"#!/usr/bin/env python3
import datetime, os, sys
args = sys.argv[1:]
assert args[0] == "logs", args
since, until, stamps, name = None, None, False, None
i = 1
while i < len(args):
    a = args[i]
    if a == "--since": since = float(args[i + 1]); i += 2; continue
    if a == "--until": until = float(args[i + 1]); i += 2; continue
    if a in ("-t", "--timestamps"): stamps = True; i += 1; continue
    name = a; i += 1
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".lines")
for line in open(path):
    at, text = line.rstrip("\n").split(" ", 1)
    at = float(at)
    if since is not None and at < since: continue
    if until is not None and at > until: continue
    if stamps:
        when = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
        print(when.strftime("%Y-%m-%dT%H:%M:%S.%f000Z"), text)
    else:
        print(text)
"#;

/// Issue 10, item 5: a container that prints the same line every 10 s.
/// Telling new output from old by its text dropped every repeat: the log
/// went "stale" while it moved, the counter stopped. Read by window
/// (`{until}`) or by time (`--timestamps`), every line counts once.
#[test]
fn a_container_repeating_identical_lines_keeps_counting_and_is_not_stale() {
    for flags in ["", r#""--timestamps", "#, r#""--until", "{until}", "#] {
        let ws = Workspace::new("");
        let docker = ws.path().join("docker");
        fs::write(&docker, FAKE_DOCKER).unwrap();
        fs::set_permissions(&docker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let lines = ws.path().join("aleph-node.lines");
        let beats = |from: i64| -> String {
            (0..6)
                .map(|k| format!("{}.37 heartbeat ok\n", from + k * 10))
                .collect()
        };
        fs::write(&lines, beats(minute(0) - 60)).unwrap();
        ws.write_config(&profile_p(&format!(
            "      - name: aleph\n        log:\n          command: [\"{}\", \"logs\", \"--since\", \"{{since}}\", {flags}\"aleph-node\"]\n          stale_after: 90s\n          counters: {{ beats: 'heartbeat ok' }}\n",
            docker.display()
        )));
        let out = ws.run_at(minute(0), "p", &["--format", "json"]);
        assert_exit(&out, 0);
        for tick in 1..=5 {
            append(&lines, beats(minute(tick - 1)));
            let out = ws.run_at(minute(tick), "p", &["--format", "json"]);
            assert_exit(&out, 0);
            assert_eq!(
                signal(&out, "beats"),
                6.0 * (tick + 1) as f64,
                "{flags}, tick {tick}: six new lines, the same text as the last six"
            );
            assert_eq!(signal(&out, "log_age_s"), 0.0, "{flags}, tick {tick}");
        }
    }
}

/// Issue 10 review: a command without `{since}` prints its whole log each
/// tick. What follows the part already read is new (by position, checked
/// against what was read); an old fatal line is not told again each tick.
#[test]
fn a_command_printing_its_whole_log_each_tick_is_read_from_where_it_left_off() {
    let ws = Workspace::new("");
    let lines = ws.path().join("container.log");
    fs::write(&lines, "boot\nERROR TLS error: old\n").unwrap();
    ws.write_config(&profile_p(&format!(
        "      - name: node\n        log:\n          command: [\"cat\", \"{}\"]\n          stale_after: 1h\n          patterns: [{{ name: tls, regex: \"TLS error\", severity: critical }}]\n          counters: {{ beats: 'heartbeat ok' }}\n",
        lines.display()
    )));
    let first = ws.run_at(minute(0), "p", &["--format", "json"]);
    assert_exit(&first, 0);
    for tick in 1..=3 {
        append(&lines, "heartbeat ok\nheartbeat ok\n");
        let out = ws.run_at(minute(tick), "p", &["--format", "json"]);
        assert_exit(&out, 0);
        assert_eq!(signal(&out, "beats"), 2.0 * tick as f64, "tick {tick}");
        assert_eq!(
            signal(&out, "tls"),
            0.0,
            "the old line is not new: tick {tick}"
        );
    }
    append(&lines, "ERROR TLS error: new\n");
    let out = ws.run_at(minute(4), "p", &[]);
    assert_exit(&out, 1);
    assert!(
        notifications(&out).join("\n").contains("TLS error: new"),
        "{}",
        stdout(&out)
    );
}

/// Review: a command printing its whole log, longer than `max_read`, never
/// showed a new line (they were past the cut) and went stale. It says why.
#[test]
fn a_whole_log_longer_than_max_read_says_to_ask_since_the_last_tick() {
    let ws = Workspace::new("");
    let lines = ws.path().join("container.log");
    fs::write(&lines, "x".repeat(3000) + "\n").unwrap();
    ws.write_config(&profile_p(&format!(
        "      - name: node\n        log:\n          command: [\"cat\", \"{}\"]\n          max_read: 1KiB\n          stale_after: 1h\n",
        lines.display()
    )));
    let out = ws.run_at(minute(0), "p", &["--format", "json"]);
    assert_exit(&out, 1);
    let summary = check_summary(&out);
    assert!(
        summary.contains("printed more than max_read (1 KiB)")
            && summary.contains("--since {since}"),
        "{summary}"
    );
}
