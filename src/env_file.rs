//! `--env-file FILE`: the settings and secrets of `/etc/monitoring/.env`,
//! read the way systemd's `EnvironmentFile=` reads them, so a cron job or an
//! operator's shell gets the same values as the unit. (Sourcing the file
//! with `sh` does not: `&`, spaces and `$` in a value mean something to a
//! shell and nothing to systemd.)

use std::path::Path;

/// The `NAME=value` pairs of an env file in systemd's format: blank lines
/// and lines starting with `#` or `;` are skipped; whitespace around the
/// name and value is dropped; a value in double quotes keeps its spaces and
/// takes `\"`, `\\`, `\$` and `` \` `` escapes (and may span lines); one in
/// single quotes is literal; a backslash at the end of an unquoted line
/// joins the next. Errors name the file and line.
pub fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut index = 0;
    while index < lines.len() {
        let number = index + 1;
        let line = lines[index].trim_start();
        index += 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((name, rest)) = line.split_once('=') else {
            return Err(format!(
                "{}:{number}: not NAME=value: {:?}",
                path.display(),
                shown(line)
            ));
        };
        let name = name.trim();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "{}:{number}: {:?} is not a variable name (letters, digits and _; no `export`)",
                path.display(),
                shown(name)
            ));
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let mut value = String::new();
                let mut text = rest[1..].to_string();
                loop {
                    match closing(&text, quote) {
                        Some((inside, _after)) => {
                            value.push_str(&inside);
                            break;
                        }
                        None if index < lines.len() => {
                            value.push_str(&unquote(&text, quote));
                            value.push('\n');
                            text = lines[index].to_string();
                            index += 1;
                        }
                        None => {
                            return Err(format!(
                                "{}:{number}: the {quote} quote of {name} is never closed",
                                path.display()
                            ));
                        }
                    }
                }
                value
            }
            _ => {
                let mut value = rest.trim_end().to_string();
                while value.ends_with('\\') && index < lines.len() {
                    value.pop();
                    value.push_str(lines[index].trim());
                    index += 1;
                }
                value
            }
        };
        pairs.push((name.to_string(), value));
    }
    Ok(pairs)
}

/// The text up to the closing `quote` (unescaped), and what follows it.
fn closing(text: &str, quote: char) -> Option<(String, String)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if c == quote {
            return Some((out, text[at + 1..].to_string()));
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, next @ ('"' | '\\' | '$' | '`'))) => out.push(next),
                Some((_, next)) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            }
            continue;
        }
        out.push(c);
    }
    None
}

/// A line inside an open quote, its escapes resolved.
fn unquote(text: &str, quote: char) -> String {
    closing(&format!("{text}{quote}"), quote)
        .map(|(inside, _)| inside)
        .unwrap_or_default()
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
        let text = "# a comment\n; another\n\nHOOK_URL=http://127.0.0.1/h?a=1&b=2\nMACHINE_ID = box 1 \nSECRET=ab$cd\nQUOTED=\"two  spaces \\\"q\\\" \\\\ \\$x\"\nSINGLE='a \\n b'\nMULTI=\"line one\nline two\"\nJOINED=abc\\\n  def\nEMPTY=\n";
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
        assert_eq!(get("JOINED"), Some("abcdef"));
        assert_eq!(get("EMPTY"), Some(""));
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
