//! The status page of `monitor serve` in a real headless browser (Debian's
//! chromium, installed by .ci/run): a database filled by real ticks of the
//! binary over four days (a flapping task, a restarted one, a silenced one,
//! a steady one), rendered, read back as the browser's DOM, and
//! screenshotted at phone and desktop width into `target/test-artifacts/`;
//! badges, peers, a page before any tick, silences and removed tasks.

use crate::common::*;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `monitor serve` child on a free loopback port, killed when dropped.
struct Serve {
    child: Child,
    port: u16,
}

impl Serve {
    fn start(ws: &Workspace, at: i64) -> Serve {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = ws
            .command()
            .env("MONITOR_NOW", at.to_string())
            .env_remove("MONITOR_API_TOKEN")
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Serve { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET by curl (at most 5 s): its status, content type and body.
struct Reply {
    status: String,
    content_type: String,
    body: String,
}

fn get(url: &str) -> Reply {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code} %{content_type}",
            url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (status, content_type) = tail.split_once(' ').unwrap_or((tail, ""));
    Reply {
        status: status.to_string(),
        content_type: content_type.to_string(),
        body: body.to_string(),
    }
}

/// chromium, headless, with a profile of its own.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium (Debian: chromium, installed by .ci/run)")
}

/// What the browser made of `url`: its DOM after rendering.
fn dom(profile: &Path, url: &str) -> String {
    let out = chromium(profile, &["--dump-dom", url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of `url` at `width`×`height`, kept as a test artifact.
fn screenshot(profile: &Path, url: &str, (width, height): (u32, u32), name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    let out = chromium(
        profile,
        &[
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", file.display()),
            url,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&file).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", file.display());
    file
}

/// The element of the page whose id is `id`, as the DOM holds it.
fn element<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let end = dom[start..].find("</svg>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[test]
fn the_status_page_shows_each_verdict_its_failing_day_and_the_threshold() {
    let check = |file: &str| {
        format!("command: {{ argv: [\"/bin/sh\", \"-c\", \"test -e {file} || exit 2\"], cwd: . }}")
    };
    let ws = Workspace::new(&profile_p(&format!(
        "      - name: steady\n        {}\n\
         \x20     - name: flappy\n        command: {{ argv: [\"/bin/sh\", \"-c\", \"echo \\\"OK | lag=$(cat lag)\\\"\"], cwd: . }}\n\
         \x20       rules:\n          - {{ name: behind, signal: lag, value: \"> 20\" }}\n\
         \x20     - name: worker\n        {}\n        remediate: {{ command: {{ argv: [\"/bin/sh\", \"-c\", \"touch worker_ok\"], cwd: . }} }}\n\
         \x20     - name: noisy\n        {}\n",
        check("steady_ok"),
        check("worker_ok"),
        check("noisy_ok"),
    )));
    let touch = |f: &str| std::fs::write(ws.path().join(f), "").unwrap();
    let lag = |n: u32| std::fs::write(ws.path().join("lag"), n.to_string()).unwrap();
    touch("steady_ok");
    touch("worker_ok");
    touch("noisy_ok");
    // Four days of ticks, every 30 minutes, from midnight UTC. On day 1
    // (the second) flappy flaps for four hours and the worker dies
    // once (a restart brings it back); on the last day noisy fails, and is
    // silenced.
    let day0 = (minute(0) / 86_400 + 1) * 86_400;
    let mut at = day0;
    let end = day0 + 3 * 86_400 + 12 * 3600;
    while at <= end {
        let hour = (at - day0) / 3600;
        let on_the_hour = (at - day0) % 3600 == 0;
        // Behind on the hour, caught up at half past: each hour's average
        // (13.5) is under the threshold, its max (24) over it.
        lag(if (24 + 3..24 + 7).contains(&hour) && on_the_hour {
            24
        } else {
            3
        });
        if hour == 24 + 6 && on_the_hour {
            std::fs::remove_file(ws.path().join("worker_ok")).unwrap();
        }
        if hour == 3 * 24 + 10 && on_the_hour {
            std::fs::remove_file(ws.path().join("noisy_ok")).unwrap();
            let out = ws
                .command()
                .env("MONITOR_NOW", at.to_string())
                .args([
                    "silence",
                    "add",
                    "--task",
                    "noisy",
                    "--for",
                    "4h",
                    "--reason",
                    "disk swap",
                ])
                .output()
                .unwrap();
            assert_exit(&out, 0);
        }
        Tick::new(&ws).at(at).run("p");
        at += 1800;
    }
    let server = Serve::start(&ws, end + 60);
    let browser = ws.path().join("chromium");
    let page = dom(&browser, &server.url("/"));
    let verdict_of = |task: &str| {
        let row = element(&page, &format!("task-p-{task}"));
        ["ok", "failing", "warning", "held", "pending"]
            .into_iter()
            .find(|v| row.contains(&format!("class=\"verdict {v}\"")))
            .unwrap_or("?")
    };
    assert_eq!(verdict_of("steady"), "ok");
    assert_eq!(verdict_of("flappy"), "ok", "it caught up");
    assert_eq!(verdict_of("worker"), "ok", "the restart fixed it");
    assert_eq!(verdict_of("noisy"), "failing");
    assert!(
        page.contains("noisy silenced until") && page.contains("disk swap"),
        "the silence is shown: {page}"
    );
    // The uptime bar: flappy's day 1 is the failing day, the others whole.
    let date = |day: i64| {
        let at = time::OffsetDateTime::from_unix_timestamp(day0 + day * 86_400).unwrap();
        format!(
            "{:04}-{:02}-{:02}",
            at.year(),
            u8::from(at.month()),
            at.day()
        )
    };
    let bar = element(&page, "task-p-flappy");
    for day in 0..4 {
        let cell = bar
            .split("<rect")
            .find(|r| r.contains(&format!("<title>{}:", date(day))))
            .unwrap_or_else(|| panic!("no cell for {}: {bar}", date(day)));
        let expected = if day == 1 { "failing" } else { "ok" };
        assert!(
            cell.contains(&format!("class=\"{expected}\"")),
            "day {day}: {cell}"
        );
    }
    let failing_day = bar
        .split("<rect")
        .find(|r| r.contains(&format!("<title>{}:", date(1))))
        .unwrap();
    assert!(
        failing_day.contains("(44 of 48 ticks healthy)"),
        "{failing_day}"
    );
    // The worker was found dead once and restarted: that tick was down,
    // though the restart resolved it; it is ok since the restart.
    let worker_row = element(&page, "task-p-worker");
    let restart_day = worker_row
        .split("<rect")
        .find(|r| r.contains(&format!("<title>{}:", date(1))))
        .unwrap();
    assert!(
        restart_day.contains("(47 of 48 ticks healthy)")
            && restart_day.contains("class=\"failing\""),
        "{restart_day}"
    );
    let restarted_at = time::OffsetDateTime::from_unix_timestamp(day0 + 30 * 3600).unwrap();
    assert!(
        worker_row.contains(&format!(
            "since {:04}-{:02}-{:02} ",
            restarted_at.year(),
            u8::from(restarted_at.month()),
            restarted_at.day()
        )),
        "ok since the restart: {worker_row}"
    );
    let noisy = element(&page, "task-p-noisy");
    assert!(
        noisy.contains("silenced until"),
        "the silence is on the task's own row"
    );
    assert!(
        noisy.contains(&format!("since {} 10:00:00", date(3))),
        "failing since the tick it began, not the last one: {noisy}"
    );
    // Flappy's page: its lag chart with the rule's threshold drawn, and the
    // alert timeline; the worker's page marks its restart.
    let flappy = dom(&browser, &server.url("/task/p/flappy?range=7d"));
    assert!(
        flappy.contains("class=\"threshold\"") && flappy.contains("behind: &gt; 20"),
        "{flappy}"
    );
    assert!(flappy.contains("<polyline points=\""), "{flappy}");
    // Over 7 days each hour is a bucket: its max reaches above the
    // threshold (lag 40 > 20), though the hour's average need not.
    let lag_chart = flappy
        .split("<section class=\"signal\">")
        .find(|c| c.contains("<h2>lag "))
        .unwrap_or_else(|| panic!("no lag chart: {flappy}"));
    let ys = |attribute: &str| -> Vec<f64> {
        let points = lag_chart
            .split(&format!("{attribute}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no {attribute}: {lag_chart}"));
        points
            .split(' ')
            .map(|xy| xy.split(',').nth(1).unwrap().parse::<f64>().unwrap())
            .collect()
    };
    let threshold: f64 = lag_chart
        .split("class=\"threshold\"")
        .nth(1)
        .and_then(|r| r.split("y1=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    let band_top = ys("points").into_iter().fold(f64::INFINITY, f64::min);
    assert!(
        lag_chart.contains("class=\"band\"") && band_top < threshold,
        "the band's peak ({band_top}) is above the threshold's line ({threshold}): {lag_chart}"
    );
    // Always healthy is drawn along the top, not the floor.
    let steady = dom(
        &browser,
        &server.url("/task/p/steady?range=24h&utm_source=mail"),
    );
    let healthy = steady
        .split("<section class=\"signal\">")
        .find(|c| c.contains("<h2>healthy "))
        .unwrap_or_else(|| panic!("no healthy chart: {steady}"));
    let line = healthy.split("<polyline points=\"").nth(1).unwrap();
    let line = line.split('"').next().unwrap();
    assert!(
        line.split(' ').all(|xy| xy.ends_with(",10.0")),
        "healthy 1 at the top: {line}"
    );
    assert!(
        flappy.contains(">firing<") && flappy.contains(">resolved<"),
        "{flappy}"
    );
    let worker = dom(&browser, &server.url("/task/p/worker?range=7d"));
    assert!(worker.contains("class=\"restart\""), "{worker}");
    // What a person sees, at both widths: kept for the reviewer.
    screenshot(
        &browser,
        &server.url("/"),
        (1280, 900),
        "status-desktop.png",
    );
    screenshot(&browser, &server.url("/"), (390, 844), "status-phone.png");
    screenshot(
        &browser,
        &server.url("/task/p/flappy?range=7d"),
        (390, 844),
        "task-phone.png",
    );
}

#[test]
fn badges_are_valid_svg_coloured_by_verdict_and_uptime() {
    let ws = Workspace::new(&profile_p(
        "      - name: up\n        command: { argv: [\"true\"] }\n\
         \x20     - name: down\n        command: { argv: [\"/bin/sh\", \"-c\", \"exit 2\"] }\n\
         \x20     - name: soso\n        command: { argv: [\"/bin/sh\", \"-c\", \"exit 1\"] }\n",
    ));
    for i in 0..10 {
        Tick::new(&ws).at(minute(i)).run("p");
    }
    let server = Serve::start(&ws, minute(10));
    let get = |path: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        use std::io::{Read, Write};
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    };
    for (task, message, colour) in [
        ("up", "ok", "#4c1"),
        ("down", "failing", "#e05d44"),
        ("soso", "warning", "#dfb317"),
    ] {
        let (head, body) = get(&format!("/badge/p/{task}.svg"));
        assert!(
            head.contains("image/svg+xml") && head.contains("max-age=60"),
            "{head}"
        );
        let svg = roxmltree::Document::parse(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let texts: Vec<&str> = svg
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(texts, [task, message], "{body}");
        let fills: Vec<&str> = svg
            .descendants()
            .filter(|n| n.has_tag_name("rect"))
            .filter_map(|n| n.attribute("fill"))
            .collect();
        assert!(fills.contains(&colour), "{task}: {fills:?}");
    }
    let (_, body) = get("/badge/p/up/uptime.svg");
    let svg = roxmltree::Document::parse(&body).unwrap();
    assert!(
        svg.descendants().any(|n| n.text() == Some("100%")),
        "{body}"
    );
    let (_, body) = get("/badge/p/down/uptime.svg");
    assert!(body.contains(">0%<") && body.contains("#e05d44"), "{body}");
    let (head, _) = get("/badge/p/nosuch.svg");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = get("/badge/p/nosuch/uptime.svg");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // Cacheable for a minute, and nothing says otherwise.
    let (head, _) = get("/badge/p/up.svg");
    let caching: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("cache-control:"))
        .collect();
    assert_eq!(caching, ["Cache-Control: max-age=60"], "{head}");
}

/// `peers:`: another host's serve shows on this page; one that accepts and
/// never answers, and one whose port is closed, show as unreachable within
/// their timeout, and the page does not wait for them any longer.
#[test]
fn a_peer_shows_beside_this_host_and_one_that_does_not_answer_is_told() {
    let remote = Workspace::new(&profile_p(
        "      - name: validator\n        command: { argv: [\"/bin/sh\", \"-c\", \"exit 2\"] }\n",
    ));
    Tick::new(&remote).at(minute(0)).run("p");
    let peer = Serve::start(&remote, minute(1));
    // Accepts, reads, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = Workspace::new(&format!(
        "{}peers:\n  - {{ name: validator-2, url: \"{}\" }}\n  - {{ name: stuck, url: \"http://127.0.0.1:{silent_port}\", timeout: 1s }}\n  - {{ name: gone, url: \"http://127.0.0.1:{closed}\", timeout: 1s }}\n",
        profile_p("      - name: local\n        command: { argv: [\"true\"] }\n"),
        peer.url("")
    ));
    Tick::new(&ws).at(minute(0)).run("p");
    let server = Serve::start(&ws, minute(1));
    let browser = ws.path().join("chromium");
    // serve asks its peers as it starts; a page never waits for them: the
    // first says they are being asked, and their answers come within
    // their timeouts (1 s; 2 s, the default, for validator-2).
    let started = Instant::now();
    let first = get(&server.url("/")).body;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the first page waits for no peer: {:?}",
        started.elapsed()
    );
    assert!(first.contains("id=\"profile-stuck\""), "{first}");
    while get(&server.url("/")).body.contains("no answer yet") {
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the peers' answers within their timeouts"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = dom(&browser, &server.url("/"));
    assert!(page.contains("validator-2 (test-host)"), "{page}");
    let remote_task = element(&page, "task-p-validator");
    assert!(
        remote_task.contains("class=\"verdict failing\"")
            && remote_task.contains(&format!("href=\"{}/task/p/validator\"", peer.url(""))),
        "{remote_task}"
    );
    let stuck = page
        .split("id=\"profile-stuck\"")
        .nth(1)
        .unwrap_or_default();
    assert!(
        stuck.contains("unreachable:") && stuck.contains("1s"),
        "{page}"
    );
    let gone = page.split("id=\"profile-gone\"").nth(1).unwrap_or_default();
    assert!(
        gone.contains("unreachable:") && gone.contains("refused"),
        "{page}"
    );
    assert!(element(&page, "task-p-local").contains("class=\"verdict ok\""));
    assert!(page.contains("2 peers unreachable"), "{page}");
    // Twenty people open the page at once: the peers' answers are kept, a
    // silent peer holds no page, and /healthz answers at once.
    let started = Instant::now();
    let loads: Vec<_> = (0..20)
        .map(|_| {
            let url = server.url("/");
            std::thread::spawn(move || get(&url).status)
        })
        .collect();
    let health = get(&server.url("/healthz"));
    let healthz_took = started.elapsed();
    for load in loads {
        assert_eq!(load.join().unwrap(), "200");
    }
    assert_eq!(health.status, "200");
    assert!(
        healthz_took < Duration::from_millis(900)
            && started.elapsed() < Duration::from_millis(1500),
        "/healthz took {healthz_took:?}, twenty pages {:?}, with a peer that never answers",
        started.elapsed()
    );
}

/// Before any tick, the page says so instead of "all tasks healthy".
#[test]
fn a_page_before_any_tick_says_so() {
    let ws = Workspace::new(&profile_p(
        "      - name: local\n        command: { argv: [\"true\"] }\n",
    ));
    let server = Serve::start(&ws, minute(1));
    let page = dom(&ws.path().join("chromium"), &server.url("/"));
    assert!(page.contains("no tick has run yet"), "{page}");
    assert!(!page.contains("all tasks healthy"), "{page}");
    assert!(
        element(&page, "task-p-local").contains("not run yet"),
        "its tasks are listed: {page}"
    );
    // Its badges are grey, as a task's before its first tick.
    for (path, message) in [
        ("/badge/p/local.svg", "not run yet"),
        ("/badge/p/local/uptime.svg", "no data"),
    ] {
        let reply = get(&server.url(path));
        assert!(
            reply.status == "200" && reply.body.contains(message) && reply.body.contains("#9f9f9f"),
            "{path}: {} {}",
            reply.status,
            reply.body
        );
    }
}

/// A silence given no profile shows only under the profiles that have its
/// task; a task taken out of jobs.yaml keeps its page, which says it is no
/// longer watched, and loses its badges.
#[test]
fn a_silence_shows_where_its_task_is_and_a_removed_task_says_so() {
    let two = |with_b: bool| {
        format!(
            "{}  q:\n    cron: \"* * * * *\"\n    announce: false\n    tasks:\n      - name: other\n        command: {{ argv: [\"true\"] }}\n",
            profile_p(&format!(
                "      - name: a\n        command: {{ argv: [\"true\"] }}\n{}",
                if with_b {
                    "      - name: b\n        command: { argv: [\"true\"] }\n"
                } else {
                    ""
                }
            ))
        )
    };
    let ws = Workspace::new(&two(true));
    let out = ws
        .command()
        .env("MONITOR_NOW", minute(0).to_string())
        .args([
            "silence", "add", "--task", "a", "--for", "2h", "--reason", "swap",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    for i in 0..3 {
        Tick::new(&ws).at(minute(i)).run("p");
        Tick::new(&ws).at(minute(i)).run("q");
    }
    ws.write_config(&two(false));
    let server = Serve::start(&ws, minute(3));
    let page = dom(&ws.path().join("chromium"), &server.url("/"));
    let q = page.split("id=\"profile-q\"").nth(1).unwrap_or_default();
    let p = page.split("id=\"profile-q\"").next().unwrap_or_default();
    assert!(p.contains("a silenced until"), "{page}");
    assert!(!q.contains("silenced"), "q has no task a: {q}");
    let gone = dom(&ws.path().join("chromium"), &server.url("/task/p/b"));
    assert!(gone.contains("not in jobs.yaml any more"), "{gone}");
    assert_eq!(get(&server.url("/badge/p/b.svg")).status, "404");
    // A task page's errors are pages a person reads, their status kept.
    for (path, status, says) in [
        ("/task/p/nosuch", "404", "no task `nosuch` in profile `p`"),
        ("/task/p/a?range=3d", "400", "give 24h, 7d or 90d"),
    ] {
        let reply = get(&server.url(path));
        assert!(
            reply.status == status
                && reply.content_type == "text/html; charset=utf-8"
                && reply.body.contains(says),
            "{path}: {} {} {}",
            reply.status,
            reply.content_type,
            reply.body
        );
    }
}
