//! How probe kinds are listed. A probe is a file in `src/probe/` that owns
//! its config struct (the mapping under its key in a task) and implements
//! [`ProbeConfig`]; it becomes a key of jobs.yaml by one line of the
//! `probe_kinds!` list in `src/probe/mod.rs`, beside its `mod` line.
//! Nothing else lists probes: the task's parser, `check-config`'s messages
//! and the dispatch of a tick all read that list.

use super::{Context, Observation};
use std::path::PathBuf;

/// What every probe's config does beyond being read from jobs.yaml.
pub trait ProbeConfig {
    /// Observes the target, adding checks, signals and state to `out`.
    fn observe(&self, context: &Context, out: &mut Observation);

    /// Values and combinations of keys the probe cannot run with, checked
    /// at load. A message is placed at the probe's key, or at one key under
    /// it when made with [`crate::config::at_key`].
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Files it reads that `check-config` can read now (a `ca_file`), its
    /// paths resolved. Not part of loading: a file gone at a tick fails
    /// that probe's check only, never all monitoring.
    fn check_files(&self) -> Result<(), String> {
        Ok(())
    }

    /// The signals it gives, by bare name, when its config alone tells
    /// them; `None` when the target names them (a command's perfdata
    /// labels, a log's states, scraped series). When every probe of a task
    /// tells, a rule reading any other name is a typo, refused at load.
    fn signal_names(&self) -> Option<Vec<String>> {
        None
    }

    /// Why a signal it can give is not given as configured (`cert_days_left`
    /// on a `tcp` without `tls: true`), in words that say what to change.
    fn withheld(&self, _name: &str) -> Option<&'static str> {
        None
    }

    /// Paths written relative to jobs.yaml's folder, to resolve at load.
    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        Vec::new()
    }

    /// Secrets it holds (header values, URLs with a password): a jobs.yaml
    /// with one written in it, rather than as `${VAR}`, is not kept as the
    /// last good one.
    fn secrets(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// Declares [`Probe`] (one variant per kind, holding its config),
/// [`ProbeKind`] and what reads them.
macro_rules! probe_kinds {
    ($($key:ident => $variant:ident($config:ty),)*) => {
        /// A probe: how a task observes its target, one per config key.
        #[derive(Debug, Clone)]
        pub enum Probe {
            $($variant($config),)*
        }

        /// The kind of a probe, without its config: the key it is written under.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum ProbeKind {
            $($variant,)*
        }

        impl ProbeKind {
            /// Every kind, in the order a task's probes run.
            pub const ALL: &'static [ProbeKind] = &[$(ProbeKind::$variant,)*];

            /// The config key: `http`, `self_check`.
            pub fn key(self) -> &'static str {
                match self {
                    $(ProbeKind::$variant => stringify!($key),)*
                }
            }

            /// The kind written under `key`, if `key` names one.
            pub fn from_key(key: &str) -> Option<ProbeKind> {
                Self::ALL.iter().copied().find(|kind| kind.key() == key)
            }

            /// Reads the value under this kind's key of a task mapping.
            pub fn read<'de, A: ::serde::de::MapAccess<'de>>(self, map: &mut A) -> Result<Probe, A::Error> {
                match self {
                    $(ProbeKind::$variant => map.next_value().map(Probe::$variant),)*
                }
            }
        }

        impl Probe {
            pub fn kind_of(&self) -> ProbeKind {
                match self {
                    $(Probe::$variant(_) => ProbeKind::$variant,)*
                }
            }

            fn config(&self) -> &dyn $crate::probe::kinds::ProbeConfig {
                match self {
                    $(Probe::$variant(config) => config,)*
                }
            }

            fn config_mut(&mut self) -> &mut dyn $crate::probe::kinds::ProbeConfig {
                match self {
                    $(Probe::$variant(config) => config,)*
                }
            }
        }
    };
}

use super::{Probe, ProbeKind};

impl Probe {
    /// The config key naming this probe.
    pub fn kind(&self) -> &'static str {
        self.kind_of().key()
    }

    pub fn observe(&self, context: &Context, out: &mut Observation) {
        self.config().observe(context, out);
    }

    /// The probe's own checks; an error is about its key (`tls:`) or a key
    /// under it (`tls.ca_file`), see [`crate::config::at_key`].
    pub fn check(&self) -> Result<(), String> {
        self.config()
            .check()
            .map_err(|why| crate::config::under_key(self.kind(), "", &why))
    }

    /// [`ProbeConfig::check_files`], its message placed as `check`'s.
    pub fn check_files(&self) -> Result<(), String> {
        self.config()
            .check_files()
            .map_err(|why| crate::config::under_key(self.kind(), "", &why))
    }

    pub fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        self.config_mut().relative_paths()
    }

    /// [`ProbeConfig::signal_names`].
    pub fn signal_names(&self) -> Option<Vec<String>> {
        self.config().signal_names()
    }

    /// [`ProbeConfig::withheld`].
    pub fn withheld(&self, name: &str) -> Option<&'static str> {
        self.config().withheld(name)
    }

    pub fn secrets(&self) -> Vec<&str> {
        self.config().secrets()
    }
}

/// `http, command, …, self_check`: the keys, for messages.
pub fn keys() -> String {
    ProbeKind::ALL
        .iter()
        .map(|kind| kind.key())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_by_its_key() {
        for kind in ProbeKind::ALL {
            assert_eq!(ProbeKind::from_key(kind.key()), Some(*kind));
        }
        assert_eq!(ProbeKind::from_key("no_such_probe"), None);
    }
}
