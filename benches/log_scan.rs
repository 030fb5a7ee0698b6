//! The log probe's cost: the line scanner's throughput on realistic lines
//! with ten regexes, and a tick on a 1 GiB log that grew by 1 MiB against a
//! tick on a small log that grew by the same 1 MiB (it should cost the same:
//! only new bytes are read).
//!
//!     cargo bench --bench log_scan            # 256 MiB scanned, 1 GiB file
//!     LOG_SCAN_MIB=512 cargo bench --bench log_scan
//!
//! Prints MB/s and milliseconds; exits non-zero only if a run goes wrong.

use monitor::clock::Timestamp;
use monitor::probe::log::{LogConfig, LogSource};
use monitor::probe::log::{Pass, Scanner};
use monitor::probe::{Context, Mode, Observation, TaskMemory};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Ten regexes, as in seeds 000 and 004: literals and `(?i)` regexes, of
/// which only a few lines in 10 000 match.
const PROBE: &str = r#"
path: /dev/null
patterns:
  - { name: tls, regex: "(?i)tls (handshake|error)", severity: critical }
  - { name: panic, regex: "panicked at", severity: critical }
  - { name: oom, regex: "(?i)out of memory", severity: critical }
  - { name: refused, regex: "(?i)connection refused", severity: warning }
events:
  - { regex: "task started: (?P<id>\\d+)", message: "Task Started: {id}" }
  - { regex: "task finished: (?P<id>\\d+)", message: "Task Finished: {id}" }
states:
  major_sync: { enter: "Switched to major sync state", leave: "No longer in major sync state" }
session: "Running session (?P<session>\\d+)"
counters: { producing: "Prepared block for proposing|Pre-sealed block for proposal" }
"#;

/// A small deterministic generator (xorshift64*), so runs compare.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `bytes` of log lines like a prover's and a substrate node's, with a rare
/// line that some regex matches.
fn log_lines(bytes: usize, seed: u64) -> Vec<u8> {
    let mut random = Random(seed | 1);
    let mut out = Vec::with_capacity(bytes + 512);
    let rare = [
        "task started: 123456",
        "task finished: 123456",
        "Running session 42",
        "Prepared block for proposing at 1234 (5 ms) [hash: 0x9f3c…]",
        "Switched to major sync state.",
        "No longer in major sync state.",
        "WARN tls handshake eof from peer",
        "ERROR connection refused (os error 111)",
    ];
    let mut n = 0u64;
    while out.len() < bytes {
        n += 1;
        let (minute, second, millis) = (n / 60_000 % 60, n / 1000 % 60, n % 1000);
        let _ = write!(out, "2026-11-26T20:{minute:02}:{second:02}.{millis:03}Z ");
        let _ = match random.below(10_000) {
            0..=3 => writeln!(
                out,
                "INFO  {}",
                rare[random.below(rare.len() as u64) as usize]
            ),
            4..=4000 => writeln!(
                out,
                "INFO  substrate: ✨ Imported #{} (0x{:016x}…{:04x}), peers: {}",
                1_000_000 + n,
                random.next(),
                random.below(65536),
                random.below(50)
            ),
            4001..=7000 => writeln!(
                out,
                "DEBUG prover::worker: proof {} step {}/{} done in {}.{:03}s gpu={} mem={}MiB",
                random.below(1_000_000),
                random.below(100),
                100,
                random.below(10),
                random.below(1000),
                random.below(8),
                random.below(80_000)
            ),
            7001..=9000 => writeln!(
                out,
                "INFO  sync: 💤 Idle ({} peers), best: #{} (0x{:08x}…), finalized #{} (0x{:08x}…), ⬇ {:.1}kiB/s ⬆ {:.1}kiB/s",
                random.below(50),
                1_000_000 + n,
                random.below(u64::from(u32::MAX)),
                999_000 + n,
                random.below(u64::from(u32::MAX)),
                random.below(10_000) as f64 / 10.0,
                random.below(10_000) as f64 / 10.0
            ),
            _ => writeln!(
                out,
                "TRACE net: peer 12D3KooW{:x} sent {} bytes on /aleph/1 substream {}",
                random.next(),
                random.below(100_000),
                random.below(64)
            ),
        };
    }
    out
}

fn probe() -> LogConfig {
    serde_yaml::from_str(PROBE).expect("the bench's probe config is valid")
}

/// Scans `megabytes` of log lines with `probe`'s regexes; prints MB/s.
fn scan_throughput(label: &str, probe: &LogConfig, megabytes: usize) {
    let scanner = Scanner::new(probe).expect("the bench's regexes compile");
    let text = log_lines(megabytes * MIB, 7);
    let mut best = Duration::MAX;
    let mut summary = String::new();
    for _ in 0..3 {
        let mut state = scanner.initial_state();
        let mut findings = scanner.findings();
        let started = Instant::now();
        let consumed = scanner.scan(&text, Pass::Live, &mut state, &mut findings);
        let took = started.elapsed();
        assert_eq!(consumed, text.len());
        if took < best {
            best = took;
            summary = format!(
                "{} lines, {} pattern matches, {} events (+{} over the cap), session {:?}, producing {}",
                findings.lines,
                findings.patterns.iter().map(|p| p.count).sum::<u64>(),
                findings.events.len(),
                findings.events_dropped.iter().map(|(_, n)| n).sum::<u64>(),
                state.session,
                state.counters[0],
            );
        }
    }
    let mb_per_s = text.len() as f64 / 1e6 / best.as_secs_f64();
    println!(
        "scan ({label}): {:.0} MiB in {:.0} ms = {mb_per_s:.0} MB/s (best of 3; target >= 300 MB/s)",
        text.len() as f64 / MIB as f64,
        best.as_secs_f64() * 1000.0
    );
    println!("      {summary}");
}

/// One tick of the probe on `path`, from `state`; the state it leaves.
fn tick(probe: &LogConfig, state: &TaskMemory, now: i64) -> (Observation, Duration) {
    let context = Context {
        now: Timestamp::from_secs(now),
        mode: Mode::Tick,
        deadline: Instant::now() + Duration::from_secs(60),
        timeout: Duration::from_secs(60),
        state,
    };
    let mut out = Observation::default();
    let started = Instant::now();
    monitor::probe::log::observe(probe, &context, &mut out);
    (out, started.elapsed())
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("the bench log opens for append");
    file.write_all(bytes)
        .expect("the bench log takes an append");
}

/// Median ms of `rounds` ticks, each after appending 1 MiB to the log at
/// `path` (first seen before the rounds).
fn ticks_after_appends(path: &Path, rounds: usize) -> f64 {
    let mut probe = probe();
    probe.source = LogSource::File(path.to_path_buf());
    let (first, _) = tick(&probe, &TaskMemory::new(), 1_790_000_000);
    let mut state = first.state;
    let mut times = Vec::new();
    for round in 0..rounds {
        append(path, &log_lines(MIB, 100 + round as u64));
        let (out, took) = tick(&probe, &state, 1_790_000_060 + 60 * round as i64);
        assert!(out.healthy(), "{:?}", out.checks);
        state = out.state;
        times.push(took.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn tick_cost() {
    let dir = tempfile::tempdir().expect("a temp folder for the bench");
    let big = dir.path().join("big.log");
    let chunk = log_lines(64 * MIB, 11);
    {
        let mut file = std::fs::File::create(&big).expect("the big log is created");
        for _ in 0..16 {
            file.write_all(&chunk).expect("the big log is written");
        }
    }
    let small = dir.path().join("small.log");
    std::fs::write(&small, b"").expect("the small log is created");
    let first_sight = {
        let mut probe = probe();
        probe.source = LogSource::File(big.clone());
        tick(&probe, &TaskMemory::new(), 1_790_000_000).1
    };
    let rounds = 7;
    let big_ms = ticks_after_appends(&big, rounds);
    let small_ms = ticks_after_appends(&small, rounds);
    println!(
        "tick: first sight of a 1 GiB log: {:.1} ms (primes from its last 1 MiB only)",
        first_sight.as_secs_f64() * 1000.0
    );
    println!(
        "tick: 1 MiB appended to a 1 GiB log: {big_ms:.1} ms; to an empty log: {small_ms:.1} ms (median of {rounds}; ratio {:.2})",
        big_ms / small_ms
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let megabytes = std::env::var("LOG_SCAN_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    scan_throughput("10 regexes, few matches", &probe(), megabytes);
    // Every block import counted: about 40% of the lines are candidates.
    let mut dense = probe();
    dense.counters = serde_yaml::from_str(r#"{ producing: "Imported #\\d+" }"#)
        .expect("the dense counter is valid");
    scan_throughput("10 regexes, a counter on 40% of lines", &dense, megabytes);
    tick_cost();
}
