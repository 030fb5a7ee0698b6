//! The line scanner: one pass over new log bytes for every regex of a log
//! probe (patterns, events, states, session, counters). Pure: bytes in,
//! findings and an updated [`ScanState`] out. It opens no file, reads no
//! clock and stores nothing.
//!
//! Over 800 lines because its unit tests (about 370) stay beside the
//! scanner they pin (chunk edges, sessions, states); the code is about 560.

use super::LogConfig;
use crate::config::Severity;
use crate::probe::Event;
use regex::bytes::{Captures, Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// Events kept per tick; the rest are counted in one closing event, so a
/// log that suddenly repeats a line cannot flood the notifiers.
pub const EVENT_CAP: usize = 100;

/// Bytes of a line shown in a message.
pub const LINE_SHOWN: usize = 300;

/// Compiled regexes grow large with Unicode classes and `(?i)`; a log probe
/// holds a few dozen of them at most, so allow more than the crate default.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

/// Why a line is scanned for: what a match of one regex of the set does.
#[derive(Clone, Copy, Debug)]
enum Role {
    Enter(usize),
    Leave(usize),
    Session,
    Counter(usize),
    Pattern(usize),
    Event(usize),
}

/// A piece of an event's message template.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    /// `{id}` or `{1}`: a capture group, by name or by number.
    Group(String),
    /// `{line}` (when the regex has no group of that name).
    Line,
}

struct EventRule {
    name: String,
    regex: Regex,
    template: Vec<Piece>,
}

/// A `patterns` entry: an alert of its own severity while it matches.
#[derive(Clone, Debug)]
pub struct PatternRule {
    pub name: String,
    pub severity: Severity,
}

/// Whether matches only update what the log says now (priming on first
/// sight) or also raise patterns and events (lines that are new).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Live,
    Prime,
}

/// What lines say across ticks: each state's flag, the latest session, and
/// each counter's matches since that session began.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanState {
    pub states: Vec<bool>,
    /// The session line's first capture (`""` without one); `None` until a
    /// session line is seen.
    pub session: Option<String>,
    pub counters: Vec<u64>,
}

impl ScanState {
    /// The `session` signal: the capture as a number, 1 when it is not
    /// one, 0 before any session line.
    pub fn session_number(&self) -> f64 {
        match &self.session {
            None => 0.0,
            Some(text) => text.trim().parse().unwrap_or(1.0),
        }
    }
}

/// Matches of one pattern in the lines scanned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatternHits {
    pub count: u64,
    /// The last matching line, as [`show_line`] shows it.
    pub last_line: String,
}

/// What the lines scanned (in [`Pass::Live`]) raised.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    /// Lines scanned, in either pass.
    pub lines: u64,
    /// One entry per configured pattern, in config order.
    pub patterns: Vec<PatternHits>,
    pub events: Vec<Event>,
    /// Events beyond [`EVENT_CAP`], by event name.
    pub events_dropped: Vec<(String, u64)>,
}

/// Every regex of one log probe, compiled for a single pass over bytes.
pub struct Scanner {
    /// All regexes as one alternation in multi-line mode: finds candidate
    /// lines without looking at the others. `None` when the alternation
    /// would not compile or could not mean the same over many lines (see
    /// [`combined`]); then every line goes through `set`.
    candidates: Option<Regex>,
    /// The same regexes as written (in CRLF mode), run on one candidate
    /// line at a time to learn which of them match it.
    set: RegexSet,
    roles: Vec<Role>,
    states: Vec<String>,
    counters: Vec<String>,
    patterns: Vec<PatternRule>,
    events: Vec<EventRule>,
    session: Option<Regex>,
}

impl Scanner {
    /// Compiles the probe's regexes for matching on bytes.
    pub fn new(probe: &LogConfig) -> Result<Scanner, String> {
        let mut sources: Vec<&str> = Vec::new();
        let mut roles = Vec::new();
        // Set order is processing order within a line: a session line
        // resets the counters before they count that same line.
        for (index, (_, state)) in probe.states.0.iter().enumerate() {
            sources.push(state.enter.0.as_str());
            roles.push(Role::Enter(index));
            sources.push(state.leave.0.as_str());
            roles.push(Role::Leave(index));
        }
        if let Some(session) = &probe.session {
            sources.push(session.0.as_str());
            roles.push(Role::Session);
        }
        for (index, (_, counter)) in probe.counters.0.iter().enumerate() {
            sources.push(counter.0.as_str());
            roles.push(Role::Counter(index));
        }
        for (index, pattern) in probe.patterns.iter().enumerate() {
            sources.push(pattern.regex.0.as_str());
            roles.push(Role::Pattern(index));
        }
        for (index, event) in probe.events.iter().enumerate() {
            sources.push(event.regex.0.as_str());
            roles.push(Role::Event(index));
        }
        let set = RegexSetBuilder::new(sources.iter().map(|s| on_a_line(s)))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("compiling the log regexes: {e}"))?;
        let events = probe
            .events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let regex = bytes_regex(event.regex.0.as_str())?;
                let template = parse_template(event.message.as_str(), &regex);
                let name = event
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("event-{}", index + 1));
                Ok(EventRule {
                    name,
                    regex,
                    template,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let session = match &probe.session {
            Some(session) => Some(bytes_regex(session.0.as_str())?),
            None => None,
        };
        Ok(Scanner {
            candidates: combined(&sources),
            set,
            roles,
            states: probe.states.0.iter().map(|(n, _)| n.clone()).collect(),
            counters: probe.counters.0.iter().map(|(n, _)| n.clone()).collect(),
            patterns: probe
                .patterns
                .iter()
                .map(|p| PatternRule {
                    name: p.name.clone(),
                    severity: p.severity,
                })
                .collect(),
            events,
            session,
        })
    }

    /// Names of the `states`, in config order.
    pub fn state_names(&self) -> &[String] {
        &self.states
    }

    /// Names of the `counters`, in config order.
    pub fn counter_names(&self) -> &[String] {
        &self.counters
    }

    /// The `patterns`, in config order.
    pub fn pattern_rules(&self) -> &[PatternRule] {
        &self.patterns
    }

    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    /// Whether priming can change anything (states, session or counters).
    pub fn is_stateful(&self) -> bool {
        !self.states.is_empty() || self.session.is_some() || !self.counters.is_empty()
    }

    /// A state with every flag down and every counter at 0.
    pub fn initial_state(&self) -> ScanState {
        ScanState {
            states: vec![false; self.states.len()],
            session: None,
            counters: vec![0; self.counters.len()],
        }
    }

    /// Empty findings, one pattern entry per configured pattern.
    pub fn findings(&self) -> Findings {
        Findings {
            patterns: vec![PatternHits::default(); self.patterns.len()],
            ..Findings::default()
        }
    }

    /// Scans the complete lines of `chunk` and returns how many bytes they
    /// span; a last line without its newline is left for later.
    pub fn scan(
        &self,
        chunk: &[u8],
        pass: Pass,
        state: &mut ScanState,
        findings: &mut Findings,
    ) -> usize {
        let Some(last_newline) = chunk.iter().rposition(|&b| b == b'\n') else {
            return 0;
        };
        self.scan_lines(&chunk[..=last_newline], pass, state, findings);
        last_newline + 1
    }

    /// Scans `text` as whole lines: the last one counts even without its
    /// newline (the end of a command's output, a rotated file's last line, a
    /// line longer than the read cap).
    pub fn scan_lines(
        &self,
        text: &[u8],
        pass: Pass,
        state: &mut ScanState,
        findings: &mut Findings,
    ) {
        findings.lines += count_lines(text);
        if self.roles.is_empty() {
            return;
        }
        let Some(candidates) = &self.candidates else {
            for line in text.split_inclusive(|&b| b == b'\n') {
                self.on_line(line, pass, state, findings);
            }
            return;
        };
        let mut at = 0;
        while at < text.len() {
            let Some(found) = candidates.find_at(text, at) else {
                break;
            };
            let hit = found.start();
            if hit == text.len() && text.ends_with(b"\n") {
                // An empty match after the final newline: no line is there.
                break;
            }
            // The line holding the match's first byte; a match that runs on
            // past its newline is judged on that line alone by the set.
            let start = text[at..hit]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(at, |i| at + i + 1);
            let end = text[hit..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(text.len(), |i| hit + i);
            self.on_line(&text[start..end], pass, state, findings);
            at = end + 1;
        }
    }

    fn on_line(&self, line: &[u8], pass: Pass, state: &mut ScanState, findings: &mut Findings) {
        let line = trim_line_end(line);
        let matched = self.set.matches(line);
        if !matched.matched_any() {
            return;
        }
        for index in matched.iter() {
            match self.roles[index] {
                Role::Enter(i) => state.states[i] = true,
                Role::Leave(i) => state.states[i] = false,
                Role::Session => {
                    let captured = self
                        .session
                        .as_ref()
                        .and_then(|r| r.captures(line))
                        .and_then(|c| c.get(1).map(|g| lossy(g.as_bytes())));
                    state.session = Some(captured.unwrap_or_default());
                    state.counters.iter_mut().for_each(|c| *c = 0);
                }
                Role::Counter(i) => state.counters[i] += 1,
                Role::Pattern(i) if pass == Pass::Live => {
                    let hits = &mut findings.patterns[i];
                    hits.count += 1;
                    hits.last_line = show_line(line);
                }
                Role::Event(i) if pass == Pass::Live => self.on_event(i, line, findings),
                Role::Pattern(_) | Role::Event(_) => {}
            }
        }
    }

    fn on_event(&self, index: usize, line: &[u8], findings: &mut Findings) {
        let rule = &self.events[index];
        if findings.events.len() >= EVENT_CAP {
            match findings
                .events_dropped
                .iter_mut()
                .find(|(name, _)| *name == rule.name)
            {
                Some((_, count)) => *count += 1,
                None => findings.events_dropped.push((rule.name.clone(), 1)),
            }
            return;
        }
        let Some(captures) = rule.regex.captures(line) else {
            return;
        };
        findings.events.push(Event {
            name: rule.name.clone(),
            message: render(&rule.template, &captures, line),
            severity: Severity::Info,
        });
    }
}

/// A regex as it runs on one line: in CRLF mode, so `.` and `$` treat a
/// `\r` as the alternation does (a line's final `\r` is cut off).
fn on_a_line(source: &str) -> String {
    format!("(?R){source}")
}

/// Compiles one regex for bytes, with the same mode and limits as the set.
fn bytes_regex(source: &str) -> Result<Regex, String> {
    RegexBuilder::new(&on_a_line(source))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("compiling the log regex {source:?}: {e}"))
}

/// The alternation of all `sources` in multi-line CRLF mode (`^`/`$` at
/// line ends, as on a single line), with group names dropped since two
/// regexes may name a group alike. `None` if it does not compile, or if a
/// regex anchors to the text's ends, which it cannot mean over many lines.
///
/// Whatever matches within one line matches in the alternation too, so it
/// finds every line the set would match (and a few more that the set then
/// turns down, e.g. matches running over a newline).
fn combined(sources: &[&str]) -> Option<Regex> {
    if sources.is_empty() || sources.iter().any(|s| anchors_to_text(s)) {
        return None;
    }
    let alternation = sources
        .iter()
        .map(|source| format!("(?mR:{})", unnamed_groups(source)))
        .collect::<Vec<_>>()
        .join("|");
    RegexBuilder::new(&alternation)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .ok()
}

/// Whether `source` may anchor at the very start or end of its text (`\A`,
/// `\z`, or `^`/`$` with multi-line mode turned off by `(?-m)`). Errs on
/// the safe side: a false alarm only costs the alternation.
fn anchors_to_text(source: &str) -> bool {
    if source.contains(r"\A") || source.contains(r"\z") {
        return true;
    }
    source.match_indices("(?").any(|(at, _)| {
        let flags = &source[at + 2..];
        let end = flags.find([':', ')']).unwrap_or(flags.len());
        flags[..end]
            .split_once('-')
            .is_some_and(|(_, off)| off.contains('m'))
    })
}

/// Turns `(?P<name>` and `(?<name>` into plain `(`, leaving escapes and
/// character classes alone. Matching is unchanged; only names go. Where it
/// misreads a pattern the alternation fails to compile and the scanner
/// falls back to checking every line, so a mistake costs speed, not lines.
fn unnamed_groups(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut class_depth = 0usize;
    while let Some(c) = rest.chars().next() {
        let mut take = c.len_utf8();
        if c == '\\' {
            // The escape and the character it escapes, whatever it is.
            take += rest[1..].chars().next().map_or(0, char::len_utf8);
        } else if c == '[' {
            class_depth += 1;
            // `]` first in a class (after an optional `^`) is a literal.
            let after = &rest[1..];
            let negated = usize::from(after.starts_with('^'));
            if after[negated..].starts_with(']') {
                take += negated + 1;
            } else {
                take += negated;
            }
        } else if c == ']' {
            class_depth = class_depth.saturating_sub(1);
        } else if class_depth == 0 && c == '(' {
            let name_start = if rest.starts_with("(?P<") {
                Some(4)
            } else if rest.starts_with("(?<") {
                Some(3)
            } else {
                None
            };
            if let Some(name_start) = name_start
                && let Some(close) = rest[name_start..].find('>')
            {
                out.push('(');
                rest = &rest[name_start + close + 1..];
                continue;
            }
        }
        out.push_str(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

fn parse_template(template: &str, regex: &Regex) -> Vec<Piece> {
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    let groups = regex.captures_len();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            text.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let key = &after[..close];
        if key.contains('{') {
            // `{{id}`: the first brace is text, the placeholder follows.
            text.push('{');
            rest = after;
            continue;
        }
        let is_group = names.contains(&key) || key.parse::<usize>().is_ok_and(|n| n < groups);
        let piece = if is_group {
            Some(Piece::Group(key.to_string()))
        } else if key == "line" {
            Some(Piece::Line)
        } else {
            None
        };
        match piece {
            Some(piece) => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
            }
            // Not a placeholder: kept as written.
            None => text.push_str(&rest[open..open + close + 2]),
        }
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

fn render(template: &[Piece], captures: &Captures, line: &[u8]) -> String {
    let mut message = String::new();
    for piece in template {
        match piece {
            Piece::Text(text) => message.push_str(text),
            Piece::Group(key) => {
                let group = match key.parse::<usize>() {
                    Ok(number) => captures.get(number),
                    Err(_) => captures.name(key),
                };
                if let Some(group) = group {
                    message.push_str(&String::from_utf8_lossy(shown(group.as_bytes())));
                }
            }
            Piece::Line => message.push_str(&show_line(line)),
        }
    }
    message
}

/// Lines in `text`: newlines, plus a last line without one.
pub fn count_lines(text: &[u8]) -> u64 {
    let newlines = text.iter().filter(|&&b| b == b'\n').count() as u64;
    newlines + u64::from(!text.is_empty() && !text.ends_with(b"\n"))
}

/// A line without its `\n` or `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The first [`LINE_SHOWN`] bytes of `line`, not cutting a UTF-8 sequence.
fn shown(line: &[u8]) -> &[u8] {
    if line.len() <= LINE_SHOWN {
        return line;
    }
    let mut end = LINE_SHOWN;
    // Back off continuation bytes (10xxxxxx) to the start of a character.
    while end > LINE_SHOWN - 4 && line[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &line[..end]
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A line for a person: lossy UTF-8, cut to [`LINE_SHOWN`] bytes (marked
/// with `…`), trailing whitespace dropped.
pub fn show_line(line: &[u8]) -> String {
    let cut = shown(line);
    let mut text = String::from_utf8_lossy(cut).trim_end().to_string();
    if cut.len() < line.len() {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner(yaml: &str) -> Scanner {
        let probe: LogConfig = serde_yaml::from_str(yaml).unwrap();
        Scanner::new(&probe).unwrap()
    }

    /// What a scan of `input` (in one piece) gave, as plain values.
    #[derive(Debug, PartialEq)]
    struct Seen {
        consumed: usize,
        lines: u64,
        patterns: Vec<(u64, String)>,
        events: Vec<String>,
        state: ScanState,
    }

    fn seen(scanner: &Scanner, input: &[u8], pass: Pass) -> Seen {
        let mut state = scanner.initial_state();
        let mut findings = scanner.findings();
        let consumed = scanner.scan(input, pass, &mut state, &mut findings);
        Seen {
            consumed,
            lines: findings.lines,
            patterns: findings
                .patterns
                .into_iter()
                .map(|p| (p.count, p.last_line))
                .collect(),
            events: findings.events.into_iter().map(|e| e.message).collect(),
            state,
        }
    }

    const PROVER: &str = r#"
path: /var/log/prover.log
patterns:
  - { name: tls, regex: "(?i)tls (handshake|error)", severity: critical }
  - { name: boot, regex: "^ERROR", severity: warning }
events:
  - { regex: "task started: (?P<id>\\d+)", message: "Task Started: {id}" }
  - { regex: "task finished: (?P<id>\\d+)", message: "Task Finished: {id} ({line})" }
"#;

    #[test]
    fn patterns_and_events_line_by_line() {
        let scanner = scanner(PROVER);
        // (input, consumed, lines, tls (count, line), boot count, events)
        type Row<'a> = (&'a [u8], usize, u64, (u64, &'a str), u64, &'a [&'a str]);
        let rows: &[Row] = &[
            (b"", 0, 0, (0, ""), 0, &[]),
            (b"all good\n", 9, 1, (0, ""), 0, &[]),
            (b"no newline yet", 0, 0, (0, ""), 0, &[]),
            (b"ok\npartial", 3, 1, (0, ""), 0, &[]),
            (
                b"TLS handshake failed\nx\nretry: tls error again\n",
                46,
                3,
                (2, "retry: tls error again"),
                0,
                &[],
            ),
            // Many matches on one line count once.
            (
                b"tls error tls error tls error\n",
                30,
                1,
                (1, "tls error tls error tls error"),
                0,
                &[],
            ),
            // A match that spans a newline is no match.
            (b"tls\nhandshake\n", 14, 2, (0, ""), 0, &[]),
            // `^` is the start of a line, not of the chunk.
            (b"a ERROR\nERROR b\n", 16, 2, (0, ""), 1, &[]),
            // Invalid UTF-8 is matched as bytes and shown lossily.
            (
                b"\xff\xfe tls error\n",
                13,
                1,
                (1, "\u{fffd}\u{fffd} tls error"),
                0,
                &[],
            ),
            (b"tls error\r\n", 11, 1, (1, "tls error"), 0, &[]),
            (
                b"[host] task started: 123\nwork\n[host] task finished: 123\n",
                56,
                3,
                (0, ""),
                0,
                &[
                    "Task Started: 123",
                    "Task Finished: 123 ([host] task finished: 123)",
                ],
            ),
            // One line can be an event and a pattern at once.
            (
                b"task started: 7 after tls error\n",
                32,
                1,
                (1, "task started: 7 after tls error"),
                0,
                &["Task Started: 7"],
            ),
        ];
        for (input, consumed, lines, tls, boot, events) in rows {
            let got = seen(&scanner, input, Pass::Live);
            let row = String::from_utf8_lossy(input);
            assert_eq!(got.consumed, *consumed, "consumed: {row:?}");
            assert_eq!(got.lines, *lines, "lines: {row:?}");
            assert_eq!(got.patterns[0], (tls.0, tls.1.to_string()), "tls: {row:?}");
            assert_eq!(got.patterns[1].0, *boot, "boot: {row:?}");
            assert_eq!(got.events, *events, "events: {row:?}");
        }
    }

    const ALEPH: &str = r#"
command: [docker, logs, aleph-node]
states: { major_sync: { enter: "Switched to major sync state", leave: "No longer in major sync state" } }
session: "Running session (?P<session>\\d+)"
counters: { producing: "Prepared block for proposing|Pre-sealed block for proposal" }
patterns: [{ name: panic, regex: "panicked at" }]
"#;

    #[test]
    fn states_sessions_and_counters_follow_line_order() {
        let scanner = scanner(ALEPH);
        // (lines, major_sync, session, producing)
        let rows: &[(&str, bool, Option<&str>, u64)] = &[
            ("nothing\n", false, None, 0),
            ("Switched to major sync state.\n", true, None, 0),
            (
                "Switched to major sync state.\nNo longer in major sync state.\n",
                false,
                None,
                0,
            ),
            (
                "No longer in major sync state.\nSwitched to major sync state.\n",
                true,
                None,
                0,
            ),
            (
                "Prepared block for proposing\nRunning session 41\nPrepared block for proposing\n",
                false,
                Some("41"),
                1,
            ),
            (
                "Running session 41\nPrepared block for proposing\nRunning session 42\nPre-sealed block for proposal\nPrepared block for proposing\n",
                false,
                Some("42"),
                2,
            ),
            ("Running session 42\n", false, Some("42"), 0),
        ];
        for (input, sync, session, producing) in rows {
            let got = seen(&scanner, input.as_bytes(), Pass::Live);
            assert_eq!(got.state.states, vec![*sync], "{input:?}");
            assert_eq!(got.state.session.as_deref(), *session, "{input:?}");
            assert_eq!(got.state.counters, vec![*producing], "{input:?}");
        }
    }

    #[test]
    fn priming_learns_states_but_raises_nothing() {
        let scanner = scanner(ALEPH);
        let input = b"thread panicked at x\nRunning session 9\nSwitched to major sync state\nPrepared block for proposing\n";
        let got = seen(&scanner, input, Pass::Prime);
        assert_eq!(got.patterns, vec![(0, String::new())]);
        assert_eq!(got.state.states, vec![true]);
        assert_eq!(got.state.session.as_deref(), Some("9"));
        assert_eq!(got.state.counters, vec![1]);
        let live = seen(&scanner, input, Pass::Live);
        assert_eq!(live.patterns, vec![(1, "thread panicked at x".to_string())]);
    }

    #[test]
    fn session_number_is_the_capture_or_one() {
        for (session, number) in [
            (None, 0.0),
            (Some("42"), 42.0),
            (Some("x"), 1.0),
            (Some(""), 1.0),
        ] {
            let state = ScanState {
                session: session.map(str::to_string),
                ..ScanState::default()
            };
            assert_eq!(state.session_number(), number, "{session:?}");
        }
        let scanner = scanner("command: x\nsession: 'New epoch \\w+'\n");
        let got = seen(&scanner, b"New epoch alpha\n", Pass::Live);
        assert_eq!(got.state.session_number(), 1.0);
    }

    #[test]
    fn scanning_in_pieces_equals_scanning_at_once() {
        let scanner = scanner(PROVER);
        let input: &[u8] =
            b"task started: 1\nTLS error\nfoo\ntask finished: 1\nERROR x\ntls handshake\n";
        let whole = seen(&scanner, input, Pass::Live);
        for cut in 0..input.len() {
            let mut state = scanner.initial_state();
            let mut findings = scanner.findings();
            let first = scanner.scan(&input[..cut], Pass::Live, &mut state, &mut findings);
            let second = scanner.scan(&input[first..], Pass::Live, &mut state, &mut findings);
            assert_eq!(first + second, input.len(), "cut {cut}");
            let events: Vec<String> = findings.events.into_iter().map(|e| e.message).collect();
            assert_eq!(events, whole.events, "cut {cut}");
            let counts: Vec<u64> = findings.patterns.iter().map(|p| p.count).collect();
            assert_eq!(counts, vec![2, 1], "cut {cut}");
            assert_eq!(findings.lines, 6, "cut {cut}");
        }
    }

    #[test]
    fn templates() {
        let regex = Regex::new(r"task (?P<what>\w+): (?P<id>\d+)").unwrap();
        let line = b"task started: 12";
        let captures = regex.captures(line).unwrap();
        let rows = [
            ("Task {what}: {id}", "Task started: 12"),
            ("{id}", "12"),
            ("group {2}, whole {0}", "group 12, whole task started: 12"),
            ("{line}!", "task started: 12!"),
            ("{unknown} {3} {", "{unknown} {3} {"),
            ("plain", "plain"),
            ("{{id}}", "{12}"),
        ];
        for (template, message) in rows {
            let pieces = parse_template(template, &regex);
            assert_eq!(render(&pieces, &captures, line), message, "{template}");
        }
    }

    #[test]
    fn events_beyond_the_cap_are_counted() {
        let scanner = scanner(
            "path: x\nevents: [{ name: seen, regex: 'seen (?P<n>\\d+)', message: 'seen {n}' }]\n",
        );
        let input: String = (1..=EVENT_CAP + 20)
            .map(|n| format!("seen {n}\n"))
            .collect();
        let mut state = scanner.initial_state();
        let mut findings = scanner.findings();
        scanner.scan(input.as_bytes(), Pass::Live, &mut state, &mut findings);
        assert_eq!(findings.events.len(), EVENT_CAP);
        assert_eq!(findings.events[0].message, "seen 1");
        assert_eq!(findings.events[0].name, "seen");
        assert_eq!(findings.events_dropped, vec![("seen".to_string(), 20)]);
    }

    #[test]
    fn unnamed_groups_drops_names_only() {
        let rows = [
            (r"task: (?P<id>\d+)", r"task: (\d+)"),
            (r"(?<a>x)|(?P<b>y)", r"(x)|(y)"),
            (r"\(?P<id>x", r"\(?P<id>x"),
            (r"[(?P<id>]", r"[(?P<id>]"),
            (r"[]a(?P<id>](?P<n>z)", r"[]a(?P<id>](z)"),
            (r"[^](?P<id>](?P<n>z)", r"[^](?P<id>](z)"),
            (r"[a[b(?P<x>]c](?P<n>z)", r"[a[b(?P<x>]c](z)"),
            (r"[[:alpha:]](?P<n>z)", r"[[:alpha:]](z)"),
            (r"(?i)é(?P<n>ü)", r"(?i)é(ü)"),
            (r"(?:x)(?i:y)", r"(?:x)(?i:y)"),
        ];
        for (source, expected) in rows {
            assert_eq!(unnamed_groups(source), expected, "{source}");
        }
    }

    #[test]
    fn the_same_group_name_in_two_regexes_keeps_the_alternation() {
        let scanner = scanner(PROVER);
        assert!(scanner.candidates.is_some());
    }

    /// The alternation only finds candidate lines: with it or without it
    /// (every line through the set), a scan must see the same.
    #[test]
    fn alternation_and_line_by_line_agree() {
        let configs = [
            PROVER,
            ALEPH,
            r#"
path: x
patterns:
  - { name: spaced, regex: "a\\s+b" }
  - { name: anchored, regex: "^x$" }
  - { name: empty, regex: "z*" }
  - { name: dotall, regex: "(?s)c.d" }
  - { name: negated, regex: "[^q]{3}end$" }
  - { name: word, regex: "\\bword\\b" }
  - { name: cased, regex: "(?i)ǅ|straße" }
  - { name: progress, regex: "50%.60%|^60%|7.$" }
events:
  - { regex: "(?P<n>\\d+)$", message: "n={n}" }
  - { regex: "id=(?P<n>\\w+)", message: "id {n}" }
"#,
        ];
        let inputs: &[&[u8]] = &[
            b"a\nb\na  b\nx\n x\nx\r\nc\nd\ncxd\n\n\nabcend\nqqqend\nword\nwords\n42\nid=7 9\n",
            b"\xff\xfeword\xff\nSTRASSE\nstra\xc3\x9fe\n\xc7\x84\n123\r\n",
            b"tls\nerror\nTLS ERROR\n task started: 5\ntask finished: 5\nRunning session 3\nPrepared block for proposing\n",
            b"50%\r60%\r70%\r\n50%_60%\r\n60% 7x\r\r\n77\r\n",
        ];
        for config in configs {
            let with = scanner(config);
            let mut without = scanner(config);
            without.candidates = None;
            for input in inputs {
                assert_eq!(
                    seen(&with, input, Pass::Live),
                    seen(&without, input, Pass::Live),
                    "{config}\n{:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn a_pattern_the_alternation_cannot_hold_still_matches() {
        // A trailing comment in verbose mode would swallow the wrapper's `)`.
        let scanner =
            scanner("path: x\npatterns: [{ name: e, regex: '(?x) error  # the word' }]\n");
        assert!(scanner.candidates.is_none());
        let got = seen(&scanner, b"ok\nan error here\n", Pass::Live);
        assert_eq!(got.patterns, vec![(1, "an error here".to_string())]);
    }

    #[test]
    fn regexes_anchored_to_the_text_are_matched_line_by_line() {
        for regex in [r"\AERROR", r"done\z", r"(?-m)^ERROR", r"(?i-m:^error)"] {
            let scanner = scanner(&format!(
                "path: x\npatterns: [{{ name: e, regex: '{regex}' }}]\n"
            ));
            assert!(scanner.candidates.is_none(), "{regex}");
        }
        let scanner = scanner("path: x\npatterns: [{ name: e, regex: '\\AERROR' }]\n");
        let got = seen(&scanner, b"ok\nERROR here\nnot ERROR\n", Pass::Live);
        assert_eq!(got.patterns, vec![(1, "ERROR here".to_string())]);
        for regex in [r"^ERROR", r"(?i)error$", r"(?P<name>x)-m", r"(?m-i)^x"] {
            assert!(!anchors_to_text(regex), "{regex}");
        }
    }

    #[test]
    fn long_lines_are_cut_for_display_on_a_character() {
        let line = "é".repeat(400);
        let shown = show_line(line.as_bytes());
        assert!(shown.ends_with('…'));
        assert!(shown.len() <= LINE_SHOWN + '…'.len_utf8());
        assert!(!shown.contains('\u{fffd}'));
        assert_eq!(show_line(b"short  \r"), "short");
    }

    #[test]
    fn lines_are_counted_with_or_without_a_last_newline() {
        for (text, lines) in [
            (&b""[..], 0),
            (b"a", 1),
            (b"a\n", 1),
            (b"a\nb", 2),
            (b"\n\n", 2),
        ] {
            assert_eq!(count_lines(text), lines, "{text:?}");
        }
    }
}
