//! The `http` probe: one request (plain, or a JSON-RPC call), judged by its
//! status, its body and the numbers extracted from it.

use super::{Check, CheckStatus, Context, Observation};
use crate::config::{HttpProbe, JsonPointer, Secret};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// TLS and timeout settings of one HTTP client.
pub struct ClientSettings<'a> {
    pub timeout: Duration,
    pub tls_verify: bool,
    pub ca_file: Option<&'a Path>,
}

/// Builds a client that reports 4xx/5xx as statuses, not errors, follows no
/// redirects (a 3xx is an answer), and gives up after `timeout` overall.
pub fn agent(settings: &ClientSettings) -> Result<ureq::Agent, String> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if !settings.tls_verify {
        tls = tls.disable_verification(true);
    } else if let Some(path) = settings.ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("reading ca_file {}: {e}", path.display()))?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(format!(
                "ca_file {} holds no PEM certificate",
                path.display()
            ));
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(settings.timeout))
        .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

/// One line describing why a request failed, for an operator. `timeout`
/// is the configured limit, named when the request ran out of time.
pub fn describe_error(error: &ureq::Error, timeout: Duration) -> String {
    let text = error.to_string();
    // rustls errors reach us wrapped in io errors; recognise them by text.
    if text.contains("certificate")
        || text.contains("UnknownIssuer")
        || text.contains("CaUsedAsEndEntity")
    {
        let detail = text
            .trim_start_matches("io: ")
            .trim_start_matches("rustls: ");
        return format!(
            "TLS certificate not trusted ({detail}); for a self-signed server set tls_verify: false, or ca_file: with its CA"
        );
    }
    match error {
        ureq::Error::Timeout(_) => format!("no answer within {}", crate::config::Duration(timeout)),
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the service listening?)".to_string()
        }
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            format!("no answer within {}", crate::config::Duration(timeout))
        }
        ureq::Error::Io(e) => format!("network error: {e}"),
        ureq::Error::HostNotFound => "host not found (DNS)".to_string(),
        ureq::Error::BadUri(uri) => format!("bad URL {uri}"),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => format!("TLS error: {text}"),
        other => other.to_string(),
    }
}

/// Performs the request and records `up`, `status`, `latency_ms` and each
/// extracted value.
pub fn observe(probe: &HttpProbe, context: &Context, out: &mut Observation) {
    let probe_timeout = probe.timeout.map(|t| t.std());
    let limits = Limits {
        budget: context.budget(probe_timeout),
        configured: context.limit(probe_timeout),
    };
    let check = match request(probe, &limits) {
        Ok(response) => judge(probe, &response, out),
        Err(summary) => {
            out.signals.set_probe("http", "up", 0.0);
            Check {
                probe: "http",
                status: CheckStatus::Failed,
                summary: format!("{}: {summary}", probe.url),
            }
        }
    };
    out.checks.push(check);
}

struct Response {
    status: u16,
    body: Vec<u8>,
    truncated: bool,
    latency_ms: f64,
}

/// The time a request may take now, and the configured limit to name.
struct Limits {
    budget: Duration,
    configured: Duration,
}

fn request(probe: &HttpProbe, limits: &Limits) -> Result<Response, String> {
    // The latency is the service's: measured from when our turn to
    // connect to its host came.
    let (_slot, timeout) = super::host_limit::within(probe.url.as_str(), limits.budget)?;
    let agent = agent(&ClientSettings {
        timeout,
        tls_verify: probe.tls_verify,
        ca_file: probe.ca_file.as_deref(),
    })?;
    let (default_method, body) = match (&probe.jsonrpc, &probe.body) {
        (Some(call), _) => {
            let payload = serde_json::json!({
                "jsonrpc": "2.0",
                "id": 1,
                "method": call.method.as_str(),
                "params": call.params.clone().unwrap_or(serde_json::Value::Array(vec![])),
            });
            ("POST", Some(payload.to_string().into_bytes()))
        }
        (None, Some(body)) => ("POST", Some(body.0.clone().into_bytes())),
        (None, None) => ("GET", None),
    };
    let method = probe
        .method
        .as_ref()
        .map(|m| m.0.to_ascii_uppercase())
        .unwrap_or(default_method.into());
    let mut builder = ureq::http::Request::builder()
        .method(method.as_str())
        .uri(probe.url.as_str());
    if probe.jsonrpc.is_some() && !has_header(&probe.headers, "content-type") {
        builder = builder.header("content-type", "application/json");
    }
    for (name, value) in &probe.headers {
        builder = builder.header(name.as_str(), value.expose());
    }
    let started = Instant::now();
    let result = match body {
        Some(bytes) => builder
            .body(bytes)
            .map_err(|e| format!("bad request: {e}"))
            .map(|r| agent.run(r)),
        None => builder
            .body(())
            .map_err(|e| format!("bad request: {e}"))
            .map(|r| agent.run(r)),
    }?;
    let mut response = result.map_err(|e| describe_error(&e, limits.configured))?;
    let status = response.status().as_u16();
    let cap = probe.max_body.0;
    let mut body = Vec::new();
    response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .reader()
        .take(cap + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the response body: {e}"))?;
    let truncated = body.len() as u64 > cap;
    body.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Response {
        status,
        body,
        truncated,
        latency_ms,
    })
}

fn has_header(headers: &BTreeMap<String, Secret>, name: &str) -> bool {
    headers.keys().any(|k| k.eq_ignore_ascii_case(name))
}

fn judge(probe: &HttpProbe, response: &Response, out: &mut Observation) -> Check {
    out.signals.set_probe("http", "up", 1.0);
    out.signals
        .set_probe("http", "status", f64::from(response.status));
    out.signals
        .set_probe("http", "latency_ms", response.latency_ms.round());
    let url = &probe.url;
    let fail = |summary: String| Check {
        probe: "http",
        status: CheckStatus::Critical,
        summary,
    };
    if !probe.expect_status.contains(response.status) {
        return fail(format!(
            "{url}: HTTP {} (expected {}){}",
            response.status,
            probe.expect_status,
            body_excerpt(&response.body)
        ));
    }
    let text = String::from_utf8_lossy(&response.body);
    if let Some(pattern) = &probe.body_regex
        && !pattern.0.is_match(&text)
    {
        let note = if response.truncated {
            format!(" in the first {} bytes", probe.max_body.0)
        } else {
            String::new()
        };
        return fail(format!(
            "{url}: body does not match /{}/{note}",
            pattern.0.as_str()
        ));
    }
    if probe.jsonrpc.is_some() || !probe.extracts().is_empty() {
        let json: serde_json::Value = match serde_json::from_slice(&response.body) {
            Ok(json) => json,
            Err(e) => {
                let why = if response.truncated {
                    format!("the body is larger than max_body {}", probe.max_body.0)
                } else {
                    e.to_string()
                };
                return fail(format!("{url}: response is not JSON ({why})"));
            }
        };
        if probe.jsonrpc.is_some()
            && let Some(error) = json.get("error").filter(|e| !e.is_null())
        {
            // The call failed: what it should have returned is not there.
            return Check {
                probe: "http",
                status: CheckStatus::Failed,
                summary: format!("{url}: JSON-RPC error {error}"),
            };
        }
        let mut missing = Vec::new();
        for (name, pointer) in probe.extracts() {
            match extract(&json, pointer) {
                Some(value) => out.signals.set_probe("http", name, value),
                None => missing.push(format!("{name} ({})", pointer.0)),
            }
        }
        if !missing.is_empty() {
            return fail(format!("{url}: no number at {}", missing.join(", ")));
        }
    }
    Check {
        probe: "http",
        status: CheckStatus::Ok,
        summary: format!(
            "{url}: HTTP {} in {:.0} ms",
            response.status, response.latency_ms
        ),
    }
}

/// The number at `pointer`: JSON numbers, booleans (1/0), and strings
/// holding a decimal or a `0x` hex number (as `chain_getHeader` returns).
pub fn extract(json: &serde_json::Value, pointer: &JsonPointer) -> Option<f64> {
    match json.pointer(&pointer.0)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        serde_json::Value::String(s) => parse_number(s),
        _ => None,
    }
}

fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u128::from_str_radix(hex, 16).ok().map(|n| n as f64),
        None => text.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// The start of a response body on one line, `": …"`, for error messages.
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_numbers_hex_strings_and_booleans() {
        let json = serde_json::json!({
            "result": {"number": "0x1a2b", "peers": 12, "syncing": false, "height": "1234", "name": "x"}
        });
        let at = |p: &str| extract(&json, &JsonPointer(p.into()));
        assert_eq!(at("/result/number"), Some(6699.0));
        assert_eq!(at("/result/peers"), Some(12.0));
        assert_eq!(at("/result/syncing"), Some(0.0));
        assert_eq!(at("/result/height"), Some(1234.0));
        assert_eq!(at("/result/name"), None);
        assert_eq!(at("/result/missing"), None);
    }
}
