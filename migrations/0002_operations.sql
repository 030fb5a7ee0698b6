-- Operating monitor: silences, and indexes for the API and for retention.

-- `monitor silence add`: hold a task's (or one rule's) notifications and
-- restarts until ends_at. profile NULL: every profile; rule NULL: every rule.
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY,
    profile    TEXT,
    task       TEXT    NOT NULL,
    rule       TEXT,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    removed_at INTEGER
);
CREATE INDEX silences_active ON silences (ends_at) WHERE removed_at IS NULL;

-- The API's newest-first queries read these indexes in order, no sort.
DROP INDEX alert_history_by_source;
DROP INDEX alert_history_by_status;
CREATE INDEX alert_history_by_source ON alert_history (source, at DESC, id DESC);
CREATE INDEX alert_history_by_status ON alert_history (status, at DESC, id DESC);
CREATE INDEX alert_history_by_severity ON alert_history (severity, at DESC, id DESC);
DROP INDEX alert_history_by_time;
CREATE INDEX alert_history_by_time ON alert_history (at DESC, id DESC);

-- Retention prunes delivered and given-up outbox rows by age.
CREATE INDEX outbox_by_created ON outbox (created_at);
