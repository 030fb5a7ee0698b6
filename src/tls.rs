//! TLS spoken by the probes themselves (`tcp` with `tls: true`, `tls`).
//! The handshake completes whatever the certificate's verdict, so that its
//! expiry is read even when it is self-signed or already expired; the
//! chain, the hostname and a pin are then judged apart, each with its own
//! signal and message. The peer must still prove it holds the
//! certificate's key (the handshake signature is verified).

use crate::clock::Timestamp;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use sha2::{Digest, Sha256};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How a connection's certificate is to be trusted.
pub struct Trust<'a> {
    /// The name the certificate must be for (and the SNI sent).
    pub server_name: &'a str,
    /// PEM certificates trusted instead of Mozilla's roots: an internal CA,
    /// or a self-signed server's own certificate.
    pub ca_file: Option<&'a Path>,
    /// SHA-256 of the certificate or of its public key: trusted by pin.
    pub pin: Option<&'a Pin>,
    /// The tick's clock: chains are judged valid at this time (the
    /// system's when `None`).
    pub now: Option<Timestamp>,
}

/// What a server's leaf certificate says, and how it was judged.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// `CN=…, O=…` as written in the certificate.
    pub subject: String,
    /// notAfter.
    pub not_after: Timestamp,
    /// Signed by a trusted root (or itself the trusted certificate); why not.
    pub chain: Result<(), String>,
    /// Valid for the server name; why not.
    pub hostname: Result<(), String>,
    /// With a pin: whether the certificate or its key matches it.
    pub pinned: Option<bool>,
    /// Within its dates at the tick (a pin trusts the key, not the dates).
    pub valid: Result<(), String>,
    /// The certificate of the chain the server sent that expires first,
    /// when it expires before the leaf (an intermediate CA): its subject
    /// and notAfter. Once it expires, the leaf is no longer trusted.
    pub sooner: Option<(String, Timestamp)>,
}

/// How a refusal for expiry begins: the chain's, from webpki, or the
/// dates', read here.
const EXPIRED: &str = "the certificate has expired";
/// The same of a certificate the server sent with its own.
const CHAIN_EXPIRED: &str = "a certificate of its chain has expired";

impl Certificate {
    /// Whether `why` (of [`Certificate::trusted`]) is an expiry.
    pub fn expired(&self, why: &str) -> bool {
        why.starts_with(EXPIRED) || why.starts_with(CHAIN_EXPIRED)
    }

    /// Trusted: by its pin when one is given, else by its chain.
    pub fn trusted(&self) -> Result<(), String> {
        match self.pinned {
            Some(true) => self.valid.clone(),
            Some(false) => Err(
                "neither the certificate nor its public key matches pin_sha256 (a new certificate? update the pin)"
                    .to_string(),
            ),
            None => self.chain.clone(),
        }
    }

    /// Days from `now` to notAfter (negative once expired).
    pub fn days_left(&self, now: Timestamp) -> f64 {
        self.not_after.since(now) as f64 / 86_400_000.0
    }
}

/// `pin_sha256`: one SHA-256 digest or more (the live key's and a backup
/// key's, so a planned key change is no outage), each written as curl's
/// `sha256//BASE64`, plain base64 or hex (colons allowed, as `openssl x509
/// -fingerprint` prints it); several as a list or `;`-separated as curl's
/// `--pinnedpubkey`. A certificate matching any of them is trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin(pub Vec<[u8; 32]>);

impl Pin {
    /// Whether `digest` (of the certificate or its key) is pinned.
    fn holds(&self, digest: &[u8; 32]) -> bool {
        self.0.contains(digest)
    }
}

impl std::str::FromStr for Pin {
    type Err = String;
    fn from_str(text: &str) -> Result<Pin, String> {
        let digests = text
            .split(';')
            .map(str::trim)
            .filter(|one| !one.is_empty())
            .map(digest)
            .collect::<Result<Vec<_>, _>>()?;
        if digests.is_empty() {
            return Err(pin_error(text));
        }
        Ok(Pin(digests))
    }
}

/// One digest in any of its spellings.
fn digest(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let bare = text.strip_prefix("sha256//").unwrap_or(text);
    let hex: String = bare.chars().filter(|c| *c != ':').collect();
    let bytes = if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(bare)
            .map_err(|_| pin_error(text))?
    };
    bytes.try_into().map_err(|_| pin_error(text))
}

fn pin_error(text: &str) -> String {
    format!(
        "pin_sha256 {text:?} is not a SHA-256 digest: give `sha256//BASE64` (curl's --pinnedpubkey; `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`) or the 64 hex digits of `openssl x509 -fingerprint -sha256`; a backup pin goes beside it in a list"
    )
}

impl<'de> serde::Deserialize<'de> for Pin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pin, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Pin;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a SHA-256 digest (`sha256//BASE64` or hex) or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Pin, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Pin, A::Error> {
                let mut digests = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    digests.extend(text.parse::<Pin>().map_err(serde::de::Error::custom)?.0);
                }
                if digests.is_empty() {
                    return Err(serde::de::Error::custom(
                        "pin_sha256 is an empty list: give the digest of the certificate or its key, and a backup's",
                    ));
                }
                Ok(Pin(digests))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A TLS session over a connected socket.
pub type Session = StreamOwned<ClientConnection, TcpStream>;

/// A client TLS setup whose verifier records the server's certificate.
#[derive(Debug)]
pub struct Client {
    pub config: Arc<ClientConfig>,
    recorder: Arc<Recorder>,
    pin: Option<Pin>,
}

impl Client {
    /// `enforce`: refuse the handshake when the certificate is not trusted
    /// or not for the name (an HTTP request carries headers; nothing is
    /// sent to an impostor). Otherwise the handshake completes and the
    /// caller judges [`Client::certificate`].
    pub fn new(trust: &Trust, enforce: bool) -> Result<Client, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let mut anchors = Vec::new();
        match trust.ca_file {
            Some(path) => (roots, anchors) = read_ca_file(path)?,
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let recorder = Arc::new(Recorder {
            roots,
            anchors,
            algorithms: provider.signature_verification_algorithms,
            now: trust.now.map(|now| {
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    (now.millis() / 1000).max(0) as u64,
                ))
            }),
            pin: trust.pin.cloned(),
            enforce,
            seen: Mutex::new(None),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        Ok(Client {
            config: Arc::new(config),
            recorder,
            pin: trust.pin.cloned(),
        })
    }

    /// The certificate the last handshake saw, read and judged.
    pub fn certificate(&self) -> Option<Result<Certificate, String>> {
        let seen = self
            .recorder
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(read_certificate(&seen, self.pin.as_ref()))
    }
}

/// The name a certificate is checked against, as rustls takes it.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|_| {
        format!("{name:?} is not a host name or address to check a certificate against")
    })
}

/// Completes a TLS handshake on `stream` (its timeouts already set) and
/// returns the session and what its certificate says.
pub fn handshake(
    stream: TcpStream,
    trust: &Trust,
    deadline: std::time::Instant,
) -> Result<(Session, Certificate), String> {
    let client = Client::new(trust, false)?;
    let name = server_name(trust.server_name)?;
    let connection = ClientConnection::new(client.config.clone(), name)
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut session = StreamOwned::new(connection, stream);
    while session.conn.is_handshaking() {
        // A server that drips its handshake byte by byte still ends at
        // the deadline, not at a timeout per read.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err("no TLS handshake within the timeout (is it a TLS port?)".to_string());
        }
        let _ = session.sock.set_read_timeout(Some(left));
        let _ = session.sock.set_write_timeout(Some(left));
        session
            .conn
            .complete_io(&mut session.sock)
            .map_err(|e| describe_handshake_error(&e))?;
    }
    let certificate = client
        .certificate()
        .ok_or("the server sent no certificate")??;
    Ok((session, certificate))
}

fn describe_handshake_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no TLS handshake within the timeout (is it a TLS port?)".to_string()
        }
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => format!(
            "the server closed the connection during the TLS handshake ({e}): is it a TLS port?"
        ),
        _ => match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(tls) => describe_tls_error(tls),
            None => format!("TLS handshake failed: {e}"),
        },
    }
}

/// What a TLS error means for the operator; rustls's own words otherwise.
fn describe_tls_error(e: &rustls::Error) -> String {
    use rustls::AlertDescription as Alert;
    match e {
        rustls::Error::AlertReceived(Alert::ProtocolVersion) => {
            "the server speaks only TLS versions older than TLS 1.2, which monitor does not speak (nor do current browsers): its certificate cannot be read; enable TLS 1.2 or 1.3 on the server".to_string()
        }
        rustls::Error::AlertReceived(Alert::HandshakeFailure)
        | rustls::Error::PeerIncompatible(_) => format!(
            "the server and monitor share no TLS version or cipher suite ({e}): enable TLS 1.2 or 1.3 with a current cipher on the server"
        ),
        rustls::Error::InvalidMessage(_) => format!(
            "the server's answer is not TLS ({e}): is it a TLS port?"
        ),
        _ => format!("TLS handshake failed: {e}"),
    }
}

/// A `ca_file`'s certificates as trust anchors, and as written (one may be
/// a self-signed server's own certificate, trusted as itself).
pub fn read_ca_file(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), String> {
    let anchors = read_pem(path)?;
    let mut roots = RootCertStore::empty();
    let (_, refused) = roots.add_parsable_certificates(anchors.iter().cloned());
    if refused > 0 && anchors.len() == refused {
        return Err(format!(
            "ca_file {}: none of its certificates can be a trust anchor",
            path.display()
        ));
    }
    Ok((roots, anchors))
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem =
        std::fs::read(path).map_err(|e| format!("reading ca_file {}: {e}", path.display()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The certificate the server sent, judged during the handshake.
#[derive(Clone)]
struct Seen {
    leaf: CertificateDer<'static>,
    /// The rest of the chain the server sent.
    intermediates: Vec<CertificateDer<'static>>,
    chain: Result<(), String>,
    hostname: Result<(), String>,
    /// Within its notBefore and notAfter at the tick.
    valid: Result<(), String>,
}

/// A verifier that records its verdicts and lets the handshake finish.
#[derive(Debug)]
struct Recorder {
    roots: RootCertStore,
    /// The ca_file's certificates: one of them may be the leaf itself.
    anchors: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
    now: Option<UnixTime>,
    pin: Option<Pin>,
    /// Refuse an untrusted or misnamed certificate in the handshake.
    enforce: bool,
    seen: Mutex<Option<Seen>>,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seen").finish_non_exhaustive()
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let at = self.now.unwrap_or(now);
        // A self-signed server's own certificate in ca_file is trusted as
        // itself, within its dates only, as curl and Python trust it.
        let own_anchor = || {
            self.anchors
                .iter()
                .any(|a| a.as_ref() == end_entity.as_ref())
        };
        // A certificate naming no host at all (no subjectAltName, as
        // `openssl req -x509 -subj /CN=host` makes it) is read by its CN,
        // as OpenSSL (curl, Python) reads it.
        let by_common_name = || {
            common_names(end_entity)
                .iter()
                .any(|cn| same_host(cn, server_name))
        };
        let (chain, hostname, needed) = match rustls::server::ParsedCertificate::try_from(
            end_entity,
        ) {
            Ok(parsed) => {
                let chain = rustls::client::verify_server_cert_signed_by_trust_anchor(
                    &parsed,
                    &self.roots,
                    intermediates,
                    at,
                    self.algorithms.all,
                )
                .or_else(|e| {
                    // webpki alone refuses a CA certificate used as the
                    // server's: CaUsedAsEndEntity.
                    if own_anchor() {
                        valid_at(end_entity, at)
                    } else {
                        let why = describe_chain_error(
                            &e,
                            !self.anchors.is_empty(),
                            intermediates.len(),
                        );
                        // webpki says "expired" of any certificate of the
                        // path: the leaf's own dates tell which.
                        if why.starts_with(EXPIRED) && valid_at(end_entity, at).is_ok() {
                            Err(format!(
                                "{CHAIN_EXPIRED} (an intermediate the server sends: renew the chain it serves)"
                            ))
                        } else {
                            Err(why)
                        }
                    }
                });
                let hostname =
                    rustls::client::verify_server_name(&parsed, server_name).or_else(|e| {
                        if names_no_host(&e) && by_common_name() {
                            Ok(())
                        } else {
                            Err(describe_name_error(&e, server_name))
                        }
                    });
                // The certificates the trusted path needs: one the server
                // sends but no path uses (an expired cross-sign, as Let's
                // Encrypt's DST Root CA X3 was) ends no trust when it
                // expires. Dropped soonest-expiring first while the rest
                // still verify.
                let needed = chain.is_ok().then(|| {
                    let mut kept: Vec<CertificateDer<'_>> = intermediates.to_vec();
                    let mut by_expiry: Vec<CertificateDer<'_>> = intermediates.to_vec();
                    by_expiry.sort_by_key(not_after_of);
                    for candidate in by_expiry {
                        let without: Vec<CertificateDer<'_>> =
                            kept.iter().filter(|c| **c != candidate).cloned().collect();
                        let still = rustls::client::verify_server_cert_signed_by_trust_anchor(
                            &parsed,
                            &self.roots,
                            &without,
                            at,
                            self.algorithms.all,
                        )
                        .is_ok();
                        if still {
                            kept = without;
                        }
                    }
                    kept.into_iter().map(CertificateDer::into_owned).collect()
                });
                (chain, hostname, needed)
            }
            // webpki reads X.509 v3 only; an old v1 certificate (`openssl
            // x509 -req -signkey` without -extfile) is still read here for
            // its dates, trusted as itself or by pin.
            Err(e) => {
                let why = match &e {
                    e if webpki_error(e) == Some(&webpki::Error::UnsupportedCertVersion) => {
                        "an X.509 v1 certificate (no extensions), which TLS verification no longer accepts: re-issue it as v3 (openssl x509 -req … -extfile with subjectAltName=IP:…,DNS:…), or trust it by ca_file (itself) or pin_sha256".to_string()
                    }
                    other => format!("the certificate cannot be verified: {other}"),
                };
                let chain = if own_anchor() {
                    valid_at(end_entity, at)
                } else {
                    Err(why)
                };
                let hostname = if by_common_name() {
                    Ok(())
                } else {
                    Err(format!(
                        "the certificate's CN {} is not {}",
                        common_names(end_entity).join(", "),
                        server_name.to_str()
                    ))
                };
                (chain, hostname, None)
            }
        };
        let seen = Seen {
            leaf: end_entity.clone().into_owned(),
            intermediates: needed.unwrap_or_else(|| {
                intermediates
                    .iter()
                    .map(|c| c.clone().into_owned())
                    .collect()
            }),
            chain,
            hostname,
            valid: valid_at(end_entity, self.now.unwrap_or(now)),
        };
        let refusal = self.enforce.then(|| {
            let certificate = read_certificate(&seen, self.pin.as_ref()).ok()?;
            let why = [certificate.trusted(), seen.hostname.clone()]
                .into_iter()
                .filter_map(Result::err)
                .collect::<Vec<_>>();
            (!why.is_empty()).then(|| why.join("; "))
        });
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
        match refusal.flatten() {
            Some(why) => Err(rustls::Error::General(format!(
                "certificate refused: {why}"
            ))),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
            .or_else(|e| self.by_raw_key(e, message, cert, dss))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
            .or_else(|e| self.by_raw_key(e, message, cert, dss))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl Recorder {
    /// The handshake's signature checked with the key of a certificate
    /// webpki will not read (X.509 v1): the server still proves it holds
    /// that key. Any other error `e` stands.
    fn by_raw_key(
        &self,
        e: rustls::Error,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if webpki_error(&e) != Some(&webpki::Error::UnsupportedCertVersion) {
            return Err(e);
        }
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| e)?;
        let key = &parsed.tbs_certificate.subject_pki.subject_public_key.data;
        let signed = self
            .algorithms
            .mapping
            .iter()
            .filter(|(scheme, _)| *scheme == dss.scheme)
            .flat_map(|(_, algorithms)| algorithms.iter())
            .any(|algorithm| {
                algorithm
                    .verify_signature(key, message, dss.signature())
                    .is_ok()
            });
        if signed {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature,
            ))
        }
    }
}

/// webpki's own verdict inside a rustls error, where rustls has no
/// variant of its own for it.
fn webpki_error(e: &rustls::Error) -> Option<&webpki::Error> {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<webpki::Error>()
        }
        _ => None,
    }
}

/// A chain's refusal in words; `ca_file` says whether one is given, `sent`
/// how many certificates the server sent beside its own.
fn describe_chain_error(e: &rustls::Error, ca_file: bool, sent: usize) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) if ca_file && sent == 0 => {
            "not signed by a CA in ca_file, and the server sent no intermediate certificate: if an intermediate CA signed it, the server must send it (configure its full chain), or put the intermediate in ca_file".to_string()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) if ca_file => {
            "not signed by a CA in ca_file (is ca_file the CA that issued this server's chain?)".to_string()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "not signed by a trusted CA (self-signed or an internal CA? set ca_file: to its certificate, or pin_sha256)".to_string()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            EXPIRED.to_string()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the certificate is not valid yet (is the clock right?)".to_string()
        }
        e if webpki_error(e) == Some(&webpki::Error::CaUsedAsEndEntity) => {
            "a self-signed certificate, not signed by a trusted CA (set ca_file: to this certificate, or pin_sha256)".to_string()
        }
        other => format!("not trusted: {other}"),
    }
}

/// A certificate's notAfter in seconds (unreadable ones last).
fn not_after_of(der: &CertificateDer<'_>) -> i64 {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map_or(i64::MAX, |(_, cert)| cert.validity().not_after.timestamp())
}

/// Whether the certificate is within its validity dates at `now`.
fn valid_at(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("the certificate cannot be read: {e}"))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = parsed.validity();
    if now < validity.not_before.timestamp() {
        Err(format!(
            "the certificate is not valid yet (from {}; is the clock right?)",
            Timestamp::from_secs(validity.not_before.timestamp())
        ))
    } else if now > validity.not_after.timestamp() {
        Err(format!(
            "{EXPIRED} ({})",
            Timestamp::from_secs(validity.not_after.timestamp())
        ))
    } else {
        Ok(())
    }
}

/// The name check failed because the certificate has no subjectAltName.
fn names_no_host(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            presented,
            ..
        }) if presented.is_empty()
    )
}

/// The subject's common names.
fn common_names(der: &CertificateDer<'_>) -> Vec<String> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, parsed)| {
            parsed
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A CN naming the host checked: the same name (any case) or address.
fn same_host(common_name: &str, server_name: &ServerName<'_>) -> bool {
    let wanted = server_name.to_str();
    common_name.eq_ignore_ascii_case(&wanted)
}

fn describe_name_error(e: &rustls::Error, server_name: &ServerName<'_>) -> String {
    let wanted = server_name.to_str();
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            presented,
            ..
        }) => format!(
            "the certificate is for {}, not {wanted}",
            if presented.is_empty() {
                "no host name (no subjectAltName, and its CN is another name)".to_string()
            } else {
                presented
                    .iter()
                    .map(|name| plain_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        _ => format!("the certificate is not valid for {wanted}"),
    }
}

/// `DNS:localhost` of rustls' `DnsName("localhost")`, `IP:127.0.0.1` of
/// `IpAddress(127.0.0.1)`: as openssl prints subjectAltName, so a DNS
/// name spelt like an address is told from the address.
fn plain_name(presented: &str) -> String {
    let Some((kind, rest)) = presented.split_once('(') else {
        return presented.to_string();
    };
    let inner = rest.strip_suffix(')').unwrap_or(rest).trim_matches('"');
    match kind {
        "DnsName" => format!("DNS:{inner}"),
        "IpAddress" => format!("IP:{inner}"),
        _ => inner.to_string(),
    }
}

fn read_certificate(seen: &Seen, pin: Option<&Pin>) -> Result<Certificate, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(seen.leaf.as_ref())
        .map_err(|e| format!("the server's certificate cannot be read: {e}"))?;
    let pinned = pin.map(|pin| {
        let whole: [u8; 32] = Sha256::digest(seen.leaf.as_ref()).into();
        let key: [u8; 32] = Sha256::digest(parsed.tbs_certificate.subject_pki.raw).into();
        pin.holds(&whole) || pin.holds(&key)
    });
    let not_after = Timestamp::from_secs(parsed.validity().not_after.timestamp());
    let sooner = seen
        .intermediates
        .iter()
        .filter_map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
            let until = Timestamp::from_secs(cert.validity().not_after.timestamp());
            Some((cert.subject().to_string(), until))
        })
        .filter(|(_, until)| until.millis() < not_after.millis())
        .min_by_key(|(_, until)| until.millis());
    Ok(Certificate {
        subject: parsed.subject().to_string(),
        not_after,
        sooner,
        chain: seen.chain.clone(),
        hostname: seen.hostname.clone(),
        pinned,
        valid: seen.valid.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_read_in_every_usual_spelling() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let expected = Pin(vec![
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<_>>()
                .try_into()
                .unwrap(),
        ]);
        assert_eq!(hex.parse::<Pin>().unwrap(), expected);
        let colons: Vec<String> = (0..32)
            .map(|i| hex[2 * i..2 * i + 2].to_uppercase())
            .collect();
        assert_eq!(colons.join(":").parse::<Pin>().unwrap(), expected);
        let b64 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
        assert_eq!(format!("sha256//{b64}").parse::<Pin>().unwrap(), expected);
        assert_eq!(b64.parse::<Pin>().unwrap(), expected);
        let why = "abc".parse::<Pin>().unwrap_err();
        assert!(why.contains("sha256//BASE64"), "{why}");
        // A backup pin, curl's way.
        let both: Pin = format!("sha256//{b64};{hex}").parse().unwrap();
        assert_eq!(both.0, [expected.0[0], expected.0[0]]);
        let why = format!("sha256//{b64};abc").parse::<Pin>().unwrap_err();
        assert!(why.contains("\"abc\""), "{why}");
    }
}
