//! `monitor`: one binary, run from cron or supercronic every minute, that
//! watches the services on a host, repairs them and tells people.
//!
//! A tick ([`tick::run`]) reads top to bottom: config → lock → prior state →
//! observe ([`probe`]) → evaluate ([`evaluate`], pure) → commit ([`store`]) →
//! deliver ([`notify`]).

pub mod action;
pub mod alert;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod env_file;
pub mod error;
pub mod evaluate;
pub mod http_client;
pub mod lock;
pub mod notify;
pub mod ownership;
pub mod pre_run;
pub mod probe;
pub mod proc_table;
pub mod remediate;
pub mod report;
pub mod rule;
pub mod schedule;
pub mod silence;
pub mod state_commands;
pub mod store;
pub mod tick;
