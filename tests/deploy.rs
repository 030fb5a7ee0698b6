//! deploy/: install.sh, the systemd units, the crontabs and `.env.example`,
//! checked without touching the host: every install goes into a temp
//! folder (or, as root, into a private mount namespace over copies of /etc
//! and /var/lib), units are verified from temp copies, and cron only
//! syntax-checks (`crontab -n`).
//!
//! Over 800 lines: it is one area of the integration suite (one module of
//! `tests/main.rs`), each test a scenario with its own fixture; the helpers
//! they share live in `tests/common/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const MONITOR: &str = env!("CARGO_BIN_EXE_monitor");

fn deploy(file: &str) -> PathBuf {
    Path::new(REPO).join("deploy").join(file)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// `deploy/install.sh --prefix ROOT --binary <the test build> EXTRA…`.
fn install(root: &Path, extra: &[&str]) -> Output {
    Command::new("bash")
        .arg(deploy("install.sh"))
        .arg("--prefix")
        .arg(root)
        .arg("--binary")
        .arg(MONITOR)
        .args(extra)
        .env_remove("DESTDIR")
        .output()
        .expect("running bash deploy/install.sh")
}

fn install_ok(root: &Path, extra: &[&str]) -> String {
    let output = install(root, extra);
    assert!(
        output.status.success(),
        "install.sh failed: {}",
        describe(&output)
    );
    text(&output.stdout)
}

/// The lines of install.sh's report that say it changed something.
fn change_lines(report: &str) -> Vec<&str> {
    const VERBS: [&str; 7] = [
        "install", "update", "create", "mkdir", "chmod", "chown", "useradd",
    ];
    report
        .lines()
        .filter(|line| {
            let word = line.split_whitespace().next().unwrap_or("");
            line.starts_with("  ") && VERBS.contains(&word)
        })
        .collect()
}

/// What the idempotence check compares: type, mode and content of a path.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Entry {
    kind: &'static str,
    mode: u32,
    sha256: String,
}

/// Every path under `root` with its entry, and separately its modification
/// and change times (ns): a run that rewrote or re-chmod-ed an identical
/// file shows there.
fn snapshot(root: &Path) -> (BTreeMap<PathBuf, Entry>, BTreeMap<PathBuf, (i64, i64)>) {
    fn walk(
        root: &Path,
        dir: &Path,
        entries: &mut BTreeMap<PathBuf, Entry>,
        times: &mut BTreeMap<PathBuf, (i64, i64)>,
    ) {
        let mut children: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.expect("a folder entry").path())
            .collect();
        children.sort();
        for path in children {
            let meta = fs::symlink_metadata(&path).expect("metadata");
            let relative = path.strip_prefix(root).expect("under root").to_path_buf();
            let (kind, sha256) = if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).expect("a link");
                ("symlink", sha256(target.as_os_str().as_encoded_bytes()))
            } else if meta.is_dir() {
                ("dir", String::new())
            } else {
                ("file", sha256_of_file(&path))
            };
            let nanos = |s: i64, ns: i64| s * 1_000_000_000 + ns;
            times.insert(
                relative.clone(),
                (
                    nanos(meta.mtime(), meta.mtime_nsec()),
                    nanos(meta.ctime(), meta.ctime_nsec()),
                ),
            );
            entries.insert(
                relative,
                Entry {
                    kind,
                    mode: meta.mode() & 0o7777,
                    sha256,
                },
            );
            if kind == "dir" {
                walk(root, &path, entries, times);
            }
        }
    }
    let mut entries = BTreeMap::new();
    let mut times = BTreeMap::new();
    walk(root, root, &mut entries, &mut times);
    (entries, times)
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// coreutils' sha256sum: the debug build of sha2 takes seconds over the
/// 100 MB debug binary, sha256sum a fraction of one.
fn sha256_of_file(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("running sha256sum");
    assert!(output.status.success(), "{}", describe(&output));
    text(&output.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this process may make a private mount namespace (root, and a
/// sandbox that allows it). The tests that need one say so and pass when
/// it is missing: CI runs as root, where they run.
fn can_unshare_mounts() -> bool {
    is_root()
        && Command::new("unshare")
            .args(["--mount", "--propagation", "private", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// A command found on PATH, or a failure naming where .ci/run installs it.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found on PATH: .ci/run installs Debian's `{package}` package \
                 (apt-get install {package})"
            )
        })
}

fn on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(name).is_file())
}

fn run_with_input(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("waiting")
}

/// Debian cron's own syntax check, which installs nothing.
fn crontab_check(crontab: &str) -> Output {
    run_with_input(
        Command::new(tool("crontab", "cron")).args(["-n", "-"]),
        crontab,
    )
}

/// The installed binary with the installed jobs.yaml, away from any
/// MONITOR_* of the environment the tests run in.
fn installed_monitor(root: &Path) -> Command {
    let mut command = Command::new(root.join("usr/local/bin/monitor"));
    command
        .arg("--config")
        .arg(root.join("etc/monitoring/jobs.yaml"))
        .env_remove("MONITOR_CONFIG")
        .env_remove("MONITOR_DB");
    command
}

fn render(root: &Path, args: &[&str]) -> String {
    let output = installed_monitor(root)
        .arg("render-crontab")
        .args(args)
        .output()
        .expect("running monitor render-crontab");
    assert!(output.status.success(), "{}", describe(&output));
    text(&output.stdout)
}

/// `KEY=value` settings of a unit file, in order (comments skipped).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', ';', '[']))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

// ------------------------------------------------------------- install.sh

#[test]
fn install_script_is_valid_bash_and_shellcheck_clean_when_available() {
    let output = Command::new("bash")
        .arg("-n")
        .arg(deploy("install.sh"))
        .output()
        .expect("bash -n");
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        mode_of(&deploy("install.sh")) & 0o111 != 0,
        "deploy/install.sh should be executable"
    );
    if on_path("shellcheck") {
        let output = Command::new("shellcheck")
            .arg(deploy("install.sh"))
            .output()
            .expect("shellcheck");
        assert!(output.status.success(), "{}", describe(&output));
    } else {
        eprintln!("shellcheck is not installed: only `bash -n` checked install.sh");
    }
}

#[test]
fn install_twice_gives_the_same_tree_and_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let first = install_ok(&root, &[]);
    assert!(!change_lines(&first).is_empty(), "{first}");
    assert!(
        first.contains("would run, unless it exists: useradd"),
        "a staged install says which user it would create:\n{first}"
    );
    let (entries, times) = snapshot(&root);

    let second = install_ok(&root, &[]);
    assert_eq!(change_lines(&second), Vec::<&str>::new(), "{second}");
    assert!(
        second.contains("no changes: everything was already in place"),
        "{second}"
    );
    let (entries_again, times_again) = snapshot(&root);
    assert_eq!(entries, entries_again, "the second run changed the tree");
    assert_eq!(
        times, times_again,
        "the second run rewrote, chmod-ed or chown-ed something"
    );

    let expected: [(&str, &str, u32); 11] = [
        ("usr/local/bin", "dir", 0o755),
        ("usr/local/bin/monitor", "file", 0o755),
        ("etc/monitoring", "dir", 0o750),
        ("etc/monitoring/jobs.yaml", "file", 0o640),
        ("etc/monitoring/.env", "file", 0o640),
        ("var/lib", "dir", 0o755),
        ("var/lib/monitor", "dir", 0o750),
        ("etc/systemd/system", "dir", 0o755),
        ("etc/systemd/system/monitoring.service", "file", 0o644),
        ("etc/systemd/system/monitoring-api.service", "file", 0o644),
        ("etc", "dir", 0o755),
    ];
    for (path, kind, mode) in expected {
        let entry = entries
            .get(Path::new(path))
            .unwrap_or_else(|| panic!("{path} is missing: {entries:#?}"));
        assert_eq!((entry.kind, entry.mode), (kind, mode), "{path}");
    }
    let files: BTreeSet<_> = entries
        .iter()
        .filter(|(_, entry)| entry.kind == "file")
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert_eq!(files.len(), 5, "unexpected files: {files:#?}");
    assert!(
        !root.join("usr/local/bin/supercronic").exists(),
        "supercronic is installed only with --supercronic"
    );
    assert!(first.contains("--env-file /etc/monitoring/.env --config /etc/monitoring/jobs.yaml"));
    assert!(
        first.contains(
            "render-crontab --format cron.d --user monitor | sudo tee /etc/cron.d/monitor"
        )
    );

    // The shipped files, as shipped; jobs.yaml with its state in /var/lib/monitor.
    let read = |path: &Path| fs::read_to_string(path).unwrap();
    assert_eq!(
        sha256_of_file(&root.join("usr/local/bin/monitor")),
        sha256_of_file(Path::new(MONITOR))
    );
    assert_eq!(
        read(&root.join("etc/monitoring/.env")),
        read(&deploy(".env.example"))
    );
    for unit in ["monitoring.service", "monitoring-api.service"] {
        assert_eq!(
            read(&root.join("etc/systemd/system").join(unit)),
            read(&deploy(unit))
        );
    }
    let shipped = read(&Path::new(REPO).join("jobs.yaml"));
    let installed = read(&root.join("etc/monitoring/jobs.yaml"));
    let differing: Vec<_> = shipped
        .lines()
        .zip(installed.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(shipped.lines().count(), installed.lines().count());
    assert_eq!(differing.len(), 2, "{differing:#?}");
    assert!(
        differing[0]
            .1
            .starts_with("state: /var/lib/monitor/monitor.db "),
        "{differing:#?}"
    );
    assert!(
        differing[1]
            .1
            .starts_with("log_file: /var/lib/monitor/monitor.log "),
        "{differing:#?}"
    );
}

#[test]
fn reinstall_keeps_the_operators_config_updates_the_binary_and_restores_modes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install_ok(&root, &[]);
    let jobs = root.join("etc/monitoring/jobs.yaml");
    let env = root.join("etc/monitoring/.env");
    fs::write(&jobs, "version: 1\nprofiles: {}\n").unwrap();
    fs::write(&env, "MACHINE_ID=box-7\n").unwrap();
    fs::set_permissions(&env, fs::Permissions::from_mode(0o644)).unwrap();
    // An upgrade: another binary, and a supercronic given this time.
    let newer = dir.path().join("monitor-newer");
    fs::copy(MONITOR, &newer).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&newer)
        .unwrap()
        .write_all(b"\0")
        .unwrap();
    let supercronic = dir.path().join("supercronic");
    fs::write(&supercronic, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&supercronic, fs::Permissions::from_mode(0o755)).unwrap();

    let report = Command::new("bash")
        .arg(deploy("install.sh"))
        .arg("--prefix")
        .arg(&root)
        .arg("--binary")
        .arg(&newer)
        .arg("--supercronic")
        .arg(&supercronic)
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", describe(&report));
    let report = text(&report.stdout);
    let mut changes = change_lines(&report);
    changes.sort();
    let chmod = format!("  chmod    0640 {}", env.display());
    let update = format!(
        "  update   {}",
        root.join("usr/local/bin/monitor").display()
    );
    let supercronic_line = format!(
        "  install  {}",
        root.join("usr/local/bin/supercronic").display()
    );
    let mut expected = vec![chmod.as_str(), update.as_str(), supercronic_line.as_str()];
    expected.sort();
    assert_eq!(changes, expected, "{report}");
    assert!(!report.contains("supercronic is not installed"), "{report}");
    assert_eq!(
        fs::read_to_string(&jobs).unwrap(),
        "version: 1\nprofiles: {}\n"
    );
    assert_eq!(fs::read_to_string(&env).unwrap(), "MACHINE_ID=box-7\n");
    assert_eq!(mode_of(&env), 0o640);
    assert_eq!(
        sha256_of_file(&root.join("usr/local/bin/monitor")),
        sha256_of_file(&newer)
    );
    assert_eq!(mode_of(&root.join("usr/local/bin/supercronic")), 0o755);
    // No leftovers of the write-then-rename.
    let stray: Vec<_> = fs::read_dir(root.join("usr/local/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".install."))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn destdir_stages_the_same_tree_as_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let by_prefix = dir.path().join("prefix");
    let by_destdir = dir.path().join("destdir");
    install_ok(&by_prefix, &[]);
    let output = Command::new("bash")
        .arg(deploy("install.sh"))
        .arg("--binary")
        .arg(MONITOR)
        .env("DESTDIR", &by_destdir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        text(&output.stdout).contains("staged install into"),
        "{}",
        describe(&output)
    );
    assert_eq!(snapshot(&by_prefix).0, snapshot(&by_destdir).0);
}

#[test]
fn install_help_and_argument_errors() {
    let help = Command::new("bash")
        .arg(deploy("install.sh"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success(), "{}", describe(&help));
    for word in [
        "--binary",
        "--supercronic",
        "--prefix",
        "DESTDIR",
        "--config",
    ] {
        assert!(text(&help.stdout).contains(word), "--help lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let unknown = install(&root, &["--frobnicate"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", describe(&unknown));
    assert!(text(&unknown.stderr).contains("unknown argument: --frobnicate"));
    let missing = Command::new("bash")
        .arg(deploy("install.sh"))
        .arg("--prefix")
        .arg(&root)
        .arg("--binary")
        .arg(dir.path().join("no-such-monitor"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    assert!(text(&missing.stderr).contains("is not an executable file"));
    assert!(!root.exists(), "a refused install wrote nothing");
}

/// The real (unstaged) path: user creation and ownership, as root, in a
/// private mount namespace where /etc is an overlay whose writes land in a
/// tmpfs, and /usr/local and /var/lib are empty tmpfs: the host's files are
/// never written, and everything vanishes with the namespace.
#[test]
fn real_install_creates_the_user_and_owns_files_in_a_private_namespace() {
    if !can_unshare_mounts() {
        eprintln!("skipped: needs root and `unshare --mount` (CI has both)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let passwd_before = fs::read("/etc/passwd").unwrap();

    // Exit 77: this kernel or sandbox cannot mount what the test needs.
    // `set -e` stops before install.sh if any step fails.
    let script = r#"
        set -eu
        scratch=$1
        mount -t tmpfs tmpfs "$scratch" || exit 77
        mkdir "$scratch/upper" "$scratch/work"
        mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/upper,workdir=$scratch/work" /etc || exit 77
        mount -t tmpfs tmpfs /usr/local || exit 77
        mount -t tmpfs tmpfs /var/lib || exit 77
        touch /etc/.monitor-deploy-test
        test -e "$scratch/upper/.monitor-deploy-test"
        bash "$2" --binary "$3"
        echo '=== second run'
        bash "$2" --binary "$3"
        echo '=== state'
        getent passwd monitor
        stat -c '%a %U:%G %n' /etc/monitoring /etc/monitoring/jobs.yaml /etc/monitoring/.env \
            /var/lib/monitor /usr/local/bin/monitor /etc/systemd/system/monitoring.service
        echo '=== tick as monitor'
        runuser -u monitor -- env -i PATH=/usr/bin:/bin /usr/local/bin/monitor \
            --config /etc/monitoring/jobs.yaml run host --quiet || echo "tick exit $?"
        stat -c '%U %n' /var/lib/monitor/monitor.db
    "#;
    let output = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(dir.path())
        .arg(deploy("install.sh"))
        .arg(MONITOR)
        .output()
        .unwrap();
    assert_eq!(
        fs::read("/etc/passwd").unwrap(),
        passwd_before,
        "the host's /etc/passwd changed"
    );
    if output.status.code() == Some(77) {
        eprintln!(
            "skipped: no tmpfs/overlay mounts here: {}",
            describe(&output)
        );
        return;
    }
    let all = text(&output.stdout);
    assert!(output.status.success(), "{}", describe(&output));
    let (first, rest) = all.split_once("=== second run").expect("two runs");
    let (second, state) = rest.split_once("=== state").expect("a state");
    assert!(first.contains("  useradd  monitor"), "{first}");
    assert_eq!(change_lines(second), Vec::<&str>::new(), "{second}");
    assert!(second.contains("no changes"), "{second}");
    let (state, tick) = state.split_once("=== tick as monitor").expect("a tick");
    assert!(
        state.contains(":/var/lib/monitor:/usr/sbin/nologin"),
        "{state}"
    );
    for line in [
        "750 root:monitor /etc/monitoring\n",
        "640 root:monitor /etc/monitoring/jobs.yaml\n",
        "640 root:monitor /etc/monitoring/.env\n",
        "750 monitor:monitor /var/lib/monitor\n",
        "755 root:root /usr/local/bin/monitor\n",
        "644 root:root /etc/systemd/system/monitoring.service\n",
    ] {
        assert!(state.contains(line), "expected {line:?} in:\n{state}");
    }
    // The monitor user can read its config and write its state folder.
    assert!(
        tick.contains("monitor /var/lib/monitor/monitor.db"),
        "{}",
        describe(&output)
    );
}

// ------------------------------------------------------------ systemd units

/// Copies the installed units into `dir`, pointing ExecStart* at binaries
/// that exist here: `systemd-analyze verify` rejects a unit whose command
/// is missing ("Command /usr/local/bin/monitor is not executable"), and the
/// tests may not write /usr/local/bin. `--root=DIR` does not help: it then
/// wants a whole OS under DIR (sysinit.target, /bin/sh).
fn units_for_verify(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let supercronic = dir.join("supercronic");
    fs::write(&supercronic, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&supercronic, fs::Permissions::from_mode(0o755)).unwrap();
    let monitor = root.join("usr/local/bin/monitor");
    ["monitoring.service", "monitoring-api.service"]
        .iter()
        .map(|name| {
            let unit = fs::read_to_string(root.join("etc/systemd/system").join(name)).unwrap();
            assert!(unit.contains("/usr/local/bin/monitor "), "{name}");
            let rewritten = unit
                .replace("/usr/local/bin/monitor", &monitor.display().to_string())
                .replace(
                    "/usr/local/bin/supercronic",
                    &supercronic.display().to_string(),
                );
            let path = dir.join(name);
            fs::write(&path, rewritten).unwrap();
            path
        })
        .collect()
}

fn systemd_analyze_verify(units: &[PathBuf]) -> Output {
    Command::new(tool("systemd-analyze", "systemd"))
        .arg("verify")
        .args(units)
        .output()
        .expect("running systemd-analyze")
}

#[test]
fn units_pass_systemd_analyze_verify_without_a_word() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install_ok(&root, &[]);
    let units = units_for_verify(&root, dir.path());
    let output = systemd_analyze_verify(&units);
    // verify prints warnings (unknown keys, bad values) yet exits 0: any
    // output at all is a failure.
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "systemd-analyze verify {units:?}: {}",
        describe(&output)
    );

    // The check has teeth: a unit it warns about still exits 0, and speaks.
    let broken = dir.path().join("broken.service");
    let unit = fs::read_to_string(&units[0]).unwrap();
    fs::write(
        &broken,
        unit.replace("ProtectSystem=strict", "ProtectSystem=strictest"),
    )
    .unwrap();
    let output = systemd_analyze_verify(&[broken]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("strictest"),
        "{}",
        describe(&output)
    );
}

#[test]
fn units_keep_the_runbooks_settings() {
    let service = fs::read_to_string(deploy("monitoring.service")).unwrap();
    let api = fs::read_to_string(deploy("monitoring-api.service")).unwrap();
    let common = [
        ("User", "monitor"),
        ("EnvironmentFile", "/etc/monitoring/.env"),
        ("Environment", "MONITOR_CONFIG=/etc/monitoring/jobs.yaml"),
        ("Environment", "MONITOR_DB=/var/lib/monitor/monitor.db"),
        ("Restart", "on-failure"),
        ("StartLimitIntervalSec", "60"),
        ("StartLimitBurst", "5"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/monitor"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
    ];
    for (name, unit, extra) in [
        (
            "monitoring.service",
            &service,
            vec![
                (
                    "ExecStartPre",
                    "/bin/sh -c 'exec /usr/local/bin/monitor render-crontab > /tmp/crontab'",
                ),
                ("ExecStart", "/usr/local/bin/supercronic /tmp/crontab"),
                ("KillMode", "process"),
            ],
        ),
        (
            "monitoring-api.service",
            &api,
            vec![(
                "ExecStart",
                "/usr/local/bin/monitor serve --bind 127.0.0.1:8923",
            )],
        ),
    ] {
        let settings = unit_settings(unit);
        for (key, value) in common.iter().copied().chain(extra) {
            assert!(
                settings.iter().any(|(k, v)| k == key && v == value),
                "{name} lacks {key}={value}"
            );
        }
        // The environment file is read after the defaults, so it wins.
        let position = |key: &str| settings.iter().position(|(k, _)| k == key).unwrap();
        assert!(
            position("Environment") < position("EnvironmentFile"),
            "{name}"
        );
        // No Documentation=man:…: verify would look the pages up with man.
        assert!(!unit.contains("Documentation="), "{name}");
    }
    // Hardening that would break restarts stays off the checks' unit.
    let settings = unit_settings(&service);
    for off in [
        "ProtectHome",
        "ProtectProc",
        "ProcSubset",
        "PrivateDevices",
        "SystemCallFilter",
        "MemoryDenyWriteExecute",
        "RestrictNamespaces",
    ] {
        assert!(
            settings.iter().all(|(k, _)| k != off),
            "monitoring.service sets {off}: restarted services would inherit it"
        );
    }
}

// ----------------------------------------------------------------- crontabs

#[test]
fn rendered_crontab_is_accepted_by_debian_cron() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install_ok(&root, &[]);
    let crontab = render(&root, &["--format", "cron"]);
    let binary = root.join("usr/local/bin/monitor").display().to_string();
    let jobs = root.join("etc/monitoring/jobs.yaml").display().to_string();
    assert!(
        crontab.contains(&format!(
            "* * * * * {binary} --config {jobs} run host --quiet\n"
        )),
        "{crontab}"
    );
    let output = crontab_check(&crontab);
    assert!(
        output.status.success(),
        "crontab -n: {}\n{crontab}",
        describe(&output)
    );

    // The check has teeth.
    let output = crontab_check(&crontab.replace("* * * * * ", "61 * * * * "));
    assert!(!output.status.success(), "crontab -n accepted minute 61");

    // deploy/crontab.example is that crontab at the installed paths, after
    // its own comment block, and cron takes it too.
    let example = fs::read_to_string(deploy("crontab.example")).unwrap();
    let at_real_paths = crontab
        .replace(&binary, "/usr/local/bin/monitor")
        .replace(&jobs, "/etc/monitoring/jobs.yaml");
    let generated = example
        .find("# Generated by `monitor render-crontab`")
        .map(|start| &example[start..])
        .expect("crontab.example holds render-crontab's output");
    assert_eq!(
        generated, at_real_paths,
        "deploy/crontab.example is out of date: regenerate its lines from \
         `monitor render-crontab --format cron` of the installed jobs.yaml"
    );
    assert!(example.lines().any(|line| line.ends_with("--quiet")));
    let output = crontab_check(&example);
    assert!(output.status.success(), "crontab -n: {}", describe(&output));
}

#[test]
fn rendered_cron_d_lines_are_five_fields_a_user_and_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install_ok(&root, &[]);
    let cron_d = render(&root, &["--format", "cron.d", "--user", "monitor"]);
    let binary = root.join("usr/local/bin/monitor").display().to_string();
    // A cron.d line is a crontab line with a user after the schedule (cron(8)
    // on /etc/cron.d): check that shape, then let Debian's crontab check the
    // same lines without the user field.
    let mut jobs = 0;
    let mut as_user_crontab = String::new();
    for line in cron_d.lines() {
        let trimmed = line.trim_start();
        let is_setting = trimmed
            .split_once('=')
            .is_some_and(|(name, _)| !name.is_empty() && !name.contains(char::is_whitespace));
        if trimmed.is_empty() || trimmed.starts_with('#') || is_setting {
            as_user_crontab.push_str(line);
            as_user_crontab.push('\n');
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let schedule = if words[0].starts_with('@') { 1 } else { 5 };
        assert!(words.len() > schedule + 1, "too few fields: {line:?}");
        assert_eq!(words[schedule], "monitor", "the user field: {line:?}");
        assert_eq!(words[schedule + 1], binary, "the command: {line:?}");
        assert_eq!(words.last(), Some(&"--quiet"), "{line:?}");
        let mut without_user = words[..schedule].to_vec();
        without_user.extend(&words[schedule + 1..]);
        as_user_crontab.push_str(&without_user.join(" "));
        as_user_crontab.push('\n');
        jobs += 1;
    }
    assert_eq!(
        jobs, 2,
        "the shipped jobs.yaml has two enabled profiles (host, hourly):\n{cron_d}"
    );
    let output = crontab_check(&as_user_crontab);
    assert!(
        output.status.success(),
        "crontab -n: {}\n{as_user_crontab}",
        describe(&output)
    );
}

// --------------------------------------------------------------- .env.example

/// `${NAME` in a text.
fn interpolated_names(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// `var("NAME")` and `var_os("NAME")` calls in the sources, and constants
/// naming a variable (`const TOKEN_VARIABLE: &str = "NAME"`).
fn names_read_by_sources(dir: &Path, names: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            names_read_by_sources(&path, names);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let source = fs::read_to_string(&path).unwrap();
            for call in ["var(\"", "var_os(\"", "_VARIABLE: &str = \""] {
                for rest in source.split(call).skip(1) {
                    let name: String = rest.chars().take_while(|c| *c != '"').collect();
                    if !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    {
                        names.insert(name);
                    }
                }
            }
        }
    }
}

#[test]
fn env_example_lists_every_variable_monitor_reads() {
    let example = fs::read_to_string(deploy(".env.example")).unwrap();
    // systemd's EnvironmentFile format: blank, a whole-line comment, or NAME=value.
    let mut listed = BTreeSet::new();
    for line in example.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let setting = line.strip_prefix('#').unwrap_or(line);
        if let Some((name, _)) = setting.split_once('=')
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            assert!(
                line.starts_with('#'),
                "{line:?}: .env.example sets nothing, so a copy of it starts the units as they are"
            );
            listed.insert(name.to_string());
        } else {
            assert!(
                line.starts_with('#'),
                "not a comment nor NAME=value: {line:?}"
            );
        }
    }

    let mut wanted: BTreeSet<String> = [
        // The notifiers of the SPEC and the README.
        "MACHINE_ID",
        "MONITOR_CONFIG",
        "MONITOR_DB",
        "MONITOR_API_TOKEN",
        "MONITOR_LOG_LEVEL",
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_CHAT_ID",
        "TELEGRAM_TEST_CHAT_ID",
        "TELEGRAM_BOT_TOKEN_DEFAULT",
        "FEISHU_WEBHOOK",
        "FEISHU_SECRET",
        "GITHUB_TOKEN",
        "MONITOR_NOW",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    wanted.extend(interpolated_names(
        &fs::read_to_string(Path::new(REPO).join("jobs.yaml")).unwrap(),
    ));
    names_read_by_sources(&Path::new(REPO).join("src"), &mut wanted);
    // Set by the system, not by an operator.
    for system in ["USER", "LOGNAME", "HOME", "PATH", "GIT_CONFIG_GLOBAL"] {
        wanted.remove(system);
    }
    let missing: Vec<_> = wanted.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "deploy/.env.example does not list {missing:?}: add each, commented out, with what it does"
    );
}

// ------------------------------------------------ the API's database access

/// Runs `monitor alerts` (the API's read path: Store::open_read_only) on a
/// database whose folder is, with `read_only`, bind-mounted read-only the
/// way ReadOnlyPaths= would.
fn alerts(state: &Path, read_only: bool) -> Output {
    let db = state.join("monitor.db");
    let script = r#"
        set -eu
        if [ "$1" = ro ]; then
            mount --bind "$2" "$2"
            mount -o remount,bind,ro "$2"
        fi
        shift 2
        exec "$@"
    "#;
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(if read_only { "ro" } else { "rw" })
        .arg(state)
        .arg(MONITOR)
        .arg("--config")
        .arg(Path::new(REPO).join("jobs.yaml"))
        .arg("--db")
        .arg(&db)
        .args(["alerts", "--limit", "5"])
        .env_remove("MONITOR_CONFIG")
        .env_remove("MONITOR_DB")
        .output()
        .expect("running unshare")
}

fn sidecars(state: &Path) -> (bool, bool) {
    (
        state.join("monitor.db-wal").exists(),
        state.join("monitor.db-shm").exists(),
    )
}

/// Why monitoring-api.service has ReadWritePaths=/var/lib/monitor although
/// the API only reads: SQLite in WAL mode opens read-only only while the
/// -wal and -shm files exist, and a clean close removes them.
#[test]
fn api_reads_need_a_writable_state_folder_once_the_wal_is_gone() {
    if !can_unshare_mounts() {
        eprintln!("skipped: needs root and `unshare --mount` for a read-only bind mount");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    let tick = Command::new(MONITOR)
        .arg("--config")
        .arg(Path::new(REPO).join("jobs.yaml"))
        .arg("--db")
        .arg(state.join("monitor.db"))
        .args(["run", "host", "--quiet"])
        .env_remove("MONITOR_CONFIG")
        .env_remove("MONITOR_DB")
        .output()
        .unwrap();
    assert!(
        matches!(tick.status.code(), Some(0 | 1)),
        "{}",
        describe(&tick)
    );

    // A tick in progress: a writer holds the database, -wal and -shm exist.
    let writer = rusqlite::Connection::open(state.join("monitor.db")).unwrap();
    writer
        .execute_batch(
            "INSERT OR REPLACE INTO monitor_state(namespace, key, value, updated_at) \
             VALUES ('deploy-test', 'writer', 'open', 0)",
        )
        .unwrap();
    assert_eq!(sidecars(&state), (true, true));
    let output = alerts(&state, true);
    assert!(
        output.status.success(),
        "read-only folder, WAL present: {}",
        describe(&output)
    );

    // The last connection closes cleanly (an operator's sqlite3, a tick):
    // SQLite checkpoints and deletes -wal and -shm.
    writer
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(writer);
    assert_eq!(sidecars(&state), (false, false));
    let output = alerts(&state, true);
    assert_eq!(
        output.status.code(),
        Some(3),
        "a read-only folder without -shm was expected to fail (if SQLite now \
         copes, monitoring-api.service could use ReadOnlyPaths): {}",
        describe(&output)
    );
    assert!(
        text(&output.stderr).contains("unable to open database file"),
        "{}",
        describe(&output)
    );

    // What the unit does: a writable folder, a read-only connection.
    let output = alerts(&state, false);
    assert!(
        output.status.success(),
        "writable folder: {}",
        describe(&output)
    );
}

/// Issue 11, item 1: cron reads no .env and gives a job no environment, and
/// the crontab says "do not edit by hand". `--env-file` makes each job read
/// the env file itself: the rendered line, run with nothing in its
/// environment (as cron runs it), sees jobs.yaml's `${HOOK_URL}`.
#[test]
fn a_rendered_cron_line_with_env_file_runs_with_the_env_files_values() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.yaml");
    fs::write(
        &jobs,
        "version: 1\nhost: box\nnotifiers:\n  hook: { type: webhook, url: \"${HOOK_URL}\" }\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    notify: [hook]\n    tasks:\n      - name: t\n        command: { argv: [\"true\"] }\n",
    )
    .unwrap();
    let env = dir.path().join("monitor env");
    // Values as systemd's EnvironmentFile= reads them: `&`, spaces and `$`
    // are text, not shell (sourcing the file with sh lost all three).
    fs::write(
        &env,
        "# the unit's .env\nHOOK_URL=http://127.0.0.1:9/hook?a=1&b=2\nMACHINE_ID=box 1\n",
    )
    .unwrap();
    fs::write(
        &jobs,
        "version: 1\nhost: ${MACHINE_ID}\nnotifiers:\n  hook: { type: webhook, url: \"${HOOK_URL}\" }\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    notify: [hook]\n    tasks:\n      - name: t\n        command: { argv: [\"true\"] }\n",
    )
    .unwrap();
    let rendered = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(&jobs)
        .args(["render-crontab", "--format", "cron", "--env-file"])
        .arg(&env)
        .env_clear()
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", describe(&rendered));
    let crontab = String::from_utf8_lossy(&rendered.stdout).to_string();
    let check = crontab_check(&crontab);
    assert!(
        check.status.success(),
        "crontab -n: {}\n{crontab}",
        describe(&check)
    );
    let line = crontab
        .lines()
        .find(|l| l.starts_with("* * * * * "))
        .unwrap_or_else(|| panic!("{crontab}"));
    assert!(
        line.contains(&format!(" --env-file '{}' --config ", env.display())),
        "{line}"
    );
    let job = line.trim_start_matches("* * * * * ");
    let ran = Command::new("/bin/sh")
        .args(["-c", job])
        .env_clear()
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    // The values arrived whole: the host name with its space.
    let db = rusqlite::Connection::open(dir.path().join("state/monitor.db")).unwrap();
    let host: String = db
        .query_row("SELECT host FROM runs LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(host, "box 1");
    // Without the env file the same job fails, and says so under --quiet.
    let without = job.replace(&format!(" --env-file '{}'", env.display()), "");
    let bare = Command::new("/bin/sh")
        .args(["-c", &without])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bare.stderr)
            .contains("environment variable MACHINE_ID is not set"),
        "{}",
        describe(&bare)
    );
}

/// Issue 11, item 10: cron reads `%` in a command as a newline, so the
/// cron formats write `\%`; supercronic passes the command to sh as
/// written, where a `\%` stays and names another file.
#[test]
fn a_percent_sign_is_escaped_for_cron_and_left_alone_for_supercronic() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("100%");
    fs::create_dir(&folder).unwrap();
    let jobs = folder.join("jobs.yaml");
    fs::write(
        &jobs,
        "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    tasks:\n      - name: t\n        command: { argv: [\"true\"] }\n",
    )
    .unwrap();
    let render = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .arg("--config")
            .arg(&jobs)
            .args(["render-crontab", "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("* * * * * "))
            .unwrap()
            .trim_start_matches("* * * * * ")
            .to_string()
    };
    let supercronic = render("supercronic");
    assert!(
        supercronic.contains("100%/jobs.yaml") && !supercronic.contains("\\%"),
        "{supercronic}"
    );
    let ran = Command::new("/bin/sh")
        .args(["-c", &supercronic])
        .env_remove("MONITOR_CONFIG")
        .env_remove("MONITOR_DB")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    let cron = render("cron");
    assert!(cron.contains("100\\%/jobs.yaml"), "{cron}");
    let check = crontab_check(&format!("* * * * * {cron}\n"));
    assert!(check.status.success(), "{}", describe(&check));
}

/// Review of issue 11, item 12: supercronic's parser has no `@midnight`
/// (one unreadable line fails its whole crontab), reads `7` as 0 (so
/// `6-7` is empty) and `*/2` days as restricted. Its crontab gets the form
/// every cron reads alike; a schedule the two read differently is refused
/// for it, saying why, while cron's crontab keeps it as written.
#[test]
fn supercronic_gets_schedules_it_reads_as_cron_does() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.yaml");
    let profile = |name: &str, cron: &str| {
        format!(
            "  {name}:\n    cron: \"{cron}\"\n    tasks:\n      - name: t\n        command: {{ argv: [\"true\"] }}\n"
        )
    };
    let render = |format: &str| {
        Command::new(env!("CARGO_BIN_EXE_monitor"))
            .arg("--config")
            .arg(&jobs)
            .args(["render-crontab", "--format", format])
            .output()
            .unwrap()
    };
    fs::write(
        &jobs,
        format!(
            "version: 1\nprofiles:\n{}{}",
            profile("a", "@midnight"),
            profile("b", "0 0 * * 6-7")
        ),
    )
    .unwrap();
    let out = render("supercronic");
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("0 0 * * * ") && l.ends_with("run a")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("0 0 * * 0,6 ") && l.ends_with("run b")),
        "{text}"
    );
    let cron = String::from_utf8_lossy(&render("cron").stdout).to_string();
    assert!(
        cron.contains("@midnight ") && cron.contains("0 0 * * 6-7 "),
        "{cron}"
    );
    assert!(crontab_check(&cron).status.success());

    fs::write(
        &jobs,
        format!("version: 1\nprofiles:\n{}", profile("c", "0 16 */2 * sat")),
    )
    .unwrap();
    let out = render("supercronic");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("profile c") && said.contains("both days match") && said.contains("either"),
        "{said}"
    );
    assert!(render("cron").status.success());
}
