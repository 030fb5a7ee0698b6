//! `--env-file FILE`: the settings and secrets of `/etc/monitoring/.env`,
//! read the way systemd's `EnvironmentFile=` reads them, so a cron job or an
//! operator's shell gets the same values as the unit. (Sourcing the file
//! with `sh` does not: `&`, spaces and `$` in a value mean something to a
//! shell and nothing to systemd.)

use std::path::Path;

/// The `NAME=value` pairs of an env file, parsed as systemd's env-file.c
/// does: lines starting with `#` or `;` are comments; whitespace around
/// the name and before the value is dropped, and trailing unquoted
/// whitespace too; outside quotes a backslash takes the next character as
/// it is (and joins the next line); `'…'` is literal; in `"…"` a backslash
/// escapes `"`, `\\`, `` ` `` and `$` (and joins lines), any other stays;
/// quoted and unquoted parts join (`"x"y` is `xy`). A line with no `=` is
/// an error naming the file and line (systemd skips it silently).
pub fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }
    let mut entry = Entry::default();
    let mut pairs = Vec::new();
    let mut state = State::PreKey;
    let mut line = 1;
    for c in text.chars() {
        let newline = c == '\n' || c == '\r';
        state = match state {
            State::PreKey if c == '#' || c == ';' => State::Comment,
            State::PreKey if c.is_whitespace() => State::PreKey,
            State::PreKey => {
                entry.key.push(c);
                entry.line = line;
                State::Key
            }
            State::Key if newline => return Err(entry.no_value(path)),
            State::Key if c == '=' => State::PreValue,
            State::Key => {
                entry.key.push(c);
                State::Key
            }
            State::PreValue | State::Value if newline => {
                pairs.push(entry.finish(path)?);
                State::PreKey
            }
            State::PreValue if c == '\'' => State::Single,
            State::PreValue if c == '"' => State::Double,
            State::PreValue | State::Value if c == '\\' => State::ValueEscape,
            State::PreValue if c.is_whitespace() => State::PreValue,
            State::PreValue | State::Value => {
                entry.unquoted(c);
                State::Value
            }
            State::ValueEscape => {
                if !newline {
                    entry.quoted(c);
                }
                State::Value
            }
            State::Single if c == '\'' => State::PreValue,
            State::Single => {
                entry.quoted(c);
                State::Single
            }
            State::Double if c == '"' => State::PreValue,
            State::Double if c == '\\' => State::DoubleEscape,
            State::Double => {
                entry.quoted(c);
                State::Double
            }
            State::DoubleEscape => {
                if !newline {
                    if !"\"\\`$".contains(c) {
                        entry.quoted('\\');
                    }
                    entry.quoted(c);
                }
                State::Double
            }
            State::Comment if c == '\\' => State::CommentEscape,
            State::Comment if newline => State::PreKey,
            State::Comment | State::CommentEscape => State::Comment,
        };
        if c == '\n' {
            line += 1;
        }
    }
    match state {
        State::Key => Err(entry.no_value(path)),
        State::Single | State::Double | State::DoubleEscape => Err(format!(
            "{}:{}: the quote of {} is never closed",
            path.display(),
            entry.line,
            entry.key.trim()
        )),
        State::PreValue | State::Value | State::ValueEscape => {
            pairs.push(entry.finish(path)?);
            Ok(pairs)
        }
        State::PreKey | State::Comment | State::CommentEscape => Ok(pairs),
    }
}

/// The assignment being read.
#[derive(Default)]
struct Entry {
    key: String,
    value: String,
    line: usize,
    /// Where the value's trailing unquoted whitespace began.
    trim_from: Option<usize>,
}

impl Entry {
    fn unquoted(&mut self, c: char) {
        if c.is_whitespace() {
            self.trim_from.get_or_insert(self.value.len());
        } else {
            self.trim_from = None;
        }
        self.value.push(c);
    }

    fn quoted(&mut self, c: char) {
        self.trim_from = None;
        self.value.push(c);
    }

    fn no_value(&self, path: &Path) -> String {
        format!(
            "{}:{}: not NAME=value: {:?}",
            path.display(),
            self.line,
            shown(self.key.trim())
        )
    }

    /// The pair, its trailing whitespace cut; the entry is empty again.
    fn finish(&mut self, path: &Path) -> Result<(String, String), String> {
        let mut entry = std::mem::take(self);
        if let Some(at) = entry.trim_from {
            entry.value.truncate(at);
        }
        let name = entry.key.trim_end().to_string();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "{}:{}: {:?} is not a variable name (letters, digits and _; no `export`)",
                path.display(),
                entry.line,
                shown(&name)
            ));
        }
        Ok((name, entry.value))
    }
}

/// A bad line shown without the secret it may hold: its first characters.
fn shown(text: &str) -> String {
    let short: String = text.chars().take(12).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// Reads `path` and sets its variables in this process (overriding what
/// is set, as `EnvironmentFile=` does after `Environment=`). Call before
/// any thread starts.
pub fn load(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the env file {}: {e}", path.display()))?;
    let pairs = parse(path, &text)?;
    for (name, value) in &pairs {
        // SAFETY: called first thing in main, before any thread exists, so
        // nothing reads the environment while it changes.
        unsafe {
            std::env::set_var(name, value);
        }
    }
    Ok(pairs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_systemd_reads() {
        let text = "# a comment\n; another\n\nHOOK_URL=http://127.0.0.1/h?a=1&b=2\nMACHINE_ID = box 1 \nSECRET=ab$cd\nQUOTED=\"two  spaces \\\"q\\\" \\\\ \\$x\"\nSINGLE='a \\n b'\nMULTI=\"line one\nline two\"\nJOINED=abc\\\n  def\nEMPTY=\nP=ab\\cd\nQ=a\\\\b\nR=\"x\"y\nS=\"pre\\\nsuf\"\nT=\"keep \\n\"\n";
        let pairs = parse(Path::new(".env"), text).unwrap();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("HOOK_URL"), Some("http://127.0.0.1/h?a=1&b=2"));
        assert_eq!(get("MACHINE_ID"), Some("box 1"));
        assert_eq!(get("SECRET"), Some("ab$cd"));
        assert_eq!(get("QUOTED"), Some("two  spaces \"q\" \\ $x"));
        assert_eq!(get("SINGLE"), Some("a \\n b"));
        assert_eq!(get("MULTI"), Some("line one\nline two"));
        assert_eq!(get("JOINED"), Some("abc  def"));
        assert_eq!(get("EMPTY"), Some(""));
        // As systemd's env-file.c reads them.
        assert_eq!(get("P"), Some("abcd"));
        assert_eq!(get("Q"), Some("a\\b"));
        assert_eq!(get("R"), Some("xy"));
        assert_eq!(get("S"), Some("presuf"));
        assert_eq!(get("T"), Some("keep \\n"));
    }

    #[test]
    fn bad_lines_name_the_file_and_line_without_the_value() {
        let err = parse(Path::new("/etc/x/.env"), "A=1\nexport B=2\n").unwrap_err();
        assert!(err.starts_with("/etc/x/.env:2: "), "{err}");
        let err = parse(Path::new(".env"), "TOKEN s3cr3t-value-long\n").unwrap_err();
        assert!(
            err.contains(".env:1: not NAME=value") && !err.contains("value-long"),
            "{err}"
        );
        let err = parse(Path::new(".env"), "A=\"open\n").unwrap_err();
        assert!(err.contains("never closed"), "{err}");
    }
}
