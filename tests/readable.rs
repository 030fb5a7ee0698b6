//! Snapshots of what a person reads at a terminal: the tick summary,
//! `list`, `render-crontab` and `--help`. A change to any of them shows as
//! a diff of `tests/snapshots/` to review (`INSTA_UPDATE=always cargo
//! test` writes the new ones). Times and temporary paths are replaced by
//! placeholders; everything else is as printed.

use crate::common::*;
use regex::Regex;

const JOBS: &str = r#"version: 1
host: test-host
profiles:
  minutely:
    cron: "* * * * *"
    tasks:
      - name: api
        command: { argv: ["true"] }
      - name: disk
        command: { argv: ["sh", "-c", "echo 'DISK WARNING - 91% used | used=91%;80;90'; exit 1"] }
        for: 2
      - name: node
        command: { argv: ["false"] }
  hourly:
    cron: "0 * * * *"
    tasks:
      - name: backup
        command: { argv: ["true"] }
"#;

/// The output with the workspace folder, the binary and elapsed times
/// replaced by placeholders.
fn readable(ws: &Workspace, text: &str) -> String {
    let folder = ws.path().display().to_string();
    let binary = env!("CARGO_BIN_EXE_monitor");
    let text = text
        .replace(binary, "[monitor]")
        .replace(&folder, "[workspace]");
    Regex::new(r"\b\d+ ms\b")
        .unwrap()
        .replace_all(&text, "[N] ms")
        .into_owned()
}

#[test]
fn the_tick_summary_of_a_first_and_a_second_tick() {
    let ws = Workspace::new(JOBS);
    let first = Tick::new(&ws).at(minute(0)).run("minutely");
    assert_exit(&first, 1);
    insta::assert_snapshot!("tick_first", readable(&ws, &stdout(&first)));
    let second = Tick::new(&ws).at(minute(1)).run("minutely");
    assert_exit(&second, 1);
    insta::assert_snapshot!("tick_second", readable(&ws, &stdout(&second)));
    let dry = Tick::new(&ws).at(minute(2)).dry_run().run("minutely");
    insta::assert_snapshot!("tick_dry_run", readable(&ws, &stdout(&dry)));
}

#[test]
fn list_after_ticks() {
    let ws = Workspace::new(JOBS);
    Tick::new(&ws).at(minute(0)).run("minutely");
    Tick::new(&ws).at(minute(0)).run("hourly");
    let out = ws
        .command()
        .env("MONITOR_NOW", minute(1).to_string())
        .arg("list")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    insta::assert_snapshot!("list", readable(&ws, &stdout(&out)));
}

#[test]
fn render_crontab_in_each_format() {
    let ws = Workspace::new(JOBS);
    for format in ["cron", "cron.d", "supercronic"] {
        let mut command = ws.command();
        command.args(["render-crontab", "--format", format]);
        if format == "cron.d" {
            command.args(["--user", "monitor"]);
        }
        let out = command.output().unwrap();
        assert_exit(&out, 0);
        insta::assert_snapshot!(
            format!("render_crontab_{}", format.replace('.', "_")),
            readable(&ws, &stdout(&out))
        );
    }
}

#[test]
fn help_of_the_commands_an_operator_reaches_for() {
    let ws = Workspace::new(JOBS);
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["alerts", "--help"],
        &["render-crontab", "--help"],
    ] {
        let out = ws.command().args(args).output().unwrap();
        assert_exit(&out, 0);
        let name = format!("help_{}", args[0].trim_start_matches('-'));
        insta::assert_snapshot!(name, readable(&ws, &stdout(&out)));
    }
}
