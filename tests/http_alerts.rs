//! The alert lifecycle end to end: a real HTTP server on 127.0.0.1, the real
//! binary, a real SQLite file, and a pinned clock.

mod common;
use common::*;

fn config(url: &str, extra: &str) -> String {
    format!(
        r#"version: 1
host: test-host
profiles:
  p:
    cron: "* * * * *"
    tasks:
      - name: api
        http: {{ url: "{url}", timeout: 2s }}
{extra}"#
    )
}

#[test]
fn healthy_exits_zero_and_failing_fires_once() {
    let server = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&config(&server.url("/health"), ""));
    let out = ws.run_at(minute(0), "p", &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("HTTP 200"), "{}", stdout(&out));

    server.set(Reply::status(500));
    let out = ws.run_at(minute(1), "p", &[]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert_eq!(text.matches("[test-host] FIRING critical p/api/health").count(), 1, "{text}");
    assert!(text.contains("HTTP 500 (expected 200-399)"), "{text}");
    assert_eq!(ws.count("SELECT count(*) FROM alert_history WHERE status = 'firing'"), 1);
}
