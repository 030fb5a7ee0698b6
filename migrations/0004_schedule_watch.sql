-- A profile that never ran must still be judged overdue (issue "Never
-- silent, never stuck"): when each enabled profile first appeared in
-- jobs.yaml, recorded by the ticks of any profile. `list`, `/healthz` and
-- `/metrics` count its missed fire times from here until its first run.
CREATE TABLE profile_seen (
    profile       TEXT    PRIMARY KEY,
    first_seen_at INTEGER NOT NULL
) WITHOUT ROWID;

-- /metrics counts restarts per profile and task on every scrape: a
-- covering partial index keeps that off the whole history table.
CREATE INDEX alert_history_restarts ON alert_history (status, profile, task)
    WHERE status IN ('restarted', 'restart_failed');

-- The last jobs.yaml that loaded, as written (`${VAR}`s not filled in):
-- when a synced checkout brings a broken one, ticks keep running (and
-- syncing) on this one and alert that the new one is rejected.
CREATE TABLE config_good (
    path     TEXT    PRIMARY KEY,
    source   TEXT    NOT NULL,
    saved_at INTEGER NOT NULL
) WITHOUT ROWID;
