//! The one HTTP client that probes, notifiers and the heartbeat share:
//! TLS settings (`tls_verify`, `ca_file`), an overall timeout, no
//! redirects, and one-line descriptions of what went wrong.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use ureq::unversioned::transport::{self, Buffers, Connector, Transport};

/// TLS and timeout settings of one HTTP client.
pub struct ClientSettings<'a> {
    pub timeout: Duration,
    pub tls_verify: bool,
    pub ca_file: Option<&'a Path>,
    /// `pin_sha256`: trusted by the certificate's (or key's) digest.
    pub pin: Option<&'a crate::tls::Pin>,
}

/// Builds a client that reports 4xx/5xx as statuses, not errors, follows no
/// redirects (a 3xx is an answer), and gives up after `timeout` overall.
pub fn agent(settings: &ClientSettings) -> Result<ureq::Agent, String> {
    Ok(watched_agent(settings)?.0)
}

/// [`agent`], and what it sees of the certificate of an https server
/// ([`crate::tls::Client::certificate`] once a request was made). Its TLS
/// is `crate::tls`'s: Mozilla's roots or `ca_file` (a self-signed
/// server's own certificate trusted as itself, as curl does), and with
/// `tls_verify: false` a certificate is read but not judged.
pub fn watched_agent(
    settings: &ClientSettings,
) -> Result<(ureq::Agent, Arc<crate::tls::Client>), String> {
    let trust = crate::tls::Trust {
        // Each request's host is checked; this name is not used.
        server_name: "",
        ca_file: settings.ca_file,
        pin: settings.pin,
        now: None,
    };
    let client = Arc::new(crate::tls::Client::new(&trust, settings.tls_verify)?);
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(settings.timeout))
        .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")))
        .build();
    // ureq's own chain (a CONNECT proxy from the environment, then TCP),
    // with this TLS on top.
    let connector =
        ().chain(transport::ConnectProxyConnector::default())
            .chain(transport::TcpConnector::default())
            .chain(TlsConnector {
                client: client.clone(),
            });
    let agent = ureq::Agent::with_parts(
        config,
        connector,
        ureq::unversioned::resolver::DefaultResolver::default(),
    );
    Ok((agent, client))
}

/// TLS for ureq through [`crate::tls::Client`] (ureq's own connector
/// takes no verifier of ours).
#[derive(Debug)]
struct TlsConnector {
    client: Arc<crate::tls::Client>,
}

impl<In: Transport> transport::Connector<In> for TlsConnector {
    type Out = transport::Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &transport::ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(inner) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || inner.is_tls() {
            return Ok(Some(transport::Either::A(inner)));
        }
        let host = details.uri.host().unwrap_or_default();
        let name = crate::tls::server_name(host).map_err(|_| {
            ureq::Error::Tls("the URL's host is not a name a certificate can be for")
        })?;
        let mut connection = rustls::ClientConnection::new(self.client.config.clone(), name)?;
        let mut socket =
            transport::TransportAdapter::new(inner.boxed(), details.current_time.clone());
        socket.set_timeout(details.timeout);
        connection.complete_io(&mut socket)?;
        let buffers = transport::LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(transport::Either::B(TlsTransport {
            buffers,
            stream: rustls::StreamOwned::new(connection, socket),
        })))
    }
}

/// An HTTP connection over TLS, as ureq's own rustls transport is.
struct TlsTransport {
    buffers: transport::LazyBuffers,
    stream: rustls::StreamOwned<rustls::ClientConnection, transport::TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn transport::Buffers {
        &mut self.buffers
    }

    fn transmit_output(
        &mut self,
        amount: usize,
        timeout: transport::NextTimeout,
    ) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: transport::NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// One line describing why a request failed, for an operator. `timeout`
/// is the configured limit, named when the request ran out of time.
pub fn describe_error(error: &ureq::Error, timeout: Duration) -> String {
    let text = error.to_string();
    // What `crate::tls` refused, in its own words.
    if let Some((_, why)) = text.split_once("certificate refused: ") {
        // With a pin, turning checks off is refused: the pin is the fix.
        let hint = if why.contains("matches pin_sha256") {
            ""
        } else {
            "; tls_verify: false stops checking it (the expiry is still watched)"
        };
        return format!("TLS certificate not trusted: {why}{hint}");
    }
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
