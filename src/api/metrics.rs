//! `/metrics`: monitor's own figures (last run per profile, overdue,
//! firing alerts, outbox backlog, restarts, silences) in the Prometheus text
//! exposition format, every series labelled with the host.

use super::health::profile_health;
use super::http::{EXPOSITION, Response};
use super::routes::{Api, Database, database_error};
use crate::clock::Timestamp;
use crate::config::Severity;
use crate::store::Figures;
use std::collections::BTreeMap;

impl Api {
    pub(super) fn metrics(&self, database: &mut Database, now: Timestamp) -> Response {
        let current = self.config.current();
        let config = &current.config;
        let read = self.read(database, |store| {
            Ok(Scrape {
                figures: store.figures(now)?,
                overdue: profile_health(store, config, now)?
                    .into_iter()
                    .map(|p| (p.name, p.overdue))
                    .collect(),
            })
        });
        match read {
            Ok(figures) => Response {
                status: 200,
                content_type: EXPOSITION,
                headers: Vec::new(),
                body: figures
                    .unwrap_or_default()
                    .exposition(&config.host)
                    .into_bytes(),
            },
            Err(e) => database_error(&e),
        }
    }
}

/// One scrape's figures: the database's, and each configured profile's
/// overdue verdict.
#[derive(Debug, Default)]
struct Scrape {
    figures: Figures,
    overdue: Vec<(String, bool)>,
}

impl Scrape {
    /// Prometheus text exposition format 0.0.4; every series carries
    /// `host` (as the Alertmanager alerts do), so a fleet's Prometheus
    /// can `sum by (host)` and join without relabelling.
    fn exposition(&self, host: &str) -> String {
        let mut out = Exposition {
            text: String::new(),
            host: host.to_string(),
        };
        out.family(
            "monitor_profile_overdue",
            "gauge",
            "1 if the enabled profile missed three fire times since its last run (or, never run, since it appeared in jobs.yaml), else 0.",
        );
        for (profile, overdue) in &self.overdue {
            out.sample(
                "monitor_profile_overdue",
                &[("profile", profile)],
                if *overdue { 1.0 } else { 0.0 },
            );
        }
        out.family(
            "monitor_last_run_timestamp_seconds",
            "gauge",
            "When the newest run (tick) of the profile started, in Unix seconds.",
        );
        for p in &self.figures.profiles {
            out.sample(
                "monitor_last_run_timestamp_seconds",
                &[("profile", &p.profile)],
                p.started_at.0 as f64 / 1000.0,
            );
        }
        out.family(
            "monitor_last_run_duration_seconds",
            "gauge",
            "How long the newest run of the profile took, in seconds.",
        );
        for p in &self.figures.profiles {
            out.sample(
                "monitor_last_run_duration_seconds",
                &[("profile", &p.profile)],
                p.duration_ms as f64 / 1000.0,
            );
        }
        out.family(
            "monitor_last_run_ok",
            "gauge",
            "1 if every task of the newest run of the profile was healthy, else 0.",
        );
        for p in &self.figures.profiles {
            out.sample(
                "monitor_last_run_ok",
                &[("profile", &p.profile)],
                if p.ok { 1.0 } else { 0.0 },
            );
        }
        // Gauges, not counters: retention deletes old rows, so these can fall.
        out.family(
            "monitor_runs_recorded",
            "gauge",
            "Runs of the profile kept in the database (retention prunes old ones, so this can fall).",
        );
        for p in &self.figures.profiles {
            out.sample(
                "monitor_runs_recorded",
                &[("profile", &p.profile)],
                p.runs as f64,
            );
        }
        out.family(
            "monitor_alerts_firing",
            "gauge",
            "Alerts firing now, by severity.",
        );
        // Every severity, even at 0, so a query for one never finds nothing.
        let mut firing: BTreeMap<&str, i64> = <Severity as strum::VariantArray>::VARIANTS
            .iter()
            .map(|s| (s.as_str(), 0))
            .collect();
        firing.extend(self.figures.firing.iter().map(|(s, n)| (s.as_str(), *n)));
        for (severity, count) in &firing {
            out.sample(
                "monitor_alerts_firing",
                &[("severity", severity)],
                *count as f64,
            );
        }
        out.family(
            "monitor_outbox_backlog",
            "gauge",
            "Notifications waiting for delivery (not delivered, not given up).",
        );
        out.sample(
            "monitor_outbox_backlog",
            &[],
            self.figures.outbox_backlog as f64,
        );
        out.family(
            "monitor_restarts_recorded",
            "gauge",
            "Restarts in the alert history kept in the database, by result (ok or failed); retention prunes old ones.",
        );
        for ((profile, task, result), count) in &self.figures.restarts {
            out.sample(
                "monitor_restarts_recorded",
                &[("profile", profile), ("task", task), ("result", result)],
                *count as f64,
            );
        }
        out.family(
            "monitor_silences_active",
            "gauge",
            "Silences not removed and not yet over.",
        );
        out.sample(
            "monitor_silences_active",
            &[],
            self.figures.silences_active as f64,
        );
        out.text
    }
}

/// Writes the text exposition format; every sample gets the `host` label.
struct Exposition {
    text: String,
    host: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        self.text
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = std::iter::once(("host", self.host.as_str()))
            .chain(labels.iter().copied())
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
            .collect();
        self.text.push_str(&format!(
            "{name}{{{}}} {}\n",
            labels.join(","),
            sample_value(value)
        ));
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn sample_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_samples_follow_the_text_format() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value("plain ünïcode"), "plain ünïcode");
        assert_eq!(sample_value(3.0), "3");
        assert_eq!(sample_value(0.25), "0.25");
        assert_eq!(sample_value(1_790_000_000.5), "1790000000.5");
        assert_eq!(sample_value(f64::NAN), "NaN");
        assert_eq!(sample_value(f64::INFINITY), "+Inf");
        assert_eq!(sample_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn the_exposition_parses_back_with_our_parser() {
        use crate::probe::metrics::parse::{Dialect, parse};
        let mut figures = Figures {
            profiles: vec![crate::store::ProfileFigures {
                profile: "we\"ird\\name\n".into(),
                runs: 12,
                started_at: Timestamp(1_790_000_000_500),
                duration_ms: 1250,
                ok: true,
            }],
            outbox_backlog: 3,
            silences_active: 1,
            ..Figures::default()
        };
        figures.firing.insert("critical".into(), 2);
        figures
            .restarts
            .insert(("p".into(), "node".into(), "failed"), 4);
        let scrape = Scrape {
            figures,
            overdue: Vec::new(),
        };
        let text = scrape.exposition("we\"b-1");
        let series =
            parse(text.as_bytes(), Dialect::Text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // Every series carries the host; the rest of its labels as given.
        let find = |name: &str| {
            series
                .iter()
                .filter(|s| s.name == name)
                .map(|s| {
                    let (host, rest): (Vec<_>, Vec<_>) =
                        s.labels.iter().cloned().partition(|(k, _)| k == "host");
                    assert_eq!(host, [("host".to_string(), "we\"b-1".to_string())]);
                    (rest, s.value)
                })
                .collect::<Vec<_>>()
        };
        let profile = vec![("profile".to_string(), "we\"ird\\name\n".to_string())];
        assert_eq!(
            find("monitor_last_run_timestamp_seconds"),
            [(profile.clone(), 1_790_000_000.5)]
        );
        assert_eq!(
            find("monitor_last_run_duration_seconds"),
            [(profile.clone(), 1.25)]
        );
        assert_eq!(find("monitor_last_run_ok"), [(profile.clone(), 1.0)]);
        assert_eq!(find("monitor_runs_recorded"), [(profile, 12.0)]);
        let firing: Vec<(String, f64)> = find("monitor_alerts_firing")
            .into_iter()
            .map(|(labels, value)| (labels[0].1.clone(), value))
            .collect();
        assert_eq!(
            firing,
            [
                ("critical".to_string(), 2.0),
                ("info".to_string(), 0.0),
                ("warning".to_string(), 0.0)
            ]
        );
        assert_eq!(find("monitor_outbox_backlog"), [(vec![], 3.0)]);
        assert_eq!(find("monitor_silences_active"), [(vec![], 1.0)]);
        assert_eq!(find("monitor_restarts_recorded").len(), 1);
        for name in ["monitor_outbox_backlog", "monitor_restarts_recorded"] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} gauge")), "{name}");
        }
    }
}
