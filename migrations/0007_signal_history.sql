-- Signal history (issue "A status page"): each tick's numeric signals (a
-- probe's basics, what the rules read, each metric rule's value), one row
-- per series and hour. `data` holds the hour's samples, 10 bytes each
-- (u16 seconds into the hour, f64 value, little-endian), until the full
-- resolution window passes (default 7 days); then it is emptied and the
-- row's min/max/sum/count stay as the hour's summary until the hourly
-- window passes (default 90 days) and the row goes.
CREATE TABLE signal_series (
    id INTEGER PRIMARY KEY,
    profile TEXT NOT NULL,
    task TEXT NOT NULL,
    signal TEXT NOT NULL,
    UNIQUE (profile, task, signal)
);
CREATE TABLE signal_hours (
    series INTEGER NOT NULL REFERENCES signal_series (id),
    hour INTEGER NOT NULL,
    data BLOB,
    min REAL NOT NULL,
    max REAL NOT NULL,
    sum REAL NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (series, hour)
) WITHOUT ROWID;
-- Retention walks the hours in order.
CREATE INDEX signal_hours_by_hour ON signal_hours (hour);
