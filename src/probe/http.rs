//! The `http` probe: one request (plain, or a JSON-RPC call), judged by its
//! status, its body and the numbers extracted from it.

use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Observation};
use crate::config::{
    self, ByteSize, JsonPointer, Ordered, Pattern, Secret, StatusRanges, Text, values, yes,
};
use crate::http_client::{ClientSettings, body_excerpt, describe_error, watched_agent};
use crate::tls::{Certificate, Pin};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `http`: one request, judged by status, body and extracted values.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(deserialize_with = "values::http_url")]
    pub url: Text,
    #[serde(default)]
    pub method: Option<Text>,
    #[serde(default, deserialize_with = "values::http_headers")]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default)]
    pub body: Option<Text>,
    #[serde(default)]
    pub jsonrpc: Option<JsonRpc>,
    #[serde(default)]
    pub timeout: Option<config::Duration>,
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// PEM file of extra CA certificates (an internal CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub expect_status: StatusRanges,
    #[serde(default)]
    pub body_regex: Option<Pattern>,
    #[serde(default)]
    pub extract: Ordered<JsonPointer>,
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// An https server trusted by its certificate's (or key's) SHA-256.
    #[serde(default)]
    pub pin_sha256: Option<Pin>,
    #[serde(default)]
    pub cert_warn_days: Option<f64>,
    #[serde(default)]
    pub cert_critical_days: Option<f64>,
}

fn default_max_body() -> ByteSize {
    ByteSize(1024 * 1024)
}

impl HttpConfig {
    pub fn extracts(&self) -> &[(String, JsonPointer)] {
        &self.extract.0
    }
}

/// A JSON-RPC 2.0 call sent as the request body.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct JsonRpc {
    pub method: Text,
    #[serde(default)]
    pub params: Option<serde_json::Value>,
}

impl HttpConfig {
    fn https(&self) -> bool {
        self.url
            .as_str()
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }
}

impl ProbeConfig for HttpConfig {
    fn signal_names(&self) -> Option<Vec<String>> {
        let mut names: Vec<String> = ["up", "status", "latency_ms"].map(String::from).to_vec();
        if self.https() {
            names.extend(super::tcp::CERT_SIGNALS.map(String::from));
        }
        names.extend(self.extracts().iter().map(|(name, _)| name.clone()));
        Some(names)
    }

    fn withheld(&self, name: &str) -> Option<&'static str> {
        (!self.https() && super::tcp::CERT_SIGNALS.contains(&name))
            .then_some("only for an https url")
    }

    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }

    fn check(&self) -> Result<(), String> {
        // An extract named as one of the probe's own signals would replace
        // it (`up` read from the body, not from the answer).
        let own = |name: &str| {
            ["up", "status", "latency_ms"].contains(&name)
                || super::tcp::CERT_SIGNALS.contains(&name)
        };
        if let Some((name, _)) = self.extracts().iter().find(|(name, _)| own(name)) {
            return Err(config::at_key(
                &format!("extract.{name}"),
                &format!(
                    "`extract: {{ {name}: … }}` would replace the http probe's own `{name}` signal: give the extract another name (e.g. {name}_field)"
                ),
            ));
        }
        let https = self.https();
        let keys = super::tcp::TlsKeys {
            server_name: false,
            ca_file: self.ca_file.is_some(),
            pin: self.pin_sha256.is_some(),
            tls_verify: self.tls_verify,
            warn: self.cert_warn_days,
            critical: self.cert_critical_days,
        };
        if !https && let Some(key) = keys.first_given() {
            return Err(config::at_key(
                key,
                &format!("`{key}` judges an https server's certificate: the url is not https"),
            ));
        }
        keys.check()
    }

    fn check_files(&self) -> Result<(), String> {
        super::tcp::check_ca_file(self.ca_file.as_ref())
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        self.ca_file.iter_mut().collect()
    }

    fn secrets(&self) -> Vec<&str> {
        values::request_secrets(self.url.as_str(), &self.headers)
    }
}

/// Performs the request and records `up`, `status`, `latency_ms` and each
/// extracted value.
pub fn observe(probe: &HttpConfig, context: &Context, out: &mut Observation) {
    let probe_timeout = probe.timeout.map(|t| t.std());
    let limits = Limits {
        budget: context.budget(probe_timeout),
        configured: context.limit(probe_timeout),
    };
    let mut certificate = None;
    let mut check = match request(probe, &limits, &mut certificate) {
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
    if let Some(certificate) = certificate {
        let days = super::tcp::Days::of(probe.cert_warn_days, probe.cert_critical_days);
        // The request verified the chain and name (a refusal is its error).
        let verify = if probe.tls_verify {
            super::tcp::Verify::Told
        } else {
            super::tcp::Verify::Unjudged
        };
        let (status, said) =
            super::tcp::judge_certificate(&certificate, days, verify, "http", context, out);
        // An answer is judged by its certificate too; a failed request
        // keeps its own reason first.
        let answered_fine = check.status == CheckStatus::Ok;
        if answered_fine || status == CheckStatus::Critical && check.status == CheckStatus::Warning
        {
            check.status = status;
        }
        if answered_fine && status != CheckStatus::Ok {
            // The service answers; only its certificate is wrong: told,
            // but a restart renews no certificate.
            out.outside.insert("http");
        }
        check.summary.push_str(&format!("; {said}"));
    }
    if check.status == CheckStatus::Failed
        && (check.summary.contains(": reading ca_file")
            || check.summary.contains("TLS certificate not trusted"))
    {
        // Our trust settings or the certificate refused it: no restart
        // of the service fixes that.
        out.outside.insert("http");
    }
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

/// Makes the request; `certificate` gets what an https server showed,
/// even when the request then failed.
fn request(
    probe: &HttpConfig,
    limits: &Limits,
    certificate: &mut Option<Certificate>,
) -> Result<Response, String> {
    // The latency is the service's: measured from when our turn to
    // connect to its host came.
    let (_slot, timeout) = super::host_limit::within(probe.url.as_str(), limits.budget)?;
    let (agent, tls) = watched_agent(&ClientSettings {
        timeout,
        tls_verify: probe.tls_verify,
        ca_file: probe.ca_file.as_deref(),
        pin: probe.pin_sha256.as_ref(),
    })?;
    let response = send(probe, limits, &agent);
    *certificate = tls.certificate().and_then(Result::ok);
    response
}

fn send(probe: &HttpConfig, limits: &Limits, agent: &ureq::Agent) -> Result<Response, String> {
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
    let reader = response.body_mut().with_config().limit(u64::MAX).reader();
    crate::http_client::described_body(reader, limits.configured)
        .take(cap + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
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

fn judge(probe: &HttpConfig, response: &Response, out: &mut Observation) -> Check {
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
            // A string is kept as text too (`status: "healthy"`, a time
            // for `age_s(…)`); a number-like one is also a number.
            if let Some(serde_json::Value::String(text)) = json.pointer(&pointer.0) {
                out.signals.set_probe_text("http", name, text);
            }
            match extract(&json, pointer) {
                Some(value) => out.signals.set_probe("http", name, value),
                None if matches!(json.pointer(&pointer.0), Some(serde_json::Value::String(_))) => {}
                None => missing.push(format!("{name} ({})", pointer.0)),
            }
        }
        if !missing.is_empty() {
            return fail(format!(
                "{url}: no number or text at {}",
                missing.join(", ")
            ));
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
