//! Conditions as rules write them (`"> 0.5"`, `">= 5x previous"`,
//! `"< 90%"`, `"> 16GiB"`), the guards of `when:`/`unless:`, the gates of
//! `for:`/`resolve_after:`, and how values are shown in messages.

use super::selector::Selector;
use super::values::{Duration, deserialize_from_str, parse_size, parsed};
use serde::Deserialize;
use serde::de::Deserializer;
use std::fmt;

/// A comparison operator of a condition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    pub fn as_str(&self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    pub fn holds(&self, left: f64, right: f64) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }

    /// Splits `text` at its first comparison operator that is outside
    /// braces and quotes: `a{x=">"} >= 3` → (`a{x=">"}`, Ge, `3`).
    fn split(text: &str) -> Option<(&str, Op, &str)> {
        let bytes = text.as_bytes();
        let (mut depth, mut quoted, mut i) = (0usize, false, 0);
        while i < bytes.len() {
            match bytes[i] {
                b'"' if i == 0 || bytes[i - 1] != b'\\' => quoted = !quoted,
                b'{' if !quoted => depth += 1,
                b'}' if !quoted => depth = depth.saturating_sub(1),
                b'>' | b'<' | b'=' | b'!' if !quoted && depth == 0 => {
                    let two = text.get(i..i + 2).unwrap_or("");
                    let (op, len) = match (two, bytes[i]) {
                        (">=", _) => (Op::Ge, 2),
                        ("<=", _) => (Op::Le, 2),
                        ("==", _) => (Op::Eq, 2),
                        ("!=", _) => (Op::Ne, 2),
                        (_, b'>') => (Op::Gt, 1),
                        (_, b'<') => (Op::Lt, 1),
                        _ => return None,
                    };
                    return Some((&text[..i], op, &text[i + len..]));
                }
                _ => {}
            }
            i += 1;
        }
        None
    }
}

/// The right-hand side of a condition.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Threshold {
    /// A plain number (sizes such as `16GiB` are converted to bytes).
    Value(f64),
    /// `N x previous`: N times the previous tick's value (counter deltas).
    TimesPrevious(f64),
    /// A Nagios range (`"10:20"`, `"@10:20"`, `"~:10"`, `"10:"`): the
    /// condition holds outside it (inside, with `@`).
    Range(Range),
}

/// A threshold range of the Nagios plugin API: `[@]start:end`, where a
/// missing start is 0, `~` is minus infinity, a missing end is infinity,
/// and a bare number `N` is `0:N`. A value alerts when outside the range
/// (endpoints inside), or with `@` when inside it.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Range {
    pub start: f64,
    pub end: f64,
    pub inside: bool,
}

impl Range {
    /// Whether `value` raises the alert.
    pub fn alerts(&self, value: f64) -> bool {
        let within = self.start <= value && value <= self.end;
        within == self.inside
    }
}

impl std::str::FromStr for Range {
    type Err = String;
    fn from_str(text: &str) -> Result<Range, String> {
        let bad = |why: &str| {
            format!(
                "invalid range {text:?}: {why} (Nagios ranges: \":10\" is 0 to 10, \"10:20\", \"10:\" from 10 up, \"~:10\" up to 10, \"@10:20\" alerts inside)"
            )
        };
        let trimmed = text.trim();
        let (inside, body) = match trimmed.strip_prefix('@') {
            Some(rest) => (true, rest.trim()),
            None => (false, trimmed),
        };
        let number = |part: &str| -> Result<f64, String> {
            part.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| !v.is_nan())
                .ok_or_else(|| bad(&format!("{:?} is not a number", part.trim())))
        };
        let (start, end) = match body.split_once(':') {
            Some((start, end)) => {
                let start = match start.trim() {
                    "~" => f64::NEG_INFINITY,
                    "" => 0.0,
                    given => number(given)?,
                };
                let end = match end.trim() {
                    "" => f64::INFINITY,
                    given => number(given)?,
                };
                (start, end)
            }
            None if body.is_empty() => return Err(bad("it is empty")),
            None => (0.0, number(body)?),
        };
        if start > end {
            return Err(bad("its start is above its end"));
        }

        Ok(Range { start, end, inside })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = |v: f64| {
            if v.is_infinite() {
                String::new()
            } else {
                format_number(v)
            }
        };
        let start = if self.start == f64::NEG_INFINITY {
            "~".to_string()
        } else {
            format_number(self.start)
        };
        let at = if self.inside { "@" } else { "" };
        write!(f, "{at}{start}:{}", end(self.end))
    }
}

/// The unit a threshold was written in, so it prints as written: `16GiB`
/// as `16 GiB`, `5m` as `5m`, `90%` as `90%`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Unit {
    #[default]
    Plain,
    Bytes,
    Seconds,
    Percent,
}

impl Unit {
    /// A plugin's unit of measure (`ms`, `%`, `MB`…) as one of ours, and
    /// what a value in it is multiplied by to be in ours (bytes as the
    /// monitoring plugins count them, by 1024). `None` for no unit, `c`
    /// (a counter) or one we do not know.
    pub fn of_plugin(uom: &str) -> Option<(Unit, f64)> {
        const KIB: f64 = 1024.0;
        Some(match uom.to_ascii_lowercase().as_str() {
            "s" => (Unit::Seconds, 1.0),
            "ms" => (Unit::Seconds, 1e-3),
            "us" | "µs" => (Unit::Seconds, 1e-6),
            "%" => (Unit::Percent, 0.01),
            "b" => (Unit::Bytes, 1.0),
            "kb" => (Unit::Bytes, KIB),
            "mb" => (Unit::Bytes, KIB * KIB),
            "gb" => (Unit::Bytes, KIB * KIB * KIB),
            "tb" => (Unit::Bytes, KIB * KIB * KIB * KIB),
            _ => return None,
        })
    }

    /// What values in this unit are, for a message.
    pub fn kind(self) -> &'static str {
        match self {
            Unit::Plain => "a plain number",
            Unit::Bytes => "a size",
            Unit::Seconds => "a duration",
            Unit::Percent => "a percentage",
        }
    }

    /// `value` in this unit, for a person.
    pub fn show(self, value: f64) -> String {
        match self {
            Unit::Plain => format_number(value),
            Unit::Bytes => format_bytes(value),
            Unit::Seconds if value >= 0.0 && value.is_finite() && value.fract() == 0.0 => {
                Duration(std::time::Duration::from_secs_f64(value.min(1e12))).to_string()
            }
            Unit::Seconds => format!("{}s", format_number(value)),
            Unit::Percent => format!("{}%", format_number(value * 100.0)),
        }
    }
}

/// A condition such as `"> 0.5"`, `">= 1"`, `"< 8"`, `"!= 2"`,
/// `"> 16GiB"` or `">= 5x previous"`.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Condition {
    pub op: Op,
    pub threshold: Threshold,
    pub unit: Unit,
}

impl Condition {
    /// Whether `value` breaches the condition; `previous` is needed only for
    /// `Nx previous` and without it the condition cannot hold. After a quiet
    /// tick (a previous delta of 0) any increase is "≥ 5x previous", and no
    /// increase at all never is.
    pub fn holds(&self, value: f64, previous: Option<f64>) -> bool {
        match self.threshold {
            Threshold::Value(limit) => self.op.holds(value, limit),
            Threshold::Range(range) => range.alerts(value),
            Threshold::TimesPrevious(factor) => match previous {
                Some(previous) if previous >= 0.0 => {
                    let rising = matches!(self.op, Op::Gt | Op::Ge);
                    (!rising || value > 0.0) && self.op.holds(value, factor * previous)
                }
                _ => false,
            },
        }
    }

    /// A value compared with this condition, in the condition's unit.
    pub fn show(&self, value: f64) -> String {
        self.unit.show(value)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.threshold {
            Threshold::Value(v) => write!(f, "{} {}", self.op.as_str(), self.unit.show(v)),
            Threshold::TimesPrevious(x) => {
                write!(f, "{} {}x previous", self.op.as_str(), format_number(x))
            }
            Threshold::Range(range) if range.inside => {
                write!(f, "inside {}", range.to_string().trim_start_matches('@'))
            }
            Threshold::Range(range) => write!(f, "outside {range}"),
        }
    }
}

/// Formats a number without a trailing `.0` and without float noise.
pub fn format_number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_finite() && v.abs() >= 1e15 {
        format!("{v:.4e}")
    } else if v.is_finite() {
        let text = format!("{v:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v}")
    }
}

/// A byte count for a person: `512 B`, `1.5 KiB`, `16 GiB`.
pub fn format_bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if !v.is_finite() || v.abs() < 1024.0 {
        return format!("{} B", format_number(v));
    }
    let mut scaled = v / 1024.0;
    let mut unit = 0;
    while scaled.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    let rounded = if scaled.abs() >= 100.0 {
        scaled.round()
    } else {
        (scaled * 10.0).round() / 10.0
    };
    format!("{} {}", format_number(rounded), UNITS[unit])
}

/// A signal's value for a person: sizes (`rss_bytes`, `free_bytes`) in
/// binary units, everything else as a plain number.
pub fn format_value(name: &str, value: f64) -> String {
    if name.ends_with("_bytes") || name == "bytes" {
        format_bytes(value)
    } else {
        format_number(value)
    }
}

fn parse_threshold(text: &str) -> Option<(Threshold, Unit)> {
    let text = text.trim();
    if let Some(factor) = text.strip_suffix("previous") {
        let factor = factor.trim().strip_suffix(['x', '×'])?.trim();
        return factor
            .parse()
            .ok()
            .map(|f| (Threshold::TimesPrevious(f), Unit::Plain));
    }
    if let Some(percent) = text.strip_suffix('%') {
        return percent
            .trim()
            .parse::<f64>()
            .ok()
            .map(|p| (Threshold::Value(p / 100.0), Unit::Percent));
    }
    // NaN compares false with everything: a rule on it never (or, with
    // `!=`, always) fires.
    if let Ok(v) = text.parse::<f64>() {
        return (!v.is_nan()).then_some((Threshold::Value(v), Unit::Plain));
    }
    if let Ok(Duration(d)) = text.parse::<Duration>() {
        return Some((Threshold::Value(d.as_secs_f64()), Unit::Seconds));
    }
    parse_size(text).map(|bytes| (Threshold::Value(bytes), Unit::Bytes))
}

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid condition {s:?}: write an operator and a value, e.g. \"> 0.5\", \"<= 8\", \"> 16GiB\", \">= 5x previous\", or a Nagios range (\"10:20\" alerts outside it, \"@10:20\" inside)"
            )
        };
        let text = s.trim();
        // A range: `10:20`, `@10:20`, or the plugin API's plain `10` (0:10).
        let range_like = text.contains(':')
            || text.starts_with('@')
            || text.parse::<f64>().is_ok_and(|v| !v.is_nan());
        if Op::split(text).is_none() && range_like {
            let range: Range = text.parse()?;
            if range.start == f64::NEG_INFINITY && range.end == f64::INFINITY {
                return Err(format!(
                    "invalid condition {s:?}: the range holds every value, so the rule would {} fire",
                    if range.inside { "always" } else { "never" }
                ));
            }
            return Ok(Condition {
                op: Op::Ne,
                threshold: Threshold::Range(range),
                unit: Unit::Plain,
            });
        }
        let (left, op, right) = Op::split(text).ok_or_else(bad)?;
        if !left.trim().is_empty() {
            return Err(bad());
        }
        let Some((threshold, unit)) = parse_threshold(right) else {
            if matches!(op, Op::Eq | Op::Ne) && !right.trim().is_empty() {
                return Err(format!(
                    "invalid condition {s:?}: {:?} is not a number; a text is compared quoted: '{} \"{}\"'",
                    right.trim(),
                    op.as_str(),
                    right.trim()
                ));
            }
            return Err(bad());
        };
        Ok(Condition {
            op,
            threshold,
            unit,
        })
    }
}
deserialize_from_str!(Condition);

/// A condition on a probe's text (`== "healthy"`, `!= "healthy"`,
/// `=~ "^1\."`, `!~ "rc"`): the value is quoted; `=~` searches the text
/// (anchor it with `^…$` to match it whole).
#[derive(Clone, Debug)]
pub struct TextCondition {
    pub op: TextOp,
    pub value: String,
    regex: Option<std::sync::Arc<regex::Regex>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOp {
    Equal,
    NotEqual,
    Matches,
    NotMatches,
}

impl TextCondition {
    pub fn holds(&self, text: &str) -> bool {
        match (self.op, &self.regex) {
            (TextOp::Equal, _) => text == self.value,
            (TextOp::NotEqual, _) => text != self.value,
            (TextOp::Matches, Some(regex)) => regex.is_match(text),
            (TextOp::NotMatches, Some(regex)) => !regex.is_match(text),
            (_, None) => false,
        }
    }

    /// Reads `== "x"`; `None` when the right side is not quoted (a
    /// number condition, then).
    pub fn parse(text: &str) -> Option<Result<TextCondition, String>> {
        let text = text.trim();
        let (op, rest) = [
            ("==", TextOp::Equal),
            ("!=", TextOp::NotEqual),
            ("=~", TextOp::Matches),
            ("!~", TextOp::NotMatches),
        ]
        .into_iter()
        .find_map(|(written, op)| text.strip_prefix(written).map(|rest| (op, rest.trim())))?;
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let Some(value) = rest[1..].strip_suffix(quote) else {
            return Some(Err(format!(
                "invalid condition {text:?}: the text has no closing {quote}"
            )));
        };
        let regex = match op {
            TextOp::Matches | TextOp::NotMatches => match regex::Regex::new(value) {
                Ok(regex) => Some(std::sync::Arc::new(regex)),
                Err(e) => return Some(Err(format!("invalid regex {value:?}: {e}"))),
            },
            TextOp::Equal | TextOp::NotEqual => None,
        };
        Some(Ok(TextCondition {
            op,
            value: value.to_string(),
            regex,
        }))
    }
}

impl fmt::Display for TextCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            TextOp::Equal => "==",
            TextOp::NotEqual => "!=",
            TextOp::Matches => "=~",
            TextOp::NotMatches => "!~",
        };
        write!(f, "{op} {:?}", self.value)
    }
}

/// Seconds since a timestamp as probes report it: Unix seconds,
/// milliseconds, microseconds or nanoseconds (told apart by size, as a
/// time after 1973 is), as a number or numeric text, or RFC 3339 text.
pub fn age_seconds(text: &str, now_ms: i64) -> Option<f64> {
    let text = text.trim();
    let millis = if let Ok(number) = text.parse::<f64>() {
        let magnitude = number.abs();
        if !number.is_finite() {
            return None;
        } else if magnitude >= 1e17 {
            number / 1e6
        } else if magnitude >= 1e14 {
            number / 1e3
        } else if magnitude >= 1e11 {
            number
        } else {
            number * 1e3
        }
    } else {
        let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()?;
        (at.unix_timestamp_nanos() / 1_000_000) as f64
    };
    // Before 2000 it is no time a node reports (a boolean read as 1, a
    // height, a count): not taken as one.
    if millis < 946_684_800_000.0 {
        return None;
    }
    Some((now_ms as f64 - millis) / 1000.0)
}

/// A guard of `when` / `unless`: a boolean signal's name (`major_sync`) or
/// a condition on a signal of the same task (`"lag > 5"`).
#[derive(Clone, PartialEq, Debug)]
pub enum Guard {
    Flag(Selector),
    Compare(Selector, Condition),
}

impl std::str::FromStr for Guard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match Op::split(s.trim()) {
            None => Ok(Guard::Flag(s.parse()?)),
            Some((left, op, right)) => {
                let selector: Selector = left.parse()?;
                let (threshold, unit) = parse_threshold(right)
                    .filter(|(t, _)| matches!(t, Threshold::Value(_)))
                    .ok_or_else(|| {
                        format!("invalid condition {s:?}: the right side must be a number")
                    })?;
                Ok(Guard::Compare(
                    selector,
                    Condition {
                        op,
                        threshold,
                        unit,
                    },
                ))
            }
        }
    }
}
deserialize_from_str!(Guard);

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Guard::Flag(s) => write!(f, "{s}"),
            Guard::Compare(s, c) => write!(f, "{s} {c}"),
        }
    }
}

/// `for` / `resolve_after`: a number of consecutive ticks or a duration;
/// `for` also takes `N of M`: N breaching ticks among the last M.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Gate {
    Ticks(u32),
    For(Duration),
    Within { needed: u32, window: u32 },
}

/// `resolve_after`: a gate of clear ticks in a row or a duration (an
/// `N of M` is refused where it is written).
pub struct ResolveGate(pub Gate);

impl<'de> Deserialize<'de> for ResolveGate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, |text| {
            match parse_gate(&text)? {
            Gate::Within { .. } => Err(
                "`resolve_after` counts clear ticks in a row (3) or a duration (180s); `N of M` goes with `for`"
                    .to_string(),
            ),
            gate => Ok(ResolveGate(gate)),
        }
        })
    }
}

/// The longest `N of M` window: the verdicts are kept a bit a tick.
pub const MAX_WINDOW: u32 = 64;

impl Default for Gate {
    fn default() -> Self {
        Gate::Ticks(1)
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gate::Ticks(1) => f.write_str("1 tick"),
            Gate::Ticks(n) => write!(f, "{n} ticks"),
            Gate::For(d) => write!(f, "{d}"),
            Gate::Within { needed, window } => write!(f, "{needed} of {window} ticks"),
        }
    }
}

impl<'de> Deserialize<'de> for Gate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, |text| parse_gate(&text))
    }
}

fn parse_gate(text: &str) -> Result<Gate, String> {
    if let Ok(ticks) = text.trim().parse::<u32>() {
        if ticks == 0 {
            return Err("must be at least 1 tick".to_string());
        }
        return Ok(Gate::Ticks(ticks));
    }
    if let Some((needed, window)) = text.split_once(" of ") {
        let (Ok(needed), Ok(window)) = (needed.trim().parse::<u32>(), window.trim().parse::<u32>())
        else {
            return Err(format!(
                "invalid value {text:?}: write `N of M`, e.g. \"3 of 5\" (3 breaching ticks among the last 5)"
            ));
        };
        if needed == 0 || needed > window || window > MAX_WINDOW {
            return Err(format!(
                "invalid value {text:?}: `N of M` needs 1 ≤ N ≤ M ≤ {MAX_WINDOW}"
            ));
        }
        return Ok(Gate::Within { needed, window });
    }
    text.parse::<Duration>().map(Gate::For).map_err(|_| {
        format!("invalid value {text:?}: give a number of consecutive ticks (3), a duration (180s), or for `for` N breaching ticks of the last M (\"3 of 5\")")
    })
}

#[cfg(test)]
mod range_tests {
    use super::*;

    /// The examples of the Nagios plugin guidelines ("Threshold and ranges"),
    /// each with values that alert and values that do not.
    #[test]
    fn the_plugin_guidelines_examples_alert_where_they_say() {
        let table: [(&str, &[f64], &[f64]); 6] = [
            // < 0 or > 10
            ("10", &[-0.5, 10.5, 11.0], &[0.0, 5.0, 10.0]),
            // < 10
            ("10:", &[9.99, -3.0], &[10.0, 1e9]),
            // > 10
            ("~:10", &[10.01, 50.0], &[10.0, -1e9]),
            // outside 10..20
            ("10:20", &[9.0, 21.0], &[10.0, 15.0, 20.0]),
            // inside 10..20, endpoints included
            ("@10:20", &[10.0, 15.0, 20.0], &[9.9, 20.1]),
            // < 0 or > 0? no: "@~:0"... the guideline's ":10" reads 0:10
            (":10", &[-1.0, 11.0], &[0.0, 10.0]),
        ];
        for (text, alerting, quiet) in table {
            let range: Range = text.parse().unwrap();
            for v in alerting {
                assert!(range.alerts(*v), "{text} alerts at {v}");
            }
            for v in quiet {
                assert!(!range.alerts(*v), "{text} is quiet at {v}");
            }
        }
    }

    #[test]
    fn ranges_are_conditions_and_print_as_written() {
        let c: Condition = "10:20".parse().unwrap();
        assert!(c.holds(25.0, None) && !c.holds(15.0, None));
        assert_eq!(c.to_string(), "outside 10:20");
        let c: Condition = "@~:5".parse().unwrap();
        assert!(c.holds(-100.0, None) && !c.holds(6.0, None));
        assert_eq!(c.to_string(), "inside ~:5");
        let c: Condition = "10:".parse().unwrap();
        assert_eq!(c.to_string(), "outside 10:");
        // The plugin API's plain "10" is 0:10, as a rule's value too.
        let c: Condition = "10".parse().unwrap();
        assert!(c.holds(10.5, None) && c.holds(-1.0, None) && !c.holds(10.0, None));
        assert_eq!(c.to_string(), "outside 0:10");
        for bad in ["20:10", "a:b", "@", "1:2:3"] {
            assert!(bad.parse::<Range>().is_err(), "{bad}");
        }
        for bad in ["~:", "@~:"] {
            assert!(bad.parse::<Condition>().is_err(), "{bad}");
        }
        let why = "20:10".parse::<Condition>().unwrap_err();
        assert!(why.contains("start is above its end"), "{why}");
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn text_conditions_compare_and_search() {
        let healthy = TextCondition::parse("!= \"healthy\"").unwrap().unwrap();
        assert!(healthy.holds("unhealthy") && !healthy.holds("healthy"));
        let v1 = TextCondition::parse("=~ '^1\\.'").unwrap().unwrap();
        assert!(v1.holds("1.2.0") && !v1.holds("21.0"));
        assert_eq!(v1.to_string(), "=~ \"^1\\\\.\"");
        assert!(TextCondition::parse("> 5").is_none(), "a number condition");
        assert!(
            TextCondition::parse("== healthy").is_none(),
            "unquoted: not text"
        );
        assert!(TextCondition::parse("== \"open").unwrap().is_err());
        assert!(TextCondition::parse("=~ \"(\"").unwrap().is_err());
    }

    #[test]
    fn ages_read_seconds_millis_and_rfc3339() {
        let now = 1_790_000_031_000;
        assert_eq!(age_seconds("1790000000", now), Some(31.0));
        assert_eq!(age_seconds("1790000000000", now), Some(31.0));
        assert_eq!(age_seconds("1790000000000000", now), Some(31.0));
        assert_eq!(age_seconds("2026-09-21T14:13:20Z", now), Some(31.0));
        assert_eq!(age_seconds("2026-09-21T16:13:20+02:00", now), Some(31.0));
        assert_eq!(age_seconds("yesterday", now), None);
        assert_eq!(age_seconds("1", now), None, "a boolean is no time");
    }
}
