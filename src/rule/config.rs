//! A rule as written in jobs.yaml: its kind (`signal`, `gauge`,
//! `gauge_ratio`, `counter`, `ratio`, `histogram`), its condition and its
//! gates, parsed once into [`Rule`] with every combination of keys that
//! cannot work refused at load.

use crate::config::{
    Condition, Duration, Gate, Guard, Selector, Selectors, Severity, TextCondition, Threshold, Why,
    within_mapping,
};
use serde::Deserialize;
use serde::de::Deserializer;

/// Turns signals into one alert key.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    /// The breach condition (`value:` or `delta:`); `None` for trends.
    pub condition: Option<Condition>,
    pub for_: Option<Gate>,
    pub resolve_after: Option<Gate>,
    /// `clear:`: the condition a firing alert resolves at (hysteresis).
    pub clear: Option<Condition>,
    pub severity: Option<Severity>,
    pub when: Vec<Guard>,
    pub unless: Vec<Guard>,
    pub remediate: bool,
    pub warmup: bool,
    pub cooldown: Option<Duration>,
}

/// What a rule looks at. Closed set, one per config key.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// Any signal of the task (`lag`, `rss_bytes`, a perfdata label…).
    Signal {
        signal: Selector,
        trend: Option<Trend>,
    },
    Gauge(Selectors),
    GaugeRatio {
        numerator: Selector,
        denominator: Selector,
    },
    Counter {
        series: Selectors,
        streak: Option<u32>,
        burst: Option<f64>,
    },
    Ratio(RatioRule),
    Histogram {
        metric: Selector,
        quantile: Option<f64>,
        mean: bool,
        min_count: f64,
    },
    /// A probe's text against a quoted value: `signal: status, value:
    /// '!= "healthy"'`.
    Text {
        signal: String,
        condition: TextCondition,
    },
    /// Seconds since a timestamp a probe extracted: `signal:
    /// age_s(close_time)`, compared by `value:`.
    Age {
        signal: String,
    },
}

impl RuleKind {
    pub fn key(&self) -> &'static str {
        match self {
            RuleKind::Signal { .. } => "signal",
            RuleKind::Gauge(_) => "gauge",
            RuleKind::GaugeRatio { .. } => "gauge_ratio",
            RuleKind::Counter { .. } => "counter",
            RuleKind::Ratio(_) => "ratio",
            RuleKind::Histogram { .. } => "histogram",
            RuleKind::Text { .. } | RuleKind::Age { .. } => "signal",
        }
    }
}

/// A trend over a time window (`trend: rising, window: 300s`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    pub direction: Direction,
    pub window: Duration,
    /// How far the signal must move over the window (default 5, in the
    /// signal's unit): a synced node's lag jitter of 1→3 is no trend.
    pub min_change: f64,
    /// `above:` (rising) or `below:` (falling): only past this value.
    pub limit: Option<f64>,
}

/// Which way a trend goes: `trend: rising` or `trend: falling`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Direction {
    Rising,
    Falling,
}

/// The one kind key a rule was written with, and its value.
enum Written {
    Signal(SignalWritten),
    Gauge(Selectors),
    GaugeRatio(Vec<Selector>),
    Counter(Selectors),
    Ratio(RatioRule),
    Histogram(Selector),
}

/// What `signal:` names: a signal or series, or `age_s(name)`.
enum SignalWritten {
    Selector(Selector),
    Age(String),
}

impl<'de> Deserialize<'de> for SignalWritten {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::config::values::parsed(d, |text: String| {
            let trimmed = text.trim();
            if let Some(inner) = trimmed.strip_prefix("age_s(") {
                let name = inner.strip_suffix(')').map(str::trim).filter(|n| {
                    !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                });
                return match name {
                    Some(name) => Ok(SignalWritten::Age(name.to_string())),
                    None => Err(format!(
                        "{trimmed:?}: write age_s(NAME), NAME a signal holding a time (Unix seconds or milliseconds, or RFC 3339 text)"
                    )),
                };
            }
            trimmed.parse().map(SignalWritten::Selector)
        })
    }
}

/// What `value:` holds: a number condition, or a text one (quoted value).
enum ValueWritten {
    Number(Condition),
    Text(TextCondition),
}

impl<'de> Deserialize<'de> for ValueWritten {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::config::values::parsed(d, |text: String| match TextCondition::parse(&text) {
            Some(text) => text.map(ValueWritten::Text),
            None => text.parse().map(ValueWritten::Number),
        })
    }
}

/// A trend's `min_change` when the rule does not say.
pub const DEFAULT_TREND_MIN_CHANGE: f64 = 5.0;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RatioRule {
    pub numerator: Selectors,
    pub denominator: Selectors,
    #[serde(default)]
    pub min_denominator: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    signal: Option<SignalWritten>,
    #[serde(default)]
    gauge: Option<Selectors>,
    #[serde(default)]
    gauge_ratio: Option<Vec<Selector>>,
    #[serde(default)]
    counter: Option<Selectors>,
    #[serde(default)]
    ratio: Option<RatioRule>,
    #[serde(default)]
    histogram: Option<Selector>,
    #[serde(default)]
    value: Option<ValueWritten>,
    #[serde(default)]
    delta: Option<Condition>,
    #[serde(default)]
    trend: Option<Direction>,
    #[serde(default)]
    window: Option<Duration>,
    #[serde(default)]
    min_change: Option<f64>,
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    streak: Option<u32>,
    #[serde(default)]
    burst: Option<f64>,
    #[serde(default)]
    quantile: Option<f64>,
    #[serde(default)]
    mean: bool,
    #[serde(default)]
    min_count: Option<f64>,
    #[serde(default, rename = "for")]
    for_: Option<Gate>,
    #[serde(default)]
    resolve_after: Option<crate::config::ResolveGate>,
    #[serde(default)]
    clear: Option<Condition>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    when: Vec<Guard>,
    #[serde(default)]
    unless: Vec<Guard>,
    #[serde(default)]
    remediate: bool,
    #[serde(default)]
    warmup: bool,
    #[serde(default)]
    cooldown: Option<Duration>,
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawRule| Rule::from_raw(raw).map_err(Why))
    }
}

impl Rule {
    /// The probe signals (bare or `probe.name`) it and its guards read,
    /// each with the key that names it (`signal`, `when`, `unless`).
    pub fn signals_read(&self) -> Vec<(&'static str, &str)> {
        let mut read = Vec::new();
        match &self.kind {
            RuleKind::Signal { signal, .. } => {
                read.extend(signal.signal_name().map(|name| ("signal", name)))
            }
            RuleKind::Text { signal, .. } | RuleKind::Age { signal } => {
                read.push(("signal", signal.as_str()))
            }
            _ => {}
        }
        for (key, guards) in [("when", &self.when), ("unless", &self.unless)] {
            for guard in guards {
                let (Guard::Flag(s) | Guard::Compare(s, _)) = guard;
                read.extend(s.signal_name().map(|name| (key, name)));
            }
        }
        read
    }

    fn from_raw(raw: RawRule) -> Result<Rule, String> {
        let name = raw.name;
        if let Some(problem) = crate::config::name_problem("rule", &name, true) {
            return Err(problem);
        }
        let err = |why: &str| format!("rule `{name}`: {why}");
        let written: Vec<Written> = [
            raw.signal.map(Written::Signal),
            raw.gauge.map(Written::Gauge),
            raw.gauge_ratio.map(Written::GaugeRatio),
            raw.counter.map(Written::Counter),
            raw.ratio.map(Written::Ratio),
            raw.histogram.map(Written::Histogram),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [written]: [Written; 1] = written.try_into().map_err(|_| {
            err("give exactly one of signal, gauge, gauge_ratio, counter, ratio, histogram")
        })?;
        let mut text_value = None;
        let value = match raw.value {
            Some(ValueWritten::Number(condition)) => Some(condition),
            Some(ValueWritten::Text(condition)) => {
                text_value = Some(condition);
                None
            }
            None => None,
        };
        let kind = match written {
            Written::Signal(SignalWritten::Age(signal)) => {
                if text_value.is_some() {
                    return Err(err("an age is a number of seconds: value: \"> 30\""));
                }
                RuleKind::Age { signal }
            }
            Written::Signal(SignalWritten::Selector(signal)) if text_value.is_some() => {
                let Some(name) = signal.signal_name() else {
                    return Err(err(
                        "a text condition reads a probe's text by its name (signal: status), not scraped series",
                    ));
                };
                if raw.trend.is_some() || raw.window.is_some() {
                    return Err(err("a trend is of numbers, not text"));
                }
                RuleKind::Text {
                    signal: name.to_string(),
                    condition: text_value.take().expect("a text value"),
                }
            }
            Written::Signal(SignalWritten::Selector(signal)) => {
                // A duration is seconds: a signal counted in another unit
                // would be compared with the wrong number.
                let name = signal.signal_name().unwrap_or_default();
                let counted = if name.ends_with("_ms") {
                    Some(("milliseconds", "2000"))
                } else if name.contains("days") {
                    Some(("days", "3"))
                } else {
                    None
                };
                let in_seconds = [value, raw.clear]
                    .iter()
                    .flatten()
                    .any(|c| c.unit == crate::config::Unit::Seconds);
                if let (Some((unit, example)), true) = (counted, in_seconds) {
                    return Err(err(&format!(
                        "`{name}` counts {unit}, and a duration (5m, 3d) is read as seconds: write the number of {unit} alone, e.g. value: \"< {example}\""
                    )));
                }
                // A ratio is 0 to 1: `loss_ratio > 5` (meant 5 %) never fires.
                let past_one = [value, raw.clear].into_iter().flatten().find(|c| {
                    c.unit == crate::config::Unit::Plain
                        && matches!(c.threshold, Threshold::Value(v) if v > 1.0)
                });
                if name.ends_with("_ratio")
                    && let Some(condition) = past_one
                {
                    return Err(err(&format!(
                        "`{name}` is a ratio from 0 to 1, so `{condition}` would never hold (or always): write a fraction (0.05) or a percentage (\"5%\")"
                    )));
                }
                let min_change = raw.min_change.unwrap_or(DEFAULT_TREND_MIN_CHANGE);
                if min_change.is_nan() || min_change < 0.0 {
                    return Err(err("`min_change` is a size of change, 0 or more"));
                }
                let trend = match (raw.trend, raw.window) {
                    (None, None) => None,
                    (Some(Direction::Rising), Some(window)) => {
                        if raw.below.is_some() {
                            return Err(err("a rising trend takes `above`, not `below`"));
                        }
                        Some(Trend {
                            direction: Direction::Rising,
                            window,
                            min_change,
                            limit: raw.above,
                        })
                    }
                    (Some(Direction::Falling), Some(window)) => {
                        if raw.above.is_some() {
                            return Err(err("a falling trend takes `below`, not `above`"));
                        }
                        Some(Trend {
                            direction: Direction::Falling,
                            window,
                            min_change,
                            limit: raw.below,
                        })
                    }
                    (Some(_), None) => {
                        return Err(err("a trend needs a `window`, e.g. window: 300s"));
                    }
                    (None, Some(_)) => return Err(err("`window` only goes with `trend`")),
                };
                RuleKind::Signal { signal, trend }
            }
            Written::Gauge(gauge) => RuleKind::Gauge(gauge),
            Written::GaugeRatio(pair) => {
                let [numerator, denominator]: [Selector; 2] = pair
                    .try_into()
                    .map_err(|_| err("gauge_ratio takes two series: [numerator, denominator]"))?;
                RuleKind::GaugeRatio {
                    numerator,
                    denominator,
                }
            }
            Written::Counter(series) => RuleKind::Counter {
                series,
                streak: raw.streak,
                burst: raw.burst,
            },
            Written::Ratio(ratio) => RuleKind::Ratio(ratio),
            Written::Histogram(metric) => {
                if metric.name.is_none() {
                    return Err(err(
                        "a histogram rule names its metric: histogram: NAME or NAME{label=\"…\"}",
                    ));
                }
                if let Some(q) = raw.quantile
                    && !(0.0..=1.0).contains(&q)
                {
                    return Err(err("quantile is between 0 and 1, e.g. 0.99"));
                }
                if raw.quantile.is_none() && !raw.mean {
                    return Err(err(
                        "a histogram rule needs `quantile: 0.99` or `mean: true`",
                    ));
                }
                RuleKind::Histogram {
                    metric,
                    quantile: raw.quantile,
                    mean: raw.mean,
                    min_count: raw.min_count.unwrap_or(0.0),
                }
            }
        };
        let is_counter = matches!(kind, RuleKind::Counter { .. });
        let is_trend = matches!(kind, RuleKind::Signal { trend: Some(_), .. });
        if !matches!(kind, RuleKind::Signal { .. }) && (raw.trend.is_some() || raw.window.is_some())
        {
            return Err(err(
                "`trend` and `window` go with `signal:` (a trend of one signal), e.g. signal: lag, trend: rising, window: 300s",
            ));
        }
        if !is_trend && (raw.min_change.is_some() || raw.above.is_some() || raw.below.is_some()) {
            return Err(err("`min_change`, `above` and `below` go with `trend`"));
        }
        if (raw.streak.is_some() || raw.burst.is_some()) && !is_counter {
            return Err(err("`streak` and `burst` only go with `counter`"));
        }
        if text_value.is_some() {
            return Err(err(
                "a quoted value (== \"healthy\") is a text condition: it goes with `signal:`",
            ));
        }
        let is_text = matches!(kind, RuleKind::Text { .. });
        let condition = match (value, raw.delta) {
            (None, None) if is_text => None,
            (Some(_), Some(_)) => return Err(err("give `value` or `delta`, not both")),
            (None, Some(delta)) if is_counter => Some(delta),
            (Some(_), None) if is_counter => {
                return Err(err(
                    "a counter rule compares its per-tick `delta`, e.g. delta: \">= 1\"",
                ));
            }
            (None, Some(_)) => return Err(err("`delta` only goes with `counter`; use `value`")),
            (Some(value), None) => {
                if is_trend {
                    return Err(err("a trend rule takes no `value`"));
                }
                if matches!(value.threshold, Threshold::TimesPrevious(_)) {
                    return Err(err(
                        "`x previous` compares counter deltas: use it with `delta`",
                    ));
                }
                Some(value)
            }
            (None, None) if is_trend => None,
            (None, None) => {
                return Err(err(if is_counter {
                    "needs a `delta` condition, e.g. delta: \">= 1\""
                } else {
                    "needs a `value` condition, e.g. value: \"> 0.5\""
                }));
            }
        };
        // About `clear:`: said at its line.
        let at_clear = |why: String| crate::config::at_key("clear", &why);
        if let Some(clear) = raw.clear {
            let Some(value) = condition.filter(|_| !is_counter) else {
                return Err(at_clear(err(
                    "`clear` is the level a `value` rule resolves at (e.g. value: \"> 0.5\", clear: \"< 0.4\")",
                )));
            };
            if matches!(value.threshold, Threshold::Range(_))
                || !matches!(clear.threshold, Threshold::Value(_))
            {
                return Err(at_clear(err(
                    "`clear` pairs a `value` written with an operator with a level written with one (value: \"> 0.5\", clear: \"< 0.4\")",
                )));
            }
            use crate::config::Op;
            let opposite = match value.op {
                Op::Gt | Op::Ge => matches!(clear.op, Op::Lt | Op::Le),
                Op::Lt | Op::Le => matches!(clear.op, Op::Gt | Op::Ge),
                Op::Eq | Op::Ne => false,
            };
            if !opposite {
                return Err(at_clear(err(&format!(
                    "`clear: {clear}` must look the other way from `value: {value}` (above fires, below clears, or the reverse); with == or != there is no level to clear at"
                ))));
            }
            if let (Threshold::Value(fire_at), Threshold::Value(_)) =
                (value.threshold, clear.threshold)
                && clear.holds(fire_at, None)
            {
                return Err(at_clear(err(&format!(
                    "`clear: {clear}` holds at the firing level itself ({}): it must lie on the healthy side of `value: {value}`",
                    crate::config::format_number(fire_at)
                ))));
            }
        }
        Ok(Rule {
            name,
            kind,
            condition,
            for_: raw.for_,
            resolve_after: raw.resolve_after.map(|gate| gate.0),
            clear: raw.clear,
            severity: raw.severity,
            when: raw.when,
            unless: raw.unless,
            remediate: raw.remediate,
            warmup: raw.warmup,
            cooldown: raw.cooldown,
        })
    }
}
