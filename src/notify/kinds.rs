//! How notifier types are listed. A notifier is a file in `src/notify/`
//! that owns its config struct (the keys beside `type:`), its validation
//! and its sending, and implements [`NotifierConfig`]; it becomes a `type:`
//! of jobs.yaml by one line of the `notifier_kinds!` list in
//! `src/notify/mod.rs`, beside its `mod` line (gatus's
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

    /// The keys it takes (beside `type:` and the shared ones), for the
    /// placement of a misspelt one: `tagged::field_names` of its raw shape.
    fn keys() -> &'static [&'static str]
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
    T::try_from(Raw::deserialize(d)?)
        .map_err(|why| de::Error::custom(crate::config::across_keys(&why)))
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

            pub fn config(&self) -> &dyn $crate::notify::kinds::NotifierConfig {
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

            fn read<'de, D: ::serde::Deserializer<'de>>(name: &str, rest: D) -> Result<Self, D::Error> {
                $(if name == stringify!($key) {
                    return <$config as $crate::notify::kinds::NotifierConfig>::read(rest)
                        .map(NotifierKind::$variant);
                })*
                Err(::serde::de::Error::custom(format!("unknown notifier type {name:?}")))
            }

            fn keys(name: &str) -> &'static [&'static str] {
                $(if name == stringify!($key) {
                    return <$config as $crate::notify::kinds::NotifierConfig>::keys();
                })*
                &[]
            }
        }
    };
}

use super::NotifierKind;

impl NotifierKind {
    /// The secrets this notifier holds, each at least 4 characters (a
    /// shorter one would redact ordinary words).
    pub fn secrets(&self) -> Vec<&str> {
        let mut secrets = self.config().secrets();
        secrets.retain(|s| s.len() >= 4);
        secrets
    }
}
