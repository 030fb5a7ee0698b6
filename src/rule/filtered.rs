//! A scrape keeps only the series its task's rules read (issue 14): the
//! rules must judge exactly as they would with every series kept. On every
//! capture, every case of both exposition suites that parses and a
//! generated exposition of the scale bench's shape, rules of every kind over
//! the names present (exact series, sums, regex and negative matchers,
//! names picked by pattern, counters, histograms, ratios, guards, a name
//! that is absent) are replayed over three ticks through the scrape's
//! filter and without it; the outcomes (verdicts, values, alert states,
//! messages, stored snapshots) are the same.

use super::scenarios::replay_observed;
use crate::config::{Probe, Task};
use crate::evaluate::Outcome;
use crate::probe::metrics::parse::{Dialect, Exposition, parse_exposition_capped};
use crate::probe::{Check, CheckStatus, Observation};
use std::path::PathBuf;

/// Bodies to compare on: `(name, body, dialect)`.
fn cases() -> Vec<(String, Vec<u8>, Dialect)> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut cases = Vec::new();
    for (name, dialect) in [
        ("node_exporter.prom", Dialect::Text),
        ("prometheus.prom", Dialect::Text),
        ("henyey.prom", Dialect::Text),
        ("python_client.prom", Dialect::Text),
        ("python_client.openmetrics", Dialect::OpenMetrics),
    ] {
        let body = std::fs::read(fixtures.join("metrics").join(name)).unwrap();
        cases.push((name.to_string(), body, dialect));
    }
    for (folder, dialect) in [
        ("openmetrics", Dialect::OpenMetrics),
        ("expfmt", Dialect::Text),
    ] {
        let dir = fixtures.join("exposition").join(folder);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("good."))
            })
            .collect();
        names.sort();
        for path in names {
            let name = format!("{folder}/{}", path.file_name().unwrap().to_string_lossy());
            cases.push((name, std::fs::read(&path).unwrap(), dialect));
        }
    }
    cases.push(("generated".into(), generated(1), Dialect::Text));
    cases
}

/// The scale bench's shape (benches/scrape_scale.py), small: gauges and
/// counters with instance/job/reason labels, 10-bucket histograms.
fn generated(tick: usize) -> Vec<u8> {
    let reasons = ["ok", "timeout", "refused", "reset"];
    let mut out = String::new();
    for name in ["app_queue_depth", "app_peers"] {
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for i in 0..24 {
            let reason = reasons[i % 4];
            let value = (i * 7 + tick) % 10;
            out.push_str(&format!(
                "{name}{{instance=\"node-{i}\",job=\"app\",reason=\"{reason}\"}} {value}\n"
            ));
        }
    }
    for name in ["app_requests_total", "app_errors_total"] {
        out.push_str(&format!("# TYPE {name} counter\n"));
        for i in 0..24 {
            let reason = reasons[i % 4];
            let value = i * 100 + tick * (i % 5);
            out.push_str(&format!(
                "{name}{{instance=\"node-{i}\",job=\"app\",reason=\"{reason}\"}} {value}\n"
            ));
        }
    }
    let buckets = [
        "0.005", "0.01", "0.05", "0.1", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    out.push_str("# TYPE app_request_duration_seconds histogram\n");
    for i in 0..12 {
        let labels = format!("instance=\"node-{i}\",job=\"app\"");
        let count = 1000 + tick * (10 + i * 30) + i;
        for (b, bound) in buckets.iter().enumerate() {
            let cumulative = if *bound == "+Inf" {
                count
            } else {
                count * (b + 1 + tick % 3) / (buckets.len() + 2)
            };
            out.push_str(&format!(
                "app_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}\n"
            ));
        }
        out.push_str(&format!(
            "app_request_duration_seconds_sum{{{labels}}} {:.3}\n",
            count as f64 * 0.12
        ));
        out.push_str(&format!(
            "app_request_duration_seconds_count{{{labels}}} {count}\n"
        ));
    }
    out.into_bytes()
}

fn is_name(text: &str, colon: bool) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// A PromQL string literal of `value`.
fn quoted(value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// `name{labels…}` as a YAML single-quoted scalar.
fn selector(name: &str, matchers: &[String]) -> String {
    let text = if matchers.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", matchers.join(","))
    };
    format!("'{}'", text.replace('\'', "''"))
}

/// Rules of every kind over up to 12 of the names in `exposition`.
fn rules(exposition: &Exposition) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    for series in &exposition.series {
        if is_name(&series.name, true)
            && series.labels.iter().all(|(l, _)| is_name(l, false))
            && !names.contains(&series.name.as_str())
        {
            names.push(&series.name);
        }
    }
    let step = names.len().div_ceil(12).max(1);
    let chosen: Vec<&str> = names.iter().step_by(step).copied().collect();
    let mut rules = Vec::new();
    let mut add = |rule: String| rules.push(format!("{{ name: r{}, {rule} }}", rules.len()));
    for (k, name) in chosen.iter().enumerate() {
        let first = exposition
            .series
            .iter()
            .find(|s| s.name == *name)
            .expect("a chosen name has a series");
        let exact: Vec<String> = first
            .labels
            .iter()
            .map(|(l, v)| format!("{l}={}", quoted(v)))
            .collect();
        let other = chosen[(k + 1) % chosen.len()];
        add(format!("gauge: {}, value: \"> 0\"", selector(name, &[])));
        add(format!("gauge: {}, value: \"> 0\"", selector(name, &exact)));
        add(format!(
            "signal: {}, value: \">= 1\"",
            selector(name, &exact)
        ));
        add(format!("counter: {}, delta: \">= 1\"", selector(name, &[])));
        add(format!(
            "counter: {}, delta: \">= 1\", for: 2m",
            selector(name, &exact)
        ));
        add(format!(
            "gauge_ratio: [{}, {}], value: \"> 0.5\"",
            selector(name, &exact),
            selector(other, &[])
        ));
        add(format!(
            "ratio: {{ numerator: {}, denominator: {} }}, value: \"> 0.5\"",
            selector(name, &[]),
            selector(other, &[])
        ));
        add(format!(
            "gauge: {}, value: \"> 0\", unless: [\"{} > 1e300\"]",
            selector(name, &[]),
            selector(other, &[]).trim_matches('\'').replace('"', "\\\"")
        ));
        if let Some((label, value)) = first.labels.first() {
            let pattern = quoted(&regex::escape(value));
            add(format!(
                "gauge: {}, value: \"> 0\"",
                selector(name, &[format!("{label}=~\".+\"")])
            ));
            add(format!(
                "gauge: {}, value: \"> 0\"",
                selector(name, &[format!("{label}!={}", quoted(value))])
            ));
            add(format!(
                "gauge: {}, value: \">= 0\"",
                selector(name, &[format!("{label}!~{pattern}")])
            ));
        }
        if let Some(base) = name.strip_suffix("_bucket") {
            let without_le: Vec<String> = first
                .labels
                .iter()
                .filter(|(l, _)| l != "le")
                .map(|(l, v)| format!("{l}={}", quoted(v)))
                .collect();
            add(format!(
                "histogram: {}, quantile: 0.99, value: \"> 0.05\", min_count: 1",
                selector(base, &without_le)
            ));
            add(format!(
                "histogram: {}, mean: true, value: \"> 0.05\", min_count: 1",
                selector(base, &[])
            ));
        }
    }
    // Names no other rule keeps a series of, read by selectors matching
    // none of their series: the family is there all the same, and a label
    // none of its series has is named as such.
    let unkept: Vec<&str> = names
        .iter()
        .skip(step / 2)
        .step_by(step)
        .filter(|name| !chosen.contains(name))
        .copied()
        .collect();
    for name in unkept {
        let first = exposition
            .series
            .iter()
            .find(|s| s.name == name)
            .expect("a listed name has a series");
        add(format!(
            "counter: {}, delta: \">= 1\"",
            selector(name, &["no_such_label=\"x\"".to_string()])
        ));
        if let Some((label, _)) = first.labels.first() {
            let absent = selector(name, &[format!("{label}=\"no such value\"")]);
            add(format!("counter: {absent}, delta: \">= 1\""));
            add(format!("gauge: {absent}, value: \"> 0\""));
        }
    }
    if let Some(name) = chosen.first() {
        let prefix = regex::escape(&name[..name.len().min(4)]);
        add(format!(
            "gauge: '{{__name__=~\"{}.*\"}}', value: \"> 0\"",
            prefix.replace('\\', "\\\\")
        ));
    }
    add("gauge: no_such_metric_anywhere, value: \"> 0\"".into());
    rules
}

/// Every series of `exposition` again, each value doubled plus one (so
/// counters and histogram buckets grow, cumulatively still), with its
/// families declared: the next tick's scrape.
fn grown(exposition: &Exposition) -> Vec<u8> {
    let mut out = String::new();
    for family in &exposition.families {
        if is_name(family, true) {
            out.push_str(&format!("# TYPE {family} untyped\n"));
        }
    }
    for series in &exposition.series {
        if !is_name(&series.name, true) {
            continue;
        }
        let labels: Vec<String> = series
            .labels
            .iter()
            .map(|(l, v)| format!("{l}={}", quoted(v)))
            .collect();
        let value = series.value * 2.0 + 1.0;
        out.push_str(&format!(
            "{}{{{}}} {value:?}\n",
            series.name,
            labels.join(",")
        ));
    }
    out.into_bytes()
}

/// What the probe would observe of `body`, keeping what `wanted` selects
/// (every series when `None`).
fn observed(
    body: &[u8],
    dialect: Dialect,
    wanted: Option<&[crate::config::Selector]>,
) -> Observation {
    let (exposition, count) = parse_exposition_capped(body, dialect, usize::MAX, wanted)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mut observation = Observation::default();
    crate::probe::metrics::fill(&mut observation.signals, exposition);
    observation.signals.set_probe("metrics", "up", 1.0);
    observation
        .signals
        .set_probe("metrics", "series", count as f64);
    observation.checks.push(Check {
        probe: "metrics",
        status: CheckStatus::Ok,
        summary: "scraped".into(),
    });
    observation
}

fn wanted(task: &Task) -> Vec<crate::config::Selector> {
    task.probes
        .iter()
        .find_map(|probe| match probe {
            Probe::Metrics(metrics) => metrics.wanted.clone(),
            _ => None,
        })
        .expect("jobs.yaml gives the metrics probe its rules' selectors")
}

fn replay(yaml: &str, bodies: &[(Vec<u8>, Dialect)], filtered: bool) -> Vec<Outcome> {
    replay_observed(
        yaml,
        bodies.len(),
        |tick, task| {
            let (body, dialect) = &bodies[tick];
            let wanted = wanted(task);
            observed(body, *dialect, filtered.then_some(wanted.as_slice()))
        },
        |_, _| {},
    )
}

#[test]
fn rules_judge_the_kept_series_exactly_as_they_judge_every_series() {
    let mut compared = 0;
    let mut fired = 0;
    for (name, body, dialect) in cases() {
        let Ok((all, _)) = parse_exposition_capped(&body, dialect, usize::MAX, None) else {
            continue;
        };
        let rules = rules(&all);
        if rules.len() < 2 {
            continue;
        }
        let next = match name.as_str() {
            "generated" => generated(2),
            _ => grown(&all),
        };
        let third = match name.as_str() {
            "generated" => generated(5),
            _ => {
                let (grown_once, _) =
                    parse_exposition_capped(&next, Dialect::Text, usize::MAX, None).unwrap();
                grown(&grown_once)
            }
        };
        let bodies = [
            (body.clone(), dialect),
            (next, Dialect::Text),
            (third, Dialect::Text),
        ];
        let listed: String = rules.iter().map(|r| format!("          - {r}\n")).collect();
        let yaml = format!(
            "version: 1\nhost: h\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    tasks:\n      - name: t\n        metrics: {{ url: \"http://127.0.0.1:1/metrics\" }}\n        rules:\n{listed}"
        );
        let kept = replay(&yaml, &bodies, true);
        let every = replay(&yaml, &bodies, false);
        for (tick, (kept, every)) in kept.iter().zip(&every).enumerate() {
            // Compared as printed: NaN is a value here, and NaN != NaN.
            let (kept_text, every_text) = (format!("{kept:#?}"), format!("{every:#?}"));
            if let Some((at, (k, e))) = kept_text
                .lines()
                .zip(every_text.lines())
                .enumerate()
                .find(|(_, (k, e))| k != e)
            {
                let context: Vec<&str> = every_text
                    .lines()
                    .skip(at.saturating_sub(30))
                    .take(31)
                    .collect();
                panic!(
                    "{name}, tick {tick}: the kept series give\n{k}\nwhere every series gives\n{e}\nafter\n{}\n\n{yaml}",
                    context.join("\n")
                );
            }
            assert_eq!(kept_text, every_text, "{name}, tick {tick}");
            fired += kept.tasks[0].rules.iter().filter(|r| r.active()).count();
        }
        compared += 1;
    }
    assert!(compared >= 40, "only {compared} expositions compared");
    // The comparison is only worth something if the rules say something.
    assert!(
        fired > 100,
        "only {fired} rule verdicts were pending or firing"
    );
}
