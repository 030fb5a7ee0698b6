//! The `tcp` and `tls` probes against real peers on 127.0.0.1: listeners
//! that accept, refuse, accept and never answer, a banner server; and
//! `openssl s_server` with self-signed certificates made by the test
//! (`openssl req -x509`, marked as a CA as openssl makes them), expiring in
//! 2, 10 and 30 days, and one for another hostname.

use crate::common::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Now, as the ticks of these tests see it: the certificates are made now.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The certificate's SHA-256 in hex (`openssl x509 -fingerprint`): a
/// `pin_sha256`.
fn sha256_of(cert: &Path) -> String {
    let der = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(cert)
        .output()
        .unwrap()
        .stdout;
    let digest = Command::new("openssl")
        .args(["dgst", "-sha256", "-hex"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(&der)?;
            child.wait_with_output()
        })
        .unwrap()
        .stdout;
    let text = String::from_utf8(digest).unwrap();
    text.rsplit(' ').next().unwrap().trim().to_string()
}

/// `openssl s_server` on a loopback port, killed when dropped.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(cert: &Path, key: &Path) -> TlsServer {
        TlsServer::start_with(cert, key, &[])
    }

    /// [`TlsServer::start`] with more `s_server` arguments (`-cert_chain`).
    fn start_with(cert: &Path, key: &Path, more: &[&Path]) -> TlsServer {
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(more)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "s_server never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsServer { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listener that accepts and keeps every connection open, answering
/// each with `banner` (nothing when empty) and then `reply` to each read.
fn listener(banner: &'static str, reply: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.write_all(banner.as_bytes());
                let mut buffer = [0u8; 512];
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    if !reply.is_empty() {
                        let _ = stream.write_all(reply.as_bytes());
                    }
                }
            });
        }
    });
    port
}

/// The tick's line for `task` in the report.
fn line_of(out: &std::process::Output, task: &str) -> String {
    stdout(out)
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(task))
        .unwrap_or_else(|| panic!("no line for {task} in\n{}", stdout(out)))
        .to_string()
}

/// The severity of the task's health alert, if it fired.
fn fired(ws: &Workspace, task: &str) -> Option<String> {
    ws.history()
        .into_iter()
        .find(|h| h.task == task && h.rule == "health" && h.status == "firing")
        .map(|h| h.severity)
}

#[test]
fn tcp_tells_open_refused_silent_and_bannered_ports_apart() {
    let open = listener("", "");
    let refused = free_port();
    let banner = listener("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "");
    let pong = listener("", "+PONG\r\n");
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: open\n        tcp: {{ host: 127.0.0.1, port: {open} }}\n\
         \x20     - name: refused\n        tcp: {{ host: 127.0.0.1, port: {refused} }}\n\
         \x20     - name: silent\n        tcp: {{ host: 127.0.0.1, port: {open}, timeout: 1s, expect: \"^SSH-2\\\\.0\" }}\n\
         \x20     - name: ssh\n        tcp: {{ host: 127.0.0.1, port: {banner}, expect: \"^SSH-2\\\\.0\" }}\n\
         \x20     - name: wrong-banner\n        tcp: {{ host: 127.0.0.1, port: {banner}, timeout: 1s, expect: \"^220 \" }}\n\
         \x20     - name: redis\n        tcp: {{ host: 127.0.0.1, port: {pong}, send: \"PING\\r\\n\", expect: \"^\\\\+PONG\" }}\n\
         \x20       rules:\n          - {{ name: slow, signal: connect_ms, value: \"> 1000\" }}\n"
    )));
    let started = Instant::now();
    let out = Tick::new(&ws).at(minute(0)).run("p");
    assert_exit(&out, 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the silent port costs its 1 s timeout, not more: {:?}",
        started.elapsed()
    );
    assert!(
        line_of(&out, "open").starts_with("  ok"),
        "{}",
        stdout(&out)
    );
    let refused_line = line_of(&out, "refused");
    assert!(
        refused_line.contains("FAIL") && refused_line.contains("connection refused"),
        "{refused_line}"
    );
    let silent = line_of(&out, "silent");
    assert!(
        silent.contains("FAIL")
            && silent.contains("no answer matching /^SSH-2\\.0/ within 1s (read 0 bytes"),
        "{silent}"
    );
    let ssh = line_of(&out, "ssh");
    assert!(
        ssh.starts_with("  ok") && ssh.contains("answered \"SSH-2.0-OpenSSH_9.2p1"),
        "{ssh}"
    );
    let wrong = line_of(&out, "wrong-banner");
    assert!(
        wrong.contains("FAIL")
            && wrong.contains("no answer matching /^220 / within 1s (read 32 bytes"),
        "{wrong}"
    );
    assert!(
        wrong.contains("SSH-2.0-OpenSSH"),
        "what it read is shown: {wrong}"
    );
    let redis = line_of(&out, "redis");
    assert!(
        redis.starts_with("  ok") && redis.contains("+PONG"),
        "{redis}"
    );
    for task in ["refused", "silent", "wrong-banner"] {
        assert_eq!(fired(&ws, task).as_deref(), Some("critical"), "{task}");
    }
    for task in ["open", "ssh", "redis"] {
        assert_eq!(fired(&ws, task), None, "{task}");
    }
}

#[test]
fn certificates_warn_at_ten_days_are_critical_at_two_and_fine_at_thirty() {
    let ws = Workspace::new("");
    let dir = ws.path();
    let mut servers = Vec::new();
    let mut tasks = String::new();
    for (stem, days) in [("two", 2), ("ten", 10), ("thirty", 30)] {
        let (cert, key) = certificate(dir, stem, "localhost", days);
        let server = TlsServer::start(&cert, &key);
        // Its own self-signed certificate as ca_file: trusted as itself.
        tasks.push_str(&format!(
            "      - name: {stem}\n        tls: {{ host: 127.0.0.1, port: {}, server_name: localhost, ca_file: {stem}.crt }}\n",
            server.port
        ));
        servers.push(server);
    }
    ws.write_config(&profile_p(&tasks));
    let out = Tick::new(&ws).at(now()).run("p");
    assert_exit(&out, 1);
    assert_eq!(
        fired(&ws, "two").as_deref(),
        Some("critical"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        fired(&ws, "ten").as_deref(),
        Some("warning"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fired(&ws, "thirty"), None, "{}", stdout(&out));
    let ten = line_of(&out, "ten");
    assert!(
        ten.contains("certificate CN=localhost expires")
            && ten.contains("in 10.0 days (warning under 14 days)"),
        "the summary names the subject and notAfter: {ten}"
    );
    assert!(
        line_of(&out, "two").contains("critical under 3 days"),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("not trusted"),
        "self-signed in ca_file is trusted: {}",
        stdout(&out)
    );
}

#[test]
fn an_untrusted_or_misnamed_certificate_is_critical_unless_only_its_expiry_is_watched() {
    let ws = Workspace::new("");
    let (cert, key) = certificate(ws.path(), "server", "node.internal", 30);
    let server = TlsServer::start(&cert, &key);
    let port = server.port;
    let pin = sha256_of(&cert);
    ws.write_config(&profile_p(&format!(
        "      - name: no-ca\n        tls: {{ host: 127.0.0.1, port: {port}, server_name: node.internal }}\n\
         \x20     - name: wrong-name\n        tls: {{ host: 127.0.0.1, port: {port}, server_name: rpc.example.org, ca_file: server.crt }}\n\
         \x20     - name: expiry-only\n        tls: {{ host: 127.0.0.1, port: {port}, tls_verify: false }}\n\
         \x20       rules:\n          - {{ name: chain, signal: cert_chain_ok, value: \"< 1\", severity: warning }}\n\
         \x20     - name: pinned\n        tls: {{ host: 127.0.0.1, port: {port}, server_name: node.internal, pin_sha256: \"{pin}\" }}\n\
         \x20     - name: wrong-pin\n        tls: {{ host: 127.0.0.1, port: {port}, server_name: node.internal, pin_sha256: \"sha256//n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=\" }}\n\
         \x20     - name: backup-pin\n        tls: {{ host: 127.0.0.1, port: {port}, server_name: node.internal, pin_sha256: [\"sha256//n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=\", \"{pin}\"] }}\n\
         \x20     - name: impostor\n        tcp: {{ host: 127.0.0.1, port: {port}, tls: true, server_name: node.internal, send: \"token\\n\", expect: \"ok\" }}\n\
         \x20     - name: tcp-tls\n        tcp: {{ host: 127.0.0.1, port: {port}, tls: true, server_name: node.internal, ca_file: server.crt, send: \"GET / HTTP/1.0\\r\\n\\r\\n\", expect: \"HTTP/1\\\\.[01] 200\" }}\n"
    )));
    let out = Tick::new(&ws).at(now()).run("p");
    let no_ca = line_of(&out, "no-ca");
    assert!(
        no_ca.contains("self-signed") && no_ca.contains("ca_file"),
        "{no_ca}"
    );
    assert_eq!(fired(&ws, "no-ca").as_deref(), Some("critical"));
    let wrong = line_of(&out, "wrong-name");
    assert!(
        wrong.contains(
            "the certificate is for DNS:node.internal, IP:127.0.0.1, not rpc.example.org"
        ),
        "{wrong}"
    );
    assert_eq!(fired(&ws, "wrong-name").as_deref(), Some("critical"));
    // tls_verify: false judges the expiry alone; the chain is still a signal.
    assert_eq!(fired(&ws, "expiry-only"), None, "{}", stdout(&out));
    assert!(
        ws.history()
            .iter()
            .any(|h| h.task == "expiry-only" && h.rule == "chain" && h.status == "firing"),
        "cert_chain_ok is 0 for an untrusted chain: {}",
        stdout(&out)
    );
    assert_eq!(
        fired(&ws, "pinned"),
        None,
        "a matching pin trusts it: {}",
        line_of(&out, "pinned")
    );
    assert!(
        line_of(&out, "wrong-pin").contains("pin_sha256"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fired(&ws, "wrong-pin").as_deref(), Some("critical"));
    assert_eq!(
        fired(&ws, "backup-pin"),
        None,
        "one pin of a list matching trusts it: {}",
        line_of(&out, "backup-pin")
    );
    let impostor = line_of(&out, "impostor");
    assert!(
        impostor.contains("FAIL") && impostor.contains("nothing sent"),
        "{impostor}"
    );
    let tcp = line_of(&out, "tcp-tls");
    assert!(
        tcp.starts_with("  ok") && tcp.contains("answered \"HTTP/1.0 200"),
        "{tcp}"
    );
    drop(server);
}

#[test]
fn check_config_names_the_tcp_keys_that_are_wrong() {
    for (task, wanted) in [
        ("tcp: { host: 127.0.0.1 }", "a `tcp` probe needs `port`"),
        (
            "tcp: { host: 127.0.0.1, port: 22, ca_file: x.pem }",
            "add `tls: true`",
        ),
        (
            "tls: { host: 127.0.0.1, pin_sha256: nope }",
            "pin_sha256 \"nope\" is not a SHA-256 digest",
        ),
        ("tcp: { host: 127.0.0.1, port: 70000 }", "port"),
        (
            "tcp: { host: \"127.0.0.1:9401\", port: 1 }",
            "holds a port: write it as `port:`",
        ),
        ("tls: { host: \"https://127.0.0.1\" }", "is a URL"),
        (
            "tcp: { host: 127.0.0.1, port: 22, timeout: 0s }",
            "leaves no time",
        ),
        (
            "tls: { host: 127.0.0.1, tls_verify: false, pin_sha256: \"sha256//n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=\" }",
            "drop one",
        ),
    ] {
        let ws = Workspace::new(&profile_p(&format!("      - name: a\n        {task}\n")));
        let out = ws.command().arg("check-config").output().unwrap();
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(wanted), "{task}: {err}");
        assert!(
            err.contains("jobs.yaml:8:") || err.contains("jobs.yaml:9:"),
            "{task}: file:line named: {err}"
        );
    }
}

#[test]
fn https_checks_read_the_certificate_and_trust_a_self_signed_server_as_curl_does() {
    let ws = Workspace::new("");
    // The usual self-signed certificate: CN only, marked as a CA.
    let (cert, key) = certificate_with(ws.path(), "vnc", "127.0.0.1", 10, false);
    let server = TlsServer::start(&cert, &key);
    let url = format!("https://127.0.0.1:{}/", server.port);
    let curl = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--cacert"])
        .arg(&cert)
        .arg(&url)
        .status();
    if let Ok(status) = curl {
        assert!(status.success(), "curl trusts it with --cacert");
    }
    ws.write_config(&profile_p(&format!(
        "      - name: ca-file\n        http: {{ url: \"{url}\", ca_file: vnc.crt }}\n\
         \x20       rules:\n          - {{ name: renew, signal: cert_days_left, value: \"< 11\", severity: info }}\n\
         \x20     - name: no-ca\n        http: {{ url: \"{url}\" }}\n\
         \x20     - name: expiry-only\n        http: {{ url: \"{url}\", tls_verify: false, cert_warn_days: 5 }}\n"
    )));
    let out = Tick::new(&ws).at(now()).run("p");
    let line = line_of(&out, "ca-file");
    assert!(
        line.contains("HTTP 200") && line.contains("certificate CN=127.0.0.1 expires"),
        "{line}"
    );
    assert_eq!(
        fired(&ws, "ca-file").as_deref(),
        Some("warning"),
        "10 days left: {line}"
    );
    assert!(
        ws.history()
            .iter()
            .any(|h| h.task == "ca-file" && h.rule == "renew" && h.status == "firing"),
        "cert_days_left is a signal of http: {}",
        stdout(&out)
    );
    let no_ca = line_of(&out, "no-ca");
    assert!(
        no_ca.contains("TLS certificate not trusted: a self-signed certificate"),
        "{no_ca}"
    );
    assert!(no_ca.contains("tls_verify: false"), "{no_ca}");
    assert_eq!(fired(&ws, "no-ca").as_deref(), Some("critical"));
    assert_eq!(
        fired(&ws, "expiry-only"),
        None,
        "10 days ≥ cert_warn_days 5: {}",
        stdout(&out)
    );
}

#[test]
fn thresholds_plugin_judges_each_perfdata_label_by_the_plugins_own_ranges() {
    let plugins = Path::new("/usr/lib/nagios/plugins");
    assert!(
        plugins.join("check_dummy").exists(),
        "Debian's monitoring-plugins-basic (installed by .ci/run)"
    );
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: judged\n        command: {{ argv: [\"{dummy}\", \"0\", \"load fine | load=9;5;8 temp=40C;50;60 ok=3;@10:20;~:2\"], thresholds: plugin }}\n\
         \x20     - name: trusted\n        command: {{ argv: [\"{dummy}\", \"0\", \"load fine | load=9;5;8\"] }}\n\
         \x20     - name: warned\n        command: {{ argv: [\"{dummy}\", \"0\", \"x | q=6;5;8\"], thresholds: plugin }}\n\
         \x20     - name: disk-full\n        command: {{ argv: [\"{disk}\", \"-w\", \"100%\", \"-c\", \"100%\", \"-p\", \"/\"], thresholds: plugin }}\n\
         \x20     - name: disk-fine\n        command: {{ argv: [\"{disk}\", \"-w\", \"1%\", \"-c\", \"1%\", \"-p\", \"/\"], thresholds: plugin }}\n\
         \x20     - name: garbled\n        command: {{ argv: [\"{dummy}\", \"0\", \"OK | a=15;abc;xyz b=3;5;8\"], thresholds: plugin }}\n",
        dummy = plugins.join("check_dummy").display(),
        disk = plugins.join("check_disk").display(),
    )));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    let text = stdout(&out);
    // The plugin said OK; its own crit field says load 9 is outside 0:8,
    // and ok=3 is outside its crit ~:2.
    assert_eq!(fired(&ws, "judged").as_deref(), Some("critical"), "{text}");
    assert!(
        text.contains("perfdata load = 9 is outside the plugin's critical range 8"),
        "{text}"
    );
    assert!(
        !text.contains("perfdata temp"),
        "temp 40C is within its ranges: {text}"
    );
    assert_eq!(
        fired(&ws, "trusted"),
        None,
        "without thresholds: plugin the exit code decides: {text}"
    );
    assert_eq!(fired(&ws, "warned").as_deref(), Some("warning"), "{text}");
    assert!(
        text.contains("perfdata q = 6 is outside the plugin's warning range 5"),
        "{text}"
    );
    assert_eq!(
        fired(&ws, "disk-full").as_deref(),
        Some("critical"),
        "{text}"
    );
    assert!(
        text.contains("perfdata / = "),
        "check_disk's perfdata is judged: {text}"
    );
    assert_eq!(fired(&ws, "disk-fine"), None, "{text}");
    // Fields that are no range (Nagios ignores them) are a warning that
    // says so, never a critical alert on a plugin that said OK.
    assert_eq!(fired(&ws, "garbled").as_deref(), Some("warning"), "{text}");
    assert!(
        text.contains("perfdata a: the plugin's critical field \"xyz\" is no range")
            && text.contains("the plugin's warning field \"abc\" is no range"),
        "{text}"
    );
}

#[test]
fn a_nagios_range_in_a_rule_fires_outside_it() {
    let ws = Workspace::new(&profile_p(
        "      - name: peers\n        command: { argv: [\"/bin/sh\", \"-c\", \"echo \\\"OK | peers=$(cat peers)\\\"\"], cwd: . }\n\
         \x20       rules:\n          - { name: peer_band, signal: peers, value: \"8:50\" }\n\
         \x20         - { name: not_idle, signal: peers, value: \"@0:0\" }\n",
    ));
    let set = |n: u32| std::fs::write(ws.path().join("peers"), n.to_string()).unwrap();
    let firing = |rule: &str| {
        ws.history()
            .iter()
            .filter(|h| h.rule == rule)
            .map(|h| h.status.clone())
            .collect::<Vec<_>>()
    };
    set(12);
    Tick::new(&ws).at(minute(0)).run("p");
    assert!(firing("peer_band").is_empty() && firing("not_idle").is_empty());
    set(7);
    let out = Tick::new(&ws).at(minute(1)).run("p");
    assert_eq!(firing("peer_band"), ["firing"], "{}", stdout(&out));
    assert!(stdout(&out).contains("outside 8:50"), "{}", stdout(&out));
    set(0);
    Tick::new(&ws).at(minute(2)).run("p");
    assert_eq!(firing("not_idle"), ["firing"]);
    set(20);
    Tick::new(&ws).at(minute(3)).run("p");
    assert_eq!(firing("peer_band"), ["firing", "resolved"]);
}

/// Seed 003's Stellar RPC `getHealth`, faked: its answer names the status
/// and the latest ledger's close time (as a number and as RFC 3339).
fn get_health_server(close_time: i64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let rfc3339 = time::OffsetDateTime::from_unix_timestamp(close_time)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let body = format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"status\":\"healthy\",\"latestLedger\":51234567,\"oldestLedger\":51113608,\"ledgerRetentionWindow\":120960,\"latestLedgerCloseTime\":{close_time},\"closedAt\":\"{rfc3339}\",\"version\":\"22.1.0\"}}}}"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn stellar_get_health_age_fires_at_31_seconds_not_at_29() {
    let close_time = minute(0);
    let port = get_health_server(close_time);
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: stellar-rpc\n        http:\n          url: \"http://127.0.0.1:{port}/\"\n          jsonrpc: {{ method: getHealth }}\n          extract: {{ health: /result/status, close_time: /result/latestLedgerCloseTime, closed_at: /result/closedAt, version: /result/version }}\n        rules:\n          - {{ name: behind, signal: \"age_s(close_time)\", value: \"> 30\" }}\n          - {{ name: behind-rfc3339, signal: \"age_s(closed_at)\", value: \"> 30\" }}\n          - {{ name: unhealthy, signal: health, value: '!= \"healthy\"' }}\n          - {{ name: old-version, signal: version, value: '!~ \"^22\\.\"' }}\n"
    )));
    let firing = |rule: &str| {
        ws.history()
            .iter()
            .any(|h| h.rule == rule && h.status == "firing")
    };
    let out = Tick::new(&ws).at(close_time + 29).run("p");
    assert_exit(&out, 0);
    assert!(
        !firing("behind") && !firing("behind-rfc3339"),
        "{}",
        stdout(&out)
    );
    assert!(
        !firing("unhealthy") && !firing("old-version"),
        "{}",
        stdout(&out)
    );
    let out = Tick::new(&ws).at(close_time + 31).run("p");
    assert_exit(&out, 1);
    assert!(
        firing("behind") && firing("behind-rfc3339"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("age_s(close_time) = 31 (> 30)"),
        "{}",
        stdout(&out)
    );
    assert!(!firing("unhealthy") && !firing("old-version"));
}

#[test]
fn text_conditions_fire_on_the_text_a_probe_read() {
    let ws = Workspace::new("");
    let write = |status: &str| {
        std::fs::write(
            ws.path().join("health.json"),
            format!("{{\"status\":\"{status}\"}}"),
        )
        .unwrap()
    };
    write("healthy");
    // A server of the file's current text (read per request).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let file = ws.path().join("health.json");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = std::fs::read_to_string(&file).unwrap();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    ws.write_config(&profile_p(&format!(
        "      - name: api\n        http: {{ url: \"http://127.0.0.1:{port}/\", extract: {{ health: /status }} }}\n        rules:\n          - {{ name: unhealthy, signal: health, value: '!= \"healthy\"' }}\n"
    )));
    let statuses = || {
        ws.history()
            .into_iter()
            .filter(|h| h.rule == "unhealthy")
            .map(|h| h.status)
            .collect::<Vec<_>>()
    };
    assert_exit(&Tick::new(&ws).at(minute(0)).run("p"), 0);
    write("catching_up");
    let out = Tick::new(&ws).at(minute(1)).run("p");
    assert_eq!(statuses(), ["firing"], "{}", stdout(&out));
    assert!(
        stdout(&out).contains("health = \"catching_up\" (!= \"healthy\")"),
        "{}",
        stdout(&out)
    );
    write("healthy");
    Tick::new(&ws).at(minute(2)).run("p");
    assert_eq!(statuses(), ["firing", "resolved"]);
}

/// Whether this machine lets us open an ICMP socket of `kind`.
fn icmp_allowed(kind: socket2::Type) -> bool {
    socket2::Socket::new(socket2::Domain::IPV4, kind, Some(socket2::Protocol::ICMPV4)).is_ok()
}

fn ping_task(name: &str, socket: &str) -> String {
    format!(
        "      - name: {name}\n        ping: {{ host: 127.0.0.1, count: 3, interval: 20ms, wait: 300ms, socket: {socket} }}\n        rules:\n          - {{ name: {name}-lossy, signal: loss_ratio, value: \"> 0.5\" }}\n"
    )
}

#[test]
fn ping_answers_on_loopback_in_each_socket_mode_the_machine_allows() {
    let ws = Workspace::new(&profile_p(&format!(
        "{}{}{}",
        ping_task("raw", "raw"),
        ping_task("dgram", "dgram"),
        ping_task("auto", "auto")
    )));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    let text = stdout(&out);
    for (task, kind) in [("raw", socket2::Type::RAW), ("dgram", socket2::Type::DGRAM)] {
        let line = line_of(&out, task);
        if icmp_allowed(kind) {
            assert!(
                line.starts_with("  ok") && line.contains("3 of 3 replies, 0% loss"),
                "{line}"
            );
            assert!(line.contains(&format!("({task} socket)")), "{line}");
        } else if task == "raw" {
            assert!(
                line.contains("no raw ICMP socket") && line.contains("CAP_NET_RAW"),
                "{line}"
            );
        } else {
            assert!(
                line.contains("no ping socket") && line.contains("net.ipv4.ping_group_range"),
                "the refusal says what to change: {line}"
            );
        }
    }
    let auto = line_of(&out, "auto");
    if icmp_allowed(socket2::Type::RAW) || icmp_allowed(socket2::Type::DGRAM) {
        assert!(auto.starts_with("  ok"), "{auto}");
    } else {
        assert!(auto.contains("ICMP echo is not permitted here"), "{auto}");
    }
    assert!(
        !ws.history()
            .iter()
            .any(|h| h.rule.ends_with("-lossy") && h.status == "firing"),
        "no loss on loopback: {text}"
    );
}

/// In a network namespace of its own (`unshare -n`, as root), loopback
/// can be made to ignore echo requests and to admit ping sockets: the
/// probe's loss and both socket modes, without touching the host.
#[test]
fn ping_counts_lost_echoes_and_uses_ping_sockets_where_admitted() {
    let unshare = std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !unshare {
        eprintln!("skipped: `unshare -n` needs root here");
        return;
    }
    let ws = Workspace::new(&profile_p(&format!(
        "{}{}",
        ping_task("raw", "raw"),
        ping_task("dgram", "dgram")
    )));
    let run = |setup: &str| {
        let script = format!(
            "ip link set lo up && {setup} && MONITOR_NOW={} exec \"$0\" --config \"$1\" run p",
            minute(0)
        );
        Command::new("unshare")
            .args(["-n", "sh", "-c", &script, env!("CARGO_BIN_EXE_monitor")])
            .arg(ws.config())
            .env_remove("MONITOR_DB")
            .output()
            .unwrap()
    };
    let out = run("sysctl -qw net.ipv4.ping_group_range='0 2147483647'");
    let dgram = line_of(&out, "dgram");
    assert!(
        dgram.starts_with("  ok") && dgram.contains("(dgram socket)"),
        "{dgram}"
    );
    std::fs::remove_dir_all(ws.path().join("state")).unwrap();
    let out = run("sysctl -qw net.ipv4.icmp_echo_ignore_all=1");
    let raw = line_of(&out, "raw");
    assert!(
        raw.contains("FAIL")
            && raw.contains("no reply to 3 echo requests within 300ms (100% loss)"),
        "{raw}"
    );
    assert!(
        ws.history()
            .iter()
            .any(|h| h.rule == "raw-lossy" && h.status == "firing"),
        "loss_ratio 1 fires the loss rule: {}",
        stdout(&out)
    );
}

/// `dnsmasq` on a loopback port, answering only the records the test
/// gives (no upstream, no /etc/hosts), killed when dropped.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Dnsmasq {
    fn start(records: &[&str]) -> Dnsmasq {
        let port = free_port();
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
            ])
            .args([
                "--no-resolv",
                "--no-hosts",
                "--local=/test/",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian: dnsmasq-base, installed by .ci/run)");
        let started = Instant::now();
        // Ready once it answers over TCP too.
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "dnsmasq never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Dnsmasq { child, port }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP responder on loopback answering every query with `code`.
fn dns_responder(code: hickory_proto::op::ResponseCode) -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        while let Ok((read, from)) = socket.recv_from(&mut buffer) {
            let Ok(query) = hickory_proto::op::Message::from_vec(&buffer[..read]) else {
                continue;
            };
            let mut answer = hickory_proto::op::Message::error_msg(
                query.metadata.id,
                query.metadata.op_code,
                code,
            );
            answer.queries = query.queries.clone();
            let _ = socket.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    port
}

#[test]
fn dns_tells_records_nxdomain_servfail_and_silence_apart() {
    let dns = Dnsmasq::start(&[
        "--address=/node.test/127.0.0.7",
        "--txt-record=node.test,v=spf1 -all,validator=1",
        "--cname=rpc.test,node.test",
    ]);
    let servfail = dns_responder(hickory_proto::op::ResponseCode::ServFail);
    let closed = free_port();
    let server = format!("127.0.0.1:{}", dns.port);
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: a\n        dns: {{ name: node.test, server: \"{server}\", expect: [\"127.0.0.7\"] }}\n\
         \x20       rules:\n          - {{ name: slow, signal: resolve_ms, value: \"> 500\" }}\n\
         \x20     - name: a-moved\n        dns: {{ name: node.test, server: \"{server}\", expect: [\"10.0.0.5\"] }}\n\
         \x20     - name: txt\n        dns: {{ name: node.test, type: TXT, server: \"{server}\", contains: [\"validator=1\"] }}\n\
         \x20     - name: cname\n        dns: {{ name: rpc.test, type: CNAME, server: \"{server}\", expect: [\"node.test\"] }}\n\
         \x20     - name: nx\n        dns: {{ name: gone.test, server: \"{server}\" }}\n\
         \x20     - name: servfail\n        dns: {{ name: node.test, server: \"127.0.0.1:{servfail}\" }}\n\
         \x20     - name: closed\n        dns: {{ name: node.test, server: \"127.0.0.1:{closed}\", timeout: 1s }}\n"
    )));
    let started = Instant::now();
    let out = Tick::new(&ws).at(minute(0)).run("p");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let text = stdout(&out);
    assert!(
        line_of(&out, "a").starts_with("  ok") && text.contains("node.test A = 127.0.0.7"),
        "{text}"
    );
    assert!(
        line_of(&out, "a-moved").contains("node.test A is 127.0.0.7, expected exactly 10.0.0.5"),
        "{text}"
    );
    assert!(line_of(&out, "txt").starts_with("  ok"), "{text}");
    assert!(
        line_of(&out, "cname").starts_with("  ok"),
        "a trailing dot is no difference: {text}"
    );
    assert!(
        line_of(&out, "nx").contains("NXDOMAIN") && line_of(&out, "nx").contains("does not exist"),
        "{text}"
    );
    let sf = line_of(&out, "servfail");
    assert!(sf.contains("SERVFAIL") && !sf.contains("NXDOMAIN"), "{sf}");
    assert!(
        line_of(&out, "closed").contains("refused the query"),
        "{text}"
    );
    for task in ["a-moved", "nx", "servfail", "closed"] {
        assert_eq!(
            fired(&ws, task).as_deref(),
            Some("critical"),
            "{task}: {text}"
        );
    }
    for task in ["a", "txt", "cname"] {
        assert_eq!(fired(&ws, task), None, "{task}: {text}");
    }
}

/// Review of issue 15: a certificate trusted as itself (ca_file) or by
/// its pin is still held to its dates, as curl holds it.
#[test]
fn a_certificate_trusted_as_itself_or_by_pin_is_held_to_its_dates() {
    let ws = Workspace::new("");
    let (cert, key) = certificate(ws.path(), "own", "localhost", 30);
    let server = TlsServer::start(&cert, &key);
    let pin = sha256_of(&cert);
    ws.write_config(&profile_p(&format!(
        "      - name: own\n        tls: {{ host: 127.0.0.1, port: {port}, server_name: localhost, ca_file: own.crt }}\n\
         \x20     - name: pinned\n        tls: {{ host: 127.0.0.1, port: {port}, server_name: localhost, pin_sha256: \"{pin}\" }}\n",
        port = server.port
    )));
    let day = 86_400;
    for (at, says) in [
        // Said once, by the expiry's own words (not also "has expired").
        (now() + 40 * day, "days ago)"),
        (now() - day, "not valid yet"),
    ] {
        std::fs::remove_dir_all(ws.path().join("state")).ok();
        let out = Tick::new(&ws).at(at).run("p");
        for task in ["own", "pinned"] {
            let line = line_of(&out, task);
            assert!(line.contains(says), "{task} at {at}: {line}");
            assert!(!line.contains("has expired"), "{task} at {at}: {line}");
            assert_eq!(fired(&ws, task).as_deref(), Some("critical"), "{line}");
        }
    }
    let out = Tick::new(&ws).at(now() + 60).run("p");
    assert!(line_of(&out, "own").starts_with("  ok"), "{}", stdout(&out));
}

/// Review of issue 15: a service that answers, with a certificate about
/// to expire, is told about but not restarted (a restart renews nothing).
#[test]
fn a_certificate_finding_alerts_but_restarts_nothing() {
    let ws = Workspace::new("");
    let (cert, key) = certificate(ws.path(), "soon", "localhost", 2);
    let server = TlsServer::start(&cert, &key);
    let log = ws.path().join("restarts");
    let remediate = format!(
        "        remediate:\n          restart:\n            stop: {{ command: \"true\" }}\n            start: {{ command: \"echo r >> {}\" }}\n            wait_healthy: 1s\n",
        log.display()
    );
    ws.write_config(&profile_p(&format!(
        "      - name: web\n        http: {{ url: \"https://localhost:{port}/\", ca_file: soon.crt }}\n{remediate}\
         \x20     - name: port\n        tls: {{ host: 127.0.0.1, port: {port}, server_name: localhost, ca_file: soon.crt }}\n{remediate}",
        port = server.port
    )));
    let out = Tick::new(&ws).at(now()).run("p");
    assert_eq!(
        fired(&ws, "web").as_deref(),
        Some("critical"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        fired(&ws, "port").as_deref(),
        Some("critical"),
        "{}",
        stdout(&out)
    );
    assert!(
        !log.exists(),
        "no restart for a certificate: {}",
        stdout(&out)
    );
}

/// Review of issue 15: an answer's records for another name are no answer
/// (a responder that puts `other.test A 6.6.6.6` beside the real one).
#[test]
fn dns_ignores_records_for_another_name() {
    use hickory_proto::op::Message;
    use hickory_proto::rr::{Name, RData, Record, rdata::A};
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        while let Ok((read, from)) = socket.recv_from(&mut buffer) {
            let Ok(query) = Message::from_vec(&buffer[..read]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.queries = query.queries.clone();
            let asked = query.queries[0].name().clone();
            if asked.to_string().starts_with("real") {
                answer.add_answer(Record::from_rdata(
                    asked,
                    60,
                    RData::A(A::new(127, 0, 0, 9)),
                ));
            }
            let other = Name::from_ascii("other.test.").unwrap();
            answer.add_answer(Record::from_rdata(other, 60, RData::A(A::new(6, 6, 6, 6))));
            let _ = socket.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: stray-only\n        dns: {{ name: a.test, server: \"127.0.0.1:{port}\" }}\n\
         \x20     - name: beside\n        dns: {{ name: real.test, server: \"127.0.0.1:{port}\", expect: [\"127.0.0.9\"] }}\n\
         \x20     - name: stray-wanted\n        dns: {{ name: real.test, server: \"127.0.0.1:{port}\", contains: [\"6.6.6.6\"] }}\n"
    )));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    assert!(
        line_of(&out, "stray-only").contains("no A record"),
        "{}",
        stdout(&out)
    );
    assert!(
        line_of(&out, "beside").starts_with("  ok"),
        "{}",
        stdout(&out)
    );
    assert!(
        line_of(&out, "stray-wanted").contains("missing 6.6.6.6"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_http_extract_may_not_take_the_name_of_the_probes_own_signal() {
    let ws = Workspace::new(&profile_p(
        "      - name: api\n        http: { url: \"http://127.0.0.1:1/\", extract: { up: /code } }\n",
    ));
    let out = ws.command().arg("check-config").output().unwrap();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("would replace the http probe's own `up` signal"),
        "{}",
        stderr(&out)
    );
}

/// Review of issue 15: a leaf good for 60 days, issued by an intermediate
/// CA that expires in 5: the chain stops being trusted in 5 days, so the
/// check warns now and says which certificate is the near one
/// (`cert_chain_days_left`), as check_ssl_cert and Uptime Kuma do.
#[test]
fn an_intermediate_expiring_before_the_leaf_is_a_warning() {
    let ws = Workspace::new("");
    let dir = ws.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let req = |subject: &str, stem: &str| {
        let key = format!("{stem}.key");
        let csr = format!("{stem}.csr");
        let mut args = vec!["req", "-new"];
        args.extend(ec);
        args.extend(["-subj", subject, "-keyout", &key, "-out", &csr]);
        openssl(&args);
    };
    let mut root = vec!["req", "-x509"];
    root.extend(ec);
    root.extend([
        "-days",
        "365",
        "-subj",
        "/CN=Test Root",
        "-keyout",
        "root.key",
        "-out",
        "root.crt",
    ]);
    openssl(&root);
    std::fs::write(
        dir.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let sign = |stem: &str, by: &str, days: &str, ext: &str| {
        let (csr, out) = (format!("{stem}.csr"), format!("{stem}.crt"));
        let (ca, ca_key) = (format!("{by}.crt"), format!("{by}.key"));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            ext,
            "-out",
            &out,
        ]);
    };
    req("/CN=Test Intermediate", "inter");
    sign("inter", "root", "5", "ca.ext");
    req("/CN=127.0.0.1", "leaf");
    sign("leaf", "inter", "60", "leaf.ext");
    let server = TlsServer::start_with(
        &dir.join("leaf.crt"),
        &dir.join("leaf.key"),
        &[Path::new("-cert_chain"), &dir.join("inter.crt")],
    );
    let port = server.port;
    ws.write_config(&profile_p(&format!(
        "      - name: rpc-cert\n        tls: {{ host: 127.0.0.1, port: {port}, ca_file: root.crt }}\n\
         \x20       rules:\n          - {{ name: chain, signal: cert_chain_days_left, value: \"< 6\", severity: info }}\n\
         \x20         - {{ name: leaf, signal: cert_days_left, value: \"< 6\", severity: info }}\n"
    )));
    let out = Tick::new(&ws).at(now()).run("p");
    let line = line_of(&out, "rpc-cert");
    assert!(
        line.starts_with("  WARN")
            && line.contains("certificate CN=127.0.0.1 expires")
            && line.contains("in 60 days")
            && line.contains("its chain's CN=Test Intermediate expires")
            && line.contains("in 5.0 days (warning under 14 days)"),
        "{}",
        stdout(&out)
    );
    let firing: Vec<String> = ws
        .history()
        .into_iter()
        .filter(|h| h.status == "firing")
        .map(|h| h.rule)
        .collect();
    assert!(firing.contains(&"chain".to_string()), "{firing:?}");
    assert!(!firing.contains(&"leaf".to_string()), "{firing:?}");
    drop(server);
    // The same leaf served without its intermediate: the missing link is
    // named, not the ca_file that is there.
    let bare = TlsServer::start(&dir.join("leaf.crt"), &dir.join("leaf.key"));
    ws.write_config(&profile_p(&format!(
        "      - name: no-chain\n        tls: {{ host: 127.0.0.1, port: {}, ca_file: root.crt }}\n",
        bare.port
    )));
    let out = Tick::new(&ws).at(now()).run("p");
    assert!(
        line_of(&out, "no-chain").contains("the server sent no intermediate certificate"),
        "{}",
        stdout(&out)
    );
    drop(bare);
    // The server also sends a cross-sign of the root by an old root, about
    // to expire (Let's Encrypt's DST Root CA X3 in 2021): no trusted path
    // needs it, so its expiry ends nothing and is no alert.
    let mut old = vec!["req", "-x509"];
    old.extend(ec);
    old.extend([
        "-days",
        "365",
        "-subj",
        "/CN=Old Root",
        "-keyout",
        "old.key",
        "-out",
        "old.crt",
    ]);
    openssl(&old);
    openssl(&[
        "req",
        "-new",
        "-key",
        "root.key",
        "-subj",
        "/CN=Test Root",
        "-out",
        "cross.csr",
    ]);
    sign("cross", "old", "2", "ca.ext");
    req("/CN=Test Intermediate 2", "inter2");
    sign("inter2", "root", "300", "ca.ext");
    req("/CN=127.0.0.1", "leaf2");
    sign("leaf2", "inter2", "200", "leaf.ext");
    let chain = [
        std::fs::read_to_string(dir.join("inter2.crt")).unwrap(),
        std::fs::read_to_string(dir.join("cross.crt")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("chain2.pem"), chain).unwrap();
    let crossed = TlsServer::start_with(
        &dir.join("leaf2.crt"),
        &dir.join("leaf2.key"),
        &[Path::new("-cert_chain"), &dir.join("chain2.pem")],
    );
    ws.write_config(&profile_p(&format!(
        "      - name: crossed\n        tls: {{ host: 127.0.0.1, port: {}, ca_file: root.crt }}\n",
        crossed.port
    )));
    let out = Tick::new(&ws).at(now()).run("p");
    let line = line_of(&out, "crossed");
    assert!(
        line.starts_with("  ok") && !line.contains("Test Root"),
        "{}",
        stdout(&out)
    );
}

/// As cron runs it: no environment at all (no PATH, HOME or LANG), the
/// working folder `/`. The new probes need none of it: the tcp, tls (its
/// `ca_file` relative to jobs.yaml), dns and ping checks of one profile
/// all pass against real peers on loopback.
#[test]
fn the_new_probes_run_under_crons_empty_environment() {
    let ws = Workspace::new("");
    let (cert, key) = certificate(ws.path(), "rpc", "127.0.0.1", 30);
    let server = TlsServer::start(&cert, &key);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dns = Dnsmasq::start(&["--address=/rpc.test/127.0.0.7"]);
    ws.write_config(&profile_p(&format!(
        "      - name: port\n        tcp: {{ host: 127.0.0.1, port: {} }}\n\
         \x20     - name: cert\n        tls: {{ host: 127.0.0.1, port: {}, ca_file: rpc.crt }}\n\
         \x20     - name: name\n        dns: {{ name: rpc.test, server: \"127.0.0.1:{}\", expect: [127.0.0.7] }}\n\
         \x20     - name: host\n        ping: {{ host: 127.0.0.1, count: 2, interval: 20ms, wait: 300ms }}\n",
        listener.local_addr().unwrap().port(),
        server.port,
        dns.port
    )));
    let out = ws
        .command()
        .env_clear()
        .current_dir("/")
        .env("MONITOR_NOW", now().to_string())
        .args(["run", "p"])
        .output()
        .unwrap();
    let text = stdout(&out);
    for task in ["port", "cert", "name"] {
        assert!(
            line_of(&out, task).starts_with("  ok"),
            "{task}: {text}{}",
            stderr(&out)
        );
    }
    let host = line_of(&out, "host");
    if icmp_allowed(socket2::Type::RAW) || icmp_allowed(socket2::Type::DGRAM) {
        assert!(host.starts_with("  ok"), "{text}");
        assert_exit(&out, 0);
    } else {
        assert!(host.contains("ICMP echo is not permitted here"), "{host}");
    }
    drop(server);
}

/// Review of issue 15: an X.509 v1 certificate (`openssl x509 -req
/// -signkey` without `-extfile`, as many old how-tos make it) cannot be
/// verified by webpki, but its expiry is read all the same: trusted as
/// itself by `ca_file` or not verified, it is judged by its days; with
/// neither, the check says it is v1 and how to re-issue it.
#[test]
fn an_x509_v1_certificate_is_still_read_for_its_expiry() {
    let ws = Workspace::new("");
    let dir = ws.path();
    for args in [
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "v1.key",
            "-out",
            "v1.csr",
        ][..],
        &[
            "x509", "-req", "-in", "v1.csr", "-signkey", "v1.key", "-days", "10", "-out", "v1.crt",
        ][..],
    ] {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", "v1.crt"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        stdout(&text).contains("Version: 1 (0x0)"),
        "{}",
        stdout(&text)
    );
    let server = TlsServer::start(&dir.join("v1.crt"), &dir.join("v1.key"));
    let port = server.port;
    ws.write_config(&profile_p(&format!(
        "      - name: own\n        tls: {{ host: 127.0.0.1, port: {port}, ca_file: v1.crt }}\n\
         \x20     - name: unverified\n        http: {{ url: \"https://127.0.0.1:{port}/\", tls_verify: false }}\n\
         \x20     - name: untrusted\n        tls: {{ host: 127.0.0.1, port: {port} }}\n"
    )));
    let out = Tick::new(&ws).at(now()).run("p");
    for task in ["own", "unverified"] {
        let line = line_of(&out, task);
        assert!(
            line.starts_with("  WARN") && line.contains("in 10.0 days (warning under 14 days)"),
            "{line}"
        );
    }
    let untrusted = line_of(&out, "untrusted");
    assert!(
        untrusted.starts_with("  FAIL")
            && untrusted.contains("an X.509 v1 certificate")
            && untrusted.contains("re-issue it as v3"),
        "{untrusted}"
    );
    drop(server);
}

/// Review of issue 15: records compare as what they are. An IPv6 address
/// in any spelling is the same address; TXT text is compared with its case
/// (a verification token or DKIM key that changed case changed); an MX
/// expected by its host alone matches its exchange, whatever preference.
#[test]
fn dns_records_compare_as_addresses_names_and_exact_text() {
    let dns = Dnsmasq::start(&[
        "--address=/v6.test/::1",
        "--txt-record=tok.test,site-verification=AbC123",
        "--mx-host=mail.test,mx1.mail.test,10",
        "--mx-host=mix.test,mx1.mix.test,10",
        "--mx-host=mix.test,mx2.mix.test,20",
        "--host-record=xn--bcher-kva.test,127.0.0.40",
    ]);
    let server = format!("127.0.0.1:{}", dns.port);
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: v6\n        dns: {{ name: v6.test, type: AAAA, server: \"{server}\", expect: [\"0:0:0:0:0:0:0:1\"] }}\n\
         \x20     - name: token\n        dns: {{ name: tok.test, type: TXT, server: \"{server}\", expect: [\"site-verification=AbC123\"] }}\n\
         \x20     - name: token-case\n        dns: {{ name: tok.test, type: TXT, server: \"{server}\", expect: [\"site-verification=abc123\"] }}\n\
         \x20     - name: mx\n        dns: {{ name: mail.test, type: mx, server: \"{server}\", expect: [\"MX1.mail.test.\"] }}\n\
         \x20     - name: mx-pref\n        dns: {{ name: mail.test, type: MX, server: \"{server}\", contains: [\"20 mx1.mail.test\"] }}\n\
         \x20     - name: mx-mixed\n        dns: {{ name: mix.test, type: MX, server: \"{server}\", expect: [\"10 mx1.mix.test\", \"mx2.mix.test\"] }}\n\
         \x20     - name: mx-mixed-contains\n        dns: {{ name: mix.test, type: MX, server: \"{server}\", contains: [\"mx1.mix.test\", \"20 mx2.mix.test\"] }}\n\
         \x20     - name: puny\n        dns: {{ name: xn--bcher-kva.test, server: \"{server}\", expect: [\"127.0.0.40\"] }}\n\
         \x20     - name: idn\n        dns: {{ name: bücher.test, server: \"{server}\", expect: [\"127.0.0.40\"] }}\n\
         \x20     - name: idn-upper\n        dns: {{ name: BÜCHER.test, server: \"{server}\", expect: [\"127.0.0.40\"] }}\n"
    )));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    for task in [
        "v6",
        "token",
        "mx",
        "mx-mixed",
        "mx-mixed-contains",
        "puny",
        "idn",
        "idn-upper",
    ] {
        assert!(
            line_of(&out, task).starts_with("  ok"),
            "{task}: {}",
            stdout(&out)
        );
    }
    for task in ["token-case", "mx-pref"] {
        assert!(
            line_of(&out, task).starts_with("  FAIL"),
            "{task}: {}",
            stdout(&out)
        );
    }
}

/// A UDP "server" on loopback answering every datagram with `reply(query)`.
fn udp_replier(reply: fn(&[u8]) -> Vec<u8>) -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        while let Ok((read, from)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(&reply(&buffer[..read]), from);
        }
    });
    port
}

#[test]
fn a_server_answering_garbage_is_told_from_one_that_stays_silent() {
    // Something that is no DNS server (a game server, a misrouted port)
    // answers every datagram with its own bytes.
    let garbage = udp_replier(|_| b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    // A resolver that answers, but another query's id.
    let stray = udp_replier(|query| {
        let mut query = hickory_proto::op::Message::from_vec(query).unwrap();
        query.metadata.id = query.metadata.id.wrapping_add(1);
        query.metadata.message_type = hickory_proto::op::MessageType::Response;
        query.to_vec().unwrap()
    });
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: garbage\n        dns: {{ name: node.test, server: \"127.0.0.1:{garbage}\", timeout: 1s }}\n\
         \x20     - name: stray\n        dns: {{ name: node.test, server: \"127.0.0.1:{stray}\", timeout: 1s }}\n"
    )));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    let text = stdout(&out);
    let garbage = line_of(&out, "garbage");
    assert!(
        garbage.contains("is no DNS message") && garbage.contains("1 reply"),
        "{text}"
    );
    assert!(
        line_of(&out, "stray").contains("answers another query"),
        "{text}"
    );
    for task in ["garbage", "stray"] {
        assert_eq!(fired(&ws, task).as_deref(), Some("critical"), "{text}");
    }
}

#[test]
fn a_server_speaking_only_tls_1_1_is_told_in_words() {
    let ws = Workspace::new(&profile_p(""));
    let (cert, key) = certificate(ws.path(), "old", "localhost", 30);
    let server = TlsServer::start_with(
        &cert,
        &key,
        &[
            Path::new("-tls1_1"),
            Path::new("-cipher"),
            Path::new("DEFAULT@SECLEVEL=0"),
        ],
    );
    ws.write_config(&profile_p(&format!(
        "      - name: old\n        tls: {{ host: 127.0.0.1, port: {}, tls_verify: false }}\n",
        server.port
    )));
    let out = Tick::new(&ws).at(now()).run("p");
    let line = line_of(&out, "old");
    assert!(
        line.contains("older than TLS 1.2") && !line.contains("ProtocolVersion"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_rule_with_a_unit_reads_perfdata_in_the_plugins_own_unit() {
    let ws = Workspace::new(&profile_p(
        "      - name: plugin\n        command: { argv: [\"/bin/echo\", \"OK | pl=30%;; t=500ms;; used=2GB;; rta=0.042ms;;\"] }\n\
         \x20       rules:\n\
         \x20         - { name: loss, signal: pl, value: \"> 50%\" }\n\
         \x20         - { name: slow, signal: t, value: \"> 1s\" }\n\
         \x20         - { name: slowish, signal: t, value: \"> 100ms\" }\n\
         \x20         - { name: full, signal: used, value: \"> 1GiB\" }\n\
         \x20         - { name: rtt, signal: rta, value: \"> 1ms\" }\n\
         \x20         - { name: mixed, signal: pl, value: \"> 1s\" }\n\
         \x20         - { name: raw, signal: t, value: \"> 400\" }\n",
    ));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    let firing: Vec<String> = ws
        .history()
        .into_iter()
        .filter(|h| h.status == "firing")
        .map(|h| h.rule)
        .collect();
    let text = stdout(&out);
    for rule in ["slowish", "full", "raw"] {
        assert!(firing.contains(&rule.to_string()), "{rule} fires: {text}");
    }
    for rule in ["loss", "slow", "rtt"] {
        assert!(
            !firing.contains(&rule.to_string()),
            "{rule} is quiet: {text}"
        );
    }
    assert!(
        text.contains("`pl` is in % (the plugin's unit), but `> 1s` is a duration"),
        "{text}"
    );
}

#[test]
fn an_https_check_refused_by_its_pin_says_why_once_and_not_tls_verify() {
    let ws = Workspace::new("");
    let (cert, key) = certificate(ws.path(), "web", "localhost", 30);
    let server = TlsServer::start(&cert, &key);
    ws.write_config(&profile_p(&format!(
        "      - name: web\n        http: {{ url: \"https://localhost:{}/\", pin_sha256: \"sha256//n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=\" }}\n",
        server.port
    )));
    let out = Tick::new(&ws).at(now()).run("p");
    let line = line_of(&out, "web");
    assert_eq!(line.matches("matches pin_sha256").count(), 1, "{line}");
    assert!(
        !line.contains("not judged") && line.contains("in 30 days"),
        "{line}"
    );
    // With a pin, turning checks off is refused: not offered.
    assert!(!line.contains("tls_verify: false"), "{line}");
    assert_eq!(fired(&ws, "web").as_deref(), Some("critical"));
}

/// Stranger review of issue 15: a lost datagram is sent again (as dig
/// does), and a UDP echo service is no DNS server.
#[test]
fn a_lost_dns_query_is_sent_again_and_an_echo_is_no_answer() {
    // Drops the first query of each client port, answers the next.
    let lossy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let lossy_port = lossy.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        let mut seen = std::collections::HashSet::new();
        while let Ok((read, from)) = lossy.recv_from(&mut buffer) {
            if seen.insert(from) {
                continue;
            }
            let query = hickory_proto::op::Message::from_vec(&buffer[..read]).unwrap();
            let mut answer = hickory_proto::op::Message::error_msg(
                query.metadata.id,
                query.metadata.op_code,
                hickory_proto::op::ResponseCode::NXDomain,
            );
            answer.queries = query.queries.clone();
            let _ = lossy.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    let echo = udp_replier(|query| query.to_vec());
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: lossy\n        dns: {{ name: gone.test, server: \"127.0.0.1:{lossy_port}\", timeout: 3s }}\n\
         \x20     - name: echo\n        dns: {{ name: node.test, server: \"127.0.0.1:{echo}\", timeout: 1s }}\n"
    )));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    assert!(
        line_of(&out, "lossy").contains("NXDOMAIN"),
        "answered on the second query: {}",
        stdout(&out)
    );
    assert!(
        line_of(&out, "echo").contains("a query back, not an answer"),
        "{}",
        stdout(&out)
    );
}

/// Stranger review of issue 15: a service that answers, but slowly, is
/// timed (`response_ms`), as `check_tcp -w/-c` times the exchange.
#[test]
fn a_slow_answer_is_timed_by_response_ms() {
    let slow = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = slow.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in slow.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0u8; 64];
            let _ = stream.read(&mut buffer);
            std::thread::sleep(Duration::from_millis(1200));
            let _ = stream.write_all(b"+PONG\r\n");
        }
    });
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: redis\n        tcp: {{ host: 127.0.0.1, port: {port}, timeout: 5s, send: \"PING\\r\\n\", expect: \"^\\\\+PONG\" }}\n\
         \x20       rules:\n          - {{ name: slow, signal: response_ms, value: \"> 1000\" }}\n"
    )));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    let line = line_of(&out, "redis");
    assert!(
        line.contains("answered \"+PONG\\r\\n\" in 1"),
        "{}",
        stdout(&out)
    );
    assert!(
        ws.history()
            .iter()
            .any(|h| h.rule == "slow" && h.status == "firing"),
        "{}",
        stdout(&out)
    );
}

/// Stranger review of issue 15: an IPv6 host written as URLs write it
/// (`[::1]`) is the address, never a name sent to the resolver.
#[test]
fn a_bracketed_ipv6_host_is_connected_to_as_the_address() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here: nothing to test");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: v6\n        tcp: {{ host: \"[::1]\", port: {port} }}\n"
    )));
    let out = Tick::new(&ws).at(minute(0)).run("p");
    let line = line_of(&out, "v6");
    assert!(
        line.starts_with("  ok") && line.contains("[::1]:"),
        "{}",
        stdout(&out)
    );
}
