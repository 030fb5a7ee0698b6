#!/usr/bin/env bash
# deploy/install.sh: installs monitor, its configuration and its systemd units.
# Run `deploy/install.sh --help` for the options; deploy/README.md for the rest.
#
# Idempotent: each file is compared with what it would install and only
# written, chmod-ed or chown-ed when it differs; a second run changes
# nothing and says so. jobs.yaml and .env are created once and never
# overwritten. Never downloads anything; never starts or enables a unit.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/install.sh [--binary PATH] [--supercronic PATH] [--config PATH] [--prefix DIR]

Installs, under DIR (default /):
  /usr/local/bin/monitor                   the binary (--binary PATH, else `cargo build --release`)
  /usr/local/bin/supercronic               only with --supercronic PATH
  /etc/monitoring/jobs.yaml        0640    --config PATH or the repository's jobs.yaml, once
  /etc/monitoring/.env             0640    from deploy/.env.example, once (secrets go here)
  /var/lib/monitor/                0750    the database, locks and restart output
  /etc/systemd/system/monitoring.service, monitoring-api.service
and creates the system user `monitor` (home /var/lib/monitor).

Options:
  --binary PATH       install this monitor binary instead of building one
  --supercronic PATH  install this supercronic binary (it is not packaged by
                      Debian; the script never downloads it)
  --config PATH       the jobs.yaml to install when /etc/monitoring has none
  --prefix DIR        install into DIR as if it were / (also: DESTDIR=DIR);
                      a staged install creates no user, chowns nothing and
                      leaves systemd alone: it prints what it would do
  -h, --help          this text

Run it again after an upgrade: it replaces the binary and the units when
they changed and keeps your jobs.yaml and .env.
EOF
}

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 2
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deploy="$repo/deploy"
binary=""
supercronic=""
config="$repo/jobs.yaml"
prefix="${DESTDIR:-}"

while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --binary) [ $# -ge 2 ] || die "--binary needs a PATH"; binary=$2; shift 2 ;;
        --binary=*) binary=${1#*=}; shift ;;
        --supercronic) [ $# -ge 2 ] || die "--supercronic needs a PATH"; supercronic=$2; shift 2 ;;
        --supercronic=*) supercronic=${1#*=}; shift ;;
        --config) [ $# -ge 2 ] || die "--config needs a PATH"; config=$2; shift 2 ;;
        --config=*) config=${1#*=}; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a DIR"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# The paths on the target system: the units and jobs.yaml name these, also
# in a staged install (they are where the files will be, not where they are).
readonly user=monitor
readonly bin_path=/usr/local/bin/monitor
readonly supercronic_path=/usr/local/bin/supercronic
readonly etc_dir=/etc/monitoring
readonly state_dir=/var/lib/monitor
readonly unit_dir=/etc/systemd/system

# `root` prefixes every path written; empty for a real install.
root=${prefix%/}
staged=0
[ -z "$root" ] || staged=1
if [ "$staged" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "a real install needs root (sudo $0 …), or give --prefix DIR to stage it into a folder"
fi

[ -f "$config" ] || die "no jobs.yaml at $config (give --config PATH)"
if [ -n "$supercronic" ] && ! { [ -f "$supercronic" ] && [ -x "$supercronic" ]; }; then
    die "--supercronic $supercronic is not an executable file"
fi

if [ -z "$binary" ]; then
    command -v cargo >/dev/null ||
        die "cargo not found: build as yourself first (cargo build --release --locked), then run: sudo $0 --binary $repo/target/release/monitor"
    echo "building: cargo build --release --locked (in $repo)"
    (cd "$repo" && cargo build --release --locked)
    binary="$repo/target/release/monitor"
fi
if ! { [ -f "$binary" ] && [ -x "$binary" ]; }; then
    die "--binary $binary is not an executable file"
fi

umask 022
if [ "$staged" -eq 1 ]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
fi
changes=0
tmp_file=""
trap '[ -z "$tmp_file" ] || rm -f "$tmp_file"' EXIT

# Prints one line per thing looked at: "ok" when it was already right.
say() { printf '  %-8s %s\n' "$1" "$2"; }
changed() {
    changes=$((changes + 1))
    say "$1" "$2"
}

# The owner to give a path, or nothing in a staged install (which keeps the
# invoking user's: /etc/passwd of the target is not ours to read).
owner() { [ "$staged" -eq 1 ] || printf '%s' "$1"; }

# Sets mode and owner of an existing path when they differ.
fix_attributes() {
    local path=$1 mode=$2 want_owner=${3:-}
    if [ "$(stat -c %a "$path")" != "${mode#0}" ]; then
        chmod "$mode" "$path"
        changed chmod "$mode $path"
    fi
    if [ -n "$want_owner" ] && [ "$(stat -c %U:%G "$path")" != "$want_owner" ]; then
        chown "$want_owner" "$path"
        changed chown "$want_owner $path"
    fi
}

# A folder that belongs to the system (/etc/systemd/system…): created when
# missing (only ever in a staged root), never re-moded.
system_dir() {
    local path=$root$1
    if [ -d "$path" ]; then return; fi
    mkdir -p "$path"
    changed mkdir "$path"
}

# A folder of ours, with its mode and owner.
own_dir() {
    local path=$root$1 mode=$2 want_owner=${3:-}
    if [ -d "$path" ]; then
        say ok "$path/"
    else
        mkdir -p "$path"
        chmod "$mode" "$path"
        [ -z "$want_owner" ] || chown "$want_owner" "$path"
        changed mkdir "$path/ ($mode${want_owner:+ $want_owner})"
    fi
    fix_attributes "$path" "$mode" "$want_owner"
}

# Installs SOURCE at DEST when the content differs: a new file is written
# beside it and renamed over it, so a tick starting meanwhile sees the old
# binary or the new one, never half of one.
install_file() {
    local source=$1 dest=$root$2 mode=$3 want_owner=${4:-}
    if [ -f "$dest" ] && cmp -s "$source" "$dest"; then
        say ok "$dest"
    else
        local verb=install
        [ ! -e "$dest" ] || verb=update
        tmp_file=$(mktemp "$dest.install.XXXXXX")
        cat "$source" >"$tmp_file"
        chmod "$mode" "$tmp_file"
        [ -z "$want_owner" ] || chown "$want_owner" "$tmp_file"
        mv -f "$tmp_file" "$dest"
        tmp_file=""
        changed "$verb" "$dest"
    fi
    fix_attributes "$dest" "$mode" "$want_owner"
}

# Creates DEST from the standard input when it does not exist; an existing
# one is the operator's and is kept as it is, but for mode and owner.
create_once() {
    local dest=$root$1 mode=$2 want_owner=${3:-}
    if [ -e "$dest" ]; then
        cat >/dev/null
        say ok "$dest (kept: never overwritten)"
    else
        (umask 077 && cat >"$dest")
        chmod "$mode" "$dest"
        [ -z "$want_owner" ] || chown "$want_owner" "$dest"
        changed create "$dest"
    fi
    fix_attributes "$dest" "$mode" "$want_owner"
}

if [ "$staged" -eq 1 ]; then
    echo "monitor: staged install into $root (no user created, nothing chowned, systemd untouched)"
else
    echo "monitor: installing into /"
fi

# -- the service user ----------------------------------------------------
useradd_command=(useradd --system --user-group --home-dir "$state_dir" --no-create-home
    --shell /usr/sbin/nologin --comment "monitor (host checks)" "$user")
if [ "$staged" -eq 1 ]; then
    say skip "user $user: would run, unless it exists: $(printf '%q ' "${useradd_command[@]}")"
elif getent passwd "$user" >/dev/null; then
    say ok "user $user"
else
    "${useradd_command[@]}"
    changed useradd "$user (system user, home $state_dir, no login)"
fi

# -- binaries --------------------------------------------------------------
system_dir /usr/local/bin
install_file "$binary" "$bin_path" 0755 "$(owner root:root)"
if [ -n "$supercronic" ]; then
    install_file "$supercronic" "$supercronic_path" 0755 "$(owner root:root)"
fi

# -- configuration: the operator's from now on -----------------------------
own_dir "$etc_dir" 0750 "$(owner "root:$user")"
# The shipped jobs.yaml keeps its state and log beside itself
# (state/monitor.db, state/monitor.log), which is read-only under the
# units' sandbox: a relative `state:` and `log_file:` are pointed at the
# state folder (the units also set MONITOR_DB to it).
awk -v db="$state_dir/monitor.db" -v logfile="$state_dir/monitor.log" '
    !done && /^state:[ \t]*[^\/ \t#"$]/ { sub(/^state:[ \t]*[^#]*/, "state: " db "   "); done = 1 }
    !logged && /^log_file:[ \t]*[^\/ \t#"$]/ { sub(/^log_file:[ \t]*[^#]*/, "log_file: " logfile "   "); logged = 1 }
    { print }' "$config" |
    create_once "$etc_dir/jobs.yaml" 0640 "$(owner "root:$user")"
create_once "$etc_dir/.env" 0640 "$(owner "root:$user")" <"$deploy/.env.example"

# -- state -----------------------------------------------------------------
system_dir /var/lib
own_dir "$state_dir" 0750 "$(owner "$user:$user")"

# -- systemd units ---------------------------------------------------------
units_before=$changes
system_dir "$unit_dir"
install_file "$deploy/monitoring.service" "$unit_dir/monitoring.service" 0644 "$(owner root:root)"
install_file "$deploy/monitoring-api.service" "$unit_dir/monitoring-api.service" 0644 "$(owner root:root)"
if [ "$changes" -ne "$units_before" ]; then
    if [ "$staged" -eq 1 ]; then
        say skip "systemctl daemon-reload (staged install)"
    elif [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        say reload "systemd (daemon-reload)"
    else
        say skip "systemctl daemon-reload: systemd is not running here"
    fi
fi

# -- supercronic -----------------------------------------------------------
if [ -z "$supercronic" ] && ! [ -x "$root$supercronic_path" ]; then
    cat <<EOF

supercronic is not installed at $supercronic_path, and monitoring.service runs it.
  It is not packaged by Debian and this script downloads nothing: fetch a
  release binary for this architecture from the aptible/supercronic project
  on GitHub, check its published checksum, and run this script again with
  --supercronic PATH.
  Or use plain cron instead (Debian's cron package) and leave
  monitoring.service disabled; cron does not read /etc/monitoring/.env, so
  render the crontab with --env-file, and each job reads it too:
    sudo $bin_path --env-file $etc_dir/.env --config $etc_dir/jobs.yaml \\
      render-crontab --format cron.d --user $user | sudo tee /etc/cron.d/monitor
EOF
fi

echo
if [ "$changes" -eq 0 ]; then
    echo "no changes: everything was already in place"
else
    echo "$changes changes"
fi
if [ "$staged" -eq 0 ]; then
    cat <<EOF
next: put the secrets in $etc_dir/.env, adapt $etc_dir/jobs.yaml, then
  sudo -u $user $bin_path --env-file $etc_dir/.env --config $etc_dir/jobs.yaml check-config
  sudo systemctl enable --now monitoring monitoring-api
EOF
fi
