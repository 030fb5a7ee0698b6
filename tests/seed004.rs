//! Seed 004, the Aleph Zero container monitor, as a decision table: each
//! test plays one of its situations tick by tick (a minute apart on a
//! pinned clock) and ends in the decision the seed describes. Heights come
//! from two JSON-RPC servers on 127.0.0.1 (the node and the network), the
//! node's log is a file the test appends to (instead of `docker logs`), and
//! the restart is a pair of commands that record "stopped" and "started".
//! The rules are the SPEC's `aleph` rules, verbatim.

use crate::common::*;

use serde_json::json;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::Output;

/// A `chain_getHeader` answer: the height as a hex string.
fn header(height: u64) -> Reply {
    Reply::json(json!({
        "jsonrpc": "2.0",
        "id": 1,
        "result": { "number": format!("0x{height:x}") },
    }))
}

/// What a session's log says before the first tick.
const SESSION: &str = "2026-11-26 20:00:00 INFO aleph-party: Running session 7.\n";
const MAJOR_SYNC: &str = "2026-11-26 20:00:01 INFO sync: Switched to major sync state.\n";
const SYNCED: &str = "2026-11-26 20:00:02 INFO sync: No longer in major sync state.\n";
const PRODUCING: &str = "2026-11-26 20:00:03 INFO aleph-block-sync: Prepared block for proposing at 1000.\n2026-11-26 20:00:03 INFO aleph-block-sync: Pre-sealed block for proposal at 1000.\n";
const NEXT_SESSION: &str = "2026-11-26 20:10:00 INFO aleph-party: Running session 8.\n";

/// The SPEC's `aleph` task after its `log:` source: states, session,
/// counters and the four rules, verbatim.
const ALEPH: &str = r#"          states:   { major_sync: { enter: "Switched to major sync state", leave: "No longer in major sync state" } }
          session:  "Running session (?P<session>\\d+)"
          counters: { producing: "Prepared block for proposing|Pre-sealed block for proposal" }
        rules:
          - { name: severe-lag, signal: lag, value: "> 100", remediate: true }
          - { name: moderate-lag, signal: lag, value: "> 20", unless: [major_sync, producing], remediate: true }
          - { name: stalled, signal: progress, value: "== 0", for: 180s, unless: [producing], remediate: true }
          - { name: falling-behind, signal: lag, trend: rising, window: 300s, unless: [producing], remediate: true }
"#;

/// The node under watch: its RPC, the network's, its log, its restarts.
struct Node {
    ws: Workspace,
    local: TestServer,
    reference: TestServer,
}

impl Node {
    /// A node whose log already holds `log` when the monitor first looks.
    fn new(log: &str) -> Node {
        let node = Node {
            ws: Workspace::new(""),
            local: TestServer::start(header(0)),
            reference: TestServer::start(header(0)),
        };
        std::fs::write(node.log_path(), log).unwrap();
        node.ws.write_config(&node.config());
        node
    }

    fn log_path(&self) -> PathBuf {
        self.ws.path().join("node.log")
    }

    fn restarts_path(&self) -> PathBuf {
        self.ws.path().join("restarts.txt")
    }

    /// The SPEC's `aleph` task, with a file for the log and commands that
    /// record the restart. The start command logs a line, as a starting
    /// node does (the health recheck wants the log to move), and stays up
    /// a moment (a start command that exits at once is a failed start).
    fn config(&self) -> String {
        let restarts = self.restarts_path().display().to_string();
        let log = self.log_path().display().to_string();
        profile_p(&format!(
            r#"      - name: aleph
        lag:
          local:     {{ jsonrpc: {{ url: "{local}", method: chain_getHeader }}, extract: /result/number }}
          reference: {{ jsonrpc: {{ url: "{reference}", method: chain_getHeader }}, extract: /result/number }}
        log:
          path: node.log
{ALEPH}        remediate:
          restart:
            stop:  {{ command: "echo stopped >> '{restarts}'" }}
            start: {{ command: "echo started >> '{restarts}'; echo 'node starting' >> '{log}'; exec sleep 3" }}
          cooldown: 300s
"#,
            local = self.local.url("/"),
            reference = self.reference.url("/"),
        ))
    }

    fn heights(&self, local: u64, reference: u64) {
        self.local.set(header(local));
        self.reference.set(header(reference));
    }

    fn log(&self, lines: &str) {
        let mut file = OpenOptions::new()
            .append(true)
            .open(self.log_path())
            .unwrap();
        file.write_all(lines.as_bytes()).unwrap();
    }

    /// One tick at minute `n` with these heights.
    fn tick(&self, n: i64, local: u64, reference: u64) -> Tick {
        self.heights(local, reference);
        Tick::run(&self.ws, n)
    }

    /// What the restart commands recorded, in order.
    fn restarts(&self) -> Vec<String> {
        std::fs::read_to_string(self.restarts_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn started(&self) -> usize {
        self.restarts().iter().filter(|l| *l == "started").count()
    }
}

struct Tick {
    minute: i64,
    out: Output,
}

impl Tick {
    /// The tick of minute `n`, which must have run (exit 0 or 1).
    fn run(ws: &Workspace, n: i64) -> Tick {
        let out = ws.run_at(minute(n), "p", &[]);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "minute {n}: the tick ran\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        Tick { minute: n, out }
    }

    fn text(&self) -> String {
        stdout(&self.out)
    }

    /// This tick's one message about a restart, if there was one.
    fn restart_line(&self) -> Option<String> {
        let lines: Vec<String> = notifications(&self.out)
            .into_iter()
            .filter(|l| l.contains("RESTART"))
            .collect();
        assert!(
            lines.len() <= 1,
            "minute {}: one restart message at most: {lines:#?}",
            self.minute
        );
        lines.into_iter().next()
    }

    /// The rule a healthy restart this tick was for, from its one
    /// `RESTARTED p/aleph/<rule>: was: …` notification.
    fn restarted(&self) -> Option<String> {
        let line = self.restart_line()?;
        let rest = line
            .strip_prefix("[test-host] RESTARTED p/aleph/")
            .unwrap_or_else(|| panic!("minute {}: not a healthy restart: {line}", self.minute));
        let (rule, summary) = rest.split_once(": ").unwrap();
        assert!(summary.starts_with("was: "), "{line}");
        Some(rule.to_string())
    }

    #[track_caller]
    fn assert_restarted_by(&self, rule: &str) {
        assert_eq!(
            self.restarted().as_deref(),
            Some(rule),
            "minute {}:\n{}",
            self.minute,
            self.text()
        );
    }

    #[track_caller]
    fn assert_no_restart(&self) {
        assert_eq!(
            self.restarted(),
            None,
            "minute {}:\n{}",
            self.minute,
            self.text()
        );
        assert!(
            !self.text().contains("RESTART"),
            "minute {}:\n{}",
            self.minute,
            self.text()
        );
    }
}

// ------------------------------------------------------------ severe lag

#[test]
fn severe_lag_restarts_even_in_major_sync() {
    let node = Node::new(&format!("{SESSION}{MAJOR_SYNC}"));
    let tick = node.tick(0, 1000, 1150);
    tick.assert_restarted_by("severe-lag");
    let line = tick.restart_line().unwrap();
    assert!(
        line.starts_with("[test-host] RESTARTED p/aleph/severe-lag: was: lag = 150 (> 100)"),
        "{line}"
    );
    assert_eq!(node.restarts(), ["stopped", "started"]);
}

#[test]
fn severe_lag_restarts_even_while_producing() {
    let node = Node::new(&format!("{SESSION}{PRODUCING}"));
    node.tick(0, 1000, 1101).assert_restarted_by("severe-lag");
    assert_eq!(node.restarts(), ["stopped", "started"]);
}

#[test]
fn a_lag_of_100_is_not_severe() {
    // In major sync, so only the severe rule could restart.
    let node = Node::new(&format!("{SESSION}{MAJOR_SYNC}"));
    node.tick(0, 1000, 1100).assert_no_restart();
    node.tick(1, 1012, 1112).assert_no_restart();
    assert!(node.restarts().is_empty());
}

// ---------------------------------------------------------- moderate lag

#[test]
fn moderate_lag_waits_while_in_major_sync_and_restarts_once_it_ends() {
    let node = Node::new(&format!("{SESSION}{MAJOR_SYNC}"));
    // Lag 50, syncing 12 blocks a minute: the node is catching up.
    node.tick(0, 1000, 1050).assert_no_restart();
    node.tick(1, 1012, 1062).assert_no_restart();
    node.tick(2, 1024, 1074).assert_no_restart();
    node.log(SYNCED);
    let tick = node.tick(3, 1036, 1086);
    tick.assert_restarted_by("moderate-lag");
    assert!(
        tick.restart_line()
            .unwrap()
            .contains("was: lag = 50 (> 20)"),
        "{}",
        tick.text()
    );
    assert_eq!(node.restarts(), ["stopped", "started"]);
}

#[test]
fn moderate_lag_waits_while_producing_in_the_current_session() {
    let node = Node::new(&format!("{SESSION}{PRODUCING}"));
    node.tick(0, 1000, 1050).assert_no_restart();
    node.tick(1, 1012, 1062).assert_no_restart();
    node.log(PRODUCING);
    node.tick(2, 1024, 1074).assert_no_restart();
    assert!(node.restarts().is_empty());
}

#[test]
fn moderate_lag_restarts_when_neither_syncing_nor_producing() {
    let node = Node::new(&format!("{SESSION}{MAJOR_SYNC}{SYNCED}"));
    // 20 is not more than 20.
    node.tick(0, 1000, 1020).assert_no_restart();
    node.tick(1, 1012, 1033).assert_restarted_by("moderate-lag");
    assert_eq!(node.restarts(), ["stopped", "started"]);
}

// ------------------------------------------------------------- sessions

#[test]
fn a_new_session_resets_producing_and_the_moderate_lag_restarts() {
    let node = Node::new(&format!("{SESSION}{PRODUCING}"));
    node.tick(0, 1000, 1050).assert_no_restart();
    node.tick(1, 1012, 1062).assert_no_restart();
    // Session 8 began and the node has produced nothing in it yet.
    node.log(NEXT_SESSION);
    node.tick(2, 1024, 1074).assert_restarted_by("moderate-lag");
}

#[test]
fn blocks_produced_in_an_earlier_session_do_not_count() {
    let node = Node::new(&format!("{SESSION}{PRODUCING}{NEXT_SESSION}"));
    node.tick(0, 1000, 1050).assert_restarted_by("moderate-lag");
}

#[test]
fn blocks_produced_after_the_new_session_began_count() {
    let node = Node::new(&format!("{SESSION}{NEXT_SESSION}{PRODUCING}"));
    node.tick(0, 1000, 1050).assert_no_restart();
    node.tick(1, 1012, 1062).assert_no_restart();
}

// ----------------------------------------------------------------- stall

#[test]
fn no_progress_for_180s_restarts_and_progress_resets_the_count() {
    let node = Node::new(SESSION);
    // The network is quiet too, so only the stall matters (lag 5).
    node.tick(0, 1000, 1005).assert_no_restart();
    // No progress at minutes 1 and 2, then a block: the count starts over.
    node.tick(1, 1000, 1005).assert_no_restart();
    node.tick(2, 1000, 1005).assert_no_restart();
    node.tick(3, 1001, 1006).assert_no_restart();
    // The last progress was seen at minute 3: 180 s without a block at
    // minute 6 (seed 004: "no blocks synced since the last check for at
    // least 3 minutes"), not at 7.
    for n in 4..=5 {
        node.tick(n, 1001, 1006).assert_no_restart();
    }
    let tick = node.tick(6, 1001, 1006);
    tick.assert_restarted_by("stalled");
    assert!(
        tick.restart_line()
            .unwrap()
            .contains("was: progress = 0 (== 0)"),
        "{}",
        tick.text()
    );
    assert_eq!(node.restarts(), ["stopped", "started"]);
}

#[test]
fn a_stall_while_producing_does_not_restart_until_the_session_ends() {
    let node = Node::new(&format!("{SESSION}{PRODUCING}"));
    for n in 0..=5 {
        node.tick(n, 1000, 1005).assert_no_restart();
    }
    // A new session without production: the node has not synced a block
    // for six minutes and no longer produces: it restarts at once.
    node.log(NEXT_SESSION);
    node.tick(6, 1000, 1005).assert_restarted_by("stalled");
}

// -------------------------------------------------------- falling behind

/// Lag 2, 4, 6… (never above 20), the node syncing 10 blocks a minute.
fn rising(n: i64) -> (u64, u64) {
    let local = 1000 + 10 * n as u64;
    (local, local + 2 + 2 * n as u64)
}

#[test]
fn lag_rising_over_300s_restarts() {
    let node = Node::new(SESSION);
    // Rising, but the window is not covered yet.
    for n in 0..=4 {
        let (local, reference) = rising(n);
        node.tick(n, local, reference).assert_no_restart();
    }
    let (local, reference) = rising(5);
    node.tick(5, local, reference)
        .assert_restarted_by("falling-behind");
    assert_eq!(node.restarts(), ["stopped", "started"]);
}

#[test]
fn lag_rising_while_producing_does_not_restart() {
    let node = Node::new(&format!("{SESSION}{PRODUCING}"));
    for n in 0..=7 {
        let (local, reference) = rising(n);
        node.tick(n, local, reference).assert_no_restart();
    }
    assert!(node.restarts().is_empty());
}

#[test]
fn a_dip_inside_the_window_does_not_hide_a_node_falling_behind() {
    let node = Node::new(SESSION);
    // The lag rises 2 a minute with a dip (6 → 5 at minute 3): over the
    // whole window it rose by 8, so the node is falling behind at minute 5.
    let lags = [2, 4, 6, 5, 8, 10];
    for (n, lag) in lags.iter().enumerate() {
        let local = 1000 + 10 * n as u64;
        let tick = node.tick(n as i64, local, local + lag);
        if n < 5 {
            tick.assert_no_restart();
        } else {
            tick.assert_restarted_by("falling-behind");
        }
    }
}

#[test]
fn lag_flat_around_a_level_is_not_falling_behind() {
    let node = Node::new(SESSION);
    // Lag wanders 12–15 for ten minutes: no trend, no restart.
    let lags = [12, 14, 13, 15, 12, 14, 15, 13, 12, 14, 13];
    for (n, lag) in lags.iter().enumerate() {
        let local = 1000 + 10 * n as u64;
        node.tick(n as i64, local, local + lag).assert_no_restart();
    }
}

// -------------------------------------------------------------- cooldown

#[test]
fn a_second_trigger_within_300s_of_a_restart_is_held_then_restarts() {
    // In major sync: only the severe lag can restart.
    let node = Node::new(&format!("{SESSION}{MAJOR_SYNC}"));
    node.tick(0, 1000, 1150).assert_restarted_by("severe-lag");
    for n in 1..=4 {
        let local = 1000 + 12 * n as u64;
        let tick = node.tick(n, local, local + 150);
        tick.assert_no_restart();
        assert!(
            tick.text()
                .contains("restart held: cooldown 5m since the last restart"),
            "minute {n}:\n{}",
            tick.text()
        );
    }
    node.tick(5, 1060, 1210).assert_restarted_by("severe-lag");
    assert_eq!(
        node.restarts(),
        ["stopped", "started", "stopped", "started"]
    );
}

// ------------------------------------------------------------ the figures

#[test]
fn each_tick_shows_the_lag_what_was_caught_up_the_rate_and_the_eta() {
    let node = Node::new(&format!("{SESSION}{MAJOR_SYNC}"));
    node.tick(0, 988, 1051);
    let tick = node.tick(1, 1000, 1057);
    tick.assert_no_restart();
    // 12 blocks synced while the network made 6: the lag closes by 6 a
    // minute, so the 57 left take 9m 30s.
    assert!(
        tick.text().contains(
            "lag 57 (local 1000, reference 1057); +12 since last tick, 0.2 blocks/s, caught up in ~9m 30s"
        ),
        "{}",
        tick.text()
    );
    let tick = node.tick(2, 1057, 1057);
    assert!(
        tick.text()
            .contains("caught up (lag 0) at height 1057; +57 since last tick, 0.95 blocks/s"),
        "{}",
        tick.text()
    );
    assert_eq!(node.started(), 0);
}

#[test]
fn a_synced_node_is_healthy_from_its_first_tick() {
    // No progress figure exists before the second reading: the stall rule
    // waits for it instead of warning about missing data.
    let node = Node::new(SESSION);
    let first = node.tick(0, 5000, 5000);
    assert_eq!(first.out.status.code(), Some(0), "{}", first.text());
    assert!(!first.text().contains("no-data"), "{}", first.text());
    let second = node.tick(1, 5010, 5010);
    assert_eq!(second.out.status.code(), Some(0), "{}", second.text());
}

// ------------------------------------- with a `docker logs`-style command

/// Seed 004 as it runs in production: the node's log read through a
/// command (`docker logs --since {since} aleph-node`, played by a script
/// printing the lines stamped after `--since`), the SPEC's rules, and a
/// restart whose commands record what they did. `wait_healthy` is short so
/// a restart that cannot help fails fast.
struct LiveNode {
    ws: Workspace,
    local: TestServer,
    reference: TestServer,
}

impl LiveNode {
    fn new() -> LiveNode {
        let node = LiveNode {
            ws: Workspace::new(""),
            local: TestServer::start(header(0)),
            reference: TestServer::start(header(0)),
        };
        let script = node.ws.path().join("docker-logs");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# docker logs --since SECONDS CONTAINER\nawk -v since=\"$2\" '$1 > since {{ $1 = \"\"; print substr($0, 2) }}' '{}'\n",
                node.ws.path().join("stamped.log").display()
            ),
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        std::fs::write(node.ws.path().join("stamped.log"), "").unwrap();
        node.log(0, "Running session 7.");
        let restarts = node.ws.path().join("restarts.txt").display().to_string();
        node.ws.write_config(&profile_p(&format!(
            r#"      - name: aleph
        lag:
          local:     {{ jsonrpc: {{ url: "{local}", method: chain_getHeader }}, extract: /result/number }}
          reference: {{ jsonrpc: {{ url: "{reference}", method: chain_getHeader }}, extract: /result/number }}
        log:
          command: ["{script}", "--since", "{{since}}", "aleph-node"]
{ALEPH}        remediate:
          restart:
            stop:  {{ command: "echo stopped >> '{restarts}'" }}
            start: {{ command: "echo started >> '{restarts}'; echo \"$((MONITOR_NOW + 1)) Starting Aleph Node\" >> '{stamped}'; exec sleep 3" }}
            wait_healthy: 1s
          cooldown: 300s
"#,
            local = node.local.url("/"),
            reference = node.reference.url("/"),
            script = script.display(),
            stamped = node.ws.path().join("stamped.log").display(),
        )));
        node
    }

    /// A log line the node printed at minute `n` (before that tick).
    fn log(&self, n: i64, line: &str) {
        let mut file = OpenOptions::new()
            .append(true)
            .open(self.ws.path().join("stamped.log"))
            .unwrap();
        writeln!(file, "{} {line}", minute(n) - 1).unwrap();
    }

    fn tick(&self, n: i64, local: Reply, reference: u64) -> Tick {
        self.local.set(local);
        self.reference.set(header(reference));
        self.log(n, &format!("Imported #{reference}"));
        Tick::run(&self.ws, n)
    }

    fn started(&self) -> usize {
        std::fs::read_to_string(self.ws.path().join("restarts.txt"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "started")
            .count()
    }
}

#[test]
fn a_local_rpc_answering_503_is_one_critical_alert_and_one_restart_within_the_cooldown() {
    let node = LiveNode::new();
    let first = node.tick(0, header(5000), 5000);
    assert_exit(&first.out, 0);
    // The node's RPC answers 503 for four ticks.
    let down = node.tick(1, Reply::status(503), 5010);
    assert_exit(&down.out, 1);
    let told = notifications(&down.out);
    assert_eq!(told.len(), 1, "one message for one outage: {told:#?}");
    assert!(
        told[0].starts_with("[test-host] RESTART FAILED critical p/aleph/health: lag: local ")
            && told[0].contains("HTTP 503"),
        "{}",
        told[0]
    );
    assert_eq!(node.started(), 1);
    for n in 2..=4 {
        let tick = node.tick(n, Reply::status(503), 5000 + 10 * n as u64);
        assert_exit(&tick.out, 1);
        assert!(
            notifications(&tick.out).is_empty(),
            "minute {n}:\n{}",
            tick.text()
        );
        assert!(
            tick.text()
                .contains("restart held: cooldown 5m since the last restart"),
            "minute {n}:\n{}",
            tick.text()
        );
    }
    assert_eq!(node.started(), 1, "no second restart within the cooldown");
    // Back, in sync: resolved, once.
    let back = node.tick(5, header(5050), 5050);
    assert_exit(&back.out, 0);
    let told = notifications(&back.out);
    assert!(
        told.len() == 1
            && told[0].starts_with("[test-host] RESOLVED")
            && told[0].contains("p/aleph/health"),
        "{told:#?}"
    );
    assert_eq!(node.started(), 1);
}

#[test]
fn an_in_sync_node_whose_lag_jitters_is_left_alone_for_thirty_ticks() {
    let node = LiveNode::new();
    let jitter = [
        0, 1, 1, 2, 2, 2, 3, 3, 0, 1, 2, 3, 3, 3, 1, 0, 0, 1, 1, 2, 3, 0, 2, 2, 3, 3, 3, 3, 1, 2,
    ];
    for (n, lag) in jitter.iter().enumerate() {
        let reference = 8000 + 10 * n as u64;
        let tick = node.tick(n as i64, header(reference - lag), reference);
        assert_exit(&tick.out, 0);
        assert!(
            notifications(&tick.out).is_empty(),
            "minute {n}:\n{}",
            tick.text()
        );
    }
    assert_eq!(node.started(), 0, "zero restarts");
}

#[test]
fn a_node_falling_further_behind_is_not_catching_up_and_its_restart_resolves_nothing() {
    let node = LiveNode::new();
    // Lag 120: severe; the restart's probes pass, but lag is judged anew.
    // (The moderate rule breaches too, and says so.)
    let first = node.tick(0, header(1000), 1120);
    let told = notifications(&first.out);
    assert!(
        told.len() == 2
            && told[0] == "[test-host] FIRING critical p/aleph/moderate-lag: lag = 120 (> 20)"
            && told[1]
                .starts_with("[test-host] RESTARTED p/aleph/severe-lag: was: lag = 120 (> 100)")
            && told[1].contains("severe-lag is judged again from the next tick"),
        "{told:#?}"
    );
    // A minute later: 12 blocks synced, the network made 71: lag 179.
    let second = node.tick(1, header(1012), 1191);
    assert_exit(&second.out, 1);
    assert!(
        second
            .text()
            .contains("lag 179 (local 1012, reference 1191); +12 since last tick, 0.2 blocks/s; not catching up: lag +59 in 60 s"),
        "{}",
        second.text()
    );
    assert!(!second.text().contains("caught up in"), "{}", second.text());
    // Still firing: no new FIRING, no RESOLVED; the restart waits for its cooldown.
    assert!(notifications(&second.out).is_empty(), "{}", second.text());
    assert!(
        second.text().contains("restart held: cooldown"),
        "{}",
        second.text()
    );
    assert_eq!(node.started(), 1);
}

#[test]
fn a_stalled_node_is_restarted_and_judged_without_a_dead_reference() {
    let node = LiveNode::new();
    // The network's RPC is rate-limiting us; the node's own height stalls.
    node.reference.set(Reply::status(429));
    node.local.set(header(1010));
    let mut restarted_at = None;
    for n in 0..=5 {
        node.log(n, "Idle (3 peers)");
        let out = node.ws.run_at(minute(n), "p", &[]);
        let told = notifications(&out);
        if let Some(line) = told.iter().find(|l| l.contains("RESTART")) {
            assert!(
                line.starts_with("[test-host] RESTARTED p/aleph/stalled: was: progress = 0 (== 0)"),
                "a dead reference is no verdict on the restarted node: {line}"
            );
            restarted_at.get_or_insert(n);
        }
    }
    // Read at 0, no rise since: 180 s of stall at minute 3.
    assert_eq!(
        restarted_at,
        Some(3),
        "restarted once the stall lasted 180 s"
    );
    assert_eq!(node.started(), 1);
}
