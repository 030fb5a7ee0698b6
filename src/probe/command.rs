//! The `command` probe: runs a program under the Nagios plugin convention,
//! so every existing Nagios/Icinga plugin is a check.

use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Observation, children};
use crate::config::{CommandLine, Duration, Text, Why, within_mapping};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// `command`: a Nagios-style check program.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    pub command: CommandLine,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, Text>,
    pub timeout: Option<Duration>,
    /// `thresholds: plugin`: each perfdata label is also judged by the
    /// plugin's own warn and crit ranges.
    pub thresholds: Option<Thresholds>,
}

/// Whose thresholds judge a command's perfdata.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Thresholds {
    /// The warn and crit fields the plugin prints beside each value.
    Plugin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommandConfig {
    argv: CommandLine,
    #[serde(default)]
    shell: bool,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, Text>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    thresholds: Option<Thresholds>,
}

impl<'de> Deserialize<'de> for CommandConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawCommandConfig| -> Result<Self, Why> {
            let command = match (raw.argv, raw.shell) {
                (CommandLine::Shell(line), true) => CommandLine::Shell(line),
                (CommandLine::Argv(argv), false) => CommandLine::Argv(argv),
                (CommandLine::Argv(argv), true) => CommandLine::Shell(argv.join(" ")),
                (CommandLine::Shell(line), false) => {
                    return Err(de::Error::custom(format!(
                        "`argv` is the string {line:?}: give a list ([\"/usr/lib/nagios/plugins/check_disk\", \"-w\", \"20%\"]), or add `shell: true` to run it with sh -c"
                    )));
                }
            };
            Ok(CommandConfig {
                command,
                cwd: raw.cwd,
                env: raw.env,
                timeout: raw.timeout,
                thresholds: raw.thresholds,
            })
        })
    }
}

/// Output kept from a check (the rest is read and dropped).
const OUTPUT_CAP: usize = 64 * 1024;

/// Builds the `Command` for a command line: argv directly, or `sh -c`.
pub fn build(line: &CommandLine) -> Command {
    match line {
        CommandLine::Argv(argv) => {
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            command
        }
        CommandLine::Shell(script) => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(script);
            command
        }
    }
}

impl ProbeConfig for CommandConfig {
    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        self.cwd.iter_mut().collect()
    }
}

/// Runs the check and records `status` (0–3) and each perfdata label.
pub fn observe(probe: &CommandConfig, context: &Context, out: &mut Observation) {
    let timeout = context.budget(probe.timeout.map(|t| t.std()));
    let mut command = build(&probe.command);
    if let Some(cwd) = &probe.cwd {
        command.current_dir(cwd);
    }
    for (key, value) in &probe.env {
        command.env(key, value.as_str());
    }
    let program = match &probe.command {
        CommandLine::Argv(argv) => argv[0].clone(),
        CommandLine::Shell(_) => "sh -c".to_string(),
    };
    let finished = match children::run(&mut command, timeout, OUTPUT_CAP) {
        Ok(finished) => finished,
        Err(e) => {
            out.checks.push(Check {
                probe: "command",
                status: CheckStatus::Failed,
                summary: format!("cannot run {program}: {e}"),
            });
            return;
        }
    };
    let Some(exit) = finished.status else {
        out.checks.push(Check {
            probe: "command",
            status: CheckStatus::Failed,
            summary: format!(
                "{program} did not finish within {}; killed",
                crate::config::Duration(context.limit(probe.timeout.map(|t| t.std())))
            ),
        });
        return;
    };
    let output = parse_output(&String::from_utf8_lossy(&finished.stdout));
    for item in &output.items {
        out.signals
            .set_probe_with_unit("command", &item.label, item.value, &item.unit);
    }
    let (status, code) = match exit.code() {
        Some(0) => (CheckStatus::Ok, 0),
        Some(1) => (CheckStatus::Warning, 1),
        Some(2) => (CheckStatus::Critical, 2),
        Some(code) => (CheckStatus::Unknown, code),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let signal = exit.signal().unwrap_or(0);
            out.checks.push(Check {
                probe: "command",
                status: CheckStatus::Failed,
                summary: format!("{program} was killed by signal {signal}"),
            });
            return;
        }
    };
    out.signals
        .set_probe("command", "status", f64::from(code.min(3)));
    let mut summary = output.summary;
    if summary.is_empty() {
        let stderr = String::from_utf8_lossy(&finished.stderr);
        summary = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
    }
    if summary.is_empty() {
        summary = format!("{program} exited {code} with no output");
    }
    out.checks.push(Check {
        probe: "command",
        status,
        summary,
    });
    if probe.thresholds == Some(Thresholds::Plugin) {
        judge_ranges(&output.items, out);
    }
}

/// A check per perfdata label whose value the plugin's own crit (or else
/// warn) range alerts on; a field that is no range is a warning naming it.
fn judge_ranges(items: &[PerfItem], out: &mut Observation) {
    for item in items {
        let verdicts = [
            (CheckStatus::Critical, "critical", &item.crit),
            (CheckStatus::Warning, "warning", &item.warn),
        ];
        for (status, name, range) in verdicts {
            let Some(text) = range.as_deref().filter(|t| !t.is_empty()) else {
                continue;
            };
            match text.parse::<crate::config::Range>() {
                Ok(range) if range.alerts(item.value) => {
                    out.checks.push(Check {
                        probe: "command",
                        status,
                        summary: format!(
                            "perfdata {} = {}{} is {} the plugin's {name} range {text}",
                            item.label,
                            crate::config::format_number(item.value),
                            item.unit,
                            if range.inside { "inside" } else { "outside" },
                        ),
                    });
                    break;
                }
                Ok(_) => {}
                Err(why) => {
                    // Nagios ignores such a field; told, not judged.
                    out.checks.push(Check {
                        probe: "command",
                        status: CheckStatus::Warning,
                        summary: format!(
                            "perfdata {}: the plugin's {name} field {text:?} is no range ({why}); it is not judged",
                            item.label
                        ),
                    });
                }
            }
        }
    }
}

/// A plugin's output: the summary (first line before `|`) and perfdata.
#[derive(Debug, Default, PartialEq)]
pub struct PluginOutput {
    pub summary: String,
    pub perfdata: Vec<(String, f64)>,
    /// The perfdata items whole, with their warn and crit fields.
    pub items: Vec<PerfItem>,
}

/// One `'label'=value[UOM];warn;crit;min;max` item.
#[derive(Debug, Default, PartialEq, Clone)]
pub struct PerfItem {
    pub label: String,
    pub value: f64,
    pub unit: String,
    pub warn: Option<String>,
    pub crit: Option<String>,
}

/// Splits plugin output per the Nagios plugin guidelines: perfdata follows
/// `|` on the first line, and on the long-text lines after a later `|`.
pub fn parse_output(stdout: &str) -> PluginOutput {
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or("");
    let (summary, mut perf_text) = match first.split_once('|') {
        Some((text, perf)) => (text.trim().to_string(), perf.to_string()),
        None => (first.trim().to_string(), String::new()),
    };
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            perf_text.push(' ');
            perf_text.push_str(line);
        } else if let Some((_, perf)) = line.split_once('|') {
            in_perf = true;
            perf_text.push(' ');
            perf_text.push_str(perf);
        }
    }
    let items = parse_perf_items(&perf_text);
    PluginOutput {
        summary,
        perfdata: items.iter().map(|i| (i.label.clone(), i.value)).collect(),
        items,
    }
}

/// Parses `'label'=value[UOM];warn;crit;min;max` items. Values keep the
/// plugin's own unit (a `MB` value stays in MB); `U` (unknown) is skipped.
#[cfg(test)]
pub fn parse_perfdata(text: &str) -> Vec<(String, f64)> {
    parse_perf_items(text)
        .into_iter()
        .map(|item| (item.label, item.value))
        .collect()
}

/// [`parse_perfdata`], keeping each item's unit, warn and crit fields.
pub fn parse_perf_items(text: &str) -> Vec<PerfItem> {
    let mut items = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            // '' inside quotes is a literal quote.
            let mut label = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if quoted[i + 1..].starts_with('\'') {
                        label.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    label.push(c);
                }
            }
            match end {
                Some(end) => (label, &quoted[end..]),
                None => break,
            }
        } else {
            let end = rest.find('=').unwrap_or(rest.len());
            let label = &rest[..end];
            if label.contains(char::is_whitespace) {
                // Not a perfdata item: skip the stray word.
                let skip = rest.find(char::is_whitespace).unwrap_or(rest.len());
                rest = rest[skip..].trim_start();
                continue;
            }
            (label.to_string(), &rest[end..])
        };
        let Some(after) = after.strip_prefix('=') else {
            break;
        };
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let mut fields = after[..end].split(';');
        let value_text = fields.next().unwrap_or("");
        let number_end = value_text
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
            .unwrap_or(value_text.len());
        let mut field = || fields.next().map(str::to_string).filter(|f| !f.is_empty());
        let (warn, crit) = (field(), field());
        if let Ok(value) = value_text[..number_end].parse::<f64>()
            && !label.is_empty()
        {
            items.push(PerfItem {
                label,
                value,
                unit: value_text[number_end..].to_string(),
                warn,
                crit,
            });
        }
        rest = after[end..].trim_start();
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_disk_output() {
        let out = parse_output(
            "DISK OK - free space: / 3326 MB (56% inode=99%);| /=2643MB;5948;6393;0;7393\n",
        );
        assert_eq!(
            out.summary,
            "DISK OK - free space: / 3326 MB (56% inode=99%);"
        );
        assert_eq!(out.perfdata, vec![("/".to_string(), 2643.0)]);
    }

    #[test]
    fn quoted_labels_units_and_unknown_values() {
        let perf = parse_perfdata(
            "'rta ms'=0.080ms;200.000;500.000;0; pl=0%;40;80;; 'it''s'=5 time=U;1;2 load1=0.150;5;10;0",
        );
        assert_eq!(
            perf,
            vec![
                ("rta ms".to_string(), 0.08),
                ("pl".to_string(), 0.0),
                ("it's".to_string(), 5.0),
                ("load1".to_string(), 0.15)
            ]
        );
    }

    #[test]
    fn long_text_perfdata_after_the_first_line() {
        let out = parse_output("OK - all good | a=1\nline two\nline three | b=2s;;\nc=3c\n");
        assert_eq!(out.summary, "OK - all good");
        assert_eq!(
            out.perfdata,
            vec![
                ("a".to_string(), 1.0),
                ("b".to_string(), 2.0),
                ("c".to_string(), 3.0)
            ]
        );
    }

    #[test]
    fn warn_and_crit_fields_are_kept() {
        let items = parse_perf_items("/=2643MB;5948;6393;0;7393 'rta'=0.08ms;200:;@0:500;; x=1");
        assert_eq!(items[0].unit, "MB");
        assert_eq!(
            (items[0].warn.as_deref(), items[0].crit.as_deref()),
            (Some("5948"), Some("6393"))
        );
        assert_eq!(
            (items[1].warn.as_deref(), items[1].crit.as_deref()),
            (Some("200:"), Some("@0:500"))
        );
        assert_eq!((items[2].warn.clone(), items[2].crit.clone()), (None, None));
    }

    #[test]
    fn output_without_perfdata() {
        let out = parse_output("CRITICAL - socket timeout\n");
        assert_eq!(out.summary, "CRITICAL - socket timeout");
        assert!(out.perfdata.is_empty());
    }
}
