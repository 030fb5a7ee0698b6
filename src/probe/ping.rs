//! The `ping` probe: ICMP echo requests to a host, `count` of them
//! `interval` apart, and the replies' loss and round trip. It uses an
//! unprivileged ping socket where `net.ipv4.ping_group_range` admits the
//! user's group, a raw socket as root, and says which it could not open.

use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Observation};
use crate::config::{self, Text};
use serde::Deserialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// `ping`: ICMP echo to `host`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PingConfig {
    pub host: Text,
    /// How many echo requests (default 3).
    #[serde(default = "default_count")]
    pub count: u32,
    /// Between requests (default 1s, at least 10ms).
    #[serde(default = "default_interval")]
    pub interval: config::Duration,
    /// How long to wait for the last reply (default 1s); the task's
    /// timeout bounds the whole.
    #[serde(default = "default_wait")]
    pub wait: config::Duration,
    /// `auto` (a ping socket, else raw), `dgram` or `raw`.
    #[serde(default)]
    pub socket: SocketKind,
}

fn default_count() -> u32 {
    3
}

fn default_interval() -> config::Duration {
    config::Duration(Duration::from_secs(1))
}

fn default_wait() -> config::Duration {
    config::Duration(Duration::from_secs(1))
}

/// Which ICMP socket to open.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    #[default]
    Auto,
    Dgram,
    Raw,
}

impl ProbeConfig for PingConfig {
    fn signal_names(&self) -> Option<Vec<String>> {
        Some(
            ["up", "loss_ratio", "replies", "rtt_ms", "rtt_max_ms"]
                .map(String::from)
                .to_vec(),
        )
    }

    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }

    fn check(&self) -> Result<(), String> {
        let host = self.host.as_str().trim();
        if host.is_empty() {
            return Err(config::at_key("host", "`host` is empty"));
        }
        if host.contains('/') || host.matches(':').count() == 1 {
            return Err(config::at_key(
                "host",
                &format!(
                    "host {host:?} is not a host alone: ICMP has no ports or paths, give the name or address (host: {})",
                    host.split([':', '/']).next().unwrap_or("")
                ),
            ));
        }
        if !(1..=100).contains(&self.count) {
            return Err(config::at_key(
                "count",
                &format!("count {} is not 1 to 100 echo requests", self.count),
            ));
        }
        if self.interval.0 < Duration::from_millis(10) {
            return Err(config::at_key(
                "interval",
                &format!("interval {} is under the least, 10ms", self.interval),
            ));
        }
        if self.wait.0.is_zero() {
            return Err(config::at_key(
                "wait",
                "`wait: 0s` leaves no time for the last reply",
            ));
        }
        Ok(())
    }
}

/// Pings and records `up` (1: a reply came), `loss_ratio`, `rtt_ms`
/// (average), `rtt_max_ms` and `replies`.
pub fn observe(probe: &PingConfig, context: &Context, out: &mut Observation) {
    let host = super::tcp::bare_host(probe.host.as_str());
    let (status, summary) = match ping(probe, context) {
        Ok(result) => {
            let sent = f64::from(result.sent);
            let received = result.rtts.len() as f64;
            let loss = (sent - received) / sent;
            out.signals
                .set_probe("ping", "up", f64::from(u8::from(received > 0.0)));
            out.signals.set_probe("ping", "loss_ratio", loss);
            out.signals.set_probe("ping", "replies", received);
            if received > 0.0 {
                let avg = result.rtts.iter().sum::<f64>() / received;
                let max = result.rtts.iter().copied().fold(0.0, f64::max);
                out.signals.set_probe("ping", "rtt_ms", round3(avg));
                out.signals.set_probe("ping", "rtt_max_ms", round3(max));
                (
                    if result.sent < probe.count {
                        CheckStatus::Warning
                    } else {
                        CheckStatus::Ok
                    },
                    format!(
                        "{host} ({}): {} of {} replies, {:.0}% loss, rtt avg {:.3} ms, max {:.3} ms ({} socket){}",
                        result.address,
                        received,
                        result.sent,
                        loss * 100.0,
                        avg,
                        max,
                        result.socket,
                        cut_short(&result, probe)
                    ),
                )
            } else {
                (
                    CheckStatus::Failed,
                    format!(
                        "{host} ({}): no reply to {} echo requests within {} (100% loss){}",
                        result.address,
                        result.sent,
                        probe.wait,
                        cut_short(&result, probe)
                    ),
                )
            }
        }
        Err(why) => {
            out.signals.set_probe("ping", "up", 0.0);
            (CheckStatus::Failed, format!("{host}: {why}"))
        }
    };
    out.checks.push(Check {
        probe: "ping",
        status,
        summary,
    });
}

/// What a summary adds when the task's timeout ended the pings before
/// `count` were sent: the loss is then of fewer requests than asked.
fn cut_short(result: &Pinged, probe: &PingConfig) -> String {
    if result.sent >= probe.count {
        return String::new();
    }
    format!(
        "; only {} of count {} echo requests sent before the task's timeout ran out: raise the task's `timeout:` or lower `count`/`interval`",
        result.sent, probe.count
    )
}

/// The longest a ping takes: `count` requests `interval` apart, then
/// `wait` for the last reply.
pub fn longest(probe: &PingConfig) -> Duration {
    probe.interval.0 * probe.count.saturating_sub(1) + probe.wait.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

struct Pinged {
    address: IpAddr,
    sent: u32,
    /// Round trips of the replies, in ms.
    rtts: Vec<f64>,
    socket: &'static str,
}

fn ping(probe: &PingConfig, context: &Context) -> Result<Pinged, String> {
    let budget = context.budget(None);
    let deadline = Instant::now() + budget;
    let address = (super::tcp::bare_host(probe.host.as_str()), 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .map(|a: SocketAddr| a.ip())
        .next()
        .ok_or("the name resolves to no address")?;
    let (socket, kind) = open(address, probe.socket)?;
    let target = SockAddr::from(SocketAddr::new(address, 0));
    // A ping socket's identifier is its port, set by the kernel; a raw
    // socket sees every ICMP packet of the host, so its identifier is this
    // probe's own (pings of one tick run at once) and a reply must come
    // from the target.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let identifier = (std::process::id() as u16)
        .wrapping_mul(31)
        .wrapping_add(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let mut sent_at: Vec<Option<Instant>> = Vec::new();
    let mut rtts = Vec::new();
    let mut buffer = [0u8; 1500];
    let interval = probe.interval.0;
    let wait = probe.wait.0;
    let mut next_send = Instant::now();
    loop {
        let now = Instant::now();
        let all_sent = sent_at.len() as u32 >= probe.count;
        let last_due = sent_at.iter().flatten().last().map_or(now, |at| *at + wait);
        if now >= deadline || (all_sent && (now >= last_due || rtts.len() == sent_at.len())) {
            break;
        }
        if !all_sent && now >= next_send {
            let sequence = sent_at.len() as u16;
            let packet = echo_request(address.is_ipv4(), identifier, sequence);
            match socket.send_to(&packet, &target) {
                Ok(_) => sent_at.push(Some(Instant::now())),
                Err(e) => {
                    sent_at.push(None);
                    log::debug!("ping {address}: sending echo {sequence}: {e}");
                }
            }
            next_send += interval;
            continue;
        }
        let until = if all_sent { last_due } else { next_send };
        let left = until
            .min(deadline)
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| format!("setting the socket's timeout: {e}"))?;
        match receive(&socket, &mut buffer) {
            Ok((_, from)) if from != Some(address) => {}
            Ok((read, _)) => {
                let reply = match kind {
                    "raw" if address.is_ipv4() => strip_ipv4_header(&buffer[..read]),
                    _ => Some(&buffer[..read]),
                };
                if let Some((sequence, from_us)) =
                    reply.and_then(|r| echo_reply(r, address.is_ipv4()))
                    && (kind == "dgram" || from_us == identifier)
                    && let Some(Some(at)) = sent_at.get(usize::from(sequence))
                {
                    let rtt = at.elapsed().as_secs_f64() * 1000.0;
                    // A reply counted once (duplicates happen).
                    sent_at[usize::from(sequence)] = None;
                    rtts.push(rtt);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("reading replies: {e}")),
        }
    }
    Ok(Pinged {
        address,
        sent: probe
            .count
            .min(u32::try_from(sent_at.len()).unwrap_or(u32::MAX))
            .max(1),
        rtts,
        socket: kind,
    })
}

/// Reads one datagram: its length and where it came from.
fn receive(socket: &Socket, buffer: &mut [u8]) -> std::io::Result<(usize, Option<IpAddr>)> {
    let mut raw = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    let (read, from) = socket.recv_from(&mut raw)?;
    let read = read.min(buffer.len());
    for (to, byte) in buffer.iter_mut().zip(&raw[..read]) {
        // SAFETY: recv_from initialised the first `read` bytes.
        *to = unsafe { byte.assume_init() };
    }
    Ok((read, from.as_socket().map(|a| a.ip())))
}

/// Opens the ICMP socket `kind` asks for; the error says what was tried.
fn open(address: IpAddr, kind: SocketKind) -> Result<(Socket, &'static str), String> {
    let (domain, protocol) = if address.is_ipv4() {
        (Domain::IPV4, Protocol::ICMPV4)
    } else {
        (Domain::IPV6, Protocol::ICMPV6)
    };
    let dgram = || Socket::new(domain, Type::DGRAM, Some(protocol));
    let raw = || Socket::new(domain, Type::RAW, Some(protocol));
    let groups = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let gid = group_id();
    let dgram_refused = |e: std::io::Error| {
        format!(
            "no ping socket ({e}): group {gid} is outside net.ipv4.ping_group_range ({groups}); allow it with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`"
        )
    };
    let raw_refused = |e: std::io::Error| {
        format!(
            "no raw ICMP socket ({e}): that needs root or CAP_NET_RAW (`setcap cap_net_raw+ep` on the binary)"
        )
    };
    match kind {
        SocketKind::Dgram => dgram().map(|s| (s, "dgram")).map_err(dgram_refused),
        SocketKind::Raw => raw().map(|s| (s, "raw")).map_err(raw_refused),
        SocketKind::Auto => match dgram() {
            Ok(socket) => Ok((socket, "dgram")),
            Err(first) => raw().map(|s| (s, "raw")).map_err(|second| {
                format!(
                    "ICMP echo is not permitted here: {}; and {}",
                    dgram_refused(first),
                    raw_refused(second)
                )
            }),
        },
    }
}

/// The process's group, from /proc (no libc call needed).
fn group_id() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Gid:"))
                .and_then(|g| g.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

/// An echo request: type 8 (IPv4) or 128 (IPv6), code 0, a checksum (the
/// kernel fills IPv6's), identifier, sequence, 16 bytes of payload.
fn echo_request(ipv4: bool, identifier: u16, sequence: u16) -> Vec<u8> {
    let mut packet = vec![if ipv4 { 8 } else { 128 }, 0, 0, 0];
    packet.extend_from_slice(&identifier.to_be_bytes());
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(b"monitor ping....");
    if ipv4 {
        let checksum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
    packet
}

/// RFC 1071: the ones' complement of the ones' complement sum.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A raw IPv4 socket reads the IP header too.
fn strip_ipv4_header(packet: &[u8]) -> Option<&[u8]> {
    let length = usize::from(packet.first()? & 0x0f) * 4;
    packet.get(length..)
}

/// (sequence, identifier) of an echo reply; `None` for anything else.
fn echo_reply(icmp: &[u8], ipv4: bool) -> Option<(u16, u16)> {
    let reply_type = if ipv4 { 0 } else { 129 };
    if icmp.len() < 8 || icmp[0] != reply_type || icmp[1] != 0 {
        return None;
    }
    let identifier = u16::from_be_bytes([icmp[4], icmp[5]]);
    let sequence = u16::from_be_bytes([icmp[6], icmp[7]]);
    Some((sequence, identifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_request_checksums_to_zero() {
        let packet = echo_request(true, 0x1234, 7);
        assert_eq!(internet_checksum(&packet), 0, "{packet:?}");
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn only_echo_replies_are_read() {
        let mut reply = echo_request(true, 9, 3);
        assert_eq!(echo_reply(&reply, true), None, "a request is not a reply");
        reply[0] = 0;
        assert_eq!(echo_reply(&reply, true), Some((3, 9)));
        let mut ip = vec![0x45u8; 20];
        ip.extend_from_slice(&reply);
        assert_eq!(strip_ipv4_header(&ip), Some(&reply[..]));
    }
}
