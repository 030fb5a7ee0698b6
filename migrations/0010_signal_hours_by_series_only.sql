-- Retention drops a series' hours past the hourly window through the
-- primary key (series, hour), one range per series: the index by hour
-- alone cost about 20 bytes of every hour row (a fifth of the history).
DROP INDEX signal_hours_by_hour;
