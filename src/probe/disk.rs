//! The `disk` probe: a mount's usage (statvfs) and a folder's size (a walk
//! bounded by the task's time budget). Reads only; cleans nothing up.

use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Observation};
use crate::config::{ByteSize, Ratio};
use serde::Deserialize;
use std::path::Path;
use std::path::PathBuf;
use std::time::Instant;

/// `disk`: a mount's usage, or a folder's size.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub max_used: Option<Ratio>,
    #[serde(default)]
    pub min_free: Option<ByteSize>,
    #[serde(default)]
    pub max_size: Option<ByteSize>,
}

impl ProbeConfig for DiskConfig {
    fn signal_names(&self) -> Option<Vec<String>> {
        let mut names = Vec::new();
        if self.path.is_some() {
            names.extend(["used_ratio", "free_bytes", "total_bytes"].map(String::from));
        }
        if self.dir.is_some() {
            names.push("dir_bytes".to_string());
        }
        Some(names)
    }

    fn withheld(&self, name: &str) -> Option<&'static str> {
        match name {
            "used_ratio" | "free_bytes" | "total_bytes" if self.path.is_none() => {
                Some("only for a mount at `path`")
            }
            "dir_bytes" if self.dir.is_none() => Some("only for a folder at `dir`"),
            _ => None,
        }
    }

    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }

    fn check(&self) -> Result<(), String> {
        if self.path.is_none() && self.dir.is_none() {
            return Err("a `disk` probe needs `path` (a mount) or `dir` (a folder to size)".into());
        }
        if self.path.is_none() && (self.max_used.is_some() || self.min_free.is_some()) {
            return Err("`max_used` and `min_free` limit the mount at `path`: add `path`".into());
        }
        if self.dir.is_none() && self.max_size.is_some() {
            return Err("`max_size` limits the folder at `dir`: add `dir`".into());
        }
        Ok(())
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        self.path.iter_mut().chain(self.dir.iter_mut()).collect()
    }
}

/// Checks `path` (usage of its mount) and `dir` (size of the tree) against
/// `max_used`, `min_free` and `max_size`.
/// (Which keys go together is checked at load, [`ProbeConfig::check`].)
pub fn observe(probe: &DiskConfig, context: &Context, out: &mut Observation) {
    if let Some(path) = &probe.path {
        observe_mount(path, probe.max_used, probe.min_free, out);
    }
    if let Some(dir) = &probe.dir {
        observe_dir(dir, probe.max_size, context, out);
    }
}

fn failed(out: &mut Observation, summary: String) {
    out.checks.push(Check {
        probe: "disk",
        status: CheckStatus::Failed,
        summary,
    });
}

/// A mount's figures, as `df` shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// Free to unprivileged users (root's reserve excluded).
    pub available_bytes: u64,
}

impl Usage {
    /// used / (used + available): the `Use%` of `df`, which counts root's
    /// reserved blocks as neither used nor available.
    pub fn used_ratio(&self) -> f64 {
        let usable = self.used_bytes + self.available_bytes;
        if usable == 0 {
            0.0
        } else {
            self.used_bytes as f64 / usable as f64
        }
    }
}

/// statvfs(2) of the filesystem holding `path`.
pub fn usage(path: &Path) -> Result<Usage, String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("statvfs {}: the path holds a NUL byte", path.display()))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points
    // to writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!("statvfs {}: {error}", path.display()));
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let stat = unsafe { stat.assume_init() };
    // The field types are u32 on some targets, u64 on others.
    #[allow(clippy::useless_conversion)]
    let (fragment, blocks, free, available) = (
        u64::from(stat.f_frsize),
        u64::from(stat.f_blocks),
        u64::from(stat.f_bfree),
        u64::from(stat.f_bavail),
    );
    Ok(Usage {
        total_bytes: blocks.saturating_mul(fragment),
        used_bytes: blocks.saturating_sub(free).saturating_mul(fragment),
        available_bytes: available.saturating_mul(fragment),
    })
}

fn observe_mount(
    path: &Path,
    max_used: Option<Ratio>,
    min_free: Option<ByteSize>,
    out: &mut Observation,
) {
    let usage = match usage(path) {
        Ok(usage) => usage,
        Err(summary) => return failed(out, summary),
    };
    let ratio = usage.used_ratio();
    out.signals.set_probe("disk", "used_ratio", ratio);
    out.signals
        .set_probe("disk", "free_bytes", usage.available_bytes as f64);
    out.signals
        .set_probe("disk", "total_bytes", usage.total_bytes as f64);
    let mut breaches = Vec::new();
    if let Some(limit) = max_used
        && ratio > limit.0
    {
        breaches.push(format!(
            "{} used is over the {} limit",
            percent(ratio),
            percent(limit.0)
        ));
    }
    if let Some(limit) = min_free
        && usage.available_bytes < limit.0
    {
        breaches.push(format!(
            "{} free is under the {} minimum",
            human_bytes(usage.available_bytes),
            human_bytes(limit.0)
        ));
    }
    let (status, detail) = if breaches.is_empty() {
        (
            CheckStatus::Ok,
            format!(
                "{} used, {} free",
                percent(ratio),
                human_bytes(usage.available_bytes)
            ),
        )
    } else {
        (CheckStatus::Critical, breaches.join(", "))
    };
    out.checks.push(Check {
        probe: "disk",
        status,
        summary: format!("{}: {detail}", path.display()),
    });
}

/// What a walk of a tree found.
#[derive(Debug, Default, PartialEq)]
pub struct DirSize {
    pub bytes: u64,
    pub files: u64,
    /// Folders below the root that could not be listed (permissions…).
    pub unreadable: u64,
}

/// Why a walk stopped early.
#[derive(Debug, PartialEq)]
pub enum WalkError {
    /// The root itself could not be listed.
    Root(String),
    /// The deadline passed after this many files.
    OutOfTime { files: u64 },
}

/// Sums the sizes of the regular files under `root` (apparent sizes, as
/// `du -sb`; hard links count each time), following no symlink, until
/// `deadline`.
pub fn dir_size(root: &Path, deadline: Instant) -> Result<DirSize, WalkError> {
    let mut size = DirSize::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => {
                return Err(WalkError::Root(format!(
                    "reading dir {}: {e}",
                    dir.display()
                )));
            }
            Err(_) => {
                size.unreadable += 1;
                continue;
            }
        };
        for entry in entries {
            if Instant::now() >= deadline {
                return Err(WalkError::OutOfTime { files: size.files });
            }
            let Ok(entry) = entry else {
                size.unreadable += 1;
                continue;
            };
            // DirEntry's file type and metadata describe a symlink itself,
            // never its target.
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => {
                    if let Ok(metadata) = entry.metadata() {
                        size.bytes += metadata.len();
                        size.files += 1;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(size)
}

fn observe_dir(dir: &Path, max_size: Option<ByteSize>, context: &Context, out: &mut Observation) {
    let deadline = Instant::now() + context.budget(None);
    let size = match dir_size(dir, deadline) {
        Ok(size) => size,
        Err(WalkError::Root(summary)) => return failed(out, summary),
        Err(WalkError::OutOfTime { files }) => {
            return failed(
                out,
                format!(
                    "walk of {} did not finish within {} ({files} files so far)",
                    dir.display(),
                    crate::config::Duration(context.limit(None))
                ),
            );
        }
    };
    out.signals
        .set_probe("disk", "dir_bytes", size.bytes as f64);
    let mut summary = format!(
        "{}: {} in {} file{}",
        dir.display(),
        human_bytes(size.bytes),
        size.files,
        if size.files == 1 { "" } else { "s" }
    );
    if size.unreadable > 0 {
        summary.push_str(&format!(
            " ({} unreadable {} skipped)",
            size.unreadable,
            if size.unreadable == 1 {
                "entry"
            } else {
                "entries"
            }
        ));
    }
    let status = match max_size {
        Some(limit) if size.bytes > limit.0 => {
            summary.push_str(&format!(", over the {} limit", human_bytes(limit.0)));
            CheckStatus::Critical
        }
        _ => CheckStatus::Ok,
    };
    out.checks.push(Check {
        probe: "disk",
        status,
        summary,
    });
}

/// `41%`, or `0.5%` below 10% where a whole number would hide it.
fn percent(ratio: f64) -> String {
    let value = ratio * 100.0;
    if value < 10.0 && value.fract() != 0.0 {
        format!("{}%", (value * 10.0).round() / 10.0)
    } else {
        format!("{}%", value.round())
    }
}

/// Bytes for people, in binary units: `512 B`, `1.5 KiB`, `812 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        let rounded = (value * 10.0).round() / 10.0;
        format!("{rounded} {}", UNITS[unit])
    } else {
        format!("{} {}", value.round(), UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::probe::{Mode, TaskMemory};
    use std::time::Duration;

    fn run(probe: &DiskConfig, timeout: Duration) -> Observation {
        let state = TaskMemory::new();
        let context = Context {
            now: Timestamp(0),
            mode: Mode::Tick,
            deadline: Instant::now() + timeout,
            timeout,
            state: &state,
        };
        let mut out = Observation::default();
        observe(probe, &context, &mut out);
        out
    }

    fn probe() -> DiskConfig {
        DiskConfig {
            path: None,
            dir: None,
            max_used: None,
            min_free: None,
            max_size: None,
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(812 * 1024 * 1024), "812 MiB");
        assert_eq!(human_bytes(80 * 1024 * 1024 * 1024), "80 GiB");
        assert_eq!(human_bytes(1024 * 1024), "1 MiB");
        assert_eq!(percent(0.41), "41%");
        assert_eq!(percent(0.9), "90%");
        assert_eq!(percent(0.004), "0.4%");
        assert_eq!(percent(0.0), "0%");
    }

    #[test]
    fn used_ratio_leaves_out_roots_reserve() {
        let usage = Usage {
            total_bytes: 100,
            used_bytes: 45,
            available_bytes: 45,
        };
        assert_eq!(usage.used_ratio(), 0.5);
    }

    #[test]
    fn root_mount_has_sane_figures_and_limits_apply() {
        let mut disk = probe();
        disk.path = Some("/".into());
        let out = run(&disk, Duration::from_secs(5));
        assert_eq!(out.checks[0].status, CheckStatus::Ok, "{:?}", out.checks);
        assert!(out.checks[0].summary.starts_with("/: "));
        let ratio = out.signals.get_name("used_ratio").unwrap();
        assert!((0.0..=1.0).contains(&ratio));
        assert!(out.signals.get_name("total_bytes").unwrap() > 0.0);

        disk.min_free = Some(ByteSize(u64::MAX));
        disk.max_used = Some(Ratio(0.0));
        let out = run(&disk, Duration::from_secs(5));
        assert_eq!(out.checks[0].status, CheckStatus::Critical);
        let summary = &out.checks[0].summary;
        assert!(
            summary.contains("over the 0% limit") && summary.contains("free is under the"),
            "{summary}"
        );
    }

    #[test]
    fn missing_mount_names_the_path() {
        let mut disk = probe();
        disk.path = Some("/no/such/mount".into());
        let out = run(&disk, Duration::from_secs(5));
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert!(
            out.checks[0]
                .summary
                .starts_with("statvfs /no/such/mount: "),
            "{}",
            out.checks[0].summary
        );
    }

    #[test]
    fn dir_size_sums_files_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(dir.path().join("sub/b"), vec![0u8; 234]).unwrap();
        std::fs::write(dir.path().join("sub/deeper/c"), vec![0u8; 10]).unwrap();
        // A link to a big file elsewhere and a link to a folder count nothing.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![0u8; 100_000]).unwrap();
        std::os::unix::fs::symlink(outside.path().join("big"), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dirlink")).unwrap();
        let far = Instant::now() + Duration::from_secs(10);
        assert_eq!(
            dir_size(dir.path(), far),
            Ok(DirSize {
                bytes: 1244,
                files: 3,
                unreadable: 0
            })
        );
        assert_eq!(
            dir_size(dir.path(), Instant::now()),
            Err(WalkError::OutOfTime { files: 0 })
        );

        let mut disk = probe();
        disk.dir = Some(dir.path().to_path_buf());
        disk.max_size = Some(ByteSize(1000));
        let out = run(&disk, Duration::from_secs(5));
        assert_eq!(out.signals.get_name("dir_bytes"), Some(1244.0));
        assert_eq!(out.checks[0].status, CheckStatus::Critical);
        assert_eq!(
            out.checks[0].summary,
            format!(
                "{}: 1.2 KiB in 3 files, over the 1000 B limit",
                dir.path().display()
            )
        );
    }

    #[test]
    fn a_walk_out_of_time_is_failed_without_a_signal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "x").unwrap();
        let mut disk = probe();
        disk.dir = Some(dir.path().to_path_buf());
        let out = run(&disk, Duration::ZERO);
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert_eq!(
            out.checks[0].summary,
            format!(
                "walk of {} did not finish within 0s (0 files so far)",
                dir.path().display()
            )
        );
        assert_eq!(out.signals.get_name("dir_bytes"), None);
    }

    #[test]
    fn missing_dir_names_the_path() {
        let mut disk = probe();
        disk.dir = Some("/no/such/dir".into());
        let out = run(&disk, Duration::from_secs(5));
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert!(
            out.checks[0]
                .summary
                .starts_with("reading dir /no/such/dir: "),
            "{}",
            out.checks[0].summary
        );
    }
}
