"""The SQLite ledger: one row per run, keyed by :meth:`RunConfig.config_hash`, safe for many writers."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .config import RunConfig
from .run import _jsonable, versions


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    config_hash TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    model       TEXT, dataset TEXT, beta REAL, seed INTEGER,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    metrics     TEXT,
    error       TEXT,
    created     REAL,
    started     REAL,
    finished    REAL,
    duration    REAL,
    versions    TEXT,
    host        TEXT,
    worker      TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
"""


class Ledger:
    """One SQLite row per run, keyed by :meth:`RunConfig.config_hash` (stdlib sqlite3, WAL journal).

    Every write is one ``BEGIN IMMEDIATE`` transaction on a fresh connection with a busy timeout, so any
    number of processes (Ray workers) may write; a committed row survives a SIGKILL of its writer. The
    object holds only the path, so it can be sent to workers. One sweep per ledger at a time: starting a
    sweep puts rows left 'running' (by a killed sweep) back to 'pending'.
    """

    def __init__(self, path, timeout: float = 60.0):
        self.path = str(path)
        self.timeout = float(timeout)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)  # its own transaction (executescript commits first)

    def __repr__(self) -> str:
        return f"Ledger({self.path!r})"

    @contextlib.contextmanager
    def _connect(self):
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _tx(self):
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ writes
    def add(self, configs: Iterable[RunConfig]) -> int:
        """Insert missing runs as 'pending'; returns how many were new."""
        now = time.time()
        rows = [(c.config_hash(), json.dumps(c.to_dict(), sort_keys=True), c.model, c.dataset, c.beta, c.seed, now)
                for c in configs]
        with self._tx() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO runs (config_hash, config, model, dataset, beta, seed, status, "
                           "created) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)", rows)
            return db.total_changes - before

    def requeue_running(self) -> int:
        """Rows left 'running' (a killed sweep) go back to 'pending'; returns how many."""
        with self._tx() as db:
            return db.execute("UPDATE runs SET status = 'pending' WHERE status = 'running'").rowcount

    def claim(self, hashes: Sequence[str], worker: str | None = None, retry_failed: bool = True) -> list[str]:
        """Mark runs 'running' (with start time and worker) unless done; returns those claimed."""
        ok = ("pending", "running", "failed") if retry_failed else ("pending", "running")
        worker = worker or _worker_id()
        claimed = []
        with self._tx() as db:
            for h in hashes:
                cur = db.execute(
                    f"UPDATE runs SET status = 'running', started = ?, finished = NULL, worker = ?, host = ?, "
                    f"attempts = attempts + 1 WHERE config_hash = ? AND status IN ({','.join('?' * len(ok))})",
                    (time.time(), worker, socket.gethostname(), h, *ok))
                if cur.rowcount:
                    claimed.append(h)
        return claimed

    def record(self, outcome: Mapping, worker: str | None = None) -> bool:
        """Write a finished run (an outcome of :func:`run_group`) unless the row is already 'done'."""
        status = outcome["status"]
        if status not in ("done", "failed"):
            raise ValueError(f"an outcome is 'done' or 'failed', got {status!r}")
        metrics = outcome.get("metrics")
        vers = (metrics or {}).get("versions") or versions()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE runs SET status = ?, metrics = ?, error = ?, finished = ?, duration = ?, versions = ?, "
                "host = ?, worker = ? WHERE config_hash = ? AND status != 'done'",
                (status, None if metrics is None else json.dumps(_jsonable(metrics), allow_nan=False),
                 outcome.get("error"), time.time(), outcome.get("duration"), json.dumps(vers),
                 socket.gethostname(), worker or _worker_id(), outcome["config_hash"]))
            return bool(cur.rowcount)

    def fill_equivalents(self, configs: Iterable[RunConfig]) -> int:
        """Record each run that repeats another exactly (:meth:`RunConfig.equivalent`) from that run's row,
        once it is finished: 'done' with its metrics plus ``same_as`` (the hash they were copied from), or
        'failed' naming it. Rows already 'done' are kept. Returns how many rows were written."""
        pairs = [(c.config_hash(), c.equivalent().config_hash()) for c in configs if c.equivalent() != c]
        if not pairs:
            return 0
        written = 0
        with self._tx() as db:
            for alias, source in pairs:
                row = db.execute("SELECT status, metrics, error, versions FROM runs WHERE config_hash = ?",
                                 (source,)).fetchone()
                if row is None or row["status"] not in ("done", "failed"):
                    continue
                metrics = None
                if row["metrics"]:
                    metrics = json.dumps({**json.loads(row["metrics"]), "same_as": source})
                error = None if row["status"] == "done" else f"same as run {source}, which failed:\n{row['error']}"
                written += db.execute(
                    "UPDATE runs SET status = ?, metrics = ?, error = ?, finished = ?, duration = 0, versions = ?, "
                    "host = ?, worker = ? WHERE config_hash = ? AND status != 'done'",
                    (row["status"], metrics, error, time.time(), row["versions"], socket.gethostname(),
                     f"copy:{source[:12]}", alias)).rowcount
        return written

    def runs_to_do(self, configs: Sequence[RunConfig], retry_failed: bool = False) -> list[RunConfig]:
        """Add ``configs`` (and the runs they repeat) to the ledger, record the repeats that can be copied,
        and return the distinct runs still to compute, in the order of ``configs``: not 'done', and not
        'failed' unless ``retry_failed``. A killed sweep's 'running' rows count as to do."""
        configs = list(configs)
        sources = [c.equivalent() for c in configs]
        self.add(configs + [c for c, orig in zip(sources, configs) if c is not orig])
        self.fill_equivalents(configs)
        status = self.statuses()
        skip = {"done"} | (set() if retry_failed else {"failed"})
        todo: "OrderedDict[str, RunConfig]" = OrderedDict()
        for c, src in zip(configs, sources):
            if status.get(c.config_hash()) not in skip and status.get(src.config_hash()) not in skip:
                todo.setdefault(src.config_hash(), src)
        return list(todo.values())

    # ------------------------------------------------------------------ reads
    def statuses(self, hashes: Sequence[str] | None = None) -> dict[str, str]:
        with self._connect() as db:
            rows = db.execute("SELECT config_hash, status FROM runs").fetchall()
        out = {r["config_hash"]: r["status"] for r in rows}
        return out if hashes is None else {h: out[h] for h in hashes if h in out}

    def counts(self) -> dict[str, int]:
        with self._connect() as db:
            rows = db.execute("SELECT status, COUNT(*) AS n FROM runs GROUP BY status").fetchall()
        return {r["status"]: r["n"] for r in rows}

    def rows(self, status: str | None = None, hashes: Sequence[str] | None = None) -> list[dict]:
        """Every row (or those with ``status``, or with a config hash in ``hashes``) with config, metrics
        and versions decoded."""
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if hashes is not None:
            where.append(f"config_hash IN ({','.join('?' * len(hashes))})")
            args.extend(hashes)
        with self._connect() as db:
            q = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created, rowid"
            rows = db.execute(q, args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            for k in ("config", "metrics", "versions"):
                d[k] = json.loads(d[k]) if d[k] else None
            out.append(d)
        return out

    def to_dataframe(self, history: bool = False):
        """One row per run: config_hash, status, the config fields, the metrics (nested keys joined by '.',
        lists as JSON text; the training history only if asked), error, times, versions, host, worker."""
        import pandas as pd

        records = []
        for r in self.rows():
            rec = {"config_hash": r["config_hash"], "status": r["status"]}
            for k, v in (r["config"] or {}).items():
                rec[k] = json.dumps(v) if isinstance(v, (list, dict)) else v
            metrics = dict(r["metrics"] or {})
            metrics.pop("versions", None)
            if not history:
                metrics.pop("history", None)
            for k, v in _flatten(metrics).items():
                rec[k if k not in rec else f"metrics.{k}"] = v
            for k in ("error", "created", "started", "finished", "duration", "host", "worker", "attempts"):
                rec[k] = r[k]
            for k, v in (r["versions"] or {}).items():
                rec[f"versions.{k}"] = v
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def export_csv(self, path) -> Path:
        """:meth:`to_dataframe` as CSV; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_dataframe().to_csv(path, index=False)
        return path


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out
