-- Incidents (issue "Alerts that mean what they say"): an alert that clears
-- stays as `quiet` for its cooldown, so firing again within it is the same
-- incident (no second "firing" message, no second GitHub issue). New
-- columns: when the incident first fired, whether people were last told
-- it fires, and whether it flaps. SQLite cannot change a CHECK in place:
-- the table is rebuilt, rows kept.
CREATE TABLE alert_state_new (
    key           TEXT    PRIMARY KEY,
    profile       TEXT    NOT NULL,
    task          TEXT    NOT NULL,
    rule          TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'firing', 'quiet')),
    severity      TEXT    NOT NULL,
    since         INTEGER NOT NULL,
    bad_since     INTEGER NOT NULL,
    bad_ticks     INTEGER NOT NULL,
    good_since    INTEGER,
    good_ticks    INTEGER NOT NULL,
    last_notified INTEGER,
    value         REAL,
    threshold     TEXT,
    summary       TEXT    NOT NULL,
    opened_at     INTEGER,
    announced     INTEGER NOT NULL DEFAULT 0,
    flapping      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO alert_state_new (key, profile, task, rule, status, severity, since, bad_since,
        bad_ticks, good_since, good_ticks, last_notified, value, threshold, summary,
        opened_at, announced)
    SELECT key, profile, task, rule, status, severity, since, bad_since,
        bad_ticks, good_since, good_ticks, last_notified, value, threshold, summary,
        CASE status WHEN 'firing' THEN since END, status = 'firing'
    FROM alert_state;
DROP TABLE alert_state;
ALTER TABLE alert_state_new RENAME TO alert_state;
CREATE INDEX alert_state_by_profile ON alert_state (profile);
