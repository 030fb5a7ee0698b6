//! A log read from a command's output (`docker logs --since {since}
//! --until {until} …`, `journalctl -u … --since @{since} --until
//! @{until}`): each tick asks for the lines since the previous tick. New
//! lines are told from lines already seen by position, never by their
//! text (a container repeats "heartbeat ok" for hours): with `{until}`
//! the windows meet end to end; with timestamped lines (`docker logs
//! --timestamps`, `journalctl -o short-iso-precise`) a line is new when
//! its time is after the newest one seen.

use super::LogConfig;
use super::scan::{Pass, Scanner};
use super::{Check, CheckStatus, Context, Observation, PROBE, TaskMemory};
use crate::config::CommandLine;
use crate::probe::children;
use std::process::Command;

/// Where `{since}` goes in the command's arguments.
pub const SINCE: &str = "{since}";
/// Where `{until}` goes: the end of this tick's window (the tick's clock),
/// where the next tick's `{since}` starts.
pub const UNTIL: &str = "{until}";

/// How far back the first run looks (its lines are primed, not raised).
const FIRST_LOOK_BACK_S: i64 = 3600;

const SINCE_KEY: &str = "log.since";
const LAST_LINE_KEY: &str = "log.last_line_at";
/// The newest line time seen (Unix nanoseconds), for timestamped output.
const NEWEST_KEY: &str = "log.newest_ns";
/// A command without `{since}` prints its whole log each time: how much of
/// it was read, and the fingerprint of that much (`len:hash`).
const READ_KEY: &str = "log.read";
/// The command the state belongs to: a changed command starts over.
const COMMAND_KEY: &str = "log.command";

/// What the previous run left.
#[derive(Debug, Default, PartialEq)]
struct Previous {
    /// The previous tick's clock, Unix seconds (`None`: first run).
    since: Option<i64>,
    /// The tick that last saw a new line, Unix seconds.
    last_line_at: Option<i64>,
    /// The newest timestamp of a line seen, Unix nanoseconds.
    newest_ns: Option<i128>,
    /// Of a whole log printed each time: the length read and its hash.
    read: Option<(usize, u64)>,
}

impl Previous {
    fn load(state: &TaskMemory, line: &CommandLine) -> Previous {
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
            newest_ns: state.get(NEWEST_KEY).and_then(|v| v.parse().ok()),
            read: state.get(READ_KEY).and_then(|v| {
                let (len, hash) = v.split_once(':')?;
                Some((len.parse().ok()?, u64::from_str_radix(hash, 16).ok()?))
            }),
        }
    }
}

/// Runs the command for the lines since the previous tick and reports them.
/// The first run looks back an hour and only primes states, session and
/// counters from that output; any output there counts as a line seen now.
pub(super) fn observe(
    line: &CommandLine,
    probe: &LogConfig,
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
    let output = match run(line, since, now, context, super::max_read(probe)) {
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
    let cap = super::max_read(probe);
    if whole_log(line) && output.len() as u64 >= cap {
        // Its whole log each tick, cut at max_read: its new lines are past
        // the cut, for ever. Say so rather than call it stale.
        super::report(scanner, &scan, None, out);
        return Check {
            probe: PROBE,
            status: CheckStatus::Warning,
            summary: format!(
                "`{line}` printed more than max_read ({}): without {SINCE} it prints its whole log each tick and the new lines are past the cut; ask for the lines since the last tick (`--since {SINCE}`)",
                crate::config::format_bytes(cap as f64)
            ),
        };
    }
    let (fresh, newest_ns) = fresh(&output, previous.newest_ns, whole_log(line), previous.read);
    let mut findings = scanner.findings();
    // The output is complete: its last line counts without a newline.
    scanner.scan_lines(fresh, pass, &mut scan, &mut findings);
    let new_lines = findings.lines;
    let last_line_at = if new_lines > 0 {
        now
    } else {
        previous.last_line_at.unwrap_or(since)
    };
    remember(line, now, last_line_at, newest_ns, &mut out.state);
    if whole_log(line) {
        out.state.insert(
            READ_KEY.to_string(),
            format!("{}:{:x}", output.len(), super::fingerprint(&output)),
        );
    }
    super::save_scan_state(scanner, &scan, out);
    super::report(scanner, &scan, Some(findings), out);
    let age_s = (now - last_line_at).max(0);
    out.signals.set_probe(PROBE, "log_age_s", age_s as f64);
    let new_lines = if pass == Pass::Prime { 0 } else { new_lines };
    super::freshness(&format!("`{line}`"), probe, new_lines, age_s)
}

/// Stores what the next run needs: the command, this tick's clock (its
/// `{since}`), when a line was last seen, and the newest line time seen.
fn remember(
    line: &CommandLine,
    now: i64,
    last_line_at: i64,
    newest_ns: Option<i128>,
    state: &mut TaskMemory,
) {
    state.insert(COMMAND_KEY.to_string(), line.to_string());
    state.insert(SINCE_KEY.to_string(), now.to_string());
    state.insert(LAST_LINE_KEY.to_string(), last_line_at.to_string());
    if let Some(newest) = newest_ns {
        state.insert(NEWEST_KEY.to_string(), newest.to_string());
    }
}

/// Whether the command prints its whole log each time (no `{since}`).
fn whole_log(line: &CommandLine) -> bool {
    !line.to_string().contains(SINCE)
}

/// The part of `output` not seen before, and the newest line time in the
/// output. Lines that start with a timestamp are new when it is after
/// `seen_ns`; a line without one (a stack trace's continuation) goes with
/// the line before it. A whole log printed again (`whole`: no `{since}`)
/// is new after the length read last time, when it still starts with what
/// was read (else it was rotated: all of it is new). Any other output is
/// new as a whole: its window (`{since}`, `{until}`) tells it apart.
fn fresh(
    output: &[u8],
    seen_ns: Option<i128>,
    whole: bool,
    read: Option<(usize, u64)>,
) -> (&[u8], Option<i128>) {
    let mut newest = seen_ns;
    let mut start = None;
    let mut offset = 0;
    let mut stamped = false;
    for line in output.split_inclusive(|&b| b == b'\n') {
        if let Some(at) = line_time(line) {
            stamped = true;
            if start.is_none() && seen_ns.is_none_or(|seen| at > seen) {
                start = Some(offset);
            }
            newest = Some(newest.map_or(at, |n| n.max(at)));
        }
        offset += line.len();
    }
    if stamped {
        return (&output[start.unwrap_or(output.len())..], newest);
    }
    if whole
        && let Some((len, hash)) = read
        && output.len() >= len
        && super::fingerprint(&output[..len]) == hash
    {
        return (&output[len..], newest);
    }
    (output, newest)
}

/// The time a line starts with (RFC 3339, as `docker logs --timestamps`
/// writes it, or ISO 8601 with a `+0000` offset, as `journalctl -o
/// short-iso-precise`), in Unix nanoseconds.
fn line_time(line: &[u8]) -> Option<i128> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    let head = line.get(..line.len().min(40))?;
    let end = head.iter().position(|b| b.is_ascii_whitespace())?;
    let word = std::str::from_utf8(&head[..end]).ok()?;
    if word.len() < 20 || !word.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    time::OffsetDateTime::parse(word, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(word, &Iso8601::DEFAULT))
        .ok()
        .map(time::OffsetDateTime::unix_timestamp_nanos)
}

/// Under [`super::Mode::Recheck`]: has the command printed a line the
/// tick's own run did not (asked from the tick's `{since}`, as the next
/// tick would)? Reads no line for patterns or events, stores nothing.
pub(super) fn recheck(line: &CommandLine, probe: &LogConfig, context: &Context) -> Check {
    let previous = Previous::load(context.state, line);
    let since = previous.since.unwrap_or_else(|| super::now_secs(context));
    let moved = |output: &[u8]| {
        fresh(output, previous.newest_ns, whole_log(line), previous.read)
            .0
            .split(|&b| b == b'\n')
            .any(|l| !l.trim_ascii().is_empty())
    };
    let until = super::now_secs(context);
    match run(line, since, until, context, super::max_read(probe)) {
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

/// `line` with `{since}` and `{until}` replaced in every argument, its
/// stderr sent into its stdout so both keep their order.
pub fn build(line: &CommandLine, since: i64, until: i64) -> Command {
    let (since, until) = (since.to_string(), until.to_string());
    let fill = |text: &str| text.replace(SINCE, &since).replace(UNTIL, &until);
    match line {
        CommandLine::Argv(argv) => {
            let mut command = Command::new("/bin/sh");
            command.args(["-c", "exec \"$@\" 2>&1", "sh"]);
            command.args(argv.iter().map(|a| fill(a)));
            command
        }
        CommandLine::Shell(script) => {
            let mut command = Command::new("/bin/sh");
            command
                .arg("-c")
                .arg(format!("exec 2>&1\n{}", fill(script)));
            command
        }
    }
}

/// Runs the command under the task's deadline; its output, or why not.
fn run(
    line: &CommandLine,
    since: i64,
    until: i64,
    context: &Context,
    cap: u64,
) -> Result<Vec<u8>, String> {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let finished = children::run(&mut build(line, since, until), context.budget(None), cap)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_lines_are_told_by_their_time_never_by_their_text() {
        let seen = line_time(b"2026-12-01T10:00:01.000000002Z heartbeat ok\n").unwrap();
        let output: &[u8] = concat!(
            "2026-12-01T10:00:01.000000001Z heartbeat ok\n",
            "2026-12-01T10:00:01.000000002Z heartbeat ok\n",
            "2026-12-01T10:00:01.000000003Z heartbeat ok\n",
            "  at continuation\n",
            "2026-12-01T10:00:02Z heartbeat ok\n",
        )
        .as_bytes();
        let (new, newest) = fresh(output, Some(seen), false, None);
        assert_eq!(
            new,
            &b"2026-12-01T10:00:01.000000003Z heartbeat ok\n  at continuation\n2026-12-01T10:00:02Z heartbeat ok\n"[..]
        );
        assert_eq!(newest, line_time(b"2026-12-01T10:00:02Z x"));
        assert_eq!(
            fresh(output, newest, false, None).0,
            b"",
            "nothing after the newest"
        );
        assert_eq!(
            fresh(output, None, false, None).0,
            output,
            "first sight: all of it"
        );
        let plain = b"heartbeat ok\nheartbeat ok\n";
        assert_eq!(
            fresh(plain, None, false, None),
            (&plain[..], None),
            "no timestamps: all new"
        );
        assert!(
            line_time(b"2026-12-01T10:00:01.123456+0000 host node[1]: x").is_some(),
            "journalctl -o short-iso-precise"
        );
        assert_eq!(line_time(b"1790000000 text"), None);
        // A whole log printed again: what follows what was read is new.
        let read = Some((plain.len(), crate::probe::log::fingerprint(plain)));
        let again = b"heartbeat ok\nheartbeat ok\nheartbeat ok\n";
        assert_eq!(fresh(again, None, true, read).0, b"heartbeat ok\n");
        assert_eq!(
            fresh(b"rotated\n", None, true, read).0,
            b"rotated\n",
            "not what was read: all new"
        );
    }

    #[test]
    fn since_is_substituted_in_every_argument() {
        let line = CommandLine::Argv(vec![
            "docker".into(),
            "logs".into(),
            "--since".into(),
            "{since}".into(),
            "at-{since}".into(),
            "--until={until}".into(),
        ]);
        let command = build(&line, 1_790_000_000, 1_790_000_060);
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args[3..],
            [
                "docker",
                "logs",
                "--since",
                "1790000000",
                "at-1790000000",
                "--until=1790000060"
            ]
        );
        let shell = build(
            &CommandLine::Shell("journalctl --since @{since}".into()),
            5,
            65,
        );
        let script: Vec<String> = shell
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(script[1].ends_with("journalctl --since @5"), "{script:?}");
    }
}
