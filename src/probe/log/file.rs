//! A log file followed across ticks: where the last tick stopped (device,
//! inode, byte offset), and how to go on from there through appends,
//! rotation by rename, truncation and a file that comes and goes.

use super::LogConfig;
use super::scan::{Findings, Pass, ScanState, Scanner};
use super::{Check, CheckStatus, Context, Observation, PROBE, TaskMemory};
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Instant, UNIX_EPOCH};

/// Bytes read from the file at a time (the scan runs block by block).
const BLOCK: u64 = 8 << 20;

/// Bytes before the saved offset whose fingerprint finds the place again
/// after the file was trimmed in place (truncated to its last lines).
const MARK_BYTES: u64 = 256;

const DEVICE_KEY: &str = "log.device";
const INODE_KEY: &str = "log.inode";
const OFFSET_KEY: &str = "log.offset";
const MARK_KEY: &str = "log.mark";
/// The path the position belongs to: a task whose `path` changed starts
/// over with a first sight rather than reading another file from 0.
const PATH_KEY: &str = "log.path";

/// Which file a path named: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub device: u64,
    pub inode: u64,
}

impl Identity {
    pub fn of(meta: &Metadata) -> Identity {
        Identity {
            device: meta.dev(),
            inode: meta.ino(),
        }
    }
}

/// The fingerprint of the bytes just before an offset: length and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    length: u64,
    hash: u64,
}

/// Where the last tick left a log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilePosition {
    /// Never seen: start at its end, priming from its last bytes.
    FirstSight,
    /// It did not exist last time: when it appears, all of it is new.
    Absent,
    /// The end of the last complete line read, in the file `identity`.
    At { identity: Identity, offset: u64 },
}

impl FilePosition {
    /// Where the last tick left the log at `path`.
    pub fn load(state: &TaskMemory, path: &Path) -> FilePosition {
        let number = |key: &str| state.get(key).and_then(|v| v.parse::<u64>().ok());
        let Some(offset) = number(OFFSET_KEY) else {
            return FilePosition::FirstSight;
        };
        if state
            .get(PATH_KEY)
            .is_some_and(|saved| Path::new(saved) != path)
        {
            return FilePosition::FirstSight;
        }
        match (number(DEVICE_KEY), number(INODE_KEY)) {
            (Some(device), Some(inode)) => FilePosition::At {
                identity: Identity { device, inode },
                offset,
            },
            _ => FilePosition::Absent,
        }
    }

    /// Stores the position in the log at `path` (a first sight has nothing
    /// to store).
    pub fn save(&self, state: &mut TaskMemory, path: &Path) {
        let (device, inode, offset) = match self {
            FilePosition::FirstSight => return,
            FilePosition::Absent => (String::new(), String::new(), 0),
            FilePosition::At { identity, offset } => (
                identity.device.to_string(),
                identity.inode.to_string(),
                *offset,
            ),
        };
        state.insert(DEVICE_KEY.to_string(), device);
        state.insert(INODE_KEY.to_string(), inode);
        state.insert(OFFSET_KEY.to_string(), offset.to_string());
        state.insert(PATH_KEY.to_string(), path.to_string_lossy().into_owned());
    }
}

fn load_mark(state: &TaskMemory) -> Option<Mark> {
    let (length, hash) = state.get(MARK_KEY)?.split_once(':')?;
    Some(Mark {
        length: length.parse().ok()?,
        hash: u64::from_str_radix(hash, 16).ok()?,
    })
}

fn save_mark(mark: Option<Mark>, state: &mut TaskMemory) {
    let value = mark.map_or(String::new(), |m| format!("{}:{:016x}", m.length, m.hash));
    state.insert(MARK_KEY.to_string(), value);
}

/// What one tick's read of the file came to.
struct Followed {
    position: FilePosition,
    mark: Option<Mark>,
    /// Last write of the file at the path, in Unix milliseconds.
    modified_ms: Option<i64>,
    /// The first sight: lines were primed, none is new.
    first_sight: bool,
    /// No file at the path (the rest of a rotated one may have been read).
    missing: bool,
    /// Bytes left unread this tick (the log grows faster than `max_read`).
    backlog: u64,
}

/// Reads the file's new lines (at most `max_read` bytes) and reports them.
pub(super) fn observe(
    path: &Path,
    probe: &LogConfig,
    scanner: &Scanner,
    context: &Context,
    out: &mut Observation,
) -> Check {
    let saved = FilePosition::load(context.state, path);
    let mark = load_mark(context.state);
    let mut scan = super::load_scan_state(scanner, context.state);
    let mut findings = scanner.findings();
    let mut reader = Reader {
        scanner,
        scan: &mut scan,
        findings: &mut findings,
        budget: super::max_read(probe),
        cap: super::max_read(probe),
        // Leave a quarter of the task's time for the rest of the tick; what
        // is left unread is read next tick.
        stop_at: context
            .deadline
            .checked_sub(context.timeout / 4)
            .unwrap_or(context.deadline),
        finished: false,
        cut_short: false,
    };
    let shown = path.display();
    let followed = match follow(path, saved, mark, &mut reader) {
        Ok(followed) => followed,
        Err(e) => {
            // Nothing is stored: the next tick retries from the same place.
            super::report(scanner, &scan, None, out);
            return Check {
                probe: PROBE,
                status: CheckStatus::Failed,
                summary: format!("reading {shown}: {e}"),
            };
        }
    };
    followed.position.save(&mut out.state, path);
    save_mark(followed.mark, &mut out.state);
    super::save_scan_state(scanner, &scan, out);
    let new_lines = if followed.first_sight {
        0
    } else {
        findings.lines
    };
    super::report(scanner, &scan, Some(findings), out);
    if followed.missing {
        return Check {
            probe: PROBE,
            status: CheckStatus::Failed,
            summary: format!("log file {shown} does not exist"),
        };
    }
    let age_s = followed
        .modified_ms
        .map_or(0, |m| {
            context.now.millis().saturating_sub(m).div_euclid(1000)
        })
        .max(0);
    out.signals.set_probe(PROBE, "log_age_s", age_s as f64);
    out.signals
        .set_probe(PROBE, "backlog_bytes", followed.backlog as f64);
    let check = super::freshness(&shown.to_string(), probe, new_lines, age_s);
    if followed.backlog == 0 || check.status != CheckStatus::Ok {
        return check;
    }
    // Reading slower than it is written: "last 0s ago" would hide it.
    Check {
        probe: PROBE,
        status: CheckStatus::Warning,
        summary: format!(
            "{}; falling behind: {} not read yet (max_read {} a tick; the rest is read next tick)",
            check.summary,
            crate::config::format_bytes(followed.backlog as f64),
            crate::config::format_bytes(super::max_read(probe) as f64)
        ),
    }
}

/// Goes on from `saved` in the file at `path` (or in the file it was
/// before a rotation), under the reader's budget.
fn follow(
    path: &Path,
    saved: FilePosition,
    mark: Option<Mark>,
    reader: &mut Reader,
) -> io::Result<Followed> {
    // Opening a FIFO waits for a writer, for ever: look before opening.
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        let what = if kind.is_fifo() {
            Some("a FIFO (named pipe)")
        } else if kind.is_socket() {
            Some("a socket")
        } else if kind.is_char_device() || kind.is_block_device() {
            Some("a device")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(io::Error::other(format!(
                "it is {what}, not a regular file: a `log: {{ path }}` follows files; read a stream with `log: {{ command }}`"
            )));
        }
    }
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return follow_missing(path, saved, reader);
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::other("it is a directory"));
    }
    let identity = Identity::of(&meta);
    let size = meta.len();
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok());
    let mut first_sight = false;
    let (position, mark) = match saved {
        FilePosition::FirstSight => {
            first_sight = true;
            let offset = prime(&mut file, size, reader)?;
            (
                FilePosition::At { identity, offset },
                read_mark(&file, offset),
            )
        }
        FilePosition::Absent => reader.follow_in(&mut file, identity, 0, false)?,
        FilePosition::At {
            identity: same,
            offset,
        } if same == identity => {
            let rewritten =
                size < offset || mark.is_some_and(|m| read_mark(&file, offset) != Some(m));
            let from = if rewritten {
                // Truncated or rewritten. Trimmed in place to its last
                // lines, it still holds the lines before our offset: go on
                // after them; otherwise everything in it is new.
                mark.and_then(|m| find_mark(&file, size.min(reader.cap), m).ok().flatten())
                    .unwrap_or(0)
            } else {
                offset
            };
            reader.follow_in(&mut file, identity, from, false)?
        }
        FilePosition::At {
            identity: before,
            offset,
        } => match find_rotated(path, before) {
            // Rotated: first the rest of the old file, then the new one.
            Some(mut old) => {
                let old_place = reader.follow_in(&mut old, before, offset, true)?;
                if reader.finished {
                    reader.follow_in(&mut file, identity, 0, false)?
                } else {
                    old_place
                }
            }
            None => reader.follow_in(&mut file, identity, 0, false)?,
        },
    };
    let backlog = match position {
        _ if !reader.cut_short => 0,
        FilePosition::At {
            identity: at,
            offset,
        } if at == identity => size.saturating_sub(offset),
        // Still in the rotated file: all of the new one is unread too.
        FilePosition::At { .. } => size,
        _ => 0,
    };
    Ok(Followed {
        position,
        mark,
        modified_ms,
        first_sight,
        missing: false,
        backlog,
    })
}

/// No file at the path: finish the file we were reading if a rotation
/// moved it away, then wait for the path to appear (read it from 0).
fn follow_missing(path: &Path, saved: FilePosition, reader: &mut Reader) -> io::Result<Followed> {
    let mut place = (FilePosition::Absent, None);
    if let FilePosition::At { identity, offset } = saved
        && let Some(mut old) = find_rotated(path, identity)
    {
        let old_place = reader.follow_in(&mut old, identity, offset, true)?;
        if !reader.finished {
            place = old_place;
        }
    }
    Ok(Followed {
        position: place.0,
        mark: place.1,
        modified_ms: None,
        first_sight: false,
        missing: true,
        backlog: 0,
    })
}

/// Reads blocks of a file through the scanner under one tick's budget.
struct Reader<'a> {
    scanner: &'a Scanner,
    scan: &'a mut ScanState,
    findings: &'a mut Findings,
    /// Bytes this tick may still read.
    budget: u64,
    cap: u64,
    /// No new block is read after this.
    stop_at: Instant,
    /// The last read reached the end of its file and consumed all of it.
    finished: bool,
    /// A read stopped before the end of its file: the budget (`max_read`)
    /// or the time ran out, not for want of bytes.
    cut_short: bool,
}

impl Reader<'_> {
    /// Reads `file` from `from` until its end or the budget, and returns
    /// the position after the last line consumed, with its mark.
    fn follow_in(
        &mut self,
        file: &mut File,
        identity: Identity,
        from: u64,
        finish_partial: bool,
    ) -> io::Result<(FilePosition, Option<Mark>)> {
        let offset = self.read(file, from, finish_partial)?;
        Ok((
            FilePosition::At { identity, offset },
            read_mark(file, offset),
        ))
    }

    /// Scans `file` from `from`; returns the offset after the last line
    /// consumed. A last line without its newline waits for it, unless
    /// `finish_partial` (a rotated file: nothing more will come) or the
    /// line alone fills the cap.
    fn read(&mut self, file: &mut File, from: u64, finish_partial: bool) -> io::Result<u64> {
        file.seek(SeekFrom::Start(from))?;
        let mut buffer = Vec::new();
        let mut offset = from;
        let mut at_end = false;
        while self.budget > 0 && !at_end && Instant::now() < self.stop_at {
            let want = self.budget.min(BLOCK);
            buffer.reserve(usize::try_from(want).unwrap_or(usize::MAX));
            let got = (&mut *file).take(want).read_to_end(&mut buffer)? as u64;
            self.budget -= got;
            at_end = got < want;
            let used = self
                .scanner
                .scan(&buffer, Pass::Live, self.scan, self.findings);
            buffer.drain(..used);
            offset += used as u64;
        }
        if !at_end {
            self.cut_short = true;
        }
        let whole = (at_end && finish_partial) || buffer.len() as u64 >= self.cap;
        if whole && !buffer.is_empty() {
            self.scanner
                .scan_lines(&buffer, Pass::Live, self.scan, self.findings);
            offset += buffer.len() as u64;
            buffer.clear();
        }
        self.finished = at_end && buffer.is_empty();
        Ok(offset)
    }
}

/// First sight: learns states, session and counters from the complete
/// lines of the file's last [`super::PRIME_WINDOW`] bytes, raising nothing,
/// and returns where to go on from (the end of its last complete line).
fn prime(file: &mut File, size: u64, reader: &mut Reader) -> io::Result<u64> {
    let start = size.saturating_sub(super::PRIME_WINDOW);
    let mut window = Vec::new();
    file.seek(SeekFrom::Start(start))?;
    (&mut *file).take(size - start).read_to_end(&mut window)?;
    // Starting mid-file, the window's first line is cut: skip it.
    let skip = if start == 0 {
        0
    } else {
        match window.iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            // One line longer than the window: nothing to learn, go on at the end.
            None => return Ok(start + window.len() as u64),
        }
    };
    let body = &window[skip..];
    let used = if reader.scanner.is_stateful() {
        reader
            .scanner
            .scan(body, Pass::Prime, reader.scan, reader.findings)
    } else {
        body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
    };
    Ok(start + (skip + used) as u64)
}

/// The file in `path`'s folder, named like it (`prover.log.1`), that is
/// `identity`: where a rotation by rename moved the file we were reading.
fn find_rotated(path: &Path, identity: Identity) -> Option<File> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::read_dir(folder)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&name))
        .filter(|entry| entry.path() != path)
        .find_map(|entry| {
            let file = File::open(entry.path()).ok()?;
            let meta = file.metadata().ok()?;
            (Identity::of(&meta) == identity && meta.is_file()).then_some(file)
        })
}

/// The mark of the bytes before `offset` (none at the start of the file).
fn read_mark(file: &File, offset: u64) -> Option<Mark> {
    let length = offset.min(MARK_BYTES);
    if length == 0 {
        return None;
    }
    let mut bytes = vec![0; usize::try_from(length).ok()?];
    file.read_exact_at(&mut bytes, offset - length).ok()?;
    Some(Mark {
        length,
        hash: super::fingerprint(&bytes),
    })
}

/// The first line end in the file's first `limit` bytes after which the
/// `mark.length` bytes have `mark`'s fingerprint.
fn find_mark(file: &File, limit: u64, mark: Mark) -> io::Result<Option<u64>> {
    let keep = usize::try_from(mark.length).unwrap_or(usize::MAX);
    let mut window: Vec<u8> = Vec::new();
    // File offset of window[0].
    let mut base = 0u64;
    let mut read = 0u64;
    let mut block = vec![0u8; usize::try_from(BLOCK).unwrap_or(1 << 20)];
    while read < limit {
        let want = usize::try_from((limit - read).min(BLOCK)).unwrap_or(block.len());
        let got = file.read_at(&mut block[..want], read)?;
        if got == 0 {
            break;
        }
        let searched_from = window.len();
        window.extend_from_slice(&block[..got]);
        read += got as u64;
        for (i, _) in window
            .iter()
            .enumerate()
            .skip(searched_from)
            .filter(|(_, b)| **b == b'\n')
        {
            let end = i + 1;
            if end >= keep && super::fingerprint(&window[end - keep..end]) == mark.hash {
                return Ok(Some(base + end as u64));
            }
        }
        // Keep only what the next block's first line ends may need.
        let drop = window.len().saturating_sub(keep);
        window.drain(..drop);
        base += drop as u64;
    }
    Ok(None)
}

/// Under [`super::Mode::Recheck`]: has the file moved since the saved
/// position (a new file, or bytes beyond the offset)? Reads no line.
pub(super) fn recheck(path: &Path, context: &Context) -> Check {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Check {
                probe: PROBE,
                status: CheckStatus::Critical,
                summary: format!("log file {shown} does not exist"),
            };
        }
        Err(e) => {
            return Check {
                probe: PROBE,
                status: CheckStatus::Failed,
                summary: format!("reading {shown}: {e}"),
            };
        }
    };
    let moved = match FilePosition::load(context.state, path) {
        FilePosition::At { identity, offset } => {
            Identity::of(&meta) != identity || meta.len() > offset
        }
        // No saved place: written since the tick began?
        FilePosition::FirstSight | FilePosition::Absent => meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .is_some_and(|m| m > context.now.millis()),
    };
    if moved {
        Check {
            probe: PROBE,
            status: CheckStatus::Ok,
            summary: format!("{shown}: the log has moved since the restart"),
        }
    } else {
        Check {
            probe: PROBE,
            status: CheckStatus::Critical,
            summary: format!("{shown}: log has not moved since the restart"),
        }
    }
}
