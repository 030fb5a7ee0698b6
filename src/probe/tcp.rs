//! The `tcp` probe: a connection to host:port within the timeout,
//! optionally bytes sent and an answer expected (a regex on what the
//! server writes first, read up to `max_read`), optionally over TLS. The
//! `tls` probe is the same connection with TLS on, judged by its
//! certificate: expiry, chain, hostname (see `crate::tls`).

use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Observation};
use crate::config::{self, ByteSize, Pattern, Text, at_key, yes};
use crate::tls::{Certificate, Pin, Trust};
use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `tcp`: connect, maybe send, maybe expect, maybe over TLS.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    pub host: Text,
    /// Required for `tcp`; 443 for `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub timeout: Option<config::Duration>,
    /// Written once connected (YAML escapes: `"PING\r\n"`).
    #[serde(default)]
    pub send: Option<Text>,
    /// A regex the first bytes the server writes must match.
    #[serde(default)]
    pub expect: Option<Pattern>,
    /// How much of the answer `expect` reads at most.
    #[serde(default = "default_max_read")]
    pub max_read: ByteSize,
    /// TLS on the connection (always on for the `tls` probe).
    #[serde(default)]
    pub tls: bool,
    /// The name the certificate must be for (and the SNI sent); `host`
    /// when not given.
    #[serde(default)]
    pub server_name: Option<Text>,
    /// Off: the chain and hostname are still reported, not judged.
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// PEM certificates trusted instead of Mozilla's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub pin_sha256: Option<Pin>,
    /// Default [`DEFAULT_WARN_DAYS`].
    #[serde(default)]
    pub cert_warn_days: Option<f64>,
    /// Default [`DEFAULT_CRITICAL_DAYS`].
    #[serde(default)]
    pub cert_critical_days: Option<f64>,
}

fn default_max_read() -> ByteSize {
    ByteSize(4096)
}

/// A certificate that expires within this many days is a warning.
pub const DEFAULT_WARN_DAYS: f64 = 14.0;
/// … and within this many, critical.
pub const DEFAULT_CRITICAL_DAYS: f64 = 3.0;

/// `tls`: a TLS connection judged by its certificate; the keys of `tcp`,
/// TLS always on, port 443 unless given.
#[derive(Debug, Clone)]
pub struct TlsConfig(pub TcpConfig);

impl<'de> Deserialize<'de> for TlsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TlsConfig, D::Error> {
        let mut config = TcpConfig::deserialize(d)?;
        config.tls = true;
        config.port.get_or_insert(443);
        Ok(TlsConfig(config))
    }
}

/// What a TLS connection's certificate gives, on every probe that speaks
/// TLS (`http` with https too).
pub const CERT_SIGNALS: [&str; 4] = [
    "cert_days_left",
    "cert_chain_days_left",
    "cert_chain_ok",
    "cert_hostname_ok",
];

impl TcpConfig {
    /// `up`, `connect_ms` and, with TLS, the handshake's and certificate's.
    fn signal_names(&self) -> Vec<String> {
        let mut names = vec!["up".to_string(), "connect_ms".to_string()];
        if self.expect.is_some() {
            names.push("response_ms".to_string());
        }
        if self.tls {
            names.push("handshake_ms".to_string());
            names.extend(CERT_SIGNALS.map(String::from));
        }
        names
    }

    fn check(&self, probe: &str) -> Result<(), String> {
        if self.port.is_none() {
            return Err(format!(
                "a `{probe}` probe needs `port` (the TCP port to connect to)"
            ));
        }
        let host = self.host.as_str().trim();
        let at_host = |why: String| at_key("host", &why);
        if host.is_empty() {
            return Err(at_host("`host` is empty".into()));
        }
        if host != self.host.as_str() {
            return Err(at_host(format!(
                "host {:?} has blanks around it: write {host:?}",
                self.host.as_str()
            )));
        }
        // Digits and dots only: meant as an IPv4 address, never a name to
        // look up (`127.0.0.256` would go to the resolver).
        if host.chars().all(|c| c.is_ascii_digit() || c == '.')
            && host.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(at_host(format!("host {host:?} is not an IPv4 address")));
        }
        if host.contains("://") || host.contains('/') {
            return Err(at_host(format!(
                "host {host:?} is a URL: give the host name or address alone, and `port`"
            )));
        }
        if host.matches(':').count() == 1 {
            return Err(at_host(format!(
                "host {host:?} holds a port: write it as `port:` (host: {}, port: {})",
                host.split(':').next().unwrap_or(""),
                host.split(':').nth(1).unwrap_or("")
            )));
        }
        if self.port == Some(0) {
            return Err(at_key("port", "port 0 cannot be connected to"));
        }
        if self.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(at_key("timeout", "`timeout: 0s` leaves no time to connect"));
        }
        if self.max_read.0 == 0 {
            return Err(at_key("max_read", "`max_read: 0` reads no answer"));
        }
        let keys = self.tls_keys();
        if !self.tls
            && let Some(key) = keys.first_given()
        {
            return Err(at_key(
                key,
                &format!(
                    "`{key}` judges a TLS certificate: add `tls: true` to this `{probe}` probe"
                ),
            ));
        }
        if let Some(name) = &self.server_name {
            crate::tls::server_name(name.as_str().trim())
                .map_err(|why| at_key("server_name", &why))?;
        } else if self.tls {
            crate::tls::server_name(host)
                .map_err(|why| at_host(format!("{why}: give `server_name`")))?;
        }
        keys.check()
    }

    fn tls_keys(&self) -> TlsKeys {
        TlsKeys {
            server_name: self.server_name.is_some(),
            ca_file: self.ca_file.is_some(),
            pin: self.pin_sha256.is_some(),
            tls_verify: self.tls_verify,
            warn: self.cert_warn_days,
            critical: self.cert_critical_days,
        }
    }

    fn days(&self) -> Days {
        Days::of(self.cert_warn_days, self.cert_critical_days)
    }
}

/// Which of the keys judging a certificate a probe was given.
pub struct TlsKeys {
    pub server_name: bool,
    pub ca_file: bool,
    pub pin: bool,
    pub tls_verify: bool,
    pub warn: Option<f64>,
    pub critical: Option<f64>,
}

impl TlsKeys {
    /// The first one written, for a connection without TLS to refuse.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            ("server_name", self.server_name),
            ("ca_file", self.ca_file),
            ("pin_sha256", self.pin),
            ("tls_verify", !self.tls_verify),
            ("cert_warn_days", self.warn.is_some()),
            ("cert_critical_days", self.critical.is_some()),
        ]
        .into_iter()
        .find_map(|(key, given)| given.then_some(key))
    }

    /// Together they make sense: a pin with verification on, days in order.
    pub fn check(&self) -> Result<(), String> {
        if self.pin && !self.tls_verify {
            return Err(at_key(
                "pin_sha256",
                "pin_sha256 is a check of the certificate, and tls_verify: false turns checks off: drop one",
            ));
        }
        if self.ca_file && !self.tls_verify {
            return Err(at_key(
                "ca_file",
                "ca_file says which certificate to trust, and tls_verify: false trusts any without checking: drop one",
            ));
        }
        Days::check(self.warn, self.critical)
    }
}

/// `cert_warn_days` and `cert_critical_days` of a probe.
#[derive(Clone, Copy, Debug)]
pub struct Days {
    pub warn: f64,
    pub critical: f64,
}

impl Days {
    /// The days as written, the defaults for those not.
    pub fn of(warn: Option<f64>, critical: Option<f64>) -> Days {
        Days {
            warn: warn.unwrap_or(DEFAULT_WARN_DAYS),
            critical: critical.unwrap_or(DEFAULT_CRITICAL_DAYS),
        }
    }

    /// As check-config sees `warn` and `critical` as written: both 0 or
    /// more, warning no later than critical, the one written blamed.
    pub fn check(warn: Option<f64>, critical: Option<f64>) -> Result<(), String> {
        let Days {
            warn: w,
            critical: c,
        } = Days::of(warn, critical);
        if c < 0.0 || !c.is_finite() {
            return Err(at_key(
                "cert_critical_days",
                &format!("cert_critical_days ({c}) must be 0 or more"),
            ));
        }
        if !w.is_finite() || w < 0.0 {
            return Err(at_key(
                "cert_warn_days",
                &format!("cert_warn_days ({w}) must be 0 or more"),
            ));
        }
        if w < c {
            return Err(match warn {
                Some(_) => at_key(
                    "cert_warn_days",
                    &format!("cert_warn_days ({w}) must be at least cert_critical_days ({c})"),
                ),
                None => at_key(
                    "cert_critical_days",
                    &format!(
                        "cert_critical_days ({c}) is above the days a warning starts at (cert_warn_days, {w} by default): give cert_warn_days too, at least {c}"
                    ),
                ),
            });
        }
        Ok(())
    }
}

/// A `ca_file` as check-config reads it.
pub fn check_ca_file(ca_file: Option<&PathBuf>) -> Result<(), String> {
    match ca_file {
        Some(path) => crate::tls::read_ca_file(path)
            .map(|_| ())
            .map_err(|why| at_key("ca_file", &why)),
        None => Ok(()),
    }
}

impl ProbeConfig for TcpConfig {
    fn signal_names(&self) -> Option<Vec<String>> {
        Some(self.signal_names())
    }

    fn withheld(&self, name: &str) -> Option<&'static str> {
        (!self.tls && (name == "handshake_ms" || CERT_SIGNALS.contains(&name)))
            .then_some("only with `tls: true`")
    }

    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, "tcp", context, out);
    }

    fn check(&self) -> Result<(), String> {
        self.check("tcp")
    }

    fn check_files(&self) -> Result<(), String> {
        check_ca_file(self.ca_file.as_ref())
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        self.ca_file.iter_mut().collect()
    }
}

impl ProbeConfig for TlsConfig {
    fn signal_names(&self) -> Option<Vec<String>> {
        Some(self.0.signal_names())
    }

    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(&self.0, "tls", context, out);
    }

    fn check(&self) -> Result<(), String> {
        self.0.check("tls")
    }

    fn check_files(&self) -> Result<(), String> {
        check_ca_file(self.0.ca_file.as_ref())
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        self.0.ca_file.iter_mut().collect()
    }
}

/// Connects (and the rest), recording `up`, `connect_ms` and, with TLS,
/// `handshake_ms`, `cert_days_left`, `cert_chain_ok`, `cert_hostname_ok`.
pub fn observe(probe: &TcpConfig, name: &'static str, context: &Context, out: &mut Observation) {
    let port = probe.port.unwrap_or(443);
    let host = bare_host(probe.host.as_str());
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let (status, summary) = match talk(probe, name, &target, context, out) {
        Ok(said) => said,
        Err(why) => {
            out.signals.set_probe(name, "up", 0.0);
            if why.contains("ca_file") {
                // Our trust settings: no restart of the target fixes them.
                out.outside.insert(name);
            }
            (CheckStatus::Failed, why)
        }
    };
    out.checks.push(Check {
        probe: name,
        status,
        summary: format!("{target}: {summary}"),
    });
}

fn talk(
    probe: &TcpConfig,
    name: &'static str,
    target: &str,
    context: &Context,
    out: &mut Observation,
) -> Result<(CheckStatus, String), String> {
    let probe_timeout = probe.timeout.map(|t| t.std());
    let limit = context.limit(probe_timeout);
    let (_slot, budget) =
        super::host_limit::within(&format!("tcp://{target}/"), context.budget(probe_timeout))?;
    let deadline = Instant::now() + budget;
    let addresses: Vec<SocketAddr> = (bare_host(probe.host.as_str()), probe.port.unwrap_or(443))
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", probe.host))?
        .collect();
    let started = Instant::now();
    let stream = connect(&addresses, deadline, limit)?;
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    out.signals.set_probe(name, "up", 1.0);
    out.signals
        .set_probe(name, "connect_ms", connect_ms.round());
    let mut said = vec![format!("connected in {connect_ms:.0} ms")];
    let mut status = CheckStatus::Ok;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream
        .set_read_timeout(Some(left()))
        .and_then(|()| stream.set_write_timeout(Some(left())))
        .map_err(|e| format!("setting the socket's timeouts: {e}"))?;
    let mut conversation: Box<dyn ReadWrite> = if probe.tls {
        let server_name = probe
            .server_name
            .as_ref()
            .map_or(bare_host(probe.host.as_str()), Text::as_str);
        let trust = Trust {
            server_name,
            ca_file: probe.ca_file.as_deref(),
            pin: probe.pin_sha256.as_ref(),
            now: Some(context.now),
        };
        let shaking = Instant::now();
        let (session, certificate) =
            crate::tls::handshake(stream, &trust, deadline).map_err(|why| {
                out.signals.set_probe(name, "up", 0.0);
                format!("connected in {connect_ms:.0} ms, then {why}")
            })?;
        out.signals.set_probe(
            name,
            "handshake_ms",
            (shaking.elapsed().as_secs_f64() * 1000.0).round(),
        );
        let (verdict, text) = judge_certificate(
            &certificate,
            probe.days(),
            if probe.tls_verify {
                Verify::Judge
            } else {
                Verify::Unjudged
            },
            name,
            context,
            out,
        );
        status = verdict;
        said.push(text);
        if verdict != CheckStatus::Ok {
            // The target answers; its certificate is wrong: told, but a
            // restart renews no certificate.
            out.outside.insert(name);
        }
        let refused = certificate.trusted().is_err() || certificate.hostname.is_err();
        if probe.tls_verify && refused && (probe.send.is_some() || probe.expect.is_some()) {
            // Nothing is written to a server that could be an impostor.
            said.push("nothing sent".to_string());
            return Ok((status, said.join("; ")));
        }
        Box::new(session)
    } else {
        Box::new(stream)
    };
    let asked = Instant::now();
    if let Some(send) = &probe.send {
        conversation
            .write_all(send.as_str().as_bytes())
            .and_then(|()| conversation.flush())
            .map_err(|e| format!("{}, but sending failed: {e}", said.join("; ")))?;
    }
    if let Some(expect) = &probe.expect {
        let answer = read_answer(
            &mut *conversation,
            expect,
            probe.max_read.0 as usize,
            limit,
            deadline,
        );
        match answer {
            Ok(answer) => {
                // From the first byte sent (or the connection) to the
                // answer matched: what `check_tcp -w/-c` times.
                let response_ms = asked.elapsed().as_secs_f64() * 1000.0;
                out.signals
                    .set_probe(name, "response_ms", response_ms.round());
                said.push(format!(
                    "answered {} in {response_ms:.0} ms",
                    excerpt(&answer)
                ));
            }
            Err(why) => {
                out.signals.set_probe(name, "up", 0.0);
                // The target itself does not answer right.
                out.outside.remove(name);
                return Ok((
                    CheckStatus::Failed,
                    format!("{}, but {why}", said.join("; ")),
                ));
            }
        }
    }
    Ok((status, said.join("; ")))
}

/// An IPv6 address as URLs write it (`[::1]`), without its brackets.
pub(crate) fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The first address that accepts, within the deadline; the error names
/// the last refusal.
fn connect(
    addresses: &[SocketAddr],
    deadline: Instant,
    limit: Duration,
) -> Result<TcpStream, String> {
    let mut last = None;
    for address in addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(address, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some((address, e)),
        }
    }
    Err(match last {
        Some((address, e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused at {address} (nothing listens on that port?)")
        }
        Some((address, e)) if e.kind() == std::io::ErrorKind::TimedOut => format!(
            "no connection to {address} within {} (a firewall dropping packets, or the host is down)",
            config::Duration(limit)
        ),
        Some((address, e)) => format!("connecting to {address}: {e}"),
        None if addresses.is_empty() => "the name resolves to no address".to_string(),
        None => format!("no connection within {}", config::Duration(limit)),
    })
}

/// Reads until `expect` matches what was read, the server closes, or
/// `max_read` bytes; the error says what was read instead.
fn read_answer(
    stream: &mut dyn ReadWrite,
    expect: &Pattern,
    max_read: usize,
    limit: Duration,
    deadline: Instant,
) -> Result<String, String> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let timed_out = |answer: &[u8]| {
        format!(
            "no answer matching /{}/ within {} (read {} bytes: {})",
            expect.0.as_str(),
            config::Duration(limit),
            answer.len(),
            excerpt(&String::from_utf8_lossy(answer))
        )
    };
    loop {
        // A server that drips bytes ends at the deadline, not at a
        // timeout per read.
        if Instant::now() >= deadline {
            return Err(timed_out(&answer));
        }
        let text = String::from_utf8_lossy(&answer);
        if expect.0.is_match(&text) {
            return Ok(text.into_owned());
        }
        if answer.len() >= max_read {
            return Err(format!(
                "its first {max_read} bytes do not match /{}/: {}",
                expect.0.as_str(),
                excerpt(&text)
            ));
        }
        let room = (max_read - answer.len()).min(buffer.len());
        match stream.read(&mut buffer[..room]) {
            Ok(0) => {
                return Err(format!(
                    "it closed the connection; its answer does not match /{}/: {}",
                    expect.0.as_str(),
                    excerpt(&text)
                ));
            }
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "no answer matching /{}/ within {} (read {} bytes: {})",
                    expect.0.as_str(),
                    config::Duration(limit),
                    answer.len(),
                    excerpt(&text)
                ));
            }
            Err(e) => return Err(format!("reading its answer: {e}")),
        }
    }
}

/// What a person reads of an answer: one line, control bytes shown.
pub(crate) fn excerpt(text: &str) -> String {
    let shown: String = text.chars().take(80).flat_map(char::escape_debug).collect();
    if text.chars().count() > 80 {
        format!("\"{shown}…\"")
    } else {
        format!("\"{shown}\"")
    }
}

/// What a certificate's chain and name verdicts are to a probe.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verify {
    /// Judged here: a chain or name refused is critical.
    Judge,
    /// `tls_verify: false`: said, not judged.
    Unjudged,
    /// Judged and told already, by the request they refused (`http`).
    Told,
}

/// Records a certificate's signals and judges it: expiry against the
/// probe's days, and (as `verify` says) its chain or pin and hostname.
pub fn judge_certificate(
    certificate: &Certificate,
    days_at: Days,
    verify: Verify,
    name: &'static str,
    context: &Context,
    out: &mut Observation,
) -> (CheckStatus, String) {
    let days = certificate.days_left(context.now);
    let trusted = certificate.trusted();
    // The signal as the text shows it: a tenth of a day.
    out.signals
        .set_probe(name, "cert_days_left", (days * 10.0).round() / 10.0);
    // Near a threshold a tenth could read as the threshold itself
    // ("14.0 days, warning under 14"): two decimals there.
    let shown = |days: f64, threshold: f64| {
        if ((days * 10.0).round() / 10.0 - threshold).abs() < 0.05 {
            format!("{days:.2}")
        } else {
            format!("{days:.1}")
        }
    };
    out.signals
        .set_probe(name, "cert_chain_ok", f64::from(u8::from(trusted.is_ok())));
    out.signals.set_probe(
        name,
        "cert_hostname_ok",
        f64::from(u8::from(certificate.hostname.is_ok())),
    );
    let subject = |subject: &str| {
        if subject.is_empty() {
            "(no subject)".to_string()
        } else {
            subject.to_string()
        }
    };
    // How near a notAfter is: its status and words.
    let expiry = |days: f64, not_after: crate::clock::Timestamp| {
        if days < 0.0 {
            (
                CheckStatus::Critical,
                format!("expired {not_after} ({} days ago)", shown(-days, 0.0)),
            )
        } else if days < days_at.critical {
            (
                CheckStatus::Critical,
                format!(
                    "expires {not_after}, in {} days (critical under {} days)",
                    shown(days, days_at.critical),
                    days_at.critical
                ),
            )
        } else if days < days_at.warn {
            (
                CheckStatus::Warning,
                format!(
                    "expires {not_after}, in {} days (warning under {} days)",
                    shown(days, days_at.warn),
                    days_at.warn
                ),
            )
        } else {
            (
                CheckStatus::Ok,
                format!("expires {not_after}, in {days:.0} days"),
            )
        }
    };
    let mut problems = Vec::new();
    let (mut status, leaf) = expiry(days, certificate.not_after);
    let mut text = format!("certificate {} {leaf}", subject(&certificate.subject));
    // An intermediate that expires first ends the leaf's trust with it.
    let mut chain_days = days;
    if let Some((issuer, not_after)) = &certificate.sooner {
        chain_days = not_after.since(context.now) as f64 / 86_400_000.0;
        let (own, words) = expiry(chain_days, *not_after);
        if own != CheckStatus::Ok {
            if status == CheckStatus::Ok || own == CheckStatus::Critical {
                status = own;
            }
            text.push_str(&format!(
                "; its chain's {} {words}, before the certificate itself",
                subject(issuer)
            ));
        }
    }
    out.signals.set_probe(
        name,
        "cert_chain_days_left",
        (chain_days * 10.0).round() / 10.0,
    );
    // An expiry, the leaf's or its chain's, is said once, by the expiry's
    // own words.
    let expiry_said = |why: &String| chain_days.min(days) < 0.0 && certificate.expired(why);
    if verify == Verify::Judge {
        if let Err(why) = &trusted {
            status = CheckStatus::Critical;
            if !expiry_said(why) {
                problems.push(why.clone());
            }
        }
        if let Err(why) = &certificate.hostname {
            status = CheckStatus::Critical;
            problems.push(why.clone());
        }
    }
    if !problems.is_empty() {
        // With a pin, turning checks off is refused: the pin is the fix.
        let hint = if certificate.pinned.is_some() {
            ""
        } else {
            " (tls_verify: false to only watch the expiry)"
        };
        text.push_str(&format!("; {}{hint}", problems.join("; ")));
    } else if verify == Verify::Unjudged {
        // Reported, not judged: still said.
        let unjudged: Vec<String> = [trusted.clone(), certificate.hostname.clone()]
            .into_iter()
            .filter_map(Result::err)
            .filter(|why| !expiry_said(why))
            .collect();
        if !unjudged.is_empty() {
            text.push_str(&format!(
                "; not judged (tls_verify: false): {}",
                unjudged.join("; ")
            ));
        }
    }
    (status, text)
}
