//! Action tasks: things done on schedule rather than watched — trimming a
//! log in place, running a command. An action's result is its task's check
//! (a failed action alerts through the implicit rule). Actions act only in
//! a real tick: a dry run (and a recheck) says what it would do.

use crate::config::{Why, within_mapping};
use crate::probe::command::CommandConfig;
use crate::probe::disk::human_bytes;
use crate::probe::{Check, CheckStatus, Context, Mode, Observation, command};
use serde::Deserialize;
use serde::de::Deserializer;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An action task: something done on schedule rather than watched.
#[derive(Debug, Clone)]
pub enum Action {
    TrimLog(TrimLog),
    Command(CommandConfig),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(default)]
    trim_log: Option<TrimLog>,
    #[serde(default)]
    command: Option<CommandConfig>,
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawAction| match (raw.trim_log, raw.command) {
            (Some(trim), None) if trim.keep_lines == 0 => {
                Err(Why("`trim_log.keep_lines` must be at least 1".into()))
            }
            (Some(trim), None) => Ok(Action::TrimLog(trim)),
            (None, Some(command)) => Ok(Action::Command(command)),
            _ => Err(Why(
                "an `action` takes either `trim_log` or `command`".into()
            )),
        })
    }
}

impl Action {
    /// Paths written relative to jobs.yaml's folder, to resolve at load.
    pub fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        match self {
            Action::TrimLog(trim) => vec![&mut trim.path],
            Action::Command(command) => command.cwd.iter_mut().collect(),
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TrimLog {
    pub path: PathBuf,
    pub keep_lines: u64,
}

/// Runs what `action` names.
pub fn run(action: &Action, context: &Context, out: &mut Observation) {
    match action {
        Action::TrimLog(trim) => out.checks.push(trim_log(trim, context)),
        Action::Command(command) => run_command(command, context, out),
    }
}

/// A command action runs like the command probe: Nagios exit codes give
/// the check, perfdata gives signals.
fn run_command(probe: &CommandConfig, context: &Context, out: &mut Observation) {
    match context.mode {
        Mode::Tick => command::observe(probe, context, out),
        Mode::DryRun | Mode::Recheck => out.checks.push(Check {
            probe: "command",
            status: CheckStatus::Ok,
            summary: format!("would run {}", probe.command),
        }),
    }
}

// ---------------------------------------------------------------- trim_log

/// Bytes read or copied at once: memory stays bounded whatever the log size.
const CHUNK: usize = 64 * 1024;

fn trim_log(trim: &TrimLog, context: &Context) -> Check {
    let path = &trim.path;
    let keep = trim.keep_lines;
    let (status, summary) = match trim_file(path, keep, context) {
        Ok(trimmed) => (CheckStatus::Ok, trimmed.describe(path, keep)),
        Err(summary) => (CheckStatus::Failed, summary),
    };
    Check {
        probe: "trim_log",
        status,
        summary,
    }
}

/// What trimming did.
#[derive(Debug, PartialEq)]
pub enum TrimOutcome {
    /// The file had no more lines than it may keep.
    KeptAll { lines: u64 },
    /// Dry run: the file has `lines` lines, more than it may keep.
    WouldTrim { lines: u64 },
    Trimmed {
        lines_before: u64,
        /// Lines in the file after the trim: the kept ones, plus any the
        /// writer appended while the trim ran.
        lines_after: u64,
        freed_bytes: u64,
    },
}

impl TrimOutcome {
    /// What the trim of `path` to `keep` lines did, in one line.
    pub fn describe(&self, path: &Path, keep: u64) -> String {
        match self {
            TrimOutcome::KeptAll { lines } => format!(
                "kept all {lines} lines of {} (keep_lines {keep})",
                path.display()
            ),
            TrimOutcome::WouldTrim { lines } => format!(
                "would trim {} to its last {keep} lines (now {lines} lines)",
                path.display()
            ),
            TrimOutcome::Trimmed {
                lines_before,
                lines_after,
                freed_bytes,
            } => format!(
                "trimmed {} from {lines_before} to {lines_after} lines (freed {})",
                path.display(),
                human_bytes(*freed_bytes)
            ),
        }
    }
}

/// Keeps the last `keep` lines of the file at `path` in place: same inode,
/// so a writer holding it open with `O_APPEND` keeps writing into the
/// trimmed file.
///
/// A line ends with `\n`; an unterminated last line is a line being
/// written and counts as one (as `tail -n` counts it), so the trimmed file
/// always starts at a line boundary.
///
/// The kept bytes are copied to the front chunk by chunk, then the file is
/// cut to their length. Whatever the writer appends during the copy is
/// copied too: the size is checked again after each pass and the cut is
/// made only once a check finds nothing new. A write that lands between
/// that last check and the cut (two system calls apart) is lost: no
/// system call truncates "only if the size is still N". To make that
/// unlikely for a writer that logs in bursts, the cut waits for a pause
/// of [`QUIET`] in its writing (at most [`QUIET_WAIT`]); a writer that
/// never pauses can still lose a line to it.
///
/// Counting runs read-only and stops at the task's deadline; once copying
/// has begun it runs to the end, since stopping half-way would leave the
/// kept lines followed by a stale copy of old ones.
pub fn trim_file(path: &Path, keep: u64, context: &Context) -> Result<TrimOutcome, String> {
    let acting = context.mode == Mode::Tick;
    let file = open(path, acting)?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot trim {}: {e}", path.display()))?
        .len();
    let lines = count_lines(&file, size, keep, context.deadline).map_err(|e| match e {
        ScanError::Io(e) => format!("cannot trim {}: reading: {e}", path.display()),
        ScanError::OutOfTime => format!(
            "counting the lines of {} did not finish within {}; nothing trimmed",
            path.display(),
            crate::config::Duration(context.timeout)
        ),
    })?;
    let Some(keep_from) = lines.keep_from else {
        return Ok(TrimOutcome::KeptAll { lines: lines.total });
    };
    if !acting {
        return Ok(TrimOutcome::WouldTrim { lines: lines.total });
    }
    let shifted = shift_to_front(&file, keep_from, context.deadline)
        .map_err(|e| format!("trimming {}: {e}", path.display()))?;
    Ok(TrimOutcome::Trimmed {
        lines_before: lines.total,
        lines_after: shifted.lines,
        freed_bytes: keep_from,
    })
}

fn open(path: &Path, write: bool) -> Result<File, String> {
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("cannot trim {}: it does not exist", path.display())
        }
        _ => format!("cannot trim {}: {e}", path.display()),
    })?;
    if !metadata.is_file() {
        return Err(format!(
            "cannot trim {}: not a regular file",
            path.display()
        ));
    }
    // Never O_APPEND, never O_TRUNC: the copy writes at chosen offsets.
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|e| {
            let purpose = if write { "writing" } else { "reading" };
            format!("cannot trim {}: opening for {purpose}: {e}", path.display())
        })
}

/// The lines of the first `size` bytes of a file.
#[derive(Debug, PartialEq)]
struct Lines {
    total: u64,
    /// Offset where the last `keep` lines begin; `None` when every line is kept.
    keep_from: Option<u64>,
}

#[derive(Debug)]
enum ScanError {
    Io(std::io::Error),
    OutOfTime,
}

/// Scans backwards from `size` in chunks, counting every line and noting
/// where the last `keep` lines begin.
fn count_lines(file: &File, size: u64, keep: u64, deadline: Instant) -> Result<Lines, ScanError> {
    if size == 0 {
        return Ok(Lines {
            total: 0,
            keep_from: None,
        });
    }
    let mut buf = vec![0u8; CHUNK];
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, size - 1)
        .map_err(ScanError::Io)?;
    let unterminated = last[0] != b'\n';
    // Kept lines begin after this newline, counted from the end: an
    // unterminated last line has no newline of its own.
    let boundary = if unterminated { keep } else { keep + 1 };
    let mut keep_from = (boundary == 0).then_some(size);
    let mut newlines = 0u64;
    let mut position = size;
    while position > 0 {
        if Instant::now() >= deadline {
            return Err(ScanError::OutOfTime);
        }
        let start = position.saturating_sub(CHUNK as u64);
        let chunk = &mut buf[..(position - start) as usize];
        file.read_exact_at(chunk, start).map_err(ScanError::Io)?;
        for (index, byte) in chunk.iter().enumerate().rev() {
            if *byte == b'\n' {
                newlines += 1;
                if newlines == boundary {
                    keep_from = Some(start + index as u64 + 1);
                }
            }
        }
        position = start;
    }
    Ok(Lines {
        total: newlines + u64::from(unterminated),
        keep_from,
    })
}

/// What the copy kept.
struct Shifted {
    lines: u64,
}

/// How long the file must not have grown before it is cut: a writer that
/// logs in bursts is then between two bursts, not inside one.
const QUIET: Duration = Duration::from_millis(2);
/// How long to wait for such a pause before cutting anyway.
const QUIET_WAIT: Duration = Duration::from_millis(250);
/// How often the size is checked while waiting. Sleeping rather than
/// spinning leaves the CPU to the writer and starts each check (and the
/// cut that may follow it) with a fresh time slice.
const POLL: Duration = Duration::from_micros(200);

/// Moves bytes `[from, end)` to the front and cuts the file after them,
/// following the end while a writer appends. The cut waits (at most
/// [`QUIET_WAIT`], never past `deadline`) until the file has not grown for
/// [`QUIET`], and follows the last size check directly.
fn shift_to_front(file: &File, from: u64, deadline: Instant) -> std::io::Result<Shifted> {
    let mut buf = vec![0u8; CHUNK];
    let mut read = from;
    let mut newlines = 0u64;
    let mut last_byte = b'\n';
    let give_up = deadline.min(Instant::now() + QUIET_WAIT);
    // When the size last changed, as far as we can tell: the first check
    // that saw the current size.
    let mut unchanged_since = Instant::now();
    let mut just_copied = true;
    loop {
        let end = file.metadata()?.len();
        if end == read {
            // Past the wait, a writer that never pauses is best caught
            // right after a pass has caught up with it.
            let now = Instant::now();
            let quiet = now.duration_since(unchanged_since) >= QUIET;
            if !(quiet || (now >= give_up && just_copied)) {
                just_copied = false;
                std::thread::sleep(POLL);
                continue;
            }
            // Nothing between the size check above and this cut: a write
            // landing between the two is cut off with the stale tail.
            file.set_len(read - from)?;
            let unterminated = read > from && last_byte != b'\n';
            return Ok(Shifted {
                lines: newlines + u64::from(unterminated),
            });
        }
        if end < read {
            return Err(std::io::Error::other(format!(
                "the file shrank to {end} bytes while {read} were being kept (truncated by another program?)"
            )));
        }
        unchanged_since = Instant::now();
        just_copied = true;
        while read < end {
            let length = (end - read).min(CHUNK as u64) as usize;
            let chunk = &mut buf[..length];
            file.read_exact_at(chunk, read)?;
            // The destination lies `from` bytes before the source, so a
            // chunk never overwrites bytes not yet read.
            file.write_all_at(chunk, read - from)?;
            newlines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            last_byte = chunk[length - 1];
            read += length as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommandLine;
    use crate::probe::TaskMemory;
    use std::os::unix::fs::MetadataExt;

    fn context(state: &TaskMemory, mode: Mode) -> Context<'_> {
        Context::for_test(state, mode)
    }

    fn numbered(count: u64) -> String {
        (1..=count).map(|n| format!("line {n}\n")).collect()
    }

    fn lines_of(text: &str, at: usize) -> Lines {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, text).unwrap();
        let file = File::open(&path).unwrap();
        let far = Instant::now() + Duration::from_secs(10);
        count_lines(&file, text.len() as u64, at as u64, far).unwrap()
    }

    #[test]
    fn counting_treats_an_unterminated_last_line_as_a_line() {
        assert_eq!(
            lines_of("", 1),
            Lines {
                total: 0,
                keep_from: None
            }
        );
        assert_eq!(
            lines_of("a\nb\nc\n", 2),
            Lines {
                total: 3,
                keep_from: Some(2)
            }
        );
        assert_eq!(
            lines_of("a\nb\nc", 2),
            Lines {
                total: 3,
                keep_from: Some(2)
            }
        );
        assert_eq!(
            lines_of("a\nb\nc\n", 3),
            Lines {
                total: 3,
                keep_from: None
            }
        );
        assert_eq!(
            lines_of("a\nb\nc\n", 0),
            Lines {
                total: 3,
                keep_from: Some(6)
            }
        );
        assert_eq!(
            lines_of("a\nb\npartial", 0),
            Lines {
                total: 3,
                keep_from: Some(11)
            }
        );
        assert_eq!(
            lines_of("\n\n\n", 1),
            Lines {
                total: 3,
                keep_from: Some(2)
            }
        );
    }

    #[test]
    fn counting_across_chunk_boundaries() {
        // Lines of varying length so newlines straddle the 64 KiB chunks.
        let text: String = (0..30_000)
            .map(|n| format!("{n:0>width$}\n", width = n % 13))
            .collect();
        let expected_from = {
            let kept: String = (20_000..30_000)
                .map(|n| format!("{n:0>width$}\n", width = n % 13))
                .collect();
            text.len() - kept.len()
        };
        assert_eq!(
            lines_of(&text, 10_000),
            Lines {
                total: 30_000,
                keep_from: Some(expected_from as u64)
            }
        );
    }

    #[test]
    fn trims_in_place_to_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, numbered(200_000)).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        let state = TaskMemory::new();
        let result = trim_file(&path, 1000, &context(&state, Mode::Tick)).unwrap();
        let expected = (199_001..=200_000)
            .map(|n| format!("line {n}\n"))
            .collect::<String>();
        let freed = (numbered(200_000).len() - expected.len()) as u64;
        assert_eq!(
            result,
            TrimOutcome::Trimmed {
                lines_before: 200_000,
                lines_after: 1000,
                freed_bytes: freed
            }
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
    }

    #[test]
    fn short_files_and_dry_runs_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, numbered(1200)).unwrap();
        let state = TaskMemory::new();
        let check = trim_log(
            &TrimLog {
                path: path.clone(),
                keep_lines: 5000,
            },
            &context(&state, Mode::Tick),
        );
        assert_eq!(check.status, CheckStatus::Ok);
        assert_eq!(
            check.summary,
            format!(
                "kept all 1200 lines of {} (keep_lines 5000)",
                path.display()
            )
        );
        let check = trim_log(
            &TrimLog {
                path: path.clone(),
                keep_lines: 100,
            },
            &context(&state, Mode::DryRun),
        );
        assert_eq!(
            check.summary,
            format!(
                "would trim {} to its last 100 lines (now 1200 lines)",
                path.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), numbered(1200));
    }

    #[test]
    fn a_missing_log_fails_naming_it() {
        let state = TaskMemory::new();
        let check = trim_log(
            &TrimLog {
                path: "/no/such/prover.log".into(),
                keep_lines: 10,
            },
            &context(&state, Mode::Tick),
        );
        assert_eq!(check.status, CheckStatus::Failed);
        assert_eq!(
            check.summary,
            "cannot trim /no/such/prover.log: it does not exist"
        );
    }

    #[test]
    fn counting_stops_at_the_deadline_and_trims_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, numbered(100)).unwrap();
        let state = TaskMemory::new();
        let mut late = context(&state, Mode::Tick);
        late.deadline = Instant::now();
        let err = trim_file(&path, 10, &late).unwrap_err();
        assert!(err.contains("nothing trimmed"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), numbered(100));
    }

    #[test]
    fn a_command_action_does_not_run_in_a_dry_run() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let probe = CommandConfig {
            command: CommandLine::Shell(format!("touch {}", marker.display())),
            cwd: None,
            env: Default::default(),
            timeout: None,
            thresholds: None,
        };
        let action = Action::Command(probe);
        let state = TaskMemory::new();
        let mut out = Observation::default();
        run(&action, &context(&state, Mode::DryRun), &mut out);
        assert_eq!(out.checks[0].status, CheckStatus::Ok);
        assert!(out.checks[0].summary.starts_with("would run touch "));
        assert!(!marker.exists());
        let mut out = Observation::default();
        run(&action, &context(&state, Mode::Tick), &mut out);
        assert!(marker.exists(), "{:?}", out.checks);
    }
}
