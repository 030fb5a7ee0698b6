//! The exposition parser: Prometheus text format 0.0.4 and OpenMetrics 1.0,
//! read line by line into series (name, labels sorted by name, value), as
//! Prometheus's own scraper reads them. It does no I/O and keeps of the
//! metadata only the family names `# HELP`, `# TYPE` and `# UNIT` declare
//! (a counter family can be present before its first labelled series).
//! Timestamps and exemplars are checked or skipped and dropped, histograms,
//! summaries and `_created` samples are plain series. A malformed line
//! fails the whole exposition with its line number: a scrape is taken
//! whole or not at all, never with a series silently missing.
//!
//! Where the formats' own parsers disagree, this one reads as Prometheus's
//! scraper (`model/textparse`) does: an escape other than `\\`, `\"`, `\n`
//! in a label value is kept as written (`C:\Program Files`, `\d+`); in the
//! text format every `#` line that is not `# HELP name …` or `# TYPE name
//! type` is a comment (`# EOF` too); a label with an empty value is no
//! label; quoted UTF-8 names (`{"my.metric"}`) are read. Duplicated series
//! are all handed on: keeping the first is the caller's (as Prometheus
//! keeps the first sample of a series in a scrape).
//!
//! Over 800 lines because its unit tests (about 370, one per exposition
//! corner) stay beside the parser; the code is about 650.

use crate::config::{Selector, same};
use crate::probe::Labels;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

/// Which format a scrape claims to be. Both parse with the same rules; the
/// difference is the end marker: OpenMetrics must end with `# EOF` (its
/// absence means the body was cut short), text has none (`# EOF` there is
/// a comment, as in Prometheus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `text/plain; version=0.0.4`, or anything not claiming OpenMetrics.
    Text,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl Dialect {
    /// The dialect a response's Content-Type names: OpenMetrics for
    /// `application/openmetrics-text`, text for everything else (including
    /// no Content-Type at all, as the text format's clients do).
    pub fn from_content_type(content_type: Option<&str>) -> Dialect {
        let media_type = content_type
            .and_then(|value| value.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            Dialect::OpenMetrics
        } else {
            Dialect::Text
        }
    }
}

/// One parsed series, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    /// Sorted by label name; names are unique; no empty values.
    pub labels: Labels,
    pub value: f64,
}

/// A whole exposition: its series in order, and the families its metadata
/// lines declare.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    pub series: Vec<Series>,
    pub families: Vec<String>,
    /// When only wanted series are kept: the names a selector reads that
    /// had samples, kept or not, each with the label names its samples
    /// carried (for a name only a pattern selects, none are gathered).
    /// The rules read a family's presence and its labels from these as
    /// they would from every series (a family whose one series is missing
    /// this tick is still there; a label no series has is named).
    pub sampled: Vec<(String, Vec<String>)>,
}

/// One sample as the parser sees it, borrowing from the exposition: names
/// and label values are copied only when they hold escapes.
#[derive(Debug)]
pub struct Sample<'text, 'parser> {
    pub name: Cow<'text, str>,
    /// Sorted by label name; names are unique; no empty values.
    pub labels: &'parser [(Cow<'text, str>, Cow<'text, str>)],
    pub value: f64,
}

impl Sample<'_, '_> {
    pub fn to_series(&self) -> Series {
        Series {
            name: self.name.to_string(),
            labels: self
                .labels
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            value: self.value,
        }
    }
}

/// What the parser hands on, line by line.
#[derive(Debug)]
pub enum Entry<'text, 'parser> {
    Sample(Sample<'text, 'parser>),
    /// `# HELP`, `# TYPE` or `# UNIT` named this family.
    Family(Cow<'text, str>),
}

/// Why an exposition was rejected, at which line (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole exposition into owned series, in the order they appear.
pub fn parse(body: &[u8], dialect: Dialect) -> Result<Vec<Series>, ParseError> {
    Ok(parse_exposition(body, dialect)?.series)
}

/// Parses a whole exposition into its series and declared families.
pub fn parse_exposition(body: &[u8], dialect: Dialect) -> Result<Exposition, ParseError> {
    let mut exposition = Exposition::default();
    for_each_entry(body, dialect, |entry| match entry {
        Entry::Sample(sample) => exposition.series.push(sample.to_series()),
        Entry::Family(name) => exposition.families.push(name.to_string()),
    })?;
    Ok(exposition)
}

/// Why a capped parse kept nothing.
#[derive(Debug, PartialEq)]
pub enum Capped {
    Invalid(ParseError),
    /// More to keep than the cap: `kept` series of the `count` in all,
    /// and the metric `names` pattern selectors pick (each costs what a
    /// kept series costs).
    TooMany {
        kept: usize,
        names: usize,
        count: usize,
    },
    /// A streamed body over its `max_body`.
    TooBig,
    /// A streamed body that could not be read to its end.
    Read(String),
}

/// [`parse_exposition`], keeping only the series a `wanted` selector
/// matches (all when `None`), at most `cap` of them: the rest is only counted (parsing
/// allocates nothing per sample), and past the cap the whole scrape is
/// refused, so memory stays bounded by what is kept. Also returns how many
/// series the exposition held in all.
pub fn parse_exposition_capped(
    body: &[u8],
    dialect: Dialect,
    cap: usize,
    wanted: Option<&[Selector]>,
) -> Result<(Exposition, usize), Capped> {
    let wanted = wanted.map(Wanted::new);
    Part::read(body, dialect, cap, wanted.as_ref()).done()
}

/// [`parse_exposition_capped`] on a body read as it streams in, `CHUNK`
/// bytes at a time: the body is never held whole, a scrape costs its
/// chunks, not its size. A body over `max_body` bytes is refused
/// ([`Capped::TooBig`]); a line of more than a chunk is read whole.
///
/// A body of more than one block of lines is parsed on two threads: a
/// block goes to a second thread while it keeps up and is parsed here
/// while it is busy; each block is read on its own ([`Part`]) and the
/// parts are joined in order, so the result (the series and their order,
/// the first error and its line) is the one a single reader finds.
pub fn parse_exposition_streamed(
    mut body: impl std::io::Read,
    dialect: Dialect,
    max_body: u64,
    cap: usize,
    wanted: Option<&[Selector]>,
) -> Result<(Exposition, usize), Capped> {
    const CHUNK: usize = 64 * 1024;
    let wanted = wanted.map(Wanted::new);
    std::thread::scope(|scope| {
        let mut blocks = Blocks::new(scope, dialect, cap, wanted.as_ref());
        // A block is held until the next read shows the body goes on: a
        // body of one block is parsed here, with no second thread.
        let mut held: Option<Vec<u8>> = None;
        let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK);
        let mut total: u64 = 0;
        let stopped = loop {
            let start = buffer.len();
            buffer.resize(start + CHUNK, 0);
            let read = match read_some(&mut body, &mut buffer[start..]) {
                Ok(read) => read,
                Err(stopped) => break Some(stopped),
            };
            buffer.truncate(start + read);
            total += read as u64;
            if total > max_body {
                break Some(Capped::TooBig);
            }
            if read == 0 {
                // The last line, with no newline after it.
                if let Some(block) = held.take() {
                    blocks.add(block, false);
                }
                blocks.add(buffer, false);
                break None;
            }
            // Only what was just read can hold the last newline.
            let complete = match memchr::memrchr(b'\n', &buffer[start..]) {
                Some(last) => start + last + 1,
                None => continue,
            };
            let mut rest = Vec::with_capacity(CHUNK.max(buffer.len() - complete));
            rest.extend_from_slice(&buffer[complete..]);
            let mut block = std::mem::replace(&mut buffer, rest);
            block.truncate(complete - 1);
            if let Some(earlier) = held.replace(block) {
                blocks.add(earlier, true);
            }
            if blocks.failed {
                // What is left is not read: the scrape has failed at an
                // earlier line.
                break None;
            }
        };
        let joined = blocks.finish();
        match stopped {
            // A line read before the cut was already wrong.
            Some(_) if joined.error.is_some() => joined.done(),
            Some(stopped) => Err(stopped),
            None => joined.done(),
        }
    })
}

/// One read of `body` into `buffer`, again when interrupted.
fn read_some(body: &mut impl std::io::Read, buffer: &mut [u8]) -> Result<usize, Capped> {
    loop {
        match body.read(buffer) {
            Ok(read) => return Ok(read),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Capped::Read(e.to_string())),
        }
    }
}

/// The second thread of a streamed scrape: numbered blocks to it, their
/// parts back.
struct Worker<'w> {
    jobs: SyncSender<(usize, Vec<u8>)>,
    done: Receiver<(usize, Part<'w>)>,
}

/// The blocks of a streamed scrape, parsed here or on a second thread and
/// joined in the order they were read.
struct Blocks<'scope, 'w> {
    scope: &'scope std::thread::Scope<'scope, 'w>,
    dialect: Dialect,
    cap: usize,
    wanted: Option<&'w Wanted<'w>>,
    /// The second thread: blocks to it, parts from it (started on the
    /// second block).
    worker: Option<Worker<'w>>,
    /// The parts joined so far, and the number of the next to join.
    joined: Part<'w>,
    next: usize,
    /// Parts read out of order, waiting for those before them.
    waiting: BTreeMap<usize, Part<'w>>,
    added: usize,
    /// Whether some part has an error: the rest of the body changes
    /// nothing.
    failed: bool,
}

impl<'scope, 'w> Blocks<'scope, 'w> {
    fn new(
        scope: &'scope std::thread::Scope<'scope, 'w>,
        dialect: Dialect,
        cap: usize,
        wanted: Option<&'w Wanted<'w>>,
    ) -> Blocks<'scope, 'w> {
        Blocks {
            scope,
            dialect,
            cap,
            wanted,
            worker: None,
            joined: Part::new(dialect, cap, wanted),
            next: 0,
            waiting: BTreeMap::new(),
            added: 0,
            failed: false,
        }
    }

    /// Parses the next block (whole lines, without the last newline), on
    /// the second thread when it is free (started when `start` says the
    /// body goes on), here otherwise.
    fn add(&mut self, block: Vec<u8>, start: bool) {
        let number = self.added;
        self.added += 1;
        if start && self.worker.is_none() {
            self.worker = Some(self.start());
        }
        let block = match &self.worker {
            Some(worker) => match worker.jobs.try_send((number, block)) {
                Ok(()) => {
                    self.join();
                    return;
                }
                Err(TrySendError::Full((_, block)) | TrySendError::Disconnected((_, block))) => {
                    block
                }
            },
            None => block,
        };
        let part = Part::read(&block, self.dialect, self.cap, self.wanted);
        self.insert(number, part);
        self.join();
    }

    fn start(&self) -> Worker<'w> {
        let (jobs, blocks) = mpsc::sync_channel::<(usize, Vec<u8>)>(1);
        let (parts, done) = mpsc::channel();
        let (dialect, cap, wanted) = (self.dialect, self.cap, self.wanted);
        self.scope.spawn(move || {
            for (number, block) in blocks {
                let part = Part::read(&block, dialect, cap, wanted);
                if parts.send((number, part)).is_err() {
                    break;
                }
            }
        });
        Worker { jobs, done }
    }

    fn insert(&mut self, number: usize, part: Part<'w>) {
        self.failed |= part.error.is_some();
        self.waiting.insert(number, part);
    }

    /// Takes what the second thread has read so far, and joins the parts
    /// that are next in order.
    fn join(&mut self) {
        if let Some(worker) = &self.worker {
            let read: Vec<_> = worker.done.try_iter().collect();
            for (number, part) in read {
                self.insert(number, part);
            }
        }
        while let Some(part) = self.waiting.remove(&self.next) {
            self.joined.append(part);
            self.next += 1;
        }
    }

    /// Every part added, joined.
    fn finish(mut self) -> Part<'w> {
        if let Some(Worker { jobs, done }) = self.worker.take() {
            // The second thread reads what it was given, and stops.
            drop(jobs);
            for (number, part) in done {
                self.insert(number, part);
            }
        }
        self.join();
        self.joined
    }
}

/// A run of whole lines read on its own: its lines are numbered from 1,
/// and [`Part::append`] puts it after the lines before it.
struct Part<'w> {
    reader: LineReader,
    keeper: Keeper<'w>,
    error: Option<ParseError>,
}

impl<'w> Part<'w> {
    fn new(dialect: Dialect, cap: usize, wanted: Option<&'w Wanted<'w>>) -> Part<'w> {
        Part {
            reader: LineReader::new(dialect),
            keeper: Keeper::new(cap, wanted),
            error: None,
        }
    }

    fn read(
        block: &[u8],
        dialect: Dialect,
        cap: usize,
        wanted: Option<&'w Wanted<'w>>,
    ) -> Part<'w> {
        let mut part = Part::new(dialect, cap, wanted);
        let keeper = &mut part.keeper;
        part.error = part
            .reader
            .lines(block, &mut |entry| keeper.entry(entry))
            .err();
        part
    }

    /// Puts the lines of `later` after these: the result is what one
    /// reader of both finds (stopping at the first error).
    fn append(&mut self, later: Part<'w>) {
        if self.error.is_some() {
            return;
        }
        let before = self.reader.number;
        if let (Some(eof), Some(first)) = (self.reader.end_marker, later.reader.first_line) {
            self.error = Some(ParseError {
                line: before + first,
                message: after_eof(eof),
            });
            return;
        }
        if let Some(mut error) = later.error {
            // Its one error that names another line is text after its
            // own `# EOF` (nothing else is read after it).
            if let Some(eof) = later.reader.end_marker.filter(|&eof| eof < error.line) {
                error.message = after_eof(before + eof);
            }
            error.line += before;
            self.error = Some(error);
            return;
        }
        self.reader.append(later.reader);
        self.keeper.append(later.keeper);
    }

    fn done(self) -> Result<(Exposition, usize), Capped> {
        if let Some(error) = self.error {
            return Err(Capped::Invalid(error));
        }
        let count = self.reader.finish().map_err(Capped::Invalid)?;
        self.keeper.done(count)
    }
}

fn after_eof(eof: usize) -> String {
    format!("text after `# EOF` (line {eof})")
}

/// What a capped parse keeps, entry by entry.
struct Keeper<'w> {
    exposition: Exposition,
    kept: usize,
    cap: usize,
    wanted: Option<(&'w Wanted<'w>, Notes)>,
}

impl<'w> Keeper<'w> {
    fn new(cap: usize, wanted: Option<&'w Wanted<'w>>) -> Keeper<'w> {
        Keeper {
            exposition: Exposition::default(),
            kept: 0,
            cap,
            wanted: wanted.map(|wanted| (wanted, Notes::new(wanted))),
        }
    }

    fn entry(&mut self, entry: &Entry<'_, '_>) {
        match entry {
            Entry::Sample(sample) => {
                // Judged on the borrowed sample: only a series a selector
                // wants is copied.
                let keep = match &mut self.wanted {
                    None => Some(sample.to_series()),
                    Some((wanted, notes)) => wanted
                        .wants(notes, &sample.name, sample.labels)
                        .then(|| sample.to_series()),
                };
                if let Some(one) = keep {
                    self.kept += 1;
                    if self.kept <= self.cap {
                        self.exposition.series.push(one);
                    }
                }
            }
            Entry::Family(name) if self.exposition.families.len() < self.cap => {
                self.exposition.families.push(name.to_string());
            }
            Entry::Family(_) => {}
        }
    }

    /// Adds what `later` kept of the lines after this keeper's: the same
    /// as one keeper reading them all.
    fn append(&mut self, later: Keeper<'w>) {
        self.kept += later.kept;
        let room = self.cap.saturating_sub(self.exposition.series.len());
        let series = later.exposition.series.into_iter().take(room);
        self.exposition.series.extend(series);
        let room = self.cap.saturating_sub(self.exposition.families.len());
        let families = later.exposition.families.into_iter().take(room);
        self.exposition.families.extend(families);
        if let (Some((_, notes)), Some((_, later))) = (&mut self.wanted, later.wanted) {
            notes.append(later);
        }
    }

    fn done(mut self, count: usize) -> Result<(Exposition, usize), Capped> {
        let mut names = 0;
        if let Some((wanted, notes)) = self.wanted {
            // A name a pattern selects costs what a kept series costs.
            names = notes.by_pattern_names.len();
            self.exposition.sampled = wanted.sampled(notes);
        }
        if self.kept + names > self.cap {
            return Err(Capped::TooMany {
                kept: self.kept,
                names,
                count,
            });
        }
        Ok((self.exposition, count))
    }
}

/// The selectors a scrape keeps series for, looked up by metric name: a
/// line is judged against the selectors of its own name (and those that
/// pick names by pattern), not against every rule's. Built once a scrape
/// and shared by the threads that parse it.
struct Wanted<'w> {
    index: HashMap<&'w str, usize>,
    /// Each name in `index`, with its selectors.
    named: Vec<(&'w str, Vec<&'w Selector>)>,
    /// Selectors with no single name (`{__name__=~"…"}`): asked of every line.
    by_pattern: Vec<&'w Selector>,
}

/// What the samples of a part of a scrape held for the wanted selectors,
/// kept or not.
struct Notes {
    /// Beside each of [`Wanted::named`]: whether it had samples, and the
    /// label names they carried, in the order first seen.
    named: Vec<(bool, Vec<String>)>,
    /// Names of samples a pattern selector's name matchers accept.
    by_pattern_names: Vec<String>,
    /// Lines of one family come together, and a histogram's `_bucket`,
    /// `_sum` and `_count` lines alternate: the last few names' lookups
    /// are kept (the index in [`Wanted::named`], if any).
    recent: Vec<(String, Option<usize>)>,
    /// Where the next name not in `recent` goes.
    replace: usize,
}

/// How many names' lookups [`Notes`] keeps.
const RECENT_NAMES: usize = 4;

impl<'w> Wanted<'w> {
    fn new(selectors: &'w [Selector]) -> Wanted<'w> {
        let mut wanted = Wanted {
            index: HashMap::new(),
            named: Vec::new(),
            by_pattern: Vec::new(),
        };
        for selector in selectors {
            match selector.name.as_deref() {
                Some(name) => {
                    let next = wanted.named.len();
                    let at = *wanted.index.entry(name).or_insert(next);
                    if at == next {
                        wanted.named.push((name, Vec::new()));
                    }
                    wanted.named[at].1.push(selector);
                }
                None => wanted.by_pattern.push(selector),
            }
        }
        wanted
    }

    /// Whether any selector wants the series `name{labels}`; notes what
    /// the sample says of its family either way.
    fn wants(
        &self,
        notes: &mut Notes,
        name: &str,
        labels: &[(Cow<'_, str>, Cow<'_, str>)],
    ) -> bool {
        let found = match notes.recent.iter().find(|(known, _)| same(known, name)) {
            Some((_, found)) => *found,
            None => self.look_up(notes, name),
        };
        let Some(at) = found else {
            return self
                .by_pattern
                .iter()
                .any(|selector| selector.matches(name, labels));
        };
        let (sampled, label_names) = &mut notes.named[at];
        *sampled = true;
        for (position, (label, _)) in labels.iter().enumerate() {
            // Mostly the label names of the first sample, in its order.
            let known = label_names
                .get(position)
                .is_some_and(|known| same(known, label))
                || label_names.iter().any(|known| same(known, label));
            if !known {
                label_names.push(label.to_string());
            }
        }
        // The named selectors were found by this name: only their labels
        // are left to judge.
        self.named[at]
            .1
            .iter()
            .any(|selector| selector.matches_labels(name, labels))
            || self
                .by_pattern
                .iter()
                .any(|selector| selector.matches(name, labels))
    }

    /// A name not among the recent ones: its selectors, and whether a
    /// pattern selector picks it; kept among the recent names.
    fn look_up(&self, notes: &mut Notes, name: &str) -> Option<usize> {
        let found = self.index.get(name).copied();
        if self.by_pattern.iter().any(|s| s.matches_names(name))
            && !notes.by_pattern_names.iter().any(|n| n == name)
        {
            notes.by_pattern_names.push(name.to_string());
        }
        if notes.recent.len() < RECENT_NAMES {
            notes.recent.push((name.to_string(), found));
        } else {
            let (known, at) = &mut notes.recent[notes.replace];
            known.clear();
            known.push_str(name);
            *at = found;
            notes.replace = (notes.replace + 1) % RECENT_NAMES;
        }
        found
    }

    /// What [`Exposition::sampled`] holds.
    fn sampled(&self, notes: Notes) -> Vec<(String, Vec<String>)> {
        let named = self
            .named
            .iter()
            .zip(notes.named)
            .filter(|(_, (sampled, _))| *sampled)
            .map(|((name, _), (_, label_names))| (name.to_string(), label_names));
        let by_pattern = notes
            .by_pattern_names
            .into_iter()
            .map(|name| (name, Vec::new()));
        named.chain(by_pattern).collect()
    }
}

impl Notes {
    fn new(wanted: &Wanted<'_>) -> Notes {
        Notes {
            named: vec![(false, Vec::new()); wanted.named.len()],
            by_pattern_names: Vec::new(),
            recent: Vec::with_capacity(RECENT_NAMES),
            replace: 0,
        }
    }

    /// Adds what the lines after these held, in the order first seen.
    fn append(&mut self, later: Notes) {
        for ((sampled, names), (later_sampled, later_names)) in
            self.named.iter_mut().zip(later.named)
        {
            *sampled |= later_sampled;
            for name in later_names {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        for name in later.by_pattern_names {
            if !self.by_pattern_names.contains(&name) {
                self.by_pattern_names.push(name);
            }
        }
    }
}

/// Parses an exposition and hands each sample to `visit` as it is read;
/// returns how many there were. On an error some samples may already have
/// been visited: callers that must not act on a partial scrape collect
/// first (as [`parse`] does).
pub fn for_each_sample<'text>(
    body: &'text [u8],
    dialect: Dialect,
    mut visit: impl FnMut(&Sample<'text, '_>),
) -> Result<usize, ParseError> {
    for_each_entry(body, dialect, |entry| {
        if let Entry::Sample(sample) = entry {
            visit(sample);
        }
    })
}

/// Parses an exposition and hands each sample and family declaration to
/// `visit`; returns how many samples there were.
pub fn for_each_entry<'text>(
    body: &'text [u8],
    dialect: Dialect,
    mut visit: impl FnMut(&Entry<'text, '_>),
) -> Result<usize, ParseError> {
    let mut reader = LineReader::new(dialect);
    reader.lines(body, &mut visit)?;
    reader.finish()
}

/// An exposition read line by line: where it is, and whether `# EOF`
/// was seen.
struct LineReader {
    dialect: Dialect,
    count: usize,
    number: usize,
    end_marker: Option<usize>,
    /// The first and last lines that are not blank (last 0: none yet).
    first_line: Option<usize>,
    last_line: usize,
    /// The metric name the last sample line began with: lines of one
    /// family come together, so most names are this one again.
    last_name: Vec<u8>,
}

impl LineReader {
    fn new(dialect: Dialect) -> LineReader {
        LineReader {
            dialect,
            count: 0,
            number: 0,
            end_marker: None,
            first_line: None,
            last_line: 0,
            last_name: Vec::new(),
        }
    }

    /// Reads whole lines (the last one without its newline), handing what
    /// they hold to `visit`. The block is checked as UTF-8 once: a line
    /// of valid text is valid (a newline is never inside a character);
    /// only a block that is not gets its lines checked one by one, to name
    /// the line at fault.
    fn lines<'text, F: FnMut(&Entry<'text, '_>)>(
        &mut self,
        block: &'text [u8],
        visit: &mut F,
    ) -> Result<(), ParseError> {
        let text = std::str::from_utf8(block).ok();
        let mut labels = Vec::new();
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', block).chain(std::iter::once(block.len()));
        for end in ends {
            let line = text.map(|text| &text[start..end]);
            self.line(&block[start..end], line, &mut labels, visit)?;
            start = end + 1;
        }
        Ok(())
    }

    /// Reads one line (without its newline; `text` is the same line when
    /// it is known to be UTF-8), handing what it holds to `visit`.
    fn line<'text, F: FnMut(&Entry<'text, '_>)>(
        &mut self,
        raw: &'text [u8],
        text: Option<&'text str>,
        labels: &mut Vec<(Cow<'text, str>, Cow<'text, str>)>,
        visit: &mut F,
    ) -> Result<(), ParseError> {
        self.number += 1;
        let number = self.number;
        let (start, end) = trimmed(raw);
        let line = &raw[start..end];
        if line.is_empty() {
            return Ok(());
        }
        let at = |message: String| ParseError {
            line: number,
            message,
        };
        self.first_line.get_or_insert(number);
        if let Some(eof) = self.end_marker {
            return Err(at(after_eof(eof)));
        }
        self.last_line = number;
        if line[0] == b'#' {
            match parse_comment(&line[1..], self.dialect).map_err(at)? {
                Comment::Skip => {}
                Comment::Eof => self.end_marker = Some(number),
                Comment::Family(name) => visit(&Entry::Family(name)),
            }
            return Ok(());
        }
        let line = match text {
            // Trimming took ASCII bytes only: still on character boundaries.
            Some(text) => &text[start..end],
            None => std::str::from_utf8(line).map_err(|_| at("not valid UTF-8".to_string()))?,
        };
        let (name, value) = parse_sample(line, labels, &mut self.last_name).map_err(at)?;
        visit(&Entry::Sample(Sample {
            name,
            labels,
            value,
        }));
        self.count += 1;
        Ok(())
    }

    /// Counts the lines `later` read after these (numbered from 1 there).
    fn append(&mut self, later: LineReader) {
        let before = self.number;
        self.number += later.number;
        self.count += later.count;
        self.end_marker = self.end_marker.or(later.end_marker.map(|l| before + l));
        self.first_line = self.first_line.or(later.first_line.map(|l| before + l));
        if later.last_line > 0 {
            self.last_line = before + later.last_line;
        }
    }

    /// The count of samples, once the whole exposition is read.
    fn finish(self) -> Result<usize, ParseError> {
        if self.dialect == Dialect::OpenMetrics && self.end_marker.is_none() {
            return Err(ParseError {
                line: self.last_line + 1,
                message: "the OpenMetrics exposition ends without `# EOF` (cut short?)".to_string(),
            });
        }
        Ok(self.count)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Comment<'text> {
    /// A free comment, or metadata with nothing to keep.
    Skip,
    /// A descriptor naming a metric family.
    Family(Cow<'text, str>),
    /// `# EOF`: the end of an OpenMetrics exposition.
    Eof,
}

/// Every type either format defines, and the spellings Prometheus's
/// parsers tolerate (`gauge_histogram`, `untyped` in OpenMetrics). Others
/// are rejected, as Prometheus does.
const TYPES: [&str; 10] = [
    "counter",
    "gauge",
    "histogram",
    "summary",
    "untyped",
    "unknown",
    "gaugehistogram",
    "gauge_histogram",
    "stateset",
    "info",
];

/// Reads a line after its `#`. As in Prometheus, only `# HELP`/`# TYPE`
/// (and in OpenMetrics `# UNIT`, `# EOF`) followed by a blank are
/// descriptors; every other `#` line is a comment, including a bare
/// `# HELP` and, in the text format, `# EOF`.
fn parse_comment(rest: &[u8], dialect: Dialect) -> Result<Comment<'_>, String> {
    if !matches!(rest.first(), Some(b' ' | b'\t')) {
        return Ok(Comment::Skip);
    }
    let rest = &rest[skip_blanks(rest, 0)..];
    let keyword_end = token_end(rest, 0);
    let keyword = &rest[..keyword_end];
    let after = &rest[keyword_end..];
    if dialect == Dialect::OpenMetrics && keyword == b"EOF" {
        return if after.is_empty() {
            Ok(Comment::Eof)
        } else {
            Err(format!(
                "unexpected {} after `# EOF`",
                excerpt(&String::from_utf8_lossy(after))
            ))
        };
    }
    let descriptor = match keyword {
        b"HELP" | b"TYPE" => true,
        b"UNIT" => dialect == Dialect::OpenMetrics,
        _ => false,
    };
    // A descriptor needs a blank and a name after the keyword.
    if !descriptor || after.is_empty() {
        return Ok(Comment::Skip);
    }
    let keyword = std::str::from_utf8(keyword).unwrap_or("?");
    let after =
        std::str::from_utf8(after).map_err(|_| format!("`# {keyword}` is not valid UTF-8"))?;
    let after = after.trim_start_matches(is_blank);
    let (metric, rest) = if after.starts_with('"') {
        let (name, end) =
            parse_quoted(after, 1).map_err(|why| format!("`# {keyword}`: metric name: {why}"))?;
        (name, &after[end..])
    } else {
        let end = metric_name_length(after.as_bytes());
        if end == 0 {
            return Err(format!(
                "`# {keyword}` names an invalid metric {}",
                excerpt(after)
            ));
        }
        (Cow::Borrowed(&after[..end]), &after[end..])
    };
    if !rest.is_empty() && !rest.starts_with(is_blank) {
        return Err(format!(
            "`# {keyword}` names an invalid metric {}",
            excerpt(split_token(after).0)
        ));
    }
    if keyword == "TYPE" {
        let text = rest.trim_matches(is_blank);
        if text.is_empty() {
            return Err(format!("`# TYPE {metric}` without a type"));
        }
        let (kind, extra) = split_token(text);
        if !TYPES.contains(&kind) {
            return Err(format!("`# TYPE {metric}`: unknown type {}", excerpt(kind)));
        }
        if !extra.is_empty() {
            return Err(format!(
                "`# TYPE {metric} {kind}`: unexpected {}",
                excerpt(extra.trim_start_matches(is_blank))
            ));
        }
    }
    Ok(Comment::Family(metric))
}

/// Parses `name{labels} value [timestamp] [# exemplar]` (already trimmed)
/// into its name and value, leaving the sorted labels in `labels`. The
/// name may instead be a quoted string inside the braces
/// (`{"my.metric",a="1"}`).
fn parse_sample<'text>(
    line: &'text str,
    labels: &mut Vec<(Cow<'text, str>, Cow<'text, str>)>,
    last_name: &mut Vec<u8>,
) -> Result<(Cow<'text, str>, f64), String> {
    let bytes = line.as_bytes();
    let name_end = same_name(bytes, last_name).unwrap_or_else(|| {
        let end = metric_name_length(bytes);
        last_name.clear();
        last_name.extend_from_slice(&bytes[..end]);
        end
    });
    if name_end == 0 && bytes.first() != Some(&b'{') {
        return Err(format!("expected a metric name, found {}", excerpt(line)));
    }
    let mut name = (name_end > 0).then(|| Cow::Borrowed(&line[..name_end]));
    labels.clear();
    let mut position = skip_blanks(bytes, name_end);
    if bytes.get(position) == Some(&b'{') {
        position = parse_labels(line, position + 1, labels, &mut name).map_err(|why| {
            // Named as written before the braces (only an error allocates).
            let shown = if name_end > 0 { &line[..name_end] } else { "{" };
            format!("{shown}: {why}")
        })?;
        position = skip_blanks(bytes, position);
    } else if position == name_end && position < bytes.len() {
        let character = char_at(line, position);
        return Err(format!(
            "invalid character {} after metric name {}",
            excerpt(character),
            excerpt(&line[..name_end])
        ));
    }
    let Some(name) = name else {
        return Err(format!("no metric name in {}", excerpt(line)));
    };
    let value_end = token_end(bytes, position);
    if value_end == position {
        return Err(format!("{name}: missing value"));
    }
    let token = &line[position..value_end];
    let value =
        parse_float(token).ok_or_else(|| format!("{name}: invalid value {}", excerpt(token)))?;
    position = skip_blanks(bytes, value_end);
    if position < bytes.len() && bytes[position] != b'#' {
        let timestamp_end = token_end(bytes, position);
        let token = &line[position..timestamp_end];
        if !parse_float(token).is_some_and(f64::is_finite) {
            return Err(format!("{name}: invalid timestamp {}", excerpt(token)));
        }
        position = skip_blanks(bytes, timestamp_end);
    }
    // What may follow is an OpenMetrics exemplar (` # {trace_id="…"} 1`),
    // which says nothing about the series' value: skipped.
    if position < bytes.len() && bytes[position] != b'#' {
        return Err(format!(
            "{name}: unexpected {} after the timestamp",
            excerpt(&line[position..])
        ));
    }
    Ok((name, value))
}

/// Parses labels from just after `{` to `}`; returns the position after
/// `}`. Blanks between tokens and a trailing comma are allowed; a lone
/// quoted string is the metric name; labels with empty values are left
/// out (Prometheus stores no empty label).
fn parse_labels<'text>(
    line: &'text str,
    start: usize,
    labels: &mut Vec<(Cow<'text, str>, Cow<'text, str>)>,
    name: &mut Option<Cow<'text, str>>,
) -> Result<usize, String> {
    let bytes = line.as_bytes();
    let unclosed = || "the label set has no closing '}'".to_string();
    let mut position = start;
    loop {
        position = skip_blanks(bytes, position);
        match bytes.get(position) {
            None => return Err(unclosed()),
            Some(b'}') => {
                position += 1;
                break;
            }
            Some(_) => {}
        }
        let (label, name_end) = if bytes[position] == b'"' {
            parse_quoted(line, position + 1).map_err(|why| format!("a quoted name: {why}"))?
        } else {
            let end = position + label_name_length(&bytes[position..]);
            if end == position {
                return Err(format!(
                    "expected a label name or '}}', found {}",
                    excerpt(&line[position..])
                ));
            }
            (Cow::Borrowed(&line[position..end]), end)
        };
        let quoted = bytes[position] == b'"';
        position = skip_blanks(bytes, name_end);
        if quoted && matches!(bytes.get(position), Some(b',' | b'}')) {
            if name.is_some() {
                return Err(format!("the metric name is given twice ({label:?})"));
            }
            *name = Some(label);
            if bytes[position] == b',' {
                position += 1;
            }
            continue;
        }
        if bytes.get(position) != Some(&b'=') {
            return Err(format!("expected '=' after label name {}", excerpt(&label)));
        }
        position = skip_blanks(bytes, position + 1);
        if bytes.get(position) != Some(&b'"') {
            return Err(format!(
                "the value of label {} is not quoted",
                excerpt(&label)
            ));
        }
        let (value, end) = match plain_quoted_end(bytes, position + 1) {
            // Most values hold no escape: borrowed as they are.
            Some(close) => (Cow::Borrowed(&line[position + 1..close]), close + 1),
            None => parse_quoted(line, position + 1)
                .map_err(|why| format!("label {}: {why}", excerpt(&label)))?,
        };
        position = skip_blanks(bytes, end);
        let last = match bytes.get(position) {
            Some(b',') => false,
            Some(b'}') => true,
            None => return Err(unclosed()),
            Some(_) => {
                return Err(format!(
                    "expected ',' or '}}' after label {}, found {}",
                    excerpt(&label),
                    excerpt(&line[position..])
                ));
            }
        };
        position += 1;
        if !value.is_empty() {
            labels.push((label, value));
        }
        if last {
            break;
        }
    }
    // Exporters write labels sorted, and names mostly differ in their
    // first byte: one pass (strictly increasing names are unique), and a
    // byte compared before the strings (the same order as `str`'s).
    let before = |a: &str, b: &str| {
        a.as_bytes()
            .first()
            .cmp(&b.as_bytes().first())
            .then_with(|| a.cmp(b))
    };
    if labels
        .windows(2)
        .all(|pair| before(&pair[0].0, &pair[1].0).is_lt())
    {
        return Ok(position);
    }
    labels.sort_unstable_by(|a, b| before(&a.0, &b.0));
    if let Some(pair) = labels.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(format!("label {} appears twice", excerpt(&pair[0].0)));
    }
    Ok(position)
}

/// Where the quoted string from `start` (just after its opening quote)
/// closes, when it holds no backslash before its closing quote; `None`
/// otherwise (then [`parse_quoted`] reads it).
fn plain_quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let rest = bytes.get(start..)?;
    let at = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[at] == b'"').then_some(start + at)
}

/// Reads a quoted string from just after its opening quote; returns it and
/// the position after the closing quote. Borrowed unless it holds escapes.
/// `\\`, `\"` and `\n` are unescaped; any other escape is kept as written,
/// backslash included, as Prometheus's scraper keeps it.
fn parse_quoted(line: &str, start: usize) -> Result<(Cow<'_, str>, usize), String> {
    let bytes = line.as_bytes();
    let unterminated = || "the value has no closing quote".to_string();
    let mut position = start;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'"' => return Ok((Cow::Borrowed(&line[start..position]), position + 1)),
            b'\\' => break,
            _ => position += 1,
        }
    }
    let mut value = String::with_capacity(position - start + 16);
    let mut run = start;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'"' => {
                value.push_str(&line[run..position]);
                return Ok((Cow::Owned(value), position + 1));
            }
            b'\\' => {
                value.push_str(&line[run..position]);
                match bytes.get(position + 1) {
                    Some(b'\\') => value.push('\\'),
                    Some(b'"') => value.push('"'),
                    Some(b'n') => value.push('\n'),
                    Some(_) => {
                        value.push('\\');
                        value.push_str(char_at(line, position + 1));
                    }
                    None => return Err(unterminated()),
                }
                position += 1 + char_at(line, position + 1).len().max(1);
                run = position;
            }
            _ => position += 1,
        }
    }
    Err(unterminated())
}

/// A sample value or timestamp: decimal or exponent notation, `NaN`,
/// `+Inf`, `-Inf`, `Inf` (any case, as Go's `ParseFloat` reads them).
fn parse_float(token: &str) -> Option<f64> {
    // Most values are counts: up to 15 digits are exact in an f64, read
    // without the general parser (the same value it gives).
    let digits = token.as_bytes();
    if !digits.is_empty() && digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
        let count = digits
            .iter()
            .fold(0u64, |count, &digit| count * 10 + u64::from(digit - b'0'));
        return Some(count as f64);
    }
    token.parse().ok()
}

/// Where the line is without leading and trailing blanks and carriage
/// returns.
fn trimmed(line: &[u8]) -> (usize, usize) {
    let edge = |b: &u8| !matches!(b, b' ' | b'\t' | b'\r');
    let start = line.iter().position(edge).unwrap_or(line.len());
    let end = line.iter().rposition(edge).map_or(start, |last| last + 1);
    (start, end)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn skip_blanks(bytes: &[u8], mut position: usize) -> usize {
    while matches!(bytes.get(position), Some(b' ' | b'\t')) {
        position += 1;
    }
    position
}

/// The end of the token starting at `position`: the next blank or the end.
fn token_end(bytes: &[u8], mut position: usize) -> usize {
    while let Some(&byte) = bytes.get(position) {
        if byte == b' ' || byte == b'\t' {
            break;
        }
        position += 1;
    }
    position
}

/// Splits off the first token of `text` (which starts with no blank).
fn split_token(text: &str) -> (&str, &str) {
    let end = token_end(text.as_bytes(), 0);
    (&text[..end], &text[end..])
}

/// Byte classes of names, looked up rather than tested: names are most
/// of a scrape's bytes.
const METRIC_FIRST: u8 = 1;
const METRIC_REST: u8 = 2;
const LABEL_FIRST: u8 = 4;
const LABEL_REST: u8 = 8;
const NAME_CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let letter = b.is_ascii_alphabetic() || b == b'_';
        let digit = b.is_ascii_digit();
        let colon = b == b':';
        let mut class = 0;
        if letter || colon {
            class |= METRIC_FIRST;
        }
        if letter || digit || colon {
            class |= METRIC_REST;
        }
        if letter {
            class |= LABEL_FIRST;
        }
        if letter || digit {
            class |= LABEL_REST;
        }
        classes[byte] = class;
        byte += 1;
    }
    classes
};

/// How many leading bytes form a name whose first byte is of class
/// `first` and the others of class `rest`.
fn name_length(bytes: &[u8], first: u8, rest: u8) -> usize {
    match bytes.first() {
        Some(&b) if NAME_CLASSES[usize::from(b)] & first != 0 => bytes
            .iter()
            .position(|&b| NAME_CLASSES[usize::from(b)] & rest == 0)
            .unwrap_or(bytes.len()),
        _ => 0,
    }
}

/// The length of `last`, when `line` starts with that metric name and no
/// longer one: one comparison instead of a byte-by-byte scan.
fn same_name(line: &[u8], last: &[u8]) -> Option<usize> {
    let after = line.get(last.len()).copied();
    (!last.is_empty()
        && memchr::arch::all::is_prefix(line, last)
        && after.is_none_or(|b| NAME_CLASSES[usize::from(b)] & METRIC_REST == 0))
    .then_some(last.len())
}

/// How many leading bytes form a metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name_length(bytes: &[u8]) -> usize {
    name_length(bytes, METRIC_FIRST, METRIC_REST)
}

/// How many leading bytes form a label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name_length(bytes: &[u8]) -> usize {
    name_length(bytes, LABEL_FIRST, LABEL_REST)
}

/// The character starting at byte `position`, as text ("" at the end).
fn char_at(text: &str, position: usize) -> &str {
    let length = text
        .get(position..)
        .and_then(|rest| rest.chars().next())
        .map_or(0, char::len_utf8);
    text.get(position..position + length).unwrap_or("")
}

/// A short quoted piece of the input for an error message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` and renders each series as `name{a="x",b="y"} value`
    /// (labels as parsed: sorted, unescaped, shown with Rust escapes).
    fn render(text: &str, dialect: Dialect) -> Result<Vec<String>, ParseError> {
        Ok(parse(text.as_bytes(), dialect)?
            .iter()
            .map(|series| {
                let labels: Vec<String> = series
                    .labels
                    .iter()
                    .map(|(name, value)| format!("{name}={value:?}"))
                    .collect();
                format!("{}{{{}}} {}", series.name, labels.join(","), series.value)
            })
            .collect())
    }

    #[test]
    fn parses_every_accepted_form() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("plain sample", "up 1\n", &["up{} 1"]),
            ("colon in name", "job:rate:5m 2.5\n", &["job:rate:5m{} 2.5"]),
            ("underscore first", "_x 1\n", &["_x{} 1"]),
            ("empty label set", "up{} 1\n", &["up{} 1"]),
            (
                "labels sorted by name",
                "m{b=\"2\",a=\"1\"} 3\n",
                &["m{a=\"1\",b=\"2\"} 3"],
            ),
            ("trailing comma", "m{a=\"1\",} 3\n", &["m{a=\"1\"} 3"]),
            (
                "blanks around label tokens",
                "m { a = \"1\" , b=\"2\" } 3\n",
                &["m{a=\"1\",b=\"2\"} 3"],
            ),
            (
                "escaped backslash, quote and newline",
                r#"m{a="x\\y",b="say \"hi\"",c="one\ntwo"} 1"#,
                &[r#"m{a="x\\y",b="say \"hi\"",c="one\ntwo"} 1"#],
            ),
            (
                "unescaped comma and braces in a value",
                "m{path=\"/q?a,b{c}\",x=\"}\"} 1\n",
                &["m{path=\"/q?a,b{c}\",x=\"}\"} 1"],
            ),
            (
                "an empty value is no label",
                "m{a=\"\",b=\"2\"} 1\n",
                &["m{b=\"2\"} 1"],
            ),
            (
                "other escapes kept as written",
                r#"m{path="C:\Program Files\x",re="\d+",t="x\ty"} 1"#,
                &[r#"m{path="C:\\Program Files\\x",re="\\d+",t="x\\ty"} 1"#],
            ),
            (
                "quoted names",
                "{\"my.metric\",\"label.name\"=\"v\"} 1\n{a=\"1\",\"other.metric\"} 2\n",
                &["my.metric{label.name=\"v\"} 1", "other.metric{a=\"1\"} 2"],
            ),
            (
                "bare # HELP and # TYPE are comments",
                "# HELP\n# TYPE\n#HELP m x\n# some comment\nm 1\n",
                &["m{} 1"],
            ),
            (
                "gauge_histogram spelling",
                "# TYPE h gauge_histogram\nh_bucket{le=\"+Inf\"} 1\n",
                &["h_bucket{le=\"+Inf\"} 1"],
            ),
            (
                "UTF-8 in a value",
                "m{city=\"Zürich ☃\"} 1\n",
                &["m{city=\"Zürich ☃\"} 1"],
            ),
            ("NaN", "m NaN\n", &["m{} NaN"]),
            ("+Inf", "m +Inf\n", &["m{} inf"]),
            ("-Inf", "m -Inf\n", &["m{} -inf"]),
            ("Inf", "m Inf\n", &["m{} inf"]),
            ("exponent", "m 1.5e+06\n", &["m{} 1500000"]),
            ("negative exponent", "m -2E-3\n", &["m{} -0.002"]),
            (
                "integer timestamp ignored",
                "m 7 1700000000000\n",
                &["m{} 7"],
            ),
            ("float timestamp ignored", "m 7 1700000000.25\n", &["m{} 7"]),
            ("tabs between tokens", "m\t7\t1700000000\n", &["m{} 7"]),
            (
                "exemplar ignored",
                "m_bucket{le=\"0.1\"} 4 # {trace_id=\"abc\"} 0.08 1700000000.1\n",
                &["m_bucket{le=\"0.1\"} 4"],
            ),
            (
                "exemplar after a timestamp",
                "m_total 4 1700000000 # {trace_id=\"abc\"} 1\n",
                &["m_total{} 4"],
            ),
            (
                "descriptors and comments skipped",
                "# HELP m The help, with \\n and \"quotes\".\n# TYPE m gauge\n# UNIT m seconds\n# a free comment\n#\nm 1\n",
                &["m{} 1"],
            ),
            (
                "_created kept as a series",
                "# TYPE c counter\nc_total 3\nc_created 1.7e9\n",
                &["c_total{} 3", "c_created{} 1700000000"],
            ),
            (
                "histogram series",
                "# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n",
                &[
                    "h_bucket{le=\"0.5\"} 1",
                    "h_bucket{le=\"+Inf\"} 2",
                    "h_sum{} 0.7",
                    "h_count{} 2",
                ],
            ),
            (
                "summary series",
                "# TYPE s summary\ns{quantile=\"0.99\"} 0.2\ns_sum 1\ns_count 9\n",
                &["s{quantile=\"0.99\"} 0.2", "s_sum{} 1", "s_count{} 9"],
            ),
            ("CRLF line endings", "a 1\r\nb 2\r\n", &["a{} 1", "b{} 2"]),
            (
                "trailing blanks",
                "a 1  \t\nb{x=\"y\"} 2 \n",
                &["a{} 1", "b{x=\"y\"} 2"],
            ),
            ("leading blanks", "  a 1\n", &["a{} 1"]),
            ("no final newline", "a 1\nb 2", &["a{} 1", "b{} 2"]),
            (
                "blank lines",
                "\n\na 1\n\n \n\nb 2\n\n",
                &["a{} 1", "b{} 2"],
            ),
            ("empty exposition", "", &[]),
            (
                "# EOF is a comment in text",
                "a 1\n# EOF\nb 2\n",
                &["a{} 1", "b{} 2"],
            ),
            ("blank lines after # EOF", "a 1\n# EOF\n\n\r\n", &["a{} 1"]),
            ("# EOF with CRLF", "a 1\r\n# EOF\r\n", &["a{} 1"]),
            (
                "no blank after the label set",
                "m{a=\"1\"}2\n",
                &["m{a=\"1\"} 2"],
            ),
            ("TYPE untyped", "# TYPE m untyped\nm 1\n", &["m{} 1"]),
        ];
        for (what, text, expected) in cases {
            let got = render(text, Dialect::Text).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(&got, expected, "{what}");
        }
    }

    #[test]
    fn rejects_malformed_lines_naming_the_line() {
        let cases: &[(&str, &str, usize, &str)] = &[
            ("no value", "a 1\nb\n", 2, "b: missing value"),
            (
                "bad value",
                "a 1\n\nb 1.2.3\n",
                3,
                "b: invalid value \"1.2.3\"",
            ),
            ("word as value", "a one\n", 1, "invalid value \"one\""),
            (
                "bad timestamp",
                "a 1 soon\n",
                1,
                "a: invalid timestamp \"soon\"",
            ),
            (
                "text after the timestamp",
                "a 1 2 3\n",
                1,
                "unexpected \"3\" after the timestamp",
            ),
            (
                "name starts with a digit",
                "1a 1\n",
                1,
                "expected a metric name, found \"1a 1\"",
            ),
            (
                "invalid character in name",
                "a-b 1\n",
                1,
                "invalid character \"-\" after metric name \"a\"",
            ),
            ("dot in name", "a.b 1\n", 1, "invalid character \".\""),
            (
                "unclosed label set",
                "m{a=\"1\" 1\n",
                1,
                "expected ',' or '}' after label \"a\"",
            ),
            (
                "unclosed at end of line",
                "m{a=\"1\",\n",
                1,
                "no closing '}'",
            ),
            (
                "unterminated value",
                "m{a=\"1} 1\n",
                1,
                "label \"a\": the value has no closing quote",
            ),
            (
                "unquoted value",
                "m{a=1} 1\n",
                1,
                "the value of label \"a\" is not quoted",
            ),
            (
                "missing =",
                "m{a \"1\"} 1\n",
                1,
                "expected '=' after label name \"a\"",
            ),
            (
                "double comma",
                "m{a=\"1\",,b=\"2\"} 1\n",
                1,
                "expected a label name or '}'",
            ),
            ("lone comma", "m{,} 1\n", 1, "expected a label name or '}'"),
            (
                "colon in label name",
                "m{a:b=\"1\"} 1\n",
                1,
                "expected '=' after label name \"a\"",
            ),
            ("escape at end", "m{a=\"x\\", 1, "no closing quote"),
            (
                "duplicate label",
                "m{a=\"1\",b=\"2\",a=\"3\"} 1\n",
                1,
                "m: label \"a\" appears twice",
            ),
            (
                "HELP with a bad name",
                "# HELP 1bad the help\n",
                1,
                "`# HELP` names an invalid metric \"1bad the help\"",
            ),
            (
                "TYPE without type",
                "# TYPE m\n",
                1,
                "`# TYPE m` without a type",
            ),
            (
                "unknown type",
                "# TYPE m countr\n",
                1,
                "unknown type \"countr\"",
            ),
            (
                "TYPE with extra text",
                "# TYPE m gauge x\n",
                1,
                "unexpected \"x\"",
            ),
            (
                "TYPE with a bad name",
                "# TYPE m-x gauge\n",
                1,
                "invalid metric \"m-x\"",
            ),
            ("value then #", "a 1#\n", 1, "invalid value \"1#\""),
        ];
        for (what, text, line, message) in cases {
            let error = render(text, Dialect::Text).expect_err(what);
            assert_eq!(error.line, *line, "{what}: {error}");
            assert!(
                error.message.contains(message),
                "{what}: {error:?} should say {message:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_utf8_naming_its_line() {
        let error = parse(b"a 1\nb{x=\"\xff\"} 1\n", Dialect::Text).unwrap_err();
        assert_eq!(error.to_string(), "line 2: not valid UTF-8");
    }

    #[test]
    fn openmetrics_ends_at_eof_and_text_has_no_end() {
        let error = parse(b"a 1\n# EOF\nb 2\n", Dialect::OpenMetrics).unwrap_err();
        assert_eq!(error.to_string(), "line 3: text after `# EOF` (line 2)");
        let error = parse(b"a 1\n# EOF now\n", Dialect::OpenMetrics).unwrap_err();
        assert!(error.message.contains("after `# EOF`"), "{error}");
        assert_eq!(
            parse(b"a 1\n# EOF now\nb 2\n", Dialect::Text).map(|s| s.len()),
            Ok(2)
        );
    }

    #[test]
    fn openmetrics_requires_eof_and_text_does_not() {
        let cut = "# TYPE a gauge\na 1\nb 2\n";
        let error = parse(cut.as_bytes(), Dialect::OpenMetrics).unwrap_err();
        assert_eq!(error.line, 4);
        assert!(error.message.contains("without `# EOF`"), "{error}");
        assert_eq!(parse(cut.as_bytes(), Dialect::Text).map(|s| s.len()), Ok(2));
        let whole = "a 1\nb 2\n# EOF";
        assert_eq!(
            parse(whole.as_bytes(), Dialect::OpenMetrics).map(|s| s.len()),
            Ok(2)
        );
        assert!(parse(b"", Dialect::OpenMetrics).is_err());
    }

    #[test]
    fn dialect_follows_the_content_type() {
        let cases = [
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Dialect::OpenMetrics,
            ),
            (Some("Application/OpenMetrics-Text"), Dialect::OpenMetrics),
            (
                Some("text/plain; version=0.0.4; charset=utf-8"),
                Dialect::Text,
            ),
            (Some("application/json"), Dialect::Text),
            (None, Dialect::Text),
        ];
        for (content_type, dialect) in cases {
            assert_eq!(
                Dialect::from_content_type(content_type),
                dialect,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn borrows_label_values_without_escapes() {
        let text = "m{a=\"plain\",b=\"esc\\\"aped\"} 1\n";
        let mut seen = Vec::new();
        let count = for_each_sample(text.as_bytes(), Dialect::Text, |sample| {
            seen.extend(
                sample
                    .labels
                    .iter()
                    .map(|(name, value)| (name.to_string(), matches!(value, Cow::Borrowed(_)))),
            );
        });
        assert_eq!(count, Ok(1));
        assert_eq!(seen, [("a".to_string(), true), ("b".to_string(), false)]);
    }

    #[test]
    fn counts_read_fast_are_the_values_the_general_parser_reads() {
        for token in [
            "0",
            "7",
            "007",
            "1234567890",
            "999999999999999",
            "9999999999999999",
            "18446744073709551616",
            "12.5",
            "1e3",
            "-3",
            "+Inf",
        ] {
            let general: f64 = token.parse().unwrap();
            assert_eq!(parse_float(token), Some(general), "{token}");
        }
        assert_eq!(parse_float(""), None);
        assert_eq!(parse_float("12a"), None);
    }

    /// Review of issue 14: the refusal said "1000028 of its 1000000
    /// series are ones the rules read" when a pattern picked 28 names
    /// beside the series; the two are counted apart.
    #[test]
    fn names_a_pattern_picks_are_counted_apart_from_kept_series() {
        let body: String = (0..5)
            .flat_map(|n| (0..4).map(move |i| format!("m{n}{{i=\"{i}\"}} 1\n")))
            .collect();
        let selectors: Vec<Selector> = vec![r#"{__name__=~"m.*"}"#.parse().unwrap()];
        let refused = parse_exposition_capped(body.as_bytes(), Dialect::Text, 10, Some(&selectors));
        assert_eq!(
            refused.unwrap_err(),
            Capped::TooMany {
                kept: 20,
                names: 5,
                count: 20
            }
        );
        assert!(
            parse_exposition_capped(body.as_bytes(), Dialect::Text, 25, Some(&selectors)).is_ok()
        );
    }

    #[test]
    fn long_excerpts_are_cut() {
        let line = format!("a {}\n", "9".repeat(100));
        let error = parse(
            format!("a x{}\n", "y".repeat(100)).as_bytes(),
            Dialect::Text,
        )
        .unwrap_err();
        assert!(error.message.len() < 80, "{error}");
        assert!(error.message.ends_with('…'), "{error}");
        assert!(parse(line.as_bytes(), Dialect::Text).is_ok());
    }
}
