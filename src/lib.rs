//! `monitor`: one binary, run from cron or supercronic every minute, that
//! watches the services on a host, repairs them and tells people.
//!
//! A tick ([`tick::run`]) reads top to bottom: config → lock → prior state →
//! observe ([`probe`]) → evaluate ([`evaluate`], pure) → commit ([`store`]) →
//! deliver ([`notify`]).

mod action;
pub mod alert;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
mod env_file;
mod error;
mod evaluate;
mod history;
mod http_client;
mod lock;
pub mod notify;
mod ownership;
mod pre_run;
pub mod probe;
pub mod proc_table;
mod remediate;
mod report;
mod rule;
mod schedule;
mod silence;
mod state_commands;
pub mod store;
mod tick;
mod tls;
