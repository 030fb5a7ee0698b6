#!/usr/bin/env python3
# Verbatim copy of ../shared/bench/py_tick.py (path relative to the repository root);
# only this two-line header is added, so the benchmark runs from a clean clone.
"""Anchor: a one-shot tick written the way the seed tools are (Python, requests,
PyYAML, sqlite3, fcntl.flock). Same work as `monitor run <profile>` for a profile
of HTTP checks: lock, load state, run checks sequentially, store state + alert rows, exit."""
import fcntl, os, sqlite3, sys, time
import requests, yaml

cfg_path, profile, db_path = sys.argv[1], sys.argv[2], sys.argv[3]
lock = open(db_path + ".lock", "w")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(0)
cfg = yaml.safe_load(open(cfg_path))
db = sqlite3.connect(db_path)
db.execute("pragma journal_mode=wal")
db.execute("create table if not exists monitor_state(namespace text, key text, value text, primary key(namespace,key))")
db.execute("create table if not exists alerts(id integer primary key, ts real, source text, key text, severity text, message text)")
state = dict(((k, v) for k, v in db.execute("select key, value from monitor_state where namespace=?", (profile,))))
rows = []
for task in cfg["profiles"][profile]["tasks"]:
    url = task["url"]
    try:
        r = requests.get(url, timeout=task.get("timeout", 10), verify=task.get("verify", True))
        ok = 200 <= r.status_code < 400
        detail = str(r.status_code)
    except requests.RequestException as e:
        ok, detail = False, str(e)
    streak = int(state.get(task["name"], "0"))
    streak = 0 if ok else streak + 1
    state[task["name"]] = str(streak)
    if not ok:
        rows.append((time.time(), profile, task["name"], "critical", detail))
with db:
    db.executemany("insert or replace into monitor_state values (?,?,?)", [(profile, k, v) for k, v in state.items()])
    db.executemany("insert into alerts(ts,source,key,severity,message) values (?,?,?,?,?)", rows)
