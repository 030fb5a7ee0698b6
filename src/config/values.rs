//! Typed leaf values of jobs.yaml: durations, sizes, conditions, selectors,
//! severities and `${VAR}` interpolation. Each parses once, when the file
//! loads, so nothing downstream re-parses strings.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Expands `${VAR}` and `${VAR:-default}` with `lookup` (the environment,
/// in the loader), returning also what each variable put in, so an error
/// about the result can name `${NAME}` instead of showing its value. `$$`
/// is a literal `$`. A missing variable without a default is an error that
/// names it.
pub(crate) fn interpolate_tracked(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(String, Vec<(String, String)>), String> {
    let mut used = Vec::new();
    if !input.contains('$') {
        return Ok((input.to_string(), used));
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in {input:?}: write ${{NAME}}"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{expr}}}` is not a valid environment variable reference"
                ));
            }
            match (lookup(name), default) {
                (Some(value), _) if !(value.is_empty() && default.is_some()) => {
                    out.push_str(&value);
                    used.push((name.to_string(), value));
                }
                (_, Some(default)) => out.push_str(default),
                (Some(value), None) => out.push_str(&value),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} to make it optional)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, used))
}

/// A string from jobs.yaml with `${VAR}` expanded.
#[derive(Clone, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct Text(pub String);

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a scalar as a string (the loader has interpolated it).
pub(crate) fn interpolated<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, Ok)
}

/// Why monitor could never send to `url`: not http/https, no host, a port
/// outside 1–65535, not a URL at all. `None` when it can.
pub fn http_url_problem(url: &str) -> Option<String> {
    if !url.contains("://") {
        return Some("no scheme: write http:// or https:// before the host".into());
    }
    let uri: ureq::http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return Some(format!("not a URL ({e})")),
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Some(format!("the scheme is {other}: use http:// or https://")),
        None => return Some("no scheme: write http:// or https:// before the host".into()),
    }
    let Some(authority) = uri.authority() else {
        return Some("no host after the scheme".into());
    };
    if uri.host().is_none_or(str::is_empty) {
        return Some("no host after the scheme".into());
    }
    // The port: whatever follows the host (outside [brackets]), past
    // any `user:password@`.
    let host_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, rest)| rest);
    let after_host = host_port
        .rsplit_once(']')
        .map_or(host_port, |(_, rest)| rest);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        match port.parse::<u32>() {
            Ok(1..=65535) => {}
            _ if port.is_empty() => {}
            _ => return Some(format!("port {port} is not a port (1–65535)")),
        }
    }
    None
}

/// An `http(s)://` URL (probe `url:`), refused at load when it could
/// never work, at its own line.
pub(crate) fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
    parsed(d, |url| match http_url_problem(&url) {
        Some(why) => Err(format!("{why}: {url:?}")),
        None => Ok(Text(url)),
    })
}

/// [`http_url`] for an optional `url:`.
pub(crate) fn optional_http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Text>, D::Error> {
    http_url(d).map(Some)
}

/// [`http_url`] for a URL that is a secret (a keyed URL): never echoed.
pub(crate) fn secret_http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    parsed(d, |url| match http_url_problem(&url) {
        Some(why) => Err(format!("{why} (the URL is a secret: not shown)")),
        None => Ok(Secret(url)),
    })
}

/// `url` when it holds a user and password (`https://user:pw@host/`): then
/// the URL itself is a secret.
pub(crate) fn url_with_password(url: &str) -> Option<&str> {
    let authority = url.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or_default()
    });
    authority.contains('@').then_some(url)
}

/// The secrets of a request a probe makes: its header values, and its URL
/// when it holds a password.
pub(crate) fn request_secrets<'a>(
    url: &'a str,
    headers: &'a BTreeMap<String, Secret>,
) -> Vec<&'a str> {
    headers
        .values()
        .map(Secret::expose)
        .chain(url_with_password(url))
        .collect()
}

/// A value worth echoing in an error: a short word (a typo of a keyword),
/// never something that could be a token from the environment.
pub(crate) fn word(value: &str) -> String {
    let plain = value.len() <= 16
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-');
    if plain {
        format!(" {value:?}")
    } else {
        String::new()
    }
}

/// The secret under `key` of a `kind` notifier, required and non-empty,
/// refused now when as a URL it could never work (the message would wait
/// in the outbox for ever); the URL is never shown.
pub(crate) fn required_secret_url(
    secret: Option<Secret>,
    kind: &str,
    key: &str,
) -> Result<Secret, String> {
    let secret = required_secret(secret, kind, key)?;
    if let Some(why) = http_url_problem(secret.expose()) {
        return Err(format!("`{key}`: {why} (the URL is a secret: not shown)"));
    }
    Ok(secret)
}

/// The secret under `key` of a `kind` notifier, required and non-empty.
pub(crate) fn required_secret(
    secret: Option<Secret>,
    kind: &str,
    key: &str,
) -> Result<Secret, String> {
    secret
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("a {kind} notifier needs `{key}`"))
}

/// A URL under `key` that is not a secret but may hold a user and
/// password: refused when it could never work, never echoed.
pub(crate) fn checked_url(url: &Text, key: &str) -> Result<(), String> {
    match http_url_problem(url.as_str()) {
        Some(why) => Err(format!(
            "`{key}`: {why} (the URL is not shown: it may hold a password)"
        )),
        None => Ok(()),
    }
}

/// Headers that could never be sent, refused at load.
pub(crate) fn checked_headers(headers: &BTreeMap<String, Secret>) -> Result<(), String> {
    for (name, value) in headers {
        if let Some(why) = header_problem(name, value.expose()) {
            return Err(format!("`headers`: {why}"));
        }
    }
    Ok(())
}

/// Why a header cannot be sent: an invalid name, or a value with a line
/// break or other control character (which would smuggle headers in).
/// The value is a secret: never echoed.
pub fn header_problem(name: &str, value: &str) -> Option<String> {
    if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Some(format!(
            "header name {name:?} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~, no spaces)"
        ));
    }
    if ureq::http::HeaderValue::from_str(value).is_err() {
        return Some(format!(
            "the value of header {name} has a line break or another control character (not shown: headers hold secrets)"
        ));
    }
    None
}

/// `headers:` of a probe, each checked with [`header_problem`] inside the
/// mapping (the error points at it).
pub(crate) fn http_headers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, Secret>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = std::collections::BTreeMap<String, Secret>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping of header names to values")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut headers = std::collections::BTreeMap::new();
            while let Some((name, value)) = map.next_entry::<String, Secret>()? {
                if let Some(why) = header_problem(&name, value.expose()) {
                    return Err(de::Error::custom(why));
                }
                headers.insert(name, value);
            }
            Ok(headers)
        }
    }
    d.deserialize_map(V)
}

/// Reads a scalar (interpolated by the loader's adapter) and parses it with
/// `parse`, inside the scalar's own visitor: serde_yaml then reports an
/// error at the value's line and column rather than at the enclosing
/// mapping.
pub(crate) fn parsed<'de, D, T, F>(d: D, parse: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(String) -> Result<T, String>,
{
    struct Parsed<F>(F);
    impl<T, F: FnOnce(String) -> Result<T, String>> Parsed<F> {
        fn finish<E: de::Error>(self, text: String) -> Result<T, E> {
            (self.0)(text).map_err(E::custom)
        }
    }
    impl<'de, T, F: FnOnce(String) -> Result<T, String>> Visitor<'de> for Parsed<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            self.finish(v.to_string())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
            self.finish(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.finish(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.finish(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            self.finish(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
            self.finish(v.to_string())
        }
        /// `value: != "healthy"` unquoted: YAML reads `!=` as a tag.
        fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<T, A::Error> {
            let (tag, _): (String, _) = data.variant()?;
            Err(de::Error::custom(format!(
                "YAML reads a value starting with `!` (here `!{}`) as a tag: quote the whole value, e.g. '!= \"healthy\"'",
                tag.trim_start_matches('!')
            )))
        }
    }
    d.deserialize_any(Parsed(parse))
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        interpolated(d).map(Text)
    }
}

/// A secret (token, webhook URL with a key in it): interpolated like
/// [`Text`], but never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        interpolated(d).map(Secret)
    }
}

/// Parses `T` from an interpolated scalar with `FromStr`, turning the parse
/// error into a located config error.
macro_rules! deserialize_from_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::config::values::parsed(d, |text| text.parse())
            }
        }
    };
}
pub(crate) use deserialize_from_str;

/// A span of time written with a unit: `500ms`, `10s`, `5m`, `2h`, `1d`,
/// or a sum such as `1h30m`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }
    pub fn as_millis(&self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
    pub fn std(&self) -> std::time::Duration {
        self.0
    }
}

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let bad = || {
            format!(
                "invalid duration {text:?}: write a number with a unit: 500ms, 10s, 5m, 2h or 1d"
            )
        };
        if text.is_empty() {
            return Err(bad());
        }
        let mut total = std::time::Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let millis_per_unit = match &rest[..unit_len] {
                "ms" => 1.0,
                "s" => 1_000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                "d" => 86_400_000.0,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            // At most a century: beyond it a duration is a typo (and
            // past about 5e11 years it does not fit at all).
            let part = std::time::Duration::try_from_secs_f64(number * millis_per_unit / 1000.0)
                .ok()
                .filter(|d| d.as_secs() <= 100 * 366 * 86_400)
                .ok_or_else(|| format!("duration {s:?} is longer than a century: a typo?"))?;
            total += part;
        }
        Ok(Duration(total))
    }
}
deserialize_from_str!(Duration);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        if !millis.is_multiple_of(1000) {
            return write!(f, "{millis}ms");
        }
        let mut secs = self.0.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        if secs > 0 {
            write!(f, "{secs}s")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A byte count: `512`, `10MB`, `16GiB` (SI and binary units).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct ByteSize(pub u64);

/// Parses a number with an optional byte unit into a plain number of bytes.
pub fn parse_size(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let number: f64 = text[..split].trim().parse().ok()?;
    let factor: f64 = match text[split..].trim() {
        "" | "B" => 1.0,
        "k" | "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" | "Ki" => 1024.0,
        "MiB" | "Mi" => 1024.0 * 1024.0,
        "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
        "TiB" | "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "PB" => 1e15,
        "PiB" | "Pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match parse_size(s) {
            Some(bytes) if bytes >= 0.0 => Ok(ByteSize(bytes as u64)),
            _ => Err(format!(
                "invalid size {s:?}: write bytes with a unit, e.g. 512KiB, 10MB, 16GiB"
            )),
        }
    }
}
deserialize_from_str!(ByteSize);

/// How serious an alert is. Ordered: info < warning < critical. Its names
/// are derived once (strum) and used by serde, the store and the API.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Debug,
    Hash,
    Default,
    Serialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    #[default]
    Critical,
}

impl Severity {
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// `info, warning or critical`, for messages.
    pub fn choices() -> String {
        use strum::VariantArray;
        let names: Vec<&str> = Severity::VARIANTS.iter().map(Severity::as_str).collect();
        let (last, rest) = names.split_last().unwrap_or((&"", &[]));
        format!("{} or {last}", rest.join(", "))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    /// A name, or the short `warn` and `crit` people also write.
    fn from_str(s: &str) -> Result<Self, String> {
        use strum::VariantArray;
        let name = match s {
            "warn" => "warning",
            "crit" => "critical",
            other => other,
        };
        Severity::VARIANTS
            .iter()
            .find(|severity| severity.as_str() == name)
            .copied()
            .ok_or_else(|| format!("invalid severity {s:?}: use {}", Severity::choices()))
    }
}
deserialize_from_str!(Severity);

/// Expected HTTP statuses: `200`, `"200-399"`, `"200,204,300-399"`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl Default for StatusRanges {
    fn default() -> Self {
        StatusRanges(vec![(200, 399)])
    }
}

impl StatusRanges {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

impl fmt::Display for StatusRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for StatusRanges {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid status list {s:?}: write 200, \"200-399\" or \"200,204,300-399\"");
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return Err(bad());
            }
            ranges.push((lo, hi));
        }
        Ok(StatusRanges(ranges))
    }
}
deserialize_from_str!(StatusRanges);

/// A compiled regular expression from the config.
#[derive(Clone, Debug)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl std::str::FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        regex::Regex::new(s)
            .map(Pattern)
            .map_err(|e| format!("invalid regex {s:?}: {e}"))
    }
}
deserialize_from_str!(Pattern);

/// A JSON pointer such as `/result/number` (RFC 6901).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JsonPointer(pub String);

impl std::str::FromStr for JsonPointer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.starts_with('/') {
            Ok(JsonPointer(s.to_string()))
        } else {
            Err(format!(
                "invalid JSON pointer {s:?}: it starts with `/`, e.g. /result/number"
            ))
        }
    }
}
deserialize_from_str!(JsonPointer);

/// A ratio limit: `0.9` or `90%`.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Ratio(pub f64);

impl std::str::FromStr for Ratio {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let value = match text.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
            None => text.parse::<f64>(),
        };
        match value {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(Ratio(v)),
            _ => Err(format!("invalid ratio {s:?}: write 0.9 or 90%")),
        }
    }
}
deserialize_from_str!(Ratio);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::condition::{Condition, Guard, Op, Threshold};

    fn interpolate_with(
        input: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        interpolate_tracked(input, lookup).map(|(text, _)| text)
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("box-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn interpolation_expands_defaults_and_names_missing_variables() {
        assert_eq!(interpolate_with("a ${HOST} b", env).unwrap(), "a box-1 b");
        assert_eq!(interpolate_with("${NOPE:-x}", env).unwrap(), "x");
        assert_eq!(
            interpolate_with("${EMPTY:-fallback}", env).unwrap(),
            "fallback"
        );
        assert_eq!(interpolate_with("${NOPE:-}", env).unwrap(), "");
        assert_eq!(interpolate_with("cost $$5 $x", env).unwrap(), "cost $5 $x");
        let err = interpolate_with("${TELEGRAM_TOKEN}", env).unwrap_err();
        assert!(err.contains("TELEGRAM_TOKEN is not set"), "{err}");
        assert!(interpolate_with("${OPEN", env).is_err());
        assert!(interpolate_with("${1BAD}", env).is_err());
    }

    #[test]
    fn durations_need_units() {
        assert_eq!("500ms".parse::<Duration>().unwrap().as_millis(), 500);
        assert_eq!("10s".parse::<Duration>().unwrap().as_millis(), 10_000);
        assert_eq!("5m".parse::<Duration>().unwrap().as_millis(), 300_000);
        assert_eq!("2h".parse::<Duration>().unwrap().as_millis(), 7_200_000);
        assert_eq!("1h30m".parse::<Duration>().unwrap().as_millis(), 5_400_000);
        assert_eq!("1.5s".parse::<Duration>().unwrap().as_millis(), 1_500);
        for bad in ["10", "", "s", "5 minutes", "-1s", "10x"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} should be rejected");
        }
        assert_eq!("90m".parse::<Duration>().unwrap().to_string(), "1h30m");
        assert_eq!("300s".parse::<Duration>().unwrap().to_string(), "5m");
    }

    #[test]
    fn sizes_understand_si_and_binary_units() {
        assert_eq!(
            "16GiB".parse::<ByteSize>().unwrap().0,
            16 * 1024 * 1024 * 1024
        );
        assert_eq!("10MB".parse::<ByteSize>().unwrap().0, 10_000_000);
        assert_eq!("512".parse::<ByteSize>().unwrap().0, 512);
        assert!("12 bananas".parse::<ByteSize>().is_err());
    }

    #[test]
    fn conditions_parse_operators_sizes_and_multiples() {
        let c: Condition = "> 0.5".parse().unwrap();
        assert!(c.holds(0.6, None) && !c.holds(0.5, None));
        let c: Condition = ">= 1".parse().unwrap();
        assert!(c.holds(1.0, None));
        let c: Condition = "!= 2".parse().unwrap();
        assert!(c.holds(1.0, None) && !c.holds(2.0, None));
        let c: Condition = "> 16GiB".parse().unwrap();
        assert_eq!(c.threshold, Threshold::Value(17_179_869_184.0));
        let c: Condition = ">= 5x previous".parse().unwrap();
        assert_eq!(c.threshold, Threshold::TimesPrevious(5.0));
        assert!(c.holds(50.0, Some(10.0)));
        assert!(!c.holds(49.0, Some(10.0)));
        assert!(!c.holds(50.0, None), "no previous delta: cannot hold");
        assert!(c.holds(100.0, Some(0.0)), "any rise is >= 5x a quiet tick");
        assert!(
            !c.holds(0.0, Some(0.0)),
            "no rise after a quiet tick is not"
        );
        assert_eq!(c.to_string(), ">= 5x previous");
        let c: Condition = "> 1GiB".parse().unwrap();
        assert_eq!(c.to_string(), "> 1 GiB");
        assert_eq!(c.show(1_610_612_736.0), "1.5 GiB");
        let c: Condition = "> 5m".parse().unwrap();
        assert_eq!(c.to_string(), "> 5m");
        let c: Condition = "< 90%".parse().unwrap();
        assert_eq!(c.to_string(), "< 90%");
        // A bare number is the plugin API's range 0:N, not a typo.
        let c: Condition = "0.5".parse().unwrap();
        assert!(c.holds(0.6, None) && !c.holds(0.5, None));
        for bad in ["> ", "=> 3", "lag > 3", "> abc", "< NaN", "!= nan", "nan"] {
            assert!(
                bad.parse::<Condition>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn guards_are_flags_or_comparisons() {
        assert_eq!(
            "major_sync".parse::<Guard>().unwrap(),
            Guard::Flag("major_sync".parse().unwrap())
        );
        let g: Guard = "stellar_ledger_age_current_seconds > 30".parse().unwrap();
        assert!(
            matches!(g, Guard::Compare(ref s, _) if s.name.as_deref() == Some("stellar_ledger_age_current_seconds"))
        );
        let g: Guard = r#"m{op=">"} >= 2"#.parse().unwrap();
        assert!(
            matches!(g, Guard::Compare(ref s, c) if s.matchers[0].value == ">" && c.op == Op::Ge)
        );
        let g: Guard = r#"m{op!="x",b=~"y|z"} != 2"#.parse().unwrap();
        assert!(matches!(g, Guard::Compare(ref s, c) if s.matchers.len() == 2 && c.op == Op::Ne));
    }

    #[test]
    fn status_ranges() {
        let r: StatusRanges = "200-399".parse().unwrap();
        assert!(r.contains(200) && r.contains(399) && !r.contains(400));
        let r: StatusRanges = "200,204,300-302".parse().unwrap();
        assert!(r.contains(204) && !r.contains(203));
        assert!("399-200".parse::<StatusRanges>().is_err());
        assert!("abc".parse::<StatusRanges>().is_err());
    }

    /// serde, the store and the API spell a severity as `as_str` does, and
    /// each name (and `warn`, `crit`) parses back.
    #[test]
    fn severity_names_are_one_list() {
        use strum::VariantArray;
        for severity in Severity::VARIANTS {
            let json = serde_json::to_value(severity).unwrap();
            assert_eq!(json, severity.as_str());
            assert_eq!(severity.as_str().parse::<Severity>(), Ok(*severity));
        }
        assert_eq!("warn".parse::<Severity>(), Ok(Severity::Warning));
        assert_eq!("crit".parse::<Severity>(), Ok(Severity::Critical));
        assert_eq!(
            "fatal".parse::<Severity>(),
            Err("invalid severity \"fatal\": use info, warning or critical".to_string())
        );
    }
}
