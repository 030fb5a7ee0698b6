//! The `stdout` notifier: messages printed with the tick's summary (and
//! so mailed by cron). It takes no settings.

use super::kinds::NotifierConfig;
use super::{Context, Failure, Payload, Sent};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};

/// `type: stdout`.
#[derive(Debug, Clone, Default)]
pub struct StdoutConfig {}

impl NotifierConfig for StdoutConfig {
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // No key reaches it: `keys()` is empty, so the tagged reader
        // refuses any setting at its own line.
        IgnoredAny::deserialize(d).map(|_| StdoutConfig {})
    }

    fn keys() -> &'static [&'static str] {
        &[]
    }

    fn send(&self, payload: &Payload, _: &Context) -> Result<Sent, Failure> {
        Ok(Sent::Console(payload.text()))
    }
}
