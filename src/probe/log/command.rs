//! A log read from a command's output (`docker logs --since {since} …`,
//! `journalctl -u … --since @{since}`): each tick asks for the lines since
//! the previous tick and drops the ones that tick already saw.

use super::scan::{Pass, Scanner};
use super::{Check, CheckStatus, Context, Observation, PROBE, TaskState};
use crate::config::{CommandLine, LogProbe};
use crate::probe::process_group;
use std::process::Command;

/// Where `{since}` goes in the command's arguments.
pub const SINCE: &str = "{since}";

/// How far back the first run looks (its lines are primed, not raised).
const FIRST_LOOK_BACK_S: i64 = 3600;

/// Fingerprints kept of the output's last lines: the next run's window
/// starts at this tick's clock, before this run ended, so its first lines
/// may repeat these.
const TAIL_LINES: usize = 64;

const SINCE_KEY: &str = "log.since";
const LAST_LINE_KEY: &str = "log.last_line_at";
const TAIL_KEY: &str = "log.tail";
/// The command the state belongs to: a changed command starts over.
const COMMAND_KEY: &str = "log.command";

/// What the previous run left.
#[derive(Debug, Default, PartialEq)]
struct Previous {
    /// The previous tick's clock, Unix seconds (`None`: first run).
    since: Option<i64>,
    /// The tick that last saw a new line, Unix seconds.
    last_line_at: Option<i64>,
    /// Fingerprints of the previous output's last lines, oldest first.
    tail: Vec<u64>,
}

impl Previous {
    fn load(state: &TaskState, line: &CommandLine) -> Previous {
        if state
            .get(COMMAND_KEY)
            .is_some_and(|saved| *saved != line.to_string())
        {
            return Previous::default();
        }
        let number = |key: &str| state.get(key).and_then(|v| v.parse::<i64>().ok());
        Previous {
            since: number(SINCE_KEY),
            last_line_at: number(LAST_LINE_KEY),
            tail: state
                .get(TAIL_KEY)
                .map(|v| {
                    v.split(',')
                        .filter_map(|h| u64::from_str_radix(h, 16).ok())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Runs the command for the lines since the previous tick and reports them.
/// The first run looks back an hour and only primes states, session and
/// counters from that output; any output there counts as a line seen now.
pub(super) fn observe(
    line: &CommandLine,
    probe: &LogProbe,
    scanner: &Scanner,
    context: &Context,
    out: &mut Observation,
) -> Check {
    let previous = Previous::load(context.state, line);
    let now = super::now_secs(context);
    let (since, pass) = match previous.since {
        Some(since) => (since, Pass::Live),
        None => (now - FIRST_LOOK_BACK_S, Pass::Prime),
    };
    let mut scan = super::load_scan_state(scanner, context.state);
    let output = match run(line, since, context, super::max_read(probe)) {
        Ok(output) => output,
        Err(summary) => {
            // Nothing is stored: the next tick asks again from `since`.
            super::report(scanner, &scan, None, out);
            return Check {
                probe: PROBE,
                status: CheckStatus::Failed,
                summary,
            };
        }
    };
    let lines: Vec<&[u8]> = output.split_inclusive(|&b| b == b'\n').collect();
    let repeated = overlap(&previous.tail, &lines);
    let fresh = &output[lines[..repeated].iter().map(|l| l.len()).sum::<usize>()..];
    let mut findings = scanner.findings();
    // The output is complete: its last line counts without a newline.
    scanner.scan_lines(fresh, pass, &mut scan, &mut findings);
    let new_lines = findings.lines;
    let last_line_at = if new_lines > 0 {
        now
    } else {
        previous.last_line_at.unwrap_or(since)
    };
    remember(line, now, last_line_at, &lines, &mut out.state);
    super::save_scan_state(scanner, &scan, out);
    super::report(scanner, &scan, Some(findings), out);
    let age_s = (now - last_line_at).max(0);
    out.signals.set_probe(PROBE, "log_age_s", age_s as f64);
    let new_lines = if pass == Pass::Prime { 0 } else { new_lines };
    super::freshness(&format!("`{line}`"), probe, new_lines, age_s)
}

/// Stores what the next run needs: the command, this tick's clock (its
/// `{since}`), when a line was last seen, and the output's last lines.
fn remember(
    line: &CommandLine,
    now: i64,
    last_line_at: i64,
    lines: &[&[u8]],
    state: &mut TaskState,
) {
    let tail: Vec<String> = lines[lines.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| format!("{:x}", line_fingerprint(l)))
        .collect();
    state.insert(COMMAND_KEY.to_string(), line.to_string());
    state.insert(SINCE_KEY.to_string(), now.to_string());
    state.insert(LAST_LINE_KEY.to_string(), last_line_at.to_string());
    state.insert(TAIL_KEY.to_string(), tail.join(","));
}

/// Under [`super::Mode::Recheck`]: has the command printed a line the
/// tick's own run did not (asked from the tick's `{since}`, as the next
/// tick would)? Reads no line for patterns or events, stores nothing.
pub(super) fn recheck(line: &CommandLine, probe: &LogProbe, context: &Context) -> Check {
    let previous = Previous::load(context.state, line);
    let since = previous.since.unwrap_or_else(|| super::now_secs(context));
    let moved = |output: &[u8]| {
        let lines: Vec<&[u8]> = output.split_inclusive(|&b| b == b'\n').collect();
        lines[overlap(&previous.tail, &lines)..]
            .iter()
            .any(|l| !l.trim_ascii().is_empty())
    };
    match run(line, since, context, super::max_read(probe)) {
        Err(summary) => Check {
            probe: PROBE,
            status: CheckStatus::Failed,
            summary,
        },
        Ok(output) if moved(&output) => Check {
            probe: PROBE,
            status: CheckStatus::Ok,
            summary: format!("`{line}`: the log has moved since the restart"),
        },
        Ok(_) => Check {
            probe: PROBE,
            status: CheckStatus::Critical,
            summary: format!("`{line}`: log has not moved since the restart"),
        },
    }
}

/// `line` with `{since}` replaced in every argument, its stderr sent into
/// its stdout so both keep their order.
pub fn build(line: &CommandLine, since: i64) -> Command {
    let since = since.to_string();
    match line {
        CommandLine::Argv(argv) => {
            let mut command = Command::new("/bin/sh");
            command.args(["-c", "exec \"$@\" 2>&1", "sh"]);
            command.args(argv.iter().map(|a| a.replace(SINCE, &since)));
            command
        }
        CommandLine::Shell(script) => {
            let mut command = Command::new("/bin/sh");
            command
                .arg("-c")
                .arg(format!("exec 2>&1\n{}", script.replace(SINCE, &since)));
            command
        }
    }
}

/// Runs the command under the task's deadline; its output, or why not.
fn run(line: &CommandLine, since: i64, context: &Context, cap: u64) -> Result<Vec<u8>, String> {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let finished = process_group::run(&mut build(line, since), context.budget(None), cap)
        .map_err(|e| format!("cannot run `{line}`: {e}"))?;
    let Some(status) = finished.status else {
        return Err(format!(
            "`{line}` did not finish within {}; killed",
            crate::config::Duration(context.limit(None))
        ));
    };
    if !status.success() {
        let last = finished
            .stdout
            .split(|&b| b == b'\n')
            .rfind(|l| !l.trim_ascii().is_empty())
            .map(super::scan::show_line)
            .unwrap_or_default();
        let how = match status.code() {
            Some(code) => format!("exited {code}"),
            None => "was killed by a signal".to_string(),
        };
        return Err(format!("`{line}` {how}: {last}")
            .trim_end_matches([':', ' '])
            .to_string());
    }
    Ok(finished.stdout)
}

/// A line's fingerprint, ignoring its line ending.
fn line_fingerprint(line: &[u8]) -> u64 {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    super::fingerprint(line.strip_suffix(b"\r").unwrap_or(line))
}

/// How many of `lines`' first lines repeat the end of the previous output
/// (`tail`): the longest prefix of `lines` that is a suffix of `tail`.
fn overlap(tail: &[u64], lines: &[&[u8]]) -> usize {
    let most = tail.len().min(lines.len());
    let heads: Vec<u64> = lines[..most].iter().map(|l| line_fingerprint(l)).collect();
    (1..=most)
        .rev()
        .find(|&k| heads[..k] == tail[tail.len() - k..])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prints(lines: &[&str]) -> Vec<u64> {
        lines
            .iter()
            .map(|l| line_fingerprint(l.as_bytes()))
            .collect()
    }

    #[test]
    fn overlap_is_the_longest_repeated_prefix() {
        let cases: &[(&[&str], &[&str], usize)] = &[
            (&[], &["a\n", "b\n"], 0),
            (&["a", "b", "c"], &["b\n", "c\n", "d\n"], 2),
            (&["a", "b", "c"], &["c\n", "d\n"], 1),
            (&["a", "b", "c"], &["d\n", "c\n"], 0),
            (&["x", "x"], &["x\n", "x\n", "x\n"], 2),
            (&["a", "b"], &["a\n", "b\n"], 2),
            (&["a", "b"], &["b\r\n"], 1),
        ];
        for (tail, lines, expected) in cases {
            let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            assert_eq!(
                overlap(&prints(tail), &lines),
                *expected,
                "{tail:?} / {lines:?}"
            );
        }
    }

    #[test]
    fn since_is_substituted_in_every_argument() {
        let line = CommandLine::Argv(vec![
            "docker".into(),
            "logs".into(),
            "--since".into(),
            "{since}".into(),
            "at-{since}".into(),
        ]);
        let command = build(&line, 1_790_000_000);
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args[3..],
            ["docker", "logs", "--since", "1790000000", "at-1790000000"]
        );
        let shell = build(&CommandLine::Shell("journalctl --since @{since}".into()), 5);
        let script: Vec<String> = shell
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(script[1].ends_with("journalctl --since @5"), "{script:?}");
    }
}
