//! The `dns` probe: one query (A, AAAA, CNAME, TXT, MX, NS) to a server
//! (`/etc/resolv.conf`'s first nameserver unless `server` names one),
//! judged by its answer: NXDOMAIN and SERVFAIL are told apart, and the
//! records may be required to be exactly (`expect`) or to include
//! (`contains`) given values. hickory DNS reads and writes the messages;
//! they travel over a std UDP socket (TCP when the answer is truncated).

use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Observation};
use crate::config::{self, Text};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use serde::{Deserialize, Deserializer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// `dns`: a query and what its answer must hold.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    pub name: Text,
    #[serde(default, rename = "type")]
    pub record_type: RecordKind,
    /// `127.0.0.1:5353`, or an address (port 53); default the first
    /// nameserver of /etc/resolv.conf.
    #[serde(default)]
    pub server: Option<Text>,
    #[serde(default)]
    pub timeout: Option<config::Duration>,
    /// The records must be exactly these (in any order).
    #[serde(default)]
    pub expect: Option<Vec<String>>,
    /// The records must include each of these.
    #[serde(default)]
    pub contains: Option<Vec<String>>,
}

/// The record types a `dns` probe asks for, written in either case (`A`,
/// `txt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordKind {
    #[default]
    A,
    Aaaa,
    Cname,
    Txt,
    Mx,
    Ns,
}

impl std::str::FromStr for RecordKind {
    type Err = String;
    fn from_str(text: &str) -> Result<RecordKind, String> {
        const ALL: [(&str, RecordKind); 6] = [
            ("A", RecordKind::A),
            ("AAAA", RecordKind::Aaaa),
            ("CNAME", RecordKind::Cname),
            ("TXT", RecordKind::Txt),
            ("MX", RecordKind::Mx),
            ("NS", RecordKind::Ns),
        ];
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text.trim()))
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                format!(
                    "record type {text:?} is not one this probe asks for: A, AAAA, CNAME, TXT, MX or NS"
                )
            })
    }
}
config::values::deserialize_from_str!(RecordKind);

impl RecordKind {
    fn record_type(self) -> RecordType {
        match self {
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
            RecordKind::Cname => RecordType::CNAME,
            RecordKind::Txt => RecordType::TXT,
            RecordKind::Mx => RecordType::MX,
            RecordKind::Ns => RecordType::NS,
        }
    }
}

impl ProbeConfig for DnsConfig {
    fn signal_names(&self) -> Option<Vec<String>> {
        Some(["up", "resolve_ms", "answers"].map(String::from).to_vec())
    }

    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }

    fn check(&self) -> Result<(), String> {
        if self.name.as_str().trim().is_empty() {
            return Err(config::at_key(
                "name",
                "`name` is empty: give the name to look up",
            ));
        }
        Name::from_str(self.name.as_str()).map_err(|e| {
            config::at_key(
                "name",
                &format!("{:?} is not a domain name: {e}", self.name.as_str()),
            )
        })?;
        if let Some(server) = &self.server {
            server_address(server.as_str()).map_err(|why| config::at_key("server", &why))?;
        }
        if self.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(config::at_key(
                "timeout",
                "`timeout: 0s` leaves no time for an answer",
            ));
        }
        if self.expect.as_ref().is_some_and(Vec::is_empty) {
            return Err(config::at_key(
                "expect",
                "`expect: []` expects no record: give the records, or drop it",
            ));
        }
        if self.expect.is_some() && self.contains.is_some() {
            return Err(config::at_key(
                "contains",
                "give `expect` (exactly these records) or `contains` (at least these), not both",
            ));
        }
        let addresses = match self.record_type {
            RecordKind::A => Some(true),
            RecordKind::Aaaa => Some(false),
            _ => None,
        };
        if let Some(v4) = addresses {
            let lists = [("expect", &self.expect), ("contains", &self.contains)];
            for (key, list) in lists {
                for value in list.iter().flatten() {
                    let ok = match value.trim().parse::<std::net::IpAddr>() {
                        Ok(ip) => ip.is_ipv4() == v4,
                        Err(_) => false,
                    };
                    if !ok {
                        return Err(config::at_key(
                            key,
                            &format!(
                                "{value:?} is not an {} address, so an {} record can never be it",
                                if v4 { "IPv4" } else { "IPv6" },
                                if v4 { "A" } else { "AAAA" }
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `127.0.0.1:5353`, `127.0.0.1` (port 53) or `[::1]:53`.
fn server_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| {
            format!("server {text:?} is not an address: write 127.0.0.1:5353 or 10.0.0.2 (port 53)")
        })
}

/// The first `nameserver` of /etc/resolv.conf.
fn system_server() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("no `server` given, and /etc/resolv.conf cannot be read: {e}"))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .find_map(|rest| server_address(rest.trim().split('%').next().unwrap_or("")).ok())
        .ok_or_else(|| "no `server` given, and /etc/resolv.conf names no nameserver".to_string())
}

/// Queries and records `up` (1: the answer holds records of the type),
/// `resolve_ms` and `answers`.
pub fn observe(probe: &DnsConfig, context: &Context, out: &mut Observation) {
    let name = probe.name.as_str();
    let kind = format!("{:?}", probe.record_type).to_uppercase();
    let (status, summary) = match query(probe, context) {
        Ok(answer) => {
            out.signals
                .set_probe("dns", "resolve_ms", answer.ms.round());
            judge(probe, &answer, &kind, out)
        }
        Err(why) => (CheckStatus::Failed, format!("{name} {kind}: {why}")),
    };
    if status != CheckStatus::Ok {
        out.signals.set_probe("dns", "up", 0.0);
    }
    out.checks.push(Check {
        probe: "dns",
        status,
        summary,
    });
}

struct Answer {
    server: SocketAddr,
    code: ResponseCode,
    records: Vec<String>,
    /// The strings of TXT records, each on its own.
    parts: Vec<String>,
    ms: f64,
}

fn judge(
    probe: &DnsConfig,
    answer: &Answer,
    kind: &str,
    out: &mut Observation,
) -> (CheckStatus, String) {
    let name = probe.name.as_str();
    let at = answer.server;
    match answer.code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return (
                CheckStatus::Failed,
                format!("{name} {kind}: NXDOMAIN from {at}: the name does not exist"),
            );
        }
        ResponseCode::ServFail => {
            return (
                CheckStatus::Failed,
                format!(
                    "{name} {kind}: SERVFAIL from {at}: the server could not resolve it (its upstream or the zone is broken)"
                ),
            );
        }
        ResponseCode::Refused => {
            return (
                CheckStatus::Failed,
                format!(
                    "{name} {kind}: REFUSED by {at}: the server will not answer this query (not its zone, or recursion is not allowed for this host)"
                ),
            );
        }
        other => {
            return (
                CheckStatus::Failed,
                format!("{name} {kind}: the answer from {at} is an error, {other}"),
            );
        }
    }
    out.signals
        .set_probe("dns", "answers", answer.records.len() as f64);
    if answer.records.is_empty() {
        return (
            CheckStatus::Failed,
            format!("{name} {kind}: no {kind} record at {at} (the name exists)"),
        );
    }
    out.signals.set_probe("dns", "up", 1.0);
    let shown = answer.records.join(", ");
    // An MX expected without its preference (`mx1.example.com`) is its
    // exchange alone, compared with each record's exchange; with one
    // (`10 mx1.example.com`), with the whole record.
    let matches = |wanted: &String, record: &String| {
        let wanted = normalise(probe.record_type, wanted);
        let record = normalise(probe.record_type, record);
        let bare = probe.record_type == RecordKind::Mx && !wanted.contains(char::is_whitespace);
        match record.split_once(' ') {
            Some((_, exchange)) if bare => exchange == wanted,
            _ => record == wanted,
        }
    };
    if let Some(expect) = &probe.expect {
        let every_record = answer
            .records
            .iter()
            .all(|record| expect.iter().any(|wanted| matches(wanted, record)));
        let every_value = expect
            .iter()
            .all(|wanted| answer.records.iter().any(|record| matches(wanted, record)));
        if !(every_record && every_value) {
            return (
                CheckStatus::Critical,
                format!(
                    "{name} {kind} is {shown}, expected exactly {}",
                    expect.join(", ")
                ),
            );
        }
    }
    if let Some(contains) = &probe.contains {
        let missing: Vec<&str> = contains
            .iter()
            .filter(|wanted| {
                !answer.records.iter().any(|record| matches(wanted, record))
                    && !answer.parts.iter().any(|part| matches(wanted, part))
            })
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return (
                CheckStatus::Critical,
                format!("{name} {kind} is {shown}, missing {}", missing.join(", ")),
            );
        }
    }
    (
        CheckStatus::Ok,
        format!("{name} {kind} = {shown} ({:.0} ms from {at})", answer.ms),
    )
}

/// How a record and an expected value compare: addresses as addresses
/// (`::1` is `0:0:0:0:0:0:0:1`), names without case and trailing dot, TXT
/// exactly as written (tokens and keys are case-sensitive).
fn normalise(kind: RecordKind, value: &str) -> String {
    let value = value.trim();
    match kind {
        RecordKind::A | RecordKind::Aaaa => value
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| value.to_string(), |ip| ip.to_string()),
        RecordKind::Txt => value.to_string(),
        RecordKind::Cname | RecordKind::Ns | RecordKind::Mx => {
            value.trim_end_matches('.').to_ascii_lowercase()
        }
    }
}

fn query(probe: &DnsConfig, context: &Context) -> Result<Answer, String> {
    let server = match &probe.server {
        Some(server) => server_address(server.as_str())?,
        None => system_server()?,
    };
    let probe_timeout = probe.timeout.map(|t| t.std());
    let limit = context.limit(probe_timeout);
    let deadline = Instant::now() + context.budget(probe_timeout);
    let name =
        Name::from_str(probe.name.as_str()).map_err(|e| format!("not a domain name: {e}"))?;
    let record_type = probe.record_type.record_type();
    // A query id an off-path answer cannot guess easily.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let id = (std::process::id() as u16) ^ (nanos as u16) ^ ((nanos >> 16) as u16);
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let query_name = name.clone();
    message.add_query(Query::query(name, record_type));
    let bytes = message
        .to_vec()
        .map_err(|e| format!("building the query: {e}"))?;
    let started = Instant::now();
    let mut reply = udp(&bytes, server, id, deadline, limit)?;
    if reply.metadata.truncation {
        reply = tcp(&bytes, server, id, deadline, limit)?;
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    // Only records of the name asked, or of the names its CNAMEs in the
    // answer lead to: a stray record for another name is no answer.
    // Names compared as the wire has them (punycode, any case): `bücher`,
    // `BÜCHER` and `xn--bcher-kva` are one name.
    let owner_of = |name: &Name| normalise(RecordKind::Cname, &name.to_ascii());
    let mut owners = vec![owner_of(&query_name)];
    loop {
        let before = owners.len();
        for record in &reply.answers {
            if let hickory_proto::rr::RData::CNAME(target) = &record.data
                && owners.contains(&owner_of(&record.name))
            {
                let target = owner_of(&target.0);
                if !owners.contains(&target) {
                    owners.push(target);
                }
            }
        }
        if owners.len() == before || record_type == RecordType::CNAME {
            break;
        }
    }
    let mut parts = Vec::new();
    let records = reply
        .answers
        .iter()
        .filter(|r| r.record_type() == record_type)
        .filter(|r| {
            let owner = owner_of(&r.name);
            if record_type == RecordType::CNAME {
                owner == owners[0]
            } else {
                owners.contains(&owner)
            }
        })
        .map(|r| match &r.data {
            // A TXT record is its strings joined (as SPF reads it); each
            // string also counts for `contains`.
            hickory_proto::rr::RData::TXT(txt) => {
                let strings: Vec<String> = txt
                    .txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                parts.extend(strings.iter().cloned());
                strings.concat()
            }
            other => other.to_string(),
        })
        .collect();
    Ok(Answer {
        server,
        code: reply.metadata.response_code,
        records,
        parts,
        ms,
    })
}

fn udp(
    bytes: &[u8],
    server: SocketAddr,
    id: u16,
    deadline: Instant,
    limit: Duration,
) -> Result<Message, String> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("opening a UDP socket: {e}"))?;
    // Connected: answers from elsewhere are dropped by the kernel, and a
    // closed port is told (ICMP port unreachable) rather than waited out.
    socket
        .connect(server)
        .and_then(|()| socket.send(bytes))
        .map_err(|e| format!("sending to {server}: {e}"))?;
    let mut buffer = [0u8; 4096];
    // Replies that were no answer to this query: skipped (an off-path
    // forgery must not win), and told if nothing else comes.
    let mut ignored = Ignored::default();
    // A datagram lost on the way is sent again, as dig and resolvers do:
    // one lost packet is no outage.
    let mut sent = 1;
    let mut resend_at = Instant::now() + RESEND;
    loop {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return Err(ignored.told(no_answer(server, limit, sent)));
        }
        if now >= resend_at {
            socket
                .send(bytes)
                .map_err(|e| format!("sending to {server} again: {e}"))?;
            sent += 1;
            resend_at = now + RESEND;
        }
        let wait = left
            .min(resend_at.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        socket
            .set_read_timeout(Some(wait))
            .map_err(|e| format!("setting the socket's timeout: {e}"))?;
        match socket.recv_from(&mut buffer) {
            Ok((read, from)) if from == server || server.ip().is_unspecified() => {
                match Message::from_vec(&buffer[..read]) {
                    Ok(message)
                        if message.metadata.id == id
                            && message.metadata.message_type != MessageType::Response =>
                    {
                        ignored.note(
                            "it sent a query back, not an answer (an echo service?)".to_string(),
                        )
                    }
                    Ok(message) if message.metadata.id == id => return Ok(message),
                    Ok(message) => ignored.note(format!(
                        "it answers another query (id {}, not {id})",
                        message.metadata.id
                    )),
                    Err(e) => ignored.note(format!(
                        "what it sent is no DNS message ({e}; it begins {})",
                        crate::probe::tcp::excerpt(&String::from_utf8_lossy(
                            &buffer[..read.min(24)]
                        ))
                    )),
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(format!(
                    "{server} refused the query (no DNS server listens there)"
                ));
            }
            Err(e) => return Err(format!("reading the answer from {server}: {e}")),
        }
    }
}

/// Replies skipped while waiting for the answer, the last one described.
#[derive(Default)]
struct Ignored {
    count: usize,
    last: String,
}

impl Ignored {
    fn note(&mut self, why: String) {
        self.count += 1;
        self.last = why;
    }

    /// `no_answer`, with what came instead if anything did.
    fn told(self, no_answer: String) -> String {
        match self.count {
            0 => no_answer,
            count => format!(
                "{no_answer}; {count} repl{} came, none an answer to this query, the last: {}. Is a DNS server at that address?",
                if count == 1 { "y" } else { "ies" },
                self.last
            ),
        }
    }
}

/// How long a query waits for its answer before it is sent again.
const RESEND: Duration = Duration::from_secs(1);

fn no_answer(server: SocketAddr, limit: Duration, sent: usize) -> String {
    let queries = if sent > 1 {
        format!(" ({sent} queries sent, a second apart)")
    } else {
        String::new()
    };
    format!(
        "no answer from {server} within {}{queries}",
        config::Duration(limit)
    )
}

/// The same query over TCP (an answer too big for UDP).
fn tcp(
    bytes: &[u8],
    server: SocketAddr,
    id: u16,
    deadline: Instant,
    limit: Duration,
) -> Result<Message, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut stream = TcpStream::connect_timeout(&server, left.max(Duration::from_millis(1)))
        .map_err(|e| format!("the answer was truncated, and TCP to {server} failed: {e}"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let _ = stream.set_read_timeout(Some(left));
    let _ = stream.set_write_timeout(Some(left));
    let length = u16::try_from(bytes.len()).map_err(|_| "the query is too long".to_string())?;
    stream
        .write_all(&length.to_be_bytes())
        .and_then(|()| stream.write_all(bytes))
        .map_err(|e| format!("sending over TCP to {server}: {e}"))?;
    let mut prefix = [0u8; 2];
    stream
        .read_exact(&mut prefix)
        .map_err(|_| no_answer(server, limit, 1))?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream
        .read_exact(&mut answer)
        .map_err(|_| no_answer(server, limit, 1))?;
    let message =
        Message::from_vec(&answer).map_err(|e| format!("a bad answer from {server}: {e}"))?;
    if message.metadata.id != id {
        return Err(format!("an answer from {server} to another query"));
    }
    Ok(message)
}
