-- The status page (issue "A status page"): each task's verdict after its
-- last tick (ok, pending, warning, failing, held), why, the check summary,
-- and since when the verdict has held.
CREATE TABLE task_status (
    profile TEXT NOT NULL,
    task TEXT NOT NULL,
    verdict TEXT NOT NULL,
    why TEXT NOT NULL,
    summary TEXT NOT NULL,
    since INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (profile, task)
);
