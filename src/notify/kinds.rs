//! The one list of notifier kinds. A notifier is a file in `src/notify/`
//! that owns its config struct (the keys beside `type:`), its validation
//! and its sending, and implements [`NotifierConfig`]; it becomes a `type:`
//! of jobs.yaml by one line in [`notifier_kinds!`] below (gatus's
//! `alerting/provider/*` and `alerting/config.go` are the model).

use super::{Context, Failure, Payload, Sent};
use serde::de::{self, Deserialize, Deserializer};

/// What every notifier's config does beyond being read from jobs.yaml.
pub trait NotifierConfig {
    /// Reads the config from the keys of its mapping other than `type:`
    /// and the shared ones (`min_severity`, `digest`, `rate_limit`).
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>
    where
        Self: Sized;

    /// Sends `payload`. Errors may hold secrets: the caller redacts them.
    fn send(&self, payload: &Payload, context: &Context) -> Result<Sent, Failure>;

    /// The secrets it holds (tokens, keyed URLs): redacted from every
    /// error, log line and history row.
    fn secrets(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Whether `digest: true` applies (it bundles messages for people).
    fn takes_digest(&self) -> bool {
        true
    }

    /// Whether `rate_limit` applies.
    fn takes_rate_limit(&self) -> bool {
        true
    }
}

/// Reads `Raw` and converts it to the config, the conversion's complaint
/// becoming the mapping's error.
pub(crate) fn converted<'de, D, Raw, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    Raw: Deserialize<'de>,
    T: TryFrom<Raw, Error = String>,
{
    T::try_from(Raw::deserialize(d)?).map_err(de::Error::custom)
}

macro_rules! notifier_kinds {
    ($($key:ident => $variant:ident($config:ty),)*) => {
        /// Where a notifier delivers, one per `type:`.
        #[derive(Debug, Clone)]
        pub enum NotifierKind {
            $($variant($config),)*
        }

        impl NotifierKind {
            /// The `type:` it is written with.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(NotifierKind::$variant(_) => stringify!($key),)*
                }
            }

            pub fn config(&self) -> &dyn NotifierConfig {
                match self {
                    $(NotifierKind::$variant(config) => config,)*
                }
            }
        }

        impl crate::config::tagged::Kinds for NotifierKind {
            const WHAT: &'static str = "notifier";

            fn names() -> Vec<&'static str> {
                vec![$(stringify!($key),)*]
            }

            fn read<'de, D: Deserializer<'de>>(name: &str, rest: D) -> Result<Self, D::Error> {
                $(if name == stringify!($key) {
                    return <$config as NotifierConfig>::read(rest).map(NotifierKind::$variant);
                })*
                Err(de::Error::custom(format!("unknown notifier type {name:?}")))
            }
        }
    };
}

notifier_kinds! {
    stdout => Stdout(super::stdout::StdoutConfig),
    webhook => Webhook(super::webhook::WebhookConfig),
    telegram => Telegram(super::telegram::TelegramConfig),
    feishu => Feishu(super::feishu::FeishuConfig),
    alertmanager => Alertmanager(super::alertmanager::AlertmanagerConfig),
    github => Github(super::github::GithubConfig),
}

impl NotifierKind {
    /// The secrets this notifier holds, each at least 4 characters (a
    /// shorter one would redact ordinary words).
    pub fn secrets(&self) -> Vec<&str> {
        let mut secrets = self.config().secrets();
        secrets.retain(|s| s.len() >= 4);
        secrets
    }
}
