//! The command line: argument parsing, logging setup, and one function per
//! command that calls the library and maps the result to an exit code.

use crate::alert::HistoryStatus;
use crate::clock;
use crate::config::{self, Config};
use crate::error::{Error, exit};
use crate::report::{self, Format};
use crate::schedule::{self, CrontabFormat};
use crate::state_commands;
use crate::store::{HistoryQuery, Store};
use crate::tick::{self, RunOptions, TickResult};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

mod failing;
use failing::{LOG_FILE, load_config, load_for_tick, permission_hint, to_log_file, to_syslog};

const AFTER_HELP: &str = "\
Config: --config PATH, else $MONITOR_CONFIG, else ./jobs.yaml.
Database: --db PATH, else $MONITOR_DB, else `state:` in jobs.yaml (default state/monitor.db beside it).

Exit codes:
  0  the tick ran and every task is healthy, or another run of the profile held its lock
  1  the tick ran and some task is unhealthy (or a remediation failed)
  2  usage or configuration error (the message names file:line:column and the key)
  3  monitor itself could not work (database unusable, lock folder unwritable)
  4  every task is healthy, but notifications are failing (see UNDELIVERED: in the summary)

Typical use:
  monitor run minutely                 one tick, by hand
  monitor run hourly --dry-run         what would happen; restarts, sends and stores nothing
  monitor render-crontab > crontab     the schedule for supercronic (see deploy/)";

#[derive(Parser, Debug)]
#[command(name = "monitor", version, about = "Watch the services on this host, repair them, and tell people. Run from cron or supercronic; each run is one tick.", after_help = AFTER_HELP)]
pub struct Cli {
    /// jobs.yaml to use [default: $MONITOR_CONFIG, then ./jobs.yaml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// SQLite database [default: $MONITOR_DB, then `state:` in jobs.yaml]
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// How much to log on stderr (and to `log_file:` if set) [default:
    /// $MONITOR_LOG_LEVEL, then $LOG_LEVEL, then info]
    #[arg(
        long,
        global = true,
        value_enum,
        ignore_case = true,
        value_name = "LEVEL"
    )]
    pub log_level: Option<LogLevel>,
    /// Read NAME=value settings from FILE first, as systemd's
    /// EnvironmentFile= does (for cron and a shell: /etc/monitoring/.env);
    /// with render-crontab, every job reads it too (cron gives jobs no
    /// environment; the secrets stay in FILE, not in the crontab)
    #[arg(long, global = true, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one tick of a profile: check, alert, notify, store
    Run {
        /// Profile name from jobs.yaml (see `monitor list`)
        profile: String,
        /// Run every check and rule, but restart nothing, send nothing and store nothing
        #[arg(long)]
        dry_run: bool,
        /// Run only this task of the profile
        #[arg(long, value_name = "NAME")]
        task: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Print nothing on stdout/stderr (for plain cron, which mails any output)
        #[arg(long, short)]
        quiet: bool,
    },
    /// Profiles with their schedule, task count, next and last run
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the crontab for cron, cron.d or supercronic
    RenderCrontab {
        #[arg(long, value_enum, default_value = "supercronic")]
        format: CrontabFormat,
        /// User field for --format cron.d [default: the current user]
        #[arg(long, value_name = "U")]
        user: Option<String>,
    },
    /// Validate jobs.yaml; errors name file:line:column and the key
    CheckConfig,
    /// Alert history from the database, newest first
    Alerts {
        /// How many rows, newest first
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// Only this source (task name)
        #[arg(long, value_name = "S")]
        source: Option<String>,
        /// Only rows of this status (a lifecycle step, a restart, an event or a dead letter)
        #[arg(long, value_enum)]
        status: Option<HistoryStatus>,
        /// text for a terminal, json for scripts
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// A task's signal history: each signal's sparkline and min/avg/max, or one signal's
    History {
        /// Task name from jobs.yaml
        task: String,
        /// One signal of the task (`latency_ms`, `lag`, a rule's name for its value) [default: every one recorded]
        signal: Option<String>,
        /// How far back: a span (24h, 7d, 90d) or a time (Unix seconds, RFC 3339)
        #[arg(long, default_value = "24h", value_name = "WHEN")]
        since: String,
        /// The profile, when the task is in several
        #[arg(long, value_name = "PROFILE")]
        profile: Option<String>,
        /// text for a terminal, json for scripts
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Serve the read-only alerts API: /healthz, /v1/alerts, /v1/runs, /v1/silences, /v1/signals, /metrics
    Serve {
        /// host:port to listen on; beyond loopback only with $MONITOR_API_TOKEN set
        #[arg(long, default_value = crate::api::DEFAULT_BIND, value_name = "ADDR")]
        bind: String,
    },
    /// Hold a task's notifications and restarts for a while
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Read and change the monitor_state table, or import legacy cache files
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Subcommand, Debug)]
pub enum SilenceCommand {
    /// Silence a task (or one of its rules): alerts are still recorded, nothing is sent or restarted
    Add {
        #[arg(long, value_name = "TASK")]
        task: String,
        /// Only this profile [default: the task in every profile]
        #[arg(long, value_name = "PROFILE")]
        profile: Option<String>,
        /// Only this rule [default: every rule of the task]
        #[arg(long, value_name = "RULE")]
        rule: Option<String>,
        /// How long, e.g. 30m, 2h
        #[arg(long = "for", value_name = "DURATION")]
        duration: crate::config::Duration,
        /// Why, for the record and the people who wonder
        #[arg(long)]
        reason: String,
    },
    /// Active silences (all, ended ones too, with --all)
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// End a silence now
    Remove { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Every namespace/key/value (or one namespace's)
    List {
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
    },
    /// One value
    Get { namespace: String, key: String },
    /// Set one value
    Set {
        namespace: String,
        key: String,
        value: String,
    },
    /// Delete one value
    Delete { namespace: String, key: String },
    /// Import legacy text cache files (named, or the small text files of a
    /// folder): each file's name is a key, its content (one trailing
    /// newline removed) the value
    Import {
        #[arg(required = true, value_name = "FILE_OR_DIR")]
        paths: Vec<PathBuf>,
        #[arg(long, default_value = "cache", value_name = "NS")]
        namespace: String,
        /// Replace values already in the database (by default they are kept)
        #[arg(long)]
        overwrite: bool,
    },
    /// Write a namespace back as text files (KEY holding the value and a
    /// newline): the way back to the legacy cache
    Export {
        dir: PathBuf,
        #[arg(long, default_value = "cache", value_name = "NS")]
        namespace: String,
        /// Replace files already in DIR (by default they are left alone)
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// `--log-level`, else MONITOR_LOG_LEVEL, else the seed's LOG_LEVEL
    /// (for a unit or crontab that cannot pass a flag), else info.
    fn of(cli: &Cli) -> Result<LogLevel, Error> {
        if let Some(level) = cli.log_level {
            return Ok(level);
        }
        for var in ["MONITOR_LOG_LEVEL", "LOG_LEVEL"] {
            let Some(value) = std::env::var_os(var) else {
                continue;
            };
            let value = value.to_string_lossy();
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            return match value.to_ascii_lowercase().as_str() {
                "warning" => Ok(LogLevel::Warn),
                lower => LogLevel::from_str(lower, true).map_err(|_| Error::LogLevel {
                    variable: var.to_string(),
                    value: value.to_string(),
                }),
            };
        }
        Ok(LogLevel::Info)
    }

    fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// Entry point of the binary: returns the exit code.
pub fn main() -> u8 {
    let cli = Cli::parse();
    let result = match &cli.env_file {
        Some(file) => crate::env_file::load(file)
            .map_err(Error::EnvFile)
            .and_then(|_| dispatch(&cli)),
        None => dispatch(&cli),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // An error that stops the command is never quiet: `--quiet` is
            // quiet while monitoring works. It goes to stderr (cron's mail,
            // the journal under systemd), to syslog, and to the log file.
            let line = match permission_hint(&cli, &error) {
                Some(hint) => format!("monitor: {error}\n  {hint}"),
                None => format!("monitor: {error}"),
            };
            eprintln!("{line}");
            to_syslog(&line);
            to_log_file(&cli, &line);
            error.exit_code()
        }
    }
}

/// The log target of the tick's story: written to `log_file:` only (the
/// summary on stdout tells the same on a terminal).
const STORY: &str = "story";

/// Logs to stderr (unless quiet) and to the config's `log_file` (unless
/// `write_file` is false: a dry run writes no file).
fn init_logging(level: LogLevel, quiet: bool, write_file: bool, config: &Config) {
    use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};
    let mut builder = ConfigBuilder::new();
    builder
        .set_time_format_rfc3339()
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        // The HTTP client's own records: at trace they hold request lines
        // and headers (tokens, keyed URLs), and at debug they drown
        // monitor's decisions. monitor logs what it asked and got itself.
        .add_filter_ignore_str("ureq")
        .add_filter_ignore_str("rustls");
    let _ = builder.set_time_offset_to_local();
    let log_config = builder.build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = Vec::new();
    if !quiet {
        let stderr_config = builder.add_filter_ignore_str(STORY).build();
        loggers.push(WriteLogger::new(
            level.filter(),
            stderr_config,
            std::io::stderr(),
        ));
    }
    if let Some(path) = config.log_file.as_ref().filter(|_| write_file) {
        if let Some(folder) = path.parent() {
            let _ = crate::store::create_private_dir(folder);
        }
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        match opened {
            Ok(file) => {
                crate::ownership::adopt(path);
                let _ = LOG_FILE.set(path.clone());
                crate::probe::children::stop_note_to(&file);
                loggers.push(WriteLogger::new(level.filter(), log_config, file));
            }
            // Said under --quiet too: the log asked for is not being kept.
            Err(e) => eprintln!(
                "monitor: cannot open log_file {}: {e}{}; this tick logs nothing there",
                path.display(),
                crate::ownership::whose(path)
            ),
        }
    }
    let _ = CombinedLogger::init(loggers);
}

fn dispatch(cli: &Cli) -> Result<u8, Error> {
    match &cli.command {
        Command::Run {
            profile,
            dry_run,
            task,
            format,
            quiet,
        } => {
            let (config, rejected) = load_for_tick(cli)?;
            init_logging(LogLevel::of(cli)?, *quiet, !dry_run, &config);
            let now = clock::now().map_err(Error::Clock)?;
            let options = RunOptions {
                profile: profile.clone(),
                dry_run: *dry_run,
                task: task.clone(),
                rejected,
            };
            match tick::run(&config, &options, now)? {
                TickResult::Skipped => Ok(exit::OK),
                TickResult::Ran(report) => {
                    // Built only when something logs (a quiet tick without
                    // log_file has no logger at all).
                    let story = if log::max_level() == log::LevelFilter::Off {
                        Vec::new()
                    } else {
                        report::tick_story(&report)
                    };
                    for (level, line) in story {
                        // monitor's decisions (every rule's verdict) go to
                        // stderr too at debug; the story to log_file only.
                        if level == log::Level::Debug {
                            log::debug!("{line}");
                        } else {
                            log::log!(target: STORY, level, "{line}");
                        }
                    }
                    if !quiet {
                        let text = match format {
                            Format::Text => report::tick_text(&report),
                            Format::Json => format!("{:#}\n", report::tick_json(&report)),
                        };
                        print(&text);
                    }
                    Ok(if !report.healthy() {
                        exit::UNHEALTHY
                    } else if !report.undelivered.is_empty() {
                        exit::UNDELIVERED
                    } else {
                        exit::OK
                    })
                }
            }
        }
        Command::List { format } => {
            let config = load_config(cli)?;
            init_logging(LogLevel::of(cli)?, false, true, &config);
            list(&config, *format)
        }
        Command::RenderCrontab { format, user } => {
            let config = load_config(cli)?;
            let binary = std::env::current_exe()
                .and_then(std::fs::canonicalize)
                .map_err(|e| {
                    Error::Tool(anyhow::anyhow!("finding the path of this binary: {e}"))
                })?;
            let user = match user {
                Some(user) => user.clone(),
                None => std::env::var("USER")
                    .or_else(|_| std::env::var("LOGNAME"))
                    .unwrap_or_else(|_| "root".into()),
            };
            let db = cli
                .db
                .as_ref()
                .map(|db| std::path::absolute(db).unwrap_or(db.clone()));
            let rendered = schedule::render_crontab(&schedule::CrontabInput {
                binary: &binary,
                config: &config,
                format: *format,
                user: &user,
                db: db.as_deref(),
                env_file: cli
                    .env_file
                    .as_ref()
                    .map(|f| std::path::absolute(f).unwrap_or(f.clone()))
                    .as_deref(),
            })
            .map_err(Error::Crontab)?;
            print(&rendered);
            Ok(exit::OK)
        }
        Command::CheckConfig => {
            let config = load_config(cli)?;
            let path = crate::config::resolve_path(cli.config.as_deref());
            crate::config::check_files(&config, &path).map_err(Error::Config)?;
            print(&report::config_summary(&config));
            Ok(exit::OK)
        }
        Command::Alerts {
            limit,
            source,
            status,
            format,
        } => {
            let config = load_config(cli)?;
            init_logging(LogLevel::of(cli)?, false, true, &config);
            let query = HistoryQuery {
                source: source.clone(),
                status: *status,
                ..HistoryQuery::newest((*limit).clamp(1, 100_000) as u32)
            };
            let now = clock::now().map_err(Error::Clock)?;
            let (rows, silences) = match Store::open_read_only(&config.state)? {
                Some(store) => (store.history(&query)?, store.silences(Some(now))?),
                None => Default::default(),
            };
            print(&match format {
                Format::Text => {
                    state_commands::silences_text(&silences, now) + &report::history_text(&rows)
                }
                Format::Json => format!("{:#}\n", report::history_json(&rows)),
            });
            Ok(exit::OK)
        }
        Command::History {
            task,
            signal,
            since,
            profile,
            format,
        } => {
            let config = load_config(cli)?;
            init_logging(LogLevel::of(cli)?, false, true, &config);
            let now = clock::now().map_err(Error::Clock)?;
            let usage = |why: String| Error::History(format!("monitor history: {why}"));
            let query = crate::history::Query {
                profile: profile.clone(),
                task: Some(task.clone()),
                signal: signal.clone(),
                since: crate::history::parse_time_or_span("since", since, now).map_err(usage)?,
                until: now,
                step_ms: None,
            };
            let Some(store) = Store::open_read_only(&config.state)? else {
                return Err(usage(format!(
                    "no database at {} yet: run a tick first",
                    config.state.display()
                )));
            };
            let profile =
                crate::history::profile_of(&store, task, profile.as_deref()).map_err(usage)?;
            let text = match (signal, format) {
                (None, Format::Text) => {
                    crate::history::overview_text(&store, &profile, task, &query)?
                }
                (None, Format::Json) => format!(
                    "{:#}\n",
                    crate::history::series_json(&store.signal_series(Some(&profile), Some(task))?)
                ),
                (Some(signal), format) => {
                    crate::history::recorded(&store, &profile, task, signal)?.map_err(usage)?;
                    let points = crate::history::points(&store, &profile, task, signal, &query)?;
                    match format {
                        Format::Text => {
                            crate::history::series_text(&points, &profile, task, signal, &query)
                        }
                        Format::Json => format!(
                            "{:#}\n",
                            crate::history::points_json(&points, &profile, task, signal, &query)
                        ),
                    }
                }
            };
            print(&text);
            Ok(exit::OK)
        }
        Command::Serve { bind } => {
            let config = load_config(cli)?;
            init_logging(LogLevel::of(cli)?, false, true, &config);
            let options = crate::api::ServeOptions {
                bind: bind.clone(),
                db: cli.db.clone(),
                token: crate::api::token_from_env(),
            };
            crate::api::serve(config, &options)
        }
        Command::Silence(command) => silence(cli, command),
        Command::State(command) => state(cli, command),
    }
}

fn silence(cli: &Cli, command: &SilenceCommand) -> Result<u8, Error> {
    let config = load_config(cli)?;
    let now = clock::now().map_err(Error::Clock)?;
    let text = match command {
        SilenceCommand::Add {
            task,
            profile,
            rule,
            duration,
            reason,
        } => {
            // Shown in every summary and stored: escapes stay text.
            let reason = crate::probe::inert(reason);
            let new = state_commands::NewSilence {
                profile: profile.as_deref(),
                task,
                rule: rule.as_deref(),
                duration: *duration,
                reason: &reason,
            };
            state_commands::add_silence(&config, &new, now)?
        }
        SilenceCommand::Remove { id } => state_commands::remove_silence(&config, *id, now)?,
        SilenceCommand::List { all, format } => {
            let silences = state_commands::silences(&config, *all, now)?;
            match format {
                Format::Json => format!("{:#}\n", serde_json::json!(silences)),
                Format::Text if silences.is_empty() => "no active silences\n".to_string(),
                Format::Text => state_commands::silences_text(&silences, now),
            }
        }
    };
    print(&text);
    Ok(exit::OK)
}

fn state(cli: &Cli, command: &StateCommand) -> Result<u8, Error> {
    let config = load_config(cli)?;
    let now = clock::now().map_err(Error::Clock)?;
    let read = || Store::open_read_only(&config.state).map_err(Error::Tool);
    let write = || Store::open(&config.state).map_err(Error::Tool);
    match command {
        StateCommand::List { namespace } => {
            let rows = match read()? {
                Some(store) => store.state_rows(namespace.as_deref())?,
                None => Vec::new(),
            };
            print(
                &rows
                    .iter()
                    .map(|(ns, k, v)| {
                        format!(
                            "{}\t{}\t{}\n",
                            state_commands::one_line(ns),
                            state_commands::one_line(k),
                            state_commands::one_line(v)
                        )
                    })
                    .collect::<String>(),
            );
        }
        StateCommand::Get { namespace, key } => {
            let rows = match read()? {
                Some(store) => store.state_rows(Some(namespace))?,
                None => Vec::new(),
            };
            match rows.into_iter().find(|(_, k, _)| k == key) {
                Some((_, _, value)) => print(&format!("{value}\n")),
                None => {
                    return Err(Error::NoStateValue {
                        namespace: namespace.clone(),
                        key: key.clone(),
                    });
                }
            }
        }
        StateCommand::Set {
            namespace,
            key,
            value,
        } => {
            write()?.set_state(namespace, key, Some(value), now)?;
        }
        StateCommand::Delete { namespace, key } => {
            if !write()?.set_state(namespace, key, None, now)? {
                return Err(Error::NoStateValue {
                    namespace: namespace.clone(),
                    key: key.clone(),
                });
            }
        }
        StateCommand::Export {
            dir,
            namespace,
            overwrite,
        } => {
            let done = state_commands::export(&config, dir, namespace, *overwrite)?;
            let mut text = format!(
                "exported {namespace} to {}: {} file{} written\n",
                dir.display(),
                done.written,
                if done.written == 1 { "" } else { "s" }
            );
            for skipped in &done.skipped {
                text.push_str(&format!("skipped {skipped}\n"));
            }
            print(&text);
        }
        StateCommand::Import {
            paths,
            namespace,
            overwrite,
        } => {
            let done = state_commands::import(&config, paths, namespace, *overwrite, now)?;
            let mut text = format!(
                "imported into {namespace}: {} added, {} overwritten, {} kept{}\n",
                done.added,
                done.overwritten,
                done.kept,
                if *overwrite {
                    ""
                } else {
                    " (existing values win; --overwrite replaces them)"
                }
            );
            for skipped in &done.skipped {
                text.push_str(&format!("skipped {skipped}\n"));
            }
            print(&text);
        }
    }
    Ok(exit::OK)
}

fn list(config: &Config, format: Format) -> Result<u8, Error> {
    let now = clock::now().map_err(Error::Clock)?;
    let (last_runs, first_seen, silences) = match Store::open_read_only(&config.state)? {
        Some(store) => (
            store.last_runs(now)?,
            store.first_seen()?,
            store.silences(Some(now))?,
        ),
        None => Default::default(),
    };
    let local_now = now.to_chrono().map(|t| t.with_timezone(&chrono::Local));
    let rows: Vec<report::ProfileListing> = config
        .profiles
        .iter()
        .map(|p| report::ProfileListing {
            name: &p.name,
            cron: p.cron.as_str(),
            enabled: p.enabled,
            tasks: p.tasks.len(),
            next: local_now
                .as_ref()
                .and_then(|t| p.cron.next_after(t))
                .map(|t| clock::Timestamp(t.timestamp_millis())),
            last: last_runs.get(&p.name),
            overdue: p.enabled
                && p.cron.overdue_from(
                    schedule::watched_since(
                        last_runs.get(&p.name).map(|run| run.started_at),
                        first_seen.get(&p.name).copied(),
                    ),
                    now,
                ),
            held: crate::silence::maintenance(&p.maintenance, now)
                .map(|(ends, reason)| format!("in maintenance until {ends} ({reason})")),
        })
        .collect();
    print(&match format {
        Format::Text => {
            report::list_text(&rows, now) + &state_commands::silences_text(&silences, now)
        }
        Format::Json => format!(
            "{:#}\n",
            serde_json::json!({ "profiles": report::list_json(&rows), "silences": silences })
        ),
    });
    Ok(exit::OK)
}

/// Prints to stdout, ignoring a closed pipe (`monitor list | head`).
fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
