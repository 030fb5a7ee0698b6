//! The API's HTTP vocabulary: a request head (parsed by httparse), an
//! answer, and query-string parameters (decoded by percent-encoding), with
//! the 400 that names a bad one.

use crate::clock::Timestamp;
use serde_json::json;
use std::collections::BTreeMap;

use super::{DEFAULT_LIMIT, MAX_LIMIT};

/// A parsed request line and headers.
#[derive(Debug, PartialEq)]
pub(super) struct RequestHead {
    pub(super) method: String,
    /// Path and query, as sent.
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
}

impl RequestHead {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client announced a body (which we never read).
    pub(super) fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|n| n.trim() != "0")
    }
}

/// Headers a request head may carry; more is refused.
const MAX_HEADERS: usize = 100;

/// Parses a request head (httparse), refusing what this API never needs:
/// anything but HTTP/1.x, a target that is not a path, bytes that are not
/// UTF-8.
pub(super) fn parse_head(bytes: &[u8]) -> Result<RequestHead, String> {
    std::str::from_utf8(bytes).map_err(|_| "the request head is not UTF-8")?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if bytes.iter().all(|b| b.is_ascii_whitespace()) => {
            return Err("empty request".into());
        }
        Ok(httparse::Status::Partial) => return Err("the request head is incomplete".into()),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!("more than {MAX_HEADERS} headers"));
        }
        Err(httparse::Error::Version) => {
            return Err(format!(
                "unsupported protocol in {:?}: HTTP/1.x only",
                first_line(bytes)
            ));
        }
        Err(e) => {
            return Err(format!(
                "malformed request ({e}) in {:?}",
                first_line(bytes)
            ));
        }
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(format!("malformed request line {:?}", first_line(bytes)));
    };
    if !target.starts_with('/') {
        return Err(format!(
            "malformed request line {:?}: the target must be a path",
            first_line(bytes)
        ));
    }
    let headers = request
        .headers
        .iter()
        .map(|h| {
            // The whole head is UTF-8 (checked above), so each value is.
            let value = String::from_utf8_lossy(h.value);
            (h.name.to_string(), value.trim().to_string())
        })
        .collect();
    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    })
}

/// The request line as sent, for error messages.
fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim_start_matches(['\r', '\n'])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// An answer, written with `Connection: close`.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

pub(super) const JSON: &str = "application/json";
pub(super) const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    pub(super) fn json(status: u16, body: &impl serde::Serialize) -> Response {
        let mut bytes = serde_json::to_vec(body).unwrap_or_default();
        bytes.push(b'\n');
        Response {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: bytes,
        }
    }

    pub(super) fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &json!({ "error": message.into() }))
    }

    pub(super) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        // Nothing is cached unless the answer says how long it may be (a
        // badge: a minute).
        if !self
            .headers
            .iter()
            .any(|(name, _)| *name == "Cache-Control")
        {
            out.push_str("Cache-Control: no-store\r\n");
        }
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A request parameter that cannot be used: answered 400, naming it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest {
    pub parameter: String,
    pub value: String,
    pub message: String,
}

impl BadRequest {
    pub(super) fn response(&self) -> Response {
        Response::json(
            400,
            &json!({ "error": self.message, "parameter": self.parameter, "value": self.value }),
        )
    }
}

/// Splits and decodes `a=1&b=2`, refusing names not in `allowed` and names
/// given twice.
pub(super) fn parse_query(
    query: &str,
    allowed: &[&'static str],
) -> Result<BTreeMap<&'static str, String>, BadRequest> {
    let mut parameters = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name).map_err(|why| BadRequest {
            parameter: raw_name.to_string(),
            value: raw_value.to_string(),
            message: format!("parameter name {raw_name:?}: {why}"),
        })?;
        let value = percent_decode(raw_value).map_err(|why| BadRequest {
            parameter: name.clone(),
            value: raw_value.to_string(),
            message: format!("{name}={raw_value:?}: {why}"),
        })?;
        let Some(known) = allowed.iter().find(|a| **a == name) else {
            let takes = if allowed.is_empty() {
                "this endpoint takes no parameters".to_string()
            } else {
                format!("this endpoint takes {}", allowed.join(", "))
            };
            return Err(BadRequest {
                message: format!("unknown parameter {name:?} (value {value:?}): {takes}"),
                parameter: name,
                value,
            });
        };
        if parameters.insert(*known, value.clone()).is_some() {
            return Err(BadRequest {
                message: format!("{known} is given twice (last {value:?}): give it once"),
                parameter: name,
                value,
            });
        }
    }
    Ok(parameters)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte. A `%` not followed by two hex digits is refused rather than kept
/// as text (percent-encoding's own choice), so a mistyped filter is named.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    for (index, _) in text.match_indices('%') {
        let hex = bytes.get(index + 1..index + 3);
        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Err("a % is not followed by two hex digits".into());
        }
    }
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| "not UTF-8 once decoded".to_string())
}

/// `limit`: a whole number, clamped to 1..=1000.
pub(super) fn parse_limit(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "limit={value:?} is not a whole number: give 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"
        ));
    }
    if value.starts_with('-') {
        return Ok(1);
    }
    Ok(digits
        .parse::<u64>()
        .map_or(MAX_LIMIT, |n| n.clamp(1, u64::from(MAX_LIMIT)) as u32))
}

/// `since`: Unix seconds (fractions allowed) or RFC 3339.
pub(super) fn parse_since(value: &str) -> Result<Timestamp, String> {
    let bad = || {
        format!(
            "since={value:?} is not a time: give Unix seconds (1790000000) or RFC 3339 (2026-09-21T12:00:00Z)"
        )
    };
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "0"));
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if numeric(whole) && numeric(fraction) {
        // Up to year 9999: keeps the milliseconds well inside i64.
        return match value.parse::<f64>() {
            Ok(secs) if secs <= 253_402_300_799.0 => Ok(Timestamp((secs * 1000.0).round() as i64)),
            _ => Err(bad()),
        };
    }
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| bad())
}

pub(super) fn non_empty(name: &str, value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err(format!(
            "{name}=\"\" is empty: give a name or leave {name} out"
        ))
    } else {
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const ALERTS: &[&str] = &["limit", "source", "severity", "status", "since"];

    #[test]
    fn request_heads_parse_with_crlf_or_bare_lf() {
        let head = parse_head(
            b"GET /v1/alerts?limit=5 HTTP/1.1\r\nHost: x\r\nAuthorization:  Bearer abc \r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/v1/alerts?limit=5");
        assert_eq!(head.header("authorization"), Some("Bearer abc"));
        assert!(!head.has_body());
        let head = parse_head(b"\r\nPOST / HTTP/1.0\nContent-Length: 3\n\n").unwrap();
        assert_eq!(head.method, "POST");
        assert!(head.has_body());
        for bad in [
            &b""[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn query_strings_decode_and_refuse_unknown_or_repeated_names() {
        let parsed = parse_query("source=a+b%2Fc&limit=5", ALERTS).unwrap();
        assert_eq!(parsed["source"], "a b/c");
        assert_eq!(parsed["limit"], "5");
        assert!(parse_query("", &[]).unwrap().is_empty());
        assert!(parse_query("&&", &[]).unwrap().is_empty());
        let unknown = parse_query("colour=red", ALERTS).unwrap_err();
        assert_eq!(
            (unknown.parameter.as_str(), unknown.value.as_str()),
            ("colour", "red")
        );
        assert!(
            unknown
                .message
                .contains("limit, source, severity, status, since")
        );
        let none = parse_query("x=1", &[]).unwrap_err();
        assert!(
            none.message.contains("takes no parameters"),
            "{}",
            none.message
        );
        let twice = parse_query("limit=1&limit=2", ALERTS).unwrap_err();
        assert!(twice.message.contains("twice"), "{}", twice.message);
        for bad in ["source=%G0", "source=%4", "source=%ff", "%zz=1"] {
            assert!(parse_query(bad, ALERTS).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_whole_numbers_clamped_to_1_through_1000() {
        for (text, limit) in [
            ("1", 1),
            ("50", 50),
            ("1000", 1000),
            ("1001", 1000),
            ("0", 1),
            ("-5", 1),
            ("007", 7),
            ("99999999999999999999999999", 1000),
        ] {
            assert_eq!(parse_limit(text), Ok(limit), "{text}");
        }
        for text in ["", "-", "1.5", "ten", " 5", "5 ", "+5", "1e3", "0x10"] {
            let error = parse_limit(text).unwrap_err();
            assert!(error.contains(&format!("limit={text:?}")), "{error}");
        }
    }

    #[test]
    fn since_takes_unix_seconds_or_rfc3339() {
        assert_eq!(parse_since("1790000000"), Ok(Timestamp(1_790_000_000_000)));
        assert_eq!(
            parse_since("1790000000.25"),
            Ok(Timestamp(1_790_000_000_250))
        );
        assert_eq!(
            parse_since("2026-11-26T18:00:00Z"),
            Ok(Timestamp(1_795_716_000_000))
        );
        assert_eq!(
            parse_since("2026-11-26T19:00:00+01:00"),
            Ok(Timestamp(1_795_716_000_000))
        );
        for text in [
            "",
            "yesterday",
            "NaN",
            "inf",
            "-1",
            "1e9",
            "1.",
            ".5",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "99999999999999999999",
        ] {
            let error = parse_since(text).unwrap_err();
            assert!(error.contains(&format!("since={text:?}")), "{error}");
        }
    }

    #[test]
    fn responses_carry_their_length_and_close() {
        let bytes = Response::error(404, "no such endpoint").to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: close"));
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap()["error"],
            "no such endpoint"
        );
    }
}
