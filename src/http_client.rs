//! The one HTTP client that probes, notifiers and the heartbeat share:
//! TLS settings (`tls_verify`, `ca_file`), an overall timeout, no
//! redirects, and one-line descriptions of what went wrong.

use std::path::Path;
use std::time::Duration;

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

/// A response body's reader whose errors say, for an operator, why the
/// body could not be read to its end: ureq hands a timeout on as an
/// `Other` error holding `ureq::Error::Timeout` ("timeout: global").
pub fn described_body<R: std::io::Read>(body: R, timeout: Duration) -> impl std::io::Read {
    DescribedBody { body, timeout }
}

struct DescribedBody<R> {
    body: R,
    timeout: Duration,
}

impl<R: std::io::Read> std::io::Read for DescribedBody<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.body.read(buffer).map_err(|e| {
            let why = match e.get_ref().and_then(|inner| inner.downcast_ref::<ureq::Error>()) {
                Some(ureq::Error::Timeout(_)) => format!(
                    "the body was not all read within {} (the timeout): a partial response is not judged; raise `timeout:` if the target is that slow",
                    crate::config::Duration(self.timeout)
                ),
                Some(inner) => format!(
                    "reading the response body: {}",
                    describe_error(inner, self.timeout)
                ),
                None => format!("reading the response body: {e}"),
            };
            std::io::Error::new(e.kind(), why)
        })
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
