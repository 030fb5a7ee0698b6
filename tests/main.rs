//! The integration suite, one binary: every module drives the real
//! `monitor` binary (or the library) against real parts on 127.0.0.1.
//! One crate links the library once instead of once per file, which is what
//! a 2-core machine notices (see README, "Development").

mod common;

mod actions;
mod api;
mod concurrency;
mod config_errors;
mod crash_safety;
mod deploy;
mod dry_run;
mod http_alerts;
mod lag;
mod log_probe;
mod metrics_parse;
mod network_checks;
mod notify_alertmanager;
mod notify_feishu;
mod notify_github;
mod notify_routing;
mod notify_telegram;
mod operations;
mod process_disk;
mod readable;
mod restart;
mod seed004;
mod status_page;
mod task_gating;
mod webhook_outbox;
