-- monitor's state. Times are Unix milliseconds (INTEGER).
-- Read it with: sqlite3 state/monitor.db 'select * from monitor_state'

-- What probes and rules remember between ticks (log offsets, snapshots…),
-- and anything imported from legacy text caches.
CREATE TABLE monitor_state (
    namespace  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

-- One row per completed tick.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    profile     TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('ok', 'failing')),
    tasks       INTEGER NOT NULL,
    failing     INTEGER NOT NULL,
    summary     TEXT    NOT NULL
);
CREATE INDEX runs_by_profile ON runs (profile, started_at DESC);
CREATE INDEX runs_by_time ON runs (started_at DESC);

-- Alerts that are pending or firing right now (ok keys have no row).
CREATE TABLE alert_state (
    key           TEXT    PRIMARY KEY,
    profile       TEXT    NOT NULL,
    task          TEXT    NOT NULL,
    rule          TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'firing')),
    severity      TEXT    NOT NULL,
    since         INTEGER NOT NULL,
    bad_since     INTEGER NOT NULL,
    bad_ticks     INTEGER NOT NULL,
    good_since    INTEGER,
    good_ticks    INTEGER NOT NULL,
    last_notified INTEGER,
    value         REAL,
    threshold     TEXT,
    summary       TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX alert_state_by_profile ON alert_state (profile);

-- Every transition (pending, firing, reminder, escalated, resolved,
-- cleared) and every event, newest last.
CREATE TABLE alert_history (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    run_id    INTEGER REFERENCES runs (id),
    host      TEXT    NOT NULL,
    profile   TEXT    NOT NULL,
    task      TEXT    NOT NULL,
    rule      TEXT    NOT NULL,
    source    TEXT    NOT NULL,
    status    TEXT    NOT NULL,
    severity  TEXT    NOT NULL,
    summary   TEXT    NOT NULL,
    value     REAL,
    threshold TEXT
);
CREATE INDEX alert_history_by_time ON alert_history (at DESC);
CREATE INDEX alert_history_by_source ON alert_history (source, at DESC);
CREATE INDEX alert_history_by_status ON alert_history (status, at DESC);

-- Notifications to deliver: one row per (message, notifier). Written in the
-- tick's transaction, delivered after it, retried on later ticks.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT    NOT NULL,
    notifier        TEXT    NOT NULL,
    profile         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    INTEGER,
    given_up_at     INTEGER,
    UNIQUE (message_id, notifier)
);
CREATE INDEX outbox_due ON outbox (profile, next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
