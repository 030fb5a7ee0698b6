//! Series selectors as Prometheus users write them: `name`, `name{l="v"}`
//! with the matchers `=`, `!=`, `=~`, `!~` (anchored RE2 regexes), `l=""`
//! meaning "label absent", `{__name__=…}` and Prometheus 3's quoted names
//! (`{"my.metric"}`). A bare name also names a probe's own signal (`lag`,
//! `http.up`); braces always mean scraped series. Parsed once, at load.

use super::values::parsed;
use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::sync::Arc;

/// How a label matcher compares a series' label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`: the whole value matches the regex.
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One `label op "value"` of a selector. A label a series does not have
/// reads as the empty string, as in Prometheus.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
    /// `^(?s:value)$`, for `=~` and `!~`.
    regex: Option<Arc<Regex>>,
}

impl Matcher {
    pub fn new(label: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(Arc::new(
                Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|e| format!("invalid regex {value:?} for label {label}: {e}"))?,
            )),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            label: label.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether a label value (`""` when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => same(value, &self.value),
            (MatchOp::NotEqual, _) => !same(value, &self.value),
            (MatchOp::Regex, Some(regex)) => regex.is_match(value),
            (MatchOp::NotRegex, Some(regex)) => !regex.is_match(value),
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.label, self.op, &self.value) == (&other.label, other.op, &other.value)
    }
}

impl Eq for Matcher {}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_identifier(&self.label, false) {
            f.write_str(&self.label)?;
        } else {
            write_quoted(f, &self.label)?;
        }
        f.write_str(self.op.as_str())?;
        write_quoted(f, &self.value)
    }
}

/// A series selector, or the name of a probe's own signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// The metric name: `name{…}`, `{__name__="name"}` or `{"name"}`.
    /// `None` when only `__name__` matchers (`=~`, `!=`…) select names.
    pub name: Option<String>,
    /// Label matchers, `__name__` ones included, in the order written.
    pub matchers: Vec<Matcher>,
    /// Written with braces: it addresses scraped series only, never a
    /// probe's own signal (`up{}` is the scraped `up`, `up` the probe's).
    pub braced: bool,
}

impl Selector {
    /// A bare name (no braces), which may name a probe's own signal.
    pub fn signal_name(&self) -> Option<&str> {
        match (&self.name, self.braced) {
            (Some(name), false) => Some(name),
            _ => None,
        }
    }

    /// Whether a scraped series (`name`, labels sorted by name) matches.
    pub fn matches<L: AsRef<str>>(&self, name: &str, labels: &[(L, L)]) -> bool {
        if self.name.as_deref().is_some_and(|wanted| wanted != name) {
            return false;
        }
        self.matches_labels(name, labels)
    }

    /// [`Selector::matches`] for a series already known to have the
    /// selector's name (if it gives one): its label matchers (and
    /// `__name__` ones) only.
    pub fn matches_labels<L: AsRef<str>>(&self, name: &str, labels: &[(L, L)]) -> bool {
        self.matchers.iter().all(|matcher| {
            let value = if matcher.label == NAME_LABEL {
                name
            } else {
                labels
                    .iter()
                    .find(|(label, _)| same(label.as_ref(), &matcher.label))
                    .map_or("", |(_, value)| value.as_ref())
            };
            matcher.matches(value)
        })
    }

    /// Whether the selector may match series of more than one name.
    pub fn matches_names(&self, name: &str) -> bool {
        match &self.name {
            Some(wanted) => wanted == name,
            None => self
                .matchers
                .iter()
                .filter(|m| m.label == NAME_LABEL)
                .all(|m| m.matches(name)),
        }
    }
}

/// Strings compared without a call to `memcmp`: a scrape compares label
/// names and values on every line, and they are short.
pub fn same(a: &str, b: &str) -> bool {
    memchr::arch::all::is_equal(a.as_bytes(), b.as_bytes())
}

/// The label PromQL keeps the metric name in.
pub const NAME_LABEL: &str = "__name__";

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_is_plain = self
            .name
            .as_deref()
            .is_some_and(|name| is_identifier(name, true));
        if let Some(name) = self
            .name
            .as_deref()
            .filter(|_| name_is_plain || !self.braced)
        {
            f.write_str(name)?;
        }
        if !self.braced {
            return Ok(());
        }
        f.write_str("{")?;
        let mut first = true;
        if let Some(name) = self.name.as_deref().filter(|_| !name_is_plain) {
            write_quoted(f, name)?;
            first = false;
        }
        for matcher in &self.matchers {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{matcher}")?;
        }
        f.write_str("}")
    }
}

/// Names of probe signals may hold what perfdata labels and extract names
/// hold (`/`, `-`, `.`); metric names are `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_signal_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-' | '/')
}

fn is_identifier(text: &str, colon: bool) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl std::str::FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let mut parser = Parser { text, position: 0 };
        parser
            .selector()
            .map_err(|why| format!("invalid selector {text:?}: {why}"))
    }
}

/// A small recursive-descent reader of one PromQL vector selector.
struct Parser<'a> {
    text: &'a str,
    position: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.position..]
    }

    fn skip_blanks(&mut self) {
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start().len();
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.position += token.len();
            true
        } else {
            false
        }
    }

    fn selector(&mut self) -> Result<Selector, String> {
        let name_length = self
            .rest()
            .find(|c: char| !is_signal_name_char(c))
            .unwrap_or(self.rest().len());
        let mut name = (name_length > 0).then(|| self.rest()[..name_length].to_string());
        self.position += name_length;
        self.skip_blanks();
        if let Some(function) = name.as_deref()
            && self.peek() == Some('(')
        {
            return Err(unsupported_function(function));
        }
        if let Some(word) = name.as_deref()
            && matches!(
                word,
                "sum" | "avg" | "min" | "max" | "count" | "topk" | "bottomk"
            )
            && (self.rest().starts_with("by") || self.rest().starts_with("without"))
        {
            return Err(format!(
                "aggregations (`{word} by …`) are not supported: a selector's matching series are summed; write only the series, e.g. node_cpu_seconds_total{{mode!=\"idle\"}}"
            ));
        }
        let mut matchers = Vec::new();
        let braced = self.eat("{");
        if braced {
            loop {
                self.skip_blanks();
                if self.eat("}") {
                    break;
                }
                let label = match self.peek() {
                    Some('"' | '\'' | '`') => self.string()?,
                    Some(c) if c.is_ascii_alphabetic() || c == '_' => self.identifier(),
                    Some(_) => {
                        return Err(format!(
                            "expected a label name or '}}' at {:?}",
                            shorten(self.rest())
                        ));
                    }
                    None => return Err("missing closing `}`".to_string()),
                };
                self.skip_blanks();
                let op = if self.eat("=~") {
                    MatchOp::Regex
                } else if self.eat("!~") {
                    MatchOp::NotRegex
                } else if self.eat("!=") {
                    MatchOp::NotEqual
                } else if self.eat("=") {
                    MatchOp::Equal
                } else if matches!(self.peek(), Some(',' | '}')) {
                    // Prometheus 3: a lone quoted string is the metric name.
                    if name.is_some() {
                        return Err(format!(
                            "the metric name is given twice ({} and {label:?})",
                            name.as_deref().unwrap_or_default()
                        ));
                    }
                    name = Some(label);
                    self.eat(",");
                    continue;
                } else {
                    return Err(format!(
                        "expected one of = != =~ !~ after label {label}; label values are quoted: name{{label=\"value\"}}"
                    ));
                };
                self.skip_blanks();
                if !matches!(self.peek(), Some('"' | '\'' | '`')) {
                    return Err(format!(
                        "the value for label {label} must be quoted: {label}{}\"…\"",
                        op.as_str()
                    ));
                }
                let value = self.string()?;
                if label == NAME_LABEL && op == MatchOp::Equal {
                    if name.is_some() {
                        return Err(format!(
                            "the metric name is given twice ({} and __name__=\"{value}\")",
                            name.as_deref().unwrap_or_default()
                        ));
                    }
                    name = Some(value);
                } else {
                    matchers.push(Matcher::new(&label, op, &value)?);
                }
                self.skip_blanks();
                if !self.eat(",") {
                    self.skip_blanks();
                    if !self.eat("}") {
                        return Err(match self.peek() {
                            Some(_) => {
                                format!("expected ',' or '}}' at {:?}", shorten(self.rest()))
                            }
                            None => "missing closing `}`".to_string(),
                        });
                    }
                    break;
                }
            }
        }
        self.skip_blanks();
        if let Some(c) = self.peek() {
            let rest = self.rest();
            return Err(if c == '[' {
                "range vectors (`[5m]`) are not supported: counter rules take the increase since the last tick themselves".to_string()
            } else if rest.starts_with("offset") || c == '@' {
                "`offset` and `@` are not supported: a rule reads this tick's scrape".to_string()
            } else if name.is_none() && !braced {
                format!(
                    "a name is letters, digits, `_`, `:`, `.`, `-` or `/`, found {:?}",
                    shorten(rest)
                )
            } else {
                format!(
                    "unexpected {:?} after the selector (PromQL functions and operators are not supported)",
                    shorten(rest)
                )
            });
        }
        if name.is_none() && !matchers.iter().any(|m| !m.matches("")) {
            return Err(if matchers.is_empty() {
                "give a metric name, e.g. node_load1 or node_cpu_seconds_total{mode=\"idle\"}"
                    .to_string()
            } else {
                "a selector without a metric name needs a matcher that cannot match an empty value (as in Prometheus), e.g. {job=\"node\"} or {__name__=~\"node_.+\"}".to_string()
            });
        }
        Ok(Selector {
            name,
            matchers,
            braced,
        })
    }

    fn identifier(&mut self) -> String {
        let length = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        let word = self.rest()[..length].to_string();
        self.position += length;
        word
    }

    /// A PromQL string: "…" or '…' with Go escapes, or `…` raw.
    fn string(&mut self) -> Result<String, String> {
        let quote = self.peek().unwrap_or('"');
        self.position += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((offset, c)) = chars.next() {
            if c == quote {
                self.position += offset + 1;
                return Ok(out);
            }
            if c != '\\' || quote == '`' {
                out.push(c);
                continue;
            }
            let Some((_, escaped)) = chars.next() else {
                break;
            };
            let hex = |chars: &mut std::str::CharIndices, digits: usize| -> Result<char, String> {
                let code: String = chars.by_ref().take(digits).map(|(_, c)| c).collect();
                u32::from_str_radix(&code, 16)
                    .ok()
                    .filter(|_| code.len() == digits)
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("invalid escape \\{escaped}{code}"))
            };
            match escaped {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                '\\' | '"' | '\'' => out.push(escaped),
                'x' => out.push(hex(&mut chars, 2)?),
                'u' => out.push(hex(&mut chars, 4)?),
                'U' => out.push(hex(&mut chars, 8)?),
                other => {
                    return Err(format!(
                        "invalid escape \\{other} in a quoted value (write \\\\ for a backslash, or use a `raw` string)"
                    ));
                }
            }
        }
        Err("a quoted value has no closing quote".to_string())
    }
}

fn unsupported_function(function: &str) -> String {
    match function {
        "rate" | "irate" | "increase" | "delta" | "idelta" => format!(
            "`{function}(…)` is not supported: a `counter:` rule takes the increase since the last tick itself; write counter: NAME{{…}} with delta: \">= N\""
        ),
        "histogram_quantile" => {
            "`histogram_quantile(…)` is not supported: write histogram: NAME with quantile: 0.99"
                .to_string()
        }
        "sum" | "avg" | "min" | "max" | "count" => format!(
            "`{function}(…)` is not supported: a selector's matching series are summed already; write only the series"
        ),
        other => {
            format!("PromQL functions (`{other}(…)`) are not supported: write a series selector")
        }
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(20).collect()
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, |text| text.parse())
    }
}

/// One selector or a list of them (their values are summed).
#[derive(Clone, PartialEq, Debug)]
pub struct Selectors(pub Vec<Selector>);

impl<'de> Deserialize<'de> for Selectors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Selectors;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a series selector or a list of selectors")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Selectors, E> {
                Ok(Selectors(vec![v.parse().map_err(E::custom)?]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Selectors, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<Selector>()? {
                    all.push(s);
                }
                if all.is_empty() {
                    return Err(de::Error::custom("the list of selectors is empty"));
                }
                Ok(Selectors(all))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Selector {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// selector, series name, its labels, whether it matches.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool);

    #[test]
    fn matchers_select_as_in_prometheus() {
        let cases: &[Case] = &[
            ("m", "m", &[("a", "1")], true),
            ("m", "n", &[], false),
            ("m{a=\"1\"}", "m", &[("a", "1")], true),
            ("m{a=\"1\"}", "m", &[("a", "2")], false),
            ("m{a!=\"1\"}", "m", &[("a", "2")], true),
            ("m{a!=\"1\"}", "m", &[], true),
            ("m{a=~\"1|2\"}", "m", &[("a", "2")], true),
            ("m{a=~\"1\"}", "m", &[("a", "12")], false),
            ("m{a=~\"1.*\"}", "m", &[("a", "12")], true),
            ("m{a!~\"idle|iowait\"}", "m", &[("a", "user")], true),
            ("m{a!~\"idle|iowait\"}", "m", &[("a", "idle")], false),
            ("m{a=\"\"}", "m", &[], true),
            ("m{a=\"\"}", "m", &[("a", "x")], false),
            ("m{a!=\"\"}", "m", &[], false),
            ("m{a=~\".*\"}", "m", &[], true),
            ("m{a=~\".+\"}", "m", &[], false),
            (
                "m { a = \"1\" , b != \"2\" , }",
                "m",
                &[("a", "1"), ("b", "3")],
                true,
            ),
            ("{__name__=\"m\"}", "m", &[], true),
            ("{__name__=~\"node_.+\"}", "node_load1", &[], true),
            ("{__name__=~\"node_.+\"}", "up", &[], false),
            (
                "{__name__=~\"node_.+\",job=\"x\"}",
                "node_load1",
                &[("job", "x")],
                true,
            ),
            ("{\"my.metric\"}", "my.metric", &[], true),
            (
                "{\"my.metric\", \"label.name\"=\"v\"}",
                "my.metric",
                &[("label.name", "v")],
                true,
            ),
            ("m{a=~'x\\\\d'}", "m", &[("a", "x5")], true),
            ("m{a=~`x\\d`}", "m", &[("a", "x5")], true),
            ("m{a=\"line\\nbreak\"}", "m", &[("a", "line\nbreak")], true),
            ("m{a=~\"(?i)ERROR\"}", "m", &[("a", "error")], true),
            ("m{a=~\".\"}", "m", &[("a", "\n")], true),
        ];
        for (selector, name, pairs, expected) in cases {
            let parsed = parse(selector);
            assert_eq!(
                parsed.matches(name, &labels(pairs)),
                *expected,
                "{selector} on {name}{pairs:?}"
            );
        }
    }

    #[test]
    fn bare_names_may_name_probe_signals_and_braces_never_do() {
        assert_eq!(parse("up").signal_name(), Some("up"));
        assert_eq!(parse("http.up").signal_name(), Some("http.up"));
        assert_eq!(parse("up{}").signal_name(), None);
        assert_eq!(parse("up{job=\"x\"}").signal_name(), None);
    }

    #[test]
    fn round_trips_through_display() {
        for text in [
            "up",
            "up{}",
            "m{a=\"1\",b!=\"2\",c=~\"x|y\",d!~\"z\"}",
            "{\"my.metric\",a=\"1\"}",
            "{__name__=~\"node_.+\"}",
            "m{a=\"say \\\"hi\\\"\\\\\"}",
            "http.up",
        ] {
            let once = parse(text);
            let shown = once.to_string();
            assert_eq!(parse(&shown), once, "{text} → {shown}");
        }
        assert_eq!(parse("{__name__=\"m\", a = 'x'}").to_string(), "m{a=\"x\"}");
    }

    #[test]
    fn what_is_not_a_selector_says_so() {
        let cases = [
            ("rate(m[5m])", "`rate(…)` is not supported"),
            ("m[5m]", "range vectors"),
            ("m offset 5m", "`offset`"),
            ("sum by (job) (m)", "aggregations"),
            ("m{a=1}", "must be quoted"),
            ("m{a=\"1\"", "missing closing"),
            ("m{a:b=\"1\"}", "expected one of = != =~ !~"),
            ("m{a=~\"(\"}", "invalid regex"),
            ("{a=\"\"}", "cannot match an empty value"),
            ("{a=~\".*\"}", "cannot match an empty value"),
            ("{}", "give a metric name"),
            ("", "give a metric name"),
            ("m{a=\"x\\q\"}", "invalid escape \\q"),
            ("m{__name__=\"n\"}", "the metric name is given twice"),
            ("m n", "unexpected"),
            ("m +", "unexpected"),
        ];
        for (text, expected) in cases {
            let error = text.parse::<Selector>().expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
