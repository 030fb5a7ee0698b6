//! The `stdout` notifier: messages printed with the tick's summary (and
//! so mailed by cron). It takes no settings.

use super::kinds::NotifierConfig;
use super::{Context, Failure, Payload, Sent};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny};
use std::collections::BTreeMap;

/// `type: stdout`.
#[derive(Debug, Clone, Default)]
pub struct StdoutConfig {}

impl NotifierConfig for StdoutConfig {
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let settings = BTreeMap::<String, IgnoredAny>::deserialize(d)?;
        match settings.keys().next() {
            None => Ok(StdoutConfig {}),
            Some(key) => Err(de::Error::custom(format!(
                "unknown key `{key}`: a stdout notifier takes no settings"
            ))),
        }
    }

    fn keys() -> &'static [&'static str] {
        &[]
    }

    fn send(&self, payload: &Payload, _: &Context) -> Result<Sent, Failure> {
        Ok(Sent::Console(payload.text()))
    }
}
