-- `for: 3 of 5`: the last ticks' verdicts of a key, one bit a tick (bit 0
-- the newest; 1 = breach), so breaches that do not come in a row still
-- count within the window.
ALTER TABLE alert_state ADD COLUMN recent INTEGER NOT NULL DEFAULT 0;
