//! kill -9 at arbitrary moments of real ticks: the database must stay
//! either as it was before a tick or as it is after it — never half — and
//! the next tick must work.

use crate::common::*;

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A tiny deterministic pseudo-random sequence (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// 0..=max
    fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

const TICKS: i64 = 200;
const SEED: u64 = 0x5eed_2026;

/// A profile of fast tasks that flip between healthy and failing with the
/// tick's parity (the test toggles the server's answer and a flag file), so
/// that ticks write alert state, history and outbox rows, and deliveries
/// alternately succeed and fail.
fn config(server: &TestServer, flag: &Path) -> String {
    format!(
        r#"version: 1
host: crash-host
notifiers:
  console: {{ type: stdout }}
  hook: {{ type: webhook, url: "{hook}" }}
defaults: {{ timeout: 5s, cooldown: 1m }}
profiles:
  p:
    cron: "* * * * *"
    announce: false
    notify: [console, hook]
    tasks:
      - name: api
        http: {{ url: "{api}", timeout: 2s }}
      - name: flag
        command: {{ argv: ["sh", "-c", "if [ -e '{flag}' ]; then echo 'OK - flag present'; else echo 'CRITICAL - flag missing'; exit 2; fi"] }}
      - name: always-ok
        command: {{ argv: "echo 'OK - fine | value=1'", shell: true }}
      - name: always-failing
        command: {{ argv: ["sh", "-c", "echo 'WARNING - degraded | value=7'; exit 1"] }}
"#,
        hook = server.url("/hook"),
        api = server.url("/health"),
        flag = flag.display()
    )
}

/// Sets the world of tick `n`: even ticks healthy, odd ticks failing.
fn set_world(n: i64, server: &TestServer, flag: &Path) {
    if n % 2 == 0 {
        server.set(Reply::status(200));
        std::fs::write(flag, "").unwrap();
    } else {
        server.set(Reply::status(503));
        let _ = std::fs::remove_file(flag);
    }
}

/// Processes that have `path` open.
fn holders(path: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let fds = std::fs::read_dir(entry.path().join("fd"));
        for fd in fds.into_iter().flatten().flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l == path) {
                let cmdline =
                    std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!(
                    "pid {}: {}",
                    entry.file_name().to_string_lossy(),
                    cmdline.replace('\0', " ")
                ));
            }
        }
    }
    found
}

/// A killed tick can leave a forked child that has not yet exec'd its check
/// command; it shares the lock's open file, so the lock stays held for a
/// moment after the tick died (and a tick started then is rightly skipped).
/// Cron's next tick is a minute away; here, wait until the lock is free —
/// which must happen promptly: nothing of a killed tick may hold it for long.
fn wait_for_the_lock_to_be_free(ws: &Workspace) {
    let path = ws.path().join("state/locks/p.lock");
    let Ok(file) = std::fs::File::open(&path) else {
        return; // no tick got as far as the lock yet
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: flock on a descriptor we own; released just below.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the lock of a killed tick is still held after 5 s by {:?}",
            holders(&path)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn kill_dash_nine_at_random_moments_never_leaves_a_half_tick() {
    let server = TestServer::start(Reply::status(200));
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag");
    let ws = Workspace::new(&config(&server, &flag));
    let mut rng = Lcg(SEED);
    let started = Instant::now();
    let mut completed: Vec<i64> = Vec::new();
    // What each completed tick said, for the failure messages.
    let mut said: std::collections::BTreeMap<i64, (i32, String)> = Default::default();
    let mut killed = 0;
    let mut exit_codes: BTreeSet<i32> = BTreeSet::new();
    for n in 0..TICKS {
        wait_for_the_lock_to_be_free(&ws);
        set_world(n, &server, &flag);
        let mut child = ws
            .command()
            .env("MONITOR_NOW", minute(n).to_string())
            .args(["run", "p"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pause = rng.upto(30);
        // Every 25th tick is left alone, so that some ticks certainly
        // complete between crashes whatever the machine's speed.
        if n % 25 != 24 {
            std::thread::sleep(Duration::from_millis(pause));
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            Some(code) => {
                assert!(
                    code == 0 || code == 1,
                    "tick {n} exited {code}: {}",
                    stderr(&out)
                );
                exit_codes.insert(code);
                completed.push(n);
                said.insert(n, (code, stderr(&out)));
            }
            None => killed += 1,
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "crash test: {TICKS} ticks in {elapsed:?}: {} completed on their own (exit codes {exit_codes:?}), {killed} killed",
        completed.len()
    );
    assert!(killed > 0, "no tick was killed");
    assert!(completed.len() >= 8, "the unkilled ticks completed");

    let db = ws.sqlite();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut fk = db.prepare("PRAGMA foreign_key_check").unwrap();
    assert!(
        fk.query([]).unwrap().next().unwrap().is_none(),
        "foreign keys intact"
    );

    let runs: BTreeSet<i64> = db
        .prepare("SELECT started_at FROM runs WHERE profile = 'p'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let total_runs = ws.count("SELECT count(*) FROM runs");
    assert_eq!(
        total_runs as usize,
        runs.len(),
        "one run row per tick at most"
    );
    assert!(
        runs.len() >= completed.len(),
        "{} runs < {} completed ticks",
        runs.len(),
        completed.len()
    );
    assert!(runs.len() <= TICKS as usize);
    for n in &completed {
        assert!(
            runs.contains(&(minute(*n) * 1000)),
            "tick {n} completed but has no runs row: exit code and stderr {:?}",
            said[n]
        );
    }
    eprintln!(
        "crash test: {} runs rows: {} of them from killed ticks (killed after the commit)",
        runs.len(),
        runs.len() - completed.len()
    );
    let valid: BTreeSet<i64> = (0..TICKS).map(|n| minute(n) * 1000).collect();
    assert!(
        runs.is_subset(&valid),
        "runs rows from unknown ticks: {:?}",
        runs.difference(&valid).collect::<Vec<_>>()
    );

    // Never half a tick: everything a tick wrote belongs to a committed run.
    assert_eq!(
        ws.count("SELECT count(*) FROM alert_history WHERE run_id IS NOT NULL AND run_id NOT IN (SELECT id FROM runs)"),
        0,
        "history rows of a run that was not committed"
    );
    assert_eq!(
        ws.count("SELECT count(*) FROM alert_history h JOIN runs r ON r.id = h.run_id WHERE h.at <> r.finished_at"),
        0,
        "history rows stamped with another run's time"
    );
    assert_eq!(
        ws.count(
            "SELECT count(*) FROM outbox WHERE created_at NOT IN (SELECT started_at FROM runs)"
        ),
        0,
        "outbox rows of a tick that was not committed"
    );
    assert_eq!(
        ws.count(
            "SELECT count(*) FROM alert_state WHERE since NOT IN (SELECT started_at FROM runs)"
        ),
        0,
        "alert state from a tick that was not committed"
    );
    assert!(
        ws.count("SELECT count(*) FROM alert_history") > 0,
        "alerts were written"
    );
    assert!(
        ws.count("SELECT count(*) FROM outbox") > 0,
        "notifications were written"
    );

    // The schema is intact.
    let tables: BTreeSet<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for table in [
        "runs",
        "alert_state",
        "alert_history",
        "outbox",
        "monitor_state",
        "schema_migrations",
    ] {
        assert!(
            tables.contains(table),
            "table {table} is missing: {tables:?}"
        );
    }
    assert_eq!(
        ws.count("SELECT count(*) FROM schema_migrations WHERE version = 1"),
        1
    );
    drop(fk);
    drop(db);

    // A normal tick still works, and a healthy one resolves what fired.
    set_world(TICKS, &server, &flag);
    let out = ws.run_at(minute(TICKS), "p", &[]);
    assert_exit(&out, 1); // `always-failing` is still failing.
    assert!(
        stdout(&out).contains("WARNING - degraded"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        ws.count(&format!(
            "SELECT count(*) FROM runs WHERE started_at = {}",
            minute(TICKS) * 1000
        )),
        1
    );
    assert_eq!(
        ws.count(
            "SELECT count(*) FROM alert_state WHERE task IN ('api', 'flag') AND status != 'quiet'"
        ),
        0,
        "healthy tasks have no live alert"
    );
    assert_eq!(
        ws.count(
            "SELECT count(*) FROM alert_state WHERE task = 'always-failing' AND status = 'firing'"
        ),
        1
    );
    let check: String = ws
        .sqlite()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert!(
        elapsed < Duration::from_secs(60),
        "the kill loop took {elapsed:?}"
    );
}

/// Pids of processes whose command line is exactly `line`.
fn running(line: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let words: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if !zombie && words.join(" ") == line {
            found.push(pid);
        }
    }
    found
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 10, item 7: a tick killed (kill -9, or SIGTERM from systemd or a
/// person) while a probe runs left the probe's children running for ever
/// under init, one that called `setsid` included. Now the probe's own child
/// dies with the tick, and the next tick finds the rest by their mark,
/// kills them and says so. (A SIGTERM is now handled by the tick itself,
/// which kills them all before it ends.)
#[test]
fn what_a_killed_tick_started_for_probes_does_not_outlive_the_next_tick() {
    for (signal, tag) in [(libc::SIGKILL, "4321"), (libc::SIGTERM, "4331")] {
        let grouped = format!("sleep {tag}.5");
        let escaped = format!("sleep {tag}.25");
        let ws = Workspace::new(&profile_p(&format!(
            "      - name: slow\n        command: {{ argv: [\"sh\", \"-c\", \"setsid {escaped} & {grouped}; true\"], timeout: 60s }}\n"
        )));
        let mut tick = ws.spawn_at(minute(0), "p", &[]);
        wait_until("the probe's children", Duration::from_secs(10), || {
            running(&grouped).len() == 1 && running(&escaped).len() == 1
        });
        // SAFETY: a signal to the tick this test started.
        unsafe {
            libc::kill(tick.id() as i32, signal);
        }
        tick.wait().unwrap();
        if signal == libc::SIGTERM {
            // A SIGTERM is handled: the tick kills them all itself.
            wait_until("the children to go", Duration::from_secs(5), || {
                running(&grouped).is_empty() && running(&escaped).is_empty()
            });
            continue;
        }
        // The next real tick, with a probe that ends at once.
        ws.write_config(&profile_p(
            "      - name: slow\n        command: { argv: [\"true\"] }\n",
        ));
        let out = ws.run_at(minute(1), "p", &[]);
        assert_exit(&out, 0);
        wait_until("the leftovers to go", Duration::from_secs(5), || {
            running(&grouped).is_empty() && running(&escaped).is_empty()
        });
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            said.contains(&format!(
                "the tick of pid {} was killed before it ended",
                tick.id()
            )) && said.contains(&escaped),
            "signal {signal}: {said}"
        );
    }
}

/// A probe's child that leaves the process group (`setsid`) is no longer
/// reached by the timeout's group kill: it is killed at the tick's end.
#[test]
fn a_probe_child_that_called_setsid_does_not_survive_the_tick() {
    let escaped = "sleep 4341.25";
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: slow\n        command: {{ argv: [\"sh\", \"-c\", \"setsid {escaped} & sleep 100\"], timeout: 1s }}\n"
    )));
    let began = Instant::now();
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 1);
    assert!(began.elapsed() < Duration::from_secs(10));
    wait_until("the escaped child to go", Duration::from_secs(3), || {
        running(escaped).is_empty()
    });
}

/// Issue 10 review: a check that leaves a `setsid` child holding its
/// output pipe (and shedding the mark with `env -i`) still has its output
/// read, and the child does not outlive the tick.
#[test]
fn a_child_holding_the_output_pipe_loses_no_output_and_does_not_survive() {
    let escaped = "sleep 4351.25";
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: check\n        command: {{ argv: [\"sh\", \"-c\", \"setsid env -i {escaped} & echo 'OK - fine | v=5'\"] }}\n        rules:\n          - {{ name: v-high, signal: v, value: \"> 10\" }}\n"
    )));
    for tick in 0..3 {
        let out = ws.run_at(minute(tick), "p", &["--format", "json"]);
        assert_exit(&out, 0);
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(report["tasks"][0]["signals"]["v"], 5.0, "tick {tick}");
    }
    wait_until("the escaped children to go", Duration::from_secs(3), || {
        running(escaped).is_empty()
    });
}

/// Issue 10 review: Ctrl-C (or SIGTERM) of a dry run, which takes no lock
/// and so is never swept by a next tick, kills its probes' children then.
#[test]
fn an_interrupted_dry_run_leaves_no_probe_child() {
    for (signal, tag) in [(libc::SIGINT, "4361"), (libc::SIGTERM, "4371")] {
        let grouped = format!("sleep {tag}.5");
        let ws = Workspace::new(&profile_p(&format!(
            "      - name: slow\n        command: {{ argv: [\"sh\", \"-c\", \"{grouped}; true\"], timeout: 60s }}\n"
        )));
        let mut tick = ws.spawn_at(minute(0), "p", &["--dry-run"]);
        wait_until("the probe's child", Duration::from_secs(10), || {
            running(&grouped).len() == 1
        });
        // SAFETY: a signal to the dry run this test started.
        unsafe {
            libc::kill(tick.id() as i32, signal);
        }
        tick.wait().unwrap();
        wait_until("the child to go", Duration::from_secs(3), || {
            running(&grouped).is_empty()
        });
    }
}

/// Issue 11, item 10: SIGTERM to a tick (systemd stopping the unit,
/// supercronic shutting down) kills its probe children and says so, on
/// stderr (the journal, cron's mail) and in the log file, even under
/// `--quiet`.
#[test]
fn a_tick_stopped_by_sigterm_says_so_on_stderr_and_in_the_log_file() {
    let grouped = "sleep 4381.5";
    // Review: a child that left the group with setsid outlived the stop.
    let escaped = "sleep 4381.25";
    let ws = Workspace::new(&format!(
        "log_file: monitor.log\n{}",
        profile_p(&format!(
            "      - name: slow\n        command: {{ argv: [\"sh\", \"-c\", \"setsid {escaped} & {grouped}; true\"], timeout: 60s }}\n"
        ))
    ));
    let tick = ws
        .command()
        .env("MONITOR_NOW", minute(0).to_string())
        .args(["run", "p", "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the probe's children", Duration::from_secs(10), || {
        running(grouped).len() == 1 && running(escaped).len() == 1
    });
    // SAFETY: a signal to the tick this test started.
    unsafe {
        libc::kill(tick.id() as i32, libc::SIGTERM);
    }
    let out = tick.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGTERM));
    wait_until("the probe's children to go", Duration::from_secs(5), || {
        running(grouped).is_empty() && running(escaped).is_empty()
    });
    let log = std::fs::read_to_string(ws.path().join("monitor.log")).unwrap_or_default();
    for (place, text) in [("stderr", stderr(&out)), ("log file", log)] {
        assert!(
            text.contains("the tick of p was stopped by SIGTERM") && text.contains("killed"),
            "{place}: {text}"
        );
    }
}

/// Every tick opens the database alone, and SQLite then reads its whole
/// write-ahead log back: a tick empties the log once it is over 512 KiB,
/// so a tick reads at most that, not the 4 MB and more SQLite's own
/// checkpoints leave. Minutely ticks of a profile whose tasks change state
/// every tick (so each writes history) keep the log under 160 pages, and
/// every tick's state is in the database.
#[test]
fn the_write_ahead_log_stays_small_over_many_ticks() {
    let flags = tempfile::tempdir().unwrap();
    let tasks: String = (0..6)
        .map(|i| {
            let flag = flags.path().join(format!("t{i}"));
            let flag = flag.display();
            format!(
                "      - name: t{i}\n        command: {{ argv: 'if test -e {flag}; then rm {flag}; else touch {flag}; exit 1; fi', shell: true }}\n"
            )
        })
        .collect();
    let ws = Workspace::new(&profile_p(&tasks));
    let ticks = 80;
    for n in 0..ticks {
        let out = Tick::new(&ws).at(minute(n)).run("p");
        assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
    }
    let wal = ws.db().with_file_name("monitor.db-wal");
    let pages = || std::fs::metadata(&wal).map_or(0, |m| m.len()) / 4120;
    assert!(pages() < 160, "the write-ahead log holds {} pages", pages());
    assert_eq!(ws.count("SELECT count(*) FROM runs"), ticks);
    // A reader holding an old snapshot (the API mid-request) is not
    // waited for: the ticks go on at their pace, and the log is emptied
    // once the reader is gone.
    let reader = ws.sqlite();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM runs;")
        .unwrap();
    for n in ticks..ticks + 30 {
        let started = Instant::now();
        let out = Tick::new(&ws).at(minute(n)).run("p");
        assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "tick {n} waited"
        );
    }
    let held = pages();
    assert!(held > 160, "the log holds {held} pages behind the reader");
    drop(reader);
    for n in ticks + 30..ticks + 32 {
        Tick::new(&ws).at(minute(n)).run("p");
    }
    assert!(
        pages() < held,
        "{} pages, {held} behind the reader",
        pages()
    );
}
