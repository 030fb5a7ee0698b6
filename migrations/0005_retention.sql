-- Retention must stay cheap (issue "Hardening"): alert_history.run_id
-- references runs without an index, so deleting a run scanned the whole
-- history for its foreign key (48–55 s ticks at 500 000 rows). Pruning
-- now deletes a run's history before the run, through this index.
CREATE INDEX alert_history_by_run ON alert_history (run_id);
