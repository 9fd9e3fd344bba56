"""The SQLite ledger: one row per run, keyed by :meth:`RunConfig.config_hash`, safe for many writers.

What it guarantees, and how (each tested in ``tests/test_ledger.py``):

- a committed row survives a SIGKILL of its writer (every write is one transaction, WAL, synchronous FULL);
- a fused task's runs are written in one transaction, all or none (:meth:`Ledger.record_many`), so an
  interrupted task is trained again as the same fused group;
- one sweep at a time (:meth:`Ledger.lease`: the owner's host and pid and a heartbeat);
- results that cannot be written (disk full, read-only) are retried, then saved to a side file beside the
  ledger that the next sweep reads back if it can be trusted, and quarantines otherwise
  (:meth:`Ledger.keep`, :meth:`Ledger.recover_side_files`).

The ledger keeps no checksums of its own: a file damaged on disk is detected only as far as SQLite
detects it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import socket
import sqlite3
import stat
import sys
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .._procs import pid_alive
from .config import RunConfig
from .run import _jsonable, versions

LEASE_HEARTBEAT_S = 10.0   # how often a sweep renews its hold on the ledger
LEASE_STALE_S = 120.0      # a hold not renewed for this long is abandoned (its sweep died or hung)
WRITE_ATTEMPTS = 4         # tries to store finished runs before they go to a side file ...
WRITE_WAIT_S = 2.0         # ... waiting this long after the first failure, doubling each time
SIDE_FILE_FORMAT = "isa-vae-unrecorded"   # what a side file says it is ...
SIDE_FILE_VERSION = 1                     # ... and the version of its schema
SIDE_FILE_MAX_BYTES = 256 * 2 ** 20       # a larger file is not one of ours


class LedgerError(RuntimeError):
    """A ledger path that cannot serve as a ledger (not SQLite, another application's, unreadable)."""


class LedgerBusyError(LedgerError):
    """Another live sweep holds the ledger."""


class LedgerWriteError(LedgerError):
    """Finished runs could not be written; the message names the side file that holds them."""


class LedgerReadOnlyError(LedgerError):
    """A sweep was asked to write into a ledger it can only read (read-only file, folder or file system)."""


class SideFileError(LedgerError):
    """A side file that may not be trusted (its owner, place, schema, ledger or runs); it is quarantined."""


class SideFileWarning(UserWarning):
    """A side file was quarantined (or its folder ignored) and none of its runs recorded; the message says
    which file, where it went and why."""


class LedgerRowError(LedgerError):
    """A row whose stored JSON (config, metrics, versions) is not what this library writes: not valid JSON,
    or not a JSON object. The message names the run and the column."""


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
# Made by the first sweep that takes the lease, so that merely opening an older ledger leaves its bytes alone.
_LEASE_SCHEMA = """CREATE TABLE IF NOT EXISTS lease (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    host      TEXT, pid INTEGER, started REAL, heartbeat REAL, command TEXT
)"""
_SQLITE_MAGIC = b"SQLite format 3\x00"
_OUR_TABLES = {"runs", "lease"}
#: The columns the ledger reads and writes (every ledger this library made has them all).
_RUNS_COLUMNS = {"config_hash", "config", "model", "dataset", "beta", "seed", "status", "metrics", "error",
                 "created", "started", "finished", "duration", "versions", "host", "worker", "attempts"}
_LEASE_COLUMNS = {"id", "host", "pid", "started", "heartbeat", "command"}


def is_sqlite_file(path) -> bool:
    """Whether ``path`` is a file that starts with SQLite's header (a ledger, or another SQLite database)."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC


#: Paths SQLite does not treat as a file: each connection would see a new, empty database.
_NOT_FILES = {":memory:": "SQLite's in-memory database", "": "SQLite's temporary database"}


class Ledger:
    """One SQLite row per run, keyed by :meth:`RunConfig.config_hash` (stdlib sqlite3, WAL journal).

    Every write is one ``BEGIN IMMEDIATE`` transaction on a fresh connection with a busy timeout, so any
    number of processes (Ray workers) may write; a committed row survives a SIGKILL of its writer. The
    object holds only the path, so it can be sent to workers. One sweep per ledger at a time
    (:meth:`lease`): starting a sweep puts rows left 'running' (by a killed sweep) back to 'pending'.
    A path that is not an SQLite file, or is another application's database, is a :class:`LedgerError`
    and is left untouched.
    """

    def __init__(self, path, timeout: float = 60.0, readonly: bool = False):
        self.path = str(path)
        self.timeout = float(timeout)
        self.readonly = bool(readonly)
        if self.path in _NOT_FILES:
            raise LedgerError(f"ledger {self.path!r} is {_NOT_FILES[self.path]}, which every connection sees "
                              f"new and empty (a sweep's workers could not share it, and nothing would be kept); "
                              f"give a file path such as runs/sweep.db")
        self._check_file()
        if self.readonly:
            if not Path(self.path).is_file():
                raise LedgerError(f"ledger {self.path} does not exist (opened read-only, nothing is created)")
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.executescript(_SCHEMA)  # its own transaction (executescript commits first)
        except (sqlite3.Error, OSError) as err:
            raise LedgerError(f"ledger {self.path}: cannot open it for writing ({err})") from None
        self.rekey_fused_rows()

    def rekey_fused_rows(self) -> int:
        """Migration: rows trained fused (``timings.fused`` K > 1 in their metrics) under a configuration that
        does not record it, written before the fusion was part of a run's hash, are moved to the key of the
        same configuration with ``fused=K`` (:attr:`RunConfig.fused`), their data kept; a later sweep with the
        same ``fuse`` finds them there, and one with ``fuse=1`` trains the run alone under its own key. A row
        whose new key is taken already, or whose configuration cannot be read, is left as it is. Runs on every
        (writable) open; rows trained alone are not touched, so it writes nothing to such ledgers. Returns how
        many rows were re-keyed."""
        if self.readonly:
            return 0
        find = ("SELECT config_hash, config, CAST(json_extract(metrics, '$.timings.fused') AS INTEGER) AS k "
                "FROM runs WHERE metrics IS NOT NULL AND json_valid(metrics) AND json_valid(config) "
                "AND json_type(config, '$.fused') IS NULL "
                "AND CAST(json_extract(metrics, '$.timings.fused') AS INTEGER) > 1")
        try:
            with self._connect() as db:
                if not db.execute(find).fetchone():
                    return 0
            moved = 0
            with self._tx() as db:
                for row in db.execute(find).fetchall():
                    try:
                        config = RunConfig.from_dict(json.loads(row["config"]))
                        new = dataclasses.replace(config, fused=int(row["k"]))
                    except (ValueError, TypeError):
                        continue
                    if config.config_hash() != row["config_hash"]:
                        continue            # a key this library did not make: left alone
                    moved += db.execute("UPDATE OR IGNORE runs SET config_hash = ?, config = ? WHERE config_hash = ?",
                                        (new.config_hash(), json.dumps(new.to_dict(), sort_keys=True),
                                         row["config_hash"])).rowcount
            return moved
        except sqlite3.OperationalError as err:
            if "json" in str(err).lower():
                return 0                    # an SQLite without JSON functions: nothing can have been stored fused
            raise LedgerError(f"ledger {self.path}: cannot re-key its fused rows ({err})") from None

    def _check_file(self) -> None:
        p = Path(self.path)
        if p.is_dir():
            raise LedgerError(f"ledger {p} is a directory; give a file path such as {p / 'sweep.db'}")
        if not p.exists():
            return
        try:
            with open(p, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as err:
            raise LedgerError(f"ledger {p} cannot be read ({err.strerror or err})") from None
        if head and head != _SQLITE_MAGIC:
            raise LedgerError(f"ledger {p} is not an SQLite database (it starts with {head[:8]!r}); "
                              f"give a new path or an existing ledger")
        try:
            with contextlib.closing(sqlite3.connect(_ro_uri(p), uri=True, timeout=self.timeout)) as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                info = {t: db.execute(f"PRAGMA table_info({t})").fetchall() for t in _OUR_TABLES & tables}
        except sqlite3.Error as err:
            raise LedgerError(f"ledger {p} cannot be read as SQLite ({err})") from None
        if tables - _OUR_TABLES:
            raise LedgerError(f"ledger {p} is the database of another application (tables: "
                              f"{', '.join(sorted(tables))}); it is left untouched, give a path of its own")
        cols = {r[1] for r in info.get("runs", ())}
        if cols and not {"config_hash", "config", "status", "metrics"} <= cols:
            raise LedgerError(f"ledger {p} has a 'runs' table that is not a ledger's (columns: "
                              f"{', '.join(sorted(cols))})")
        if cols and (not _RUNS_COLUMNS <= cols or [r[1] for r in info["runs"] if r[5]] != ["config_hash"]):
            missing = sorted(_RUNS_COLUMNS - cols)
            raise LedgerError(f"ledger {p} has a 'runs' table of another shape than a ledger's: "
                              + (f"it lacks column(s) {', '.join(missing)}" if missing else
                                 "config_hash is not its primary key")
                              + "; it is left untouched, give a path of its own")
        lease_cols = {r[1] for r in info.get("lease", ())}
        if "lease" in tables and not _LEASE_COLUMNS <= lease_cols:
            raise LedgerError(f"ledger {p} has a 'lease' table of another shape than a ledger's (columns: "
                              f"{', '.join(sorted(lease_cols))}; needs {', '.join(sorted(_LEASE_COLUMNS))})")

    def __repr__(self) -> str:
        return f"Ledger({self.path!r})"

    @contextlib.contextmanager
    def _connect(self):
        if self.readonly:
            db = sqlite3.connect(_ro_uri(self.path), uri=True, timeout=self.timeout, isolation_level=None)
        else:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if not self.readonly:
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

    def check_writable(self) -> None:
        """Raise :class:`LedgerReadOnlyError` unless a transaction can write here (a read-only file, folder or
        file system; opened with ``readonly``). It writes nothing: the write touches no row and is rolled back."""
        why = "it was opened read-only" if self.readonly else None
        if why is None:
            try:
                with self._connect() as db:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        db.execute("UPDATE runs SET status = status WHERE 0")
                    finally:
                        db.execute("ROLLBACK")
            except sqlite3.OperationalError as err:
                if getattr(err, "sqlite_errorname", "") != "SQLITE_READONLY" and "readonly" not in str(err):
                    raise LedgerError(f"ledger {self.path}: cannot write to it ({err})") from None
                why = str(err)
        if why is not None:
            raise LedgerReadOnlyError(f"ledger {self.path} is read-only ({why}): a sweep records its runs there; "
                                      f"give a writable copy or another path (--dry-run and --export only read)")

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

    def release(self, hashes: Sequence[str], note: str) -> int:
        """Runs whose task was lost to the infrastructure (a worker or node died; not a failure of the run)
        go back from 'running' to 'pending', with ``note`` in their error column; their checkpoints are kept,
        so the next sweep resumes them. Returns how many rows were released."""
        if not hashes:
            return 0
        with self._tx() as db:
            return db.execute(f"UPDATE runs SET status = 'pending', error = ? WHERE status = 'running' AND "
                              f"config_hash IN ({','.join('?' * len(hashes))})", (note, *hashes)).rowcount

    def record(self, outcome: Mapping, worker: str | None = None) -> bool:
        """Write a finished run (an outcome of :func:`run_group`) unless the row is already 'done'."""
        return bool(self.record_many([outcome], worker))

    def record_many(self, outcomes: Sequence[Mapping], worker: str | None = None) -> int:
        """Write finished runs in one transaction, all or none (a fused task's runs go in together, so an
        interrupted task is redone as the same group); rows already 'done' are kept. Returns rows written."""
        rows = []
        for o in outcomes:
            status = o["status"]
            if status not in ("done", "failed"):
                raise ValueError(f"an outcome is 'done' or 'failed', got {status!r}")
            metrics = o.get("metrics")
            if metrics is not None and not isinstance(metrics, Mapping):
                raise ValueError(f"an outcome's metrics are a mapping or None, got {type(metrics).__name__} "
                                 f"(run {str(o.get('config_hash'))[:12]})")
            vers = (metrics or {}).get("versions") or versions()
            rows.append((status, None if metrics is None else json.dumps(_jsonable(metrics), allow_nan=False),
                         o.get("error"), time.time(), o.get("duration"), json.dumps(vers),
                         socket.gethostname(), worker or _worker_id(), o["config_hash"]))
        with self._tx() as db:
            return sum(db.execute(
                "UPDATE runs SET status = ?, metrics = ?, error = ?, finished = ?, duration = ?, versions = ?, "
                "host = ?, worker = ? WHERE config_hash = ? AND status != 'done'", r).rowcount for r in rows)

    def keep(self, outcomes: Sequence[Mapping], worker: str | None = None, attempts: int | None = None,
             wait_s: float | None = None) -> int:
        """:meth:`record_many`, tried ``attempts`` times (waiting ``wait_s``, doubling; defaults
        ``WRITE_ATTEMPTS``, ``WRITE_WAIT_S``) when the write fails (disk full, read-only, locked); then the
        outcomes go to a side file that :meth:`recover_side_files` reads back, and a :class:`LedgerWriteError`
        names it. Nothing finished is dropped."""
        if not outcomes:
            return 0
        outcomes = [dict(o) for o in outcomes]
        attempts = WRITE_ATTEMPTS if attempts is None else attempts
        wait_s = WRITE_WAIT_S if wait_s is None else wait_s
        last: BaseException | None = None
        for k in range(attempts):
            try:
                return self.record_many(outcomes, worker)
            except (sqlite3.Error, OSError) as err:
                last = err
                if k + 1 < attempts:
                    time.sleep(wait_s * 2 ** k)
        side = self.save_side_file(outcomes, worker)
        if side:
            where = f"they are saved in {side}; the next sweep on this ledger reads them back"
        else:
            where = (f"no side file could be written in {self.side_folder()} either (missing and not creatable, "
                     f"not this user's, or writable by others); their outcomes are printed above as JSON")
            print(f"unrecorded outcomes for ledger {self.path} (JSON): "
                  f"{json.dumps([_jsonable(o) for o in outcomes], allow_nan=False)}", file=sys.stderr, flush=True)
        err = LedgerWriteError(f"could not write {len(outcomes)} finished run(s) to ledger {self.path} "
                               f"({type(last).__name__}: {last}); {where}")
        err.outcomes, err.side_file = outcomes, side
        raise err

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
                row = db.execute("SELECT config_hash, status, config, metrics, error, versions FROM runs "
                                 "WHERE config_hash = ?", (source,)).fetchone()
                if row is None or row["status"] not in ("done", "failed"):
                    continue
                metrics = None
                if row["metrics"]:   # (a row whose metrics are not a JSON object is a LedgerRowError)
                    metrics = json.dumps({**self._decoded(row)["metrics"], "same_as": source})
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
        return [self._decoded(r) for r in rows]

    def _decoded(self, row) -> dict:
        """A row with config, metrics and versions decoded; each must be a JSON object (or empty)."""
        d = dict(row)
        for k in ("config", "metrics", "versions"):
            if not d[k]:
                d[k] = None
                continue
            try:
                value = json.loads(d[k])
            except (TypeError, ValueError) as err:
                raise LedgerRowError(f"ledger {self.path}: run {str(d['config_hash'])[:12]} has a {k} column "
                                     f"that is not valid JSON ({err}); the row is left as it is") from None
            if not isinstance(value, dict):
                raise LedgerRowError(f"ledger {self.path}: run {str(d['config_hash'])[:12]} has a {k} column "
                                     f"that is not a JSON object (a {type(value).__name__}: {d[k][:80]!r}); "
                                     f"this library writes objects only; the row is left as it is")
            d[k] = value
        return d

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

    # ------------------------------------------------------------------ side files
    def side_folder(self) -> Path:
        """Where outcomes the ledger refused are kept: ``<ledger>.unrecorded/``, beside the ledger and nowhere
        else (no shared temporary directory), owned by this user and writable by no one else."""
        return Path(self.path + ".unrecorded")

    def _rows_digest(self, hashes: Sequence[str]) -> str:
        """sha256 of the ledger's config rows for ``hashes`` (hash, stored config text, creation time), which
        binds a side file to this ledger's own rows: a ledger made again at the same path, or another ledger,
        has other creation times. Only the rows the file speaks of enter, so runs added to the ledger later
        do not invalidate it. Raises sqlite3.Error if the rows cannot be read."""
        with self._connect() as db:
            rows = {r["config_hash"]: (r["config"], r["created"]) for r in db.execute(
                f"SELECT config_hash, config, created FROM runs WHERE config_hash IN "
                f"({','.join('?' * len(hashes))})", list(hashes))}
        h = hashlib.sha256()
        for key in sorted(set(hashes)):
            config, created = rows.get(key, (None, None))
            h.update(json.dumps([key, config, created]).encode())
        return h.hexdigest()

    def save_side_file(self, outcomes: Sequence[Mapping], worker: str | None = None) -> Path | None:
        """Write outcomes that the ledger refused to a side file in :meth:`side_folder`, with the ledger's
        path and :meth:`_rows_digest` of its rows (read if the ledger can still be read; a file without it
        cannot be verified and is quarantined when read back). Returns the file, or None if it could not be
        written (the folder is missing and cannot be made, is not this user's, or others may write to it)."""
        outcomes = [_jsonable(dict(o)) for o in outcomes]
        try:
            digest = self._rows_digest([o["config_hash"] for o in outcomes])
        except (sqlite3.Error, OSError, KeyError, TypeError):
            digest = None
        text = json.dumps({"format": SIDE_FILE_FORMAT, "version": SIDE_FILE_VERSION,
                           "ledger": str(Path(self.path).resolve()), "rows_digest": digest,
                           "worker": worker or _worker_id(), "saved": time.time(), "outcomes": outcomes},
                          allow_nan=False)
        folder = self.side_folder()
        name = f"{socket.gethostname()}.{os.getpid()}.{time.time_ns()}.json"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            if _untrusted_folder(folder):
                return None
            tmp = folder / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, folder / name)
            return folder / name
        except OSError:
            return None

    def recover_side_files(self) -> int:
        """Write back the outcomes that earlier sweeps saved to side files, and delete each file once its runs
        are in the ledger. Returns how many runs came back.

        A side file is used only if it passes every check (:meth:`_check_side_file`): a regular file owned by
        this user in a folder owned by this user that no one else may write, in the schema this library writes,
        for this ledger (its path and the digest of its rows), every run in it one this ledger queued (a row it
        holds; rows already 'done' are kept as they are). A file that fails is moved to ``<ledger>.unrecorded/quarantine/`` with a :class:`SideFileWarning` naming
        it and why; nothing of it is recorded. No side file stops a sweep."""
        folder = self.side_folder()
        if not folder.is_dir() and not folder.is_symlink():
            return 0
        why = _untrusted_folder(folder)
        if why:
            _side_warning(f"ledger {self.path}: side-file folder {folder} is not trusted ({why}); nothing in it "
                          f"is read")
            return 0
        n = 0
        for f in sorted(folder.glob("*.json")):
            try:
                outcomes, worker = self._check_side_file(f)
            except SideFileError as err:
                self._quarantine(f, str(err))
                continue
            except sqlite3.Error as err:   # the ledger, not the file, failed: try again next sweep
                _side_warning(f"ledger {self.path}: side file {f} could not be checked ({err}); left in place")
                continue
            try:
                self.record_many(outcomes, worker)
            except (sqlite3.Error, OSError, ValueError) as err:
                _side_warning(f"ledger {self.path}: side file {f} could not be written back ({err}); left in "
                              f"place for the next sweep")
                continue
            with contextlib.suppress(OSError):
                f.unlink()
            n += len(outcomes)
        return n

    def _check_side_file(self, f: Path) -> tuple[list[dict], str | None]:
        """The outcomes and worker of side file ``f`` if it may be trusted, else :class:`SideFileError`."""
        try:
            st = os.lstat(f)
            if not stat.S_ISREG(st.st_mode):
                raise SideFileError("not a regular file")
            if hasattr(os, "getuid") and st.st_uid != os.getuid():
                raise SideFileError(f"owned by uid {st.st_uid}, not by this user ({os.getuid()})")
            if st.st_size > SIDE_FILE_MAX_BYTES:
                raise SideFileError(f"{st.st_size} bytes, more than a side file holds ({SIDE_FILE_MAX_BYTES})")
            fd = os.open(f, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as fh:
                payload = json.loads(fh.read(SIDE_FILE_MAX_BYTES + 1).decode("utf-8"))
        except SideFileError:
            raise
        except (OSError, ValueError) as err:
            raise SideFileError(f"cannot be read as JSON ({type(err).__name__}: {err})") from None
        outcomes, worker = _side_file_schema(payload)
        if payload["ledger"] != str(Path(self.path).resolve()):
            raise SideFileError(f"written for ledger {payload['ledger']!r}, not this one")
        hashes = [o["config_hash"] for o in outcomes]
        with self._connect() as db:
            known = {r[0] for r in db.execute(f"SELECT config_hash FROM runs WHERE config_hash IN "
                                              f"({','.join('?' * len(hashes))})", hashes)}
        unknown = [h[:12] for h in hashes if h not in known]
        if unknown:
            raise SideFileError(f"run(s) {', '.join(unknown)} are not in this ledger (it never queued them)")
        if payload["rows_digest"] is None:
            raise SideFileError("it carries no digest of the ledger's rows (the ledger could not be read when "
                                "it was written), so it cannot be verified")
        if payload["rows_digest"] != self._rows_digest(hashes):
            raise SideFileError("its digest does not match this ledger's rows (another ledger at this path, or "
                                "an edited file)")
        return outcomes, worker

    def _quarantine(self, f: Path, why: str) -> None:
        q = self.side_folder() / "quarantine"
        try:
            q.mkdir(mode=0o700, exist_ok=True)
            target = q / f.name
            os.replace(f, target)
            where = f"moved to {target}"
        except OSError as err:
            where = f"left in place, it could not be moved ({err})"
        _side_warning(f"ledger {self.path}: side file {f} is not trusted ({why}); {where}; none of its runs "
                      f"were recorded")

    # ------------------------------------------------------------------ one sweep at a time
    def lease_holder(self) -> dict | None:
        """The sweep that holds the ledger (host, pid, started, heartbeat, command), or None."""
        with self._connect() as db:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'lease'").fetchone():
                return None
            row = db.execute("SELECT * FROM lease WHERE id = 1").fetchone()
        return None if row is None else dict(row)

    def check_lease(self) -> None:
        """Inside :meth:`lease`: raise :class:`LedgerBusyError` if the hold this process took is no longer the
        ledger's (another sweep took it over, e.g. after this one missed its heartbeats); outside a lease,
        nothing. A sweep calls it after recording each task, so it stops before starting more work."""
        mine = _HELD.get(self._lease_key())
        if mine is None:
            return
        row = self.lease_holder()
        if row is None or (row["host"], row["pid"], row["started"]) != mine:
            holder = "nobody" if row is None else f"pid {row['pid']} on {row['host']} ({row['command']!r})"
            raise LedgerBusyError(f"this sweep lost its hold on ledger {self.path}: it is now held by {holder}; "
                                  f"stopped here (the runs it finished are recorded, the rest are left to the "
                                  f"sweep that holds the ledger)")

    def _lease_key(self) -> str:
        return str(Path(self.path).resolve())

    @contextlib.contextmanager
    def lease(self, heartbeat_s: float = LEASE_HEARTBEAT_S, stale_s: float = LEASE_STALE_S):
        """Hold the ledger for one sweep: a row with this host, pid and start time, renewed every
        ``heartbeat_s`` by a thread and removed on exit. A live holder raises :class:`LedgerBusyError` naming
        it; a holder that is gone (its pid is dead on this host, or no heartbeat for ``stale_s``) is taken
        over. Re-entrant: inside a lease this process holds (known by its start time, kept in this process),
        it just yields. A row with this host and pid that this process did not write is a former process
        that had the same pid (a container restarted as pid 1): it is gone, and taken over. The heartbeat
        renews only this hold (host, pid and start time), so it never revives a hold another sweep took;
        :meth:`check_lease` says whether the hold is still this process's."""
        me = (socket.gethostname(), os.getpid())
        key = self._lease_key()
        with self._tx() as db:
            db.execute(_LEASE_SCHEMA)
            row = db.execute(f"SELECT *, {_DB_NOW} AS db_now FROM lease WHERE id = 1").fetchone()
            mine = _HELD.get(key)
            held = row is not None and mine is not None and (row["host"], row["pid"], row["started"]) == mine
            former_self = row is not None and (row["host"], row["pid"]) == me   # our pid, not our hold
            if row is not None and not held and not former_self and not _stale(row, stale_s, row["db_now"]):
                started = _number(row["started"])
                started = ("at an unknown time" if started is None else
                           time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started)))
                raise LedgerBusyError(
                    f"ledger {self.path} is in use by another sweep: pid {row['pid']} on {row['host']} "
                    f"(started {started}, last heartbeat {row['db_now'] - row['heartbeat']:.0f} s ago, "
                    f"command {row['command']!r}); wait for it to finish or stop it, or use another ledger")
            if not held:
                db.execute(f"INSERT OR REPLACE INTO lease (id, host, pid, started, heartbeat, command) "
                           f"VALUES (1, ?, ?, {_DB_NOW}, {_DB_NOW}, ?)", (*me, " ".join(sys.argv)[:500]))
                started_at = db.execute("SELECT started FROM lease WHERE id = 1").fetchone()["started"]
        if held:  # this process already holds it (a sweep inside a sweep): the outer hold stays in charge
            yield self
            return
        ident = (*me, started_at)
        _HELD[key] = ident
        stop = threading.Event()

        def beat():
            while not stop.wait(heartbeat_s):
                try:
                    with self._tx() as db:
                        renewed = db.execute(f"UPDATE lease SET heartbeat = {_DB_NOW} WHERE id = 1 AND host = ? "
                                             f"AND pid = ? AND started = ?", ident).rowcount
                except sqlite3.Error:
                    continue  # a missed beat; stale only after stale_s
                if not renewed:
                    print(f"ledger {self.path}: this sweep's hold was taken over by another sweep; the heartbeat "
                          f"stops (the sweep stops after its current task)", file=sys.stderr, flush=True)
                    return

        thread = threading.Thread(target=beat, name="ledger-lease", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            _HELD.pop(key, None)
            with contextlib.suppress(sqlite3.Error):
                with self._tx() as db:
                    db.execute("DELETE FROM lease WHERE id = 1 AND host = ? AND pid = ? AND started = ?", ident)


#: The holds this process has taken: resolved ledger path -> (host, pid, started) of its lease row.
_HELD: dict[str, tuple] = {}


#: The database's clock in Unix seconds, read inside the SQL (SQLite's ``julianday('now')``): the lease's start
#: time and heartbeats are written with it and its staleness is measured with it, never with a host clock read
#: in Python, so a host whose clock is far off neither takes over a live sweep nor keeps a dead one alive.
#: (SQLite has no server: 'now' is the clock of the machine that runs the statement, the same for the write and
#: the comparison made on one machine; hosts sharing one ledger file still need clocks that roughly agree.)
_DB_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _stale(row, stale_s: float, now: float) -> bool:
    """Whether a lease row's sweep is gone: its process is dead (same host) or its heartbeat is more than
    ``stale_s`` from ``now``, the database's clock (:data:`_DB_NOW`) read in the same statement as the row.

    A row no live sweep of this library would leave counts as gone: a heartbeat that is not a number (NULL,
    text) or lies more than ``stale_s`` in the future (a live holder renews it every few seconds). A pid that
    is not a whole number cannot be checked, so only the heartbeat decides then."""
    beat = _number(row["heartbeat"])
    if beat is None or abs(now - beat) > stale_s:
        return True
    pid = row["pid"]
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    return row["host"] == socket.gethostname() and not pid_alive(pid)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _side_warning(message: str) -> None:
    warnings.warn(message, SideFileWarning, stacklevel=3)
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _untrusted_folder(folder: Path) -> str | None:
    """Why the side-file folder may not be trusted (a link, not a folder, another user's, writable by others),
    or None."""
    try:
        st = os.lstat(folder)
    except OSError as err:
        return f"cannot be examined ({err})"
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory (a link or a file)"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}, not by this user ({os.getuid()})"
    if st.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _side_file_schema(payload) -> tuple[list[dict], str | None]:
    """The outcomes and worker of a decoded side file, checked against the schema save_side_file writes;
    anything else is a SideFileError naming the first difference."""
    def need(ok, what):
        if not ok:
            raise SideFileError(f"not a side file of this library: {what}")

    need(isinstance(payload, dict), f"a JSON {type(payload).__name__}, not an object")
    need(payload.get("format") == SIDE_FILE_FORMAT, f"format {payload.get('format')!r}")
    version = payload.get("version")
    need(type(version) is int and version == SIDE_FILE_VERSION, f"version {version!r}")  # (True == 1)
    saved = payload.get("saved")
    need(saved is None or (type(saved) in (int, float)), "a time saved that is not a number")
    extra = set(payload) - {"format", "version", "ledger", "rows_digest", "worker", "saved", "outcomes"}
    need(not extra, f"unknown key(s) {sorted(extra)}")
    need(isinstance(payload.get("ledger"), str), "no ledger path")
    digest = payload.get("rows_digest")
    need(digest is None or (isinstance(digest, str) and _HEX64.fullmatch(digest)), "a malformed rows_digest")
    worker = payload.get("worker")
    need(worker is None or isinstance(worker, str), "a worker that is not text")
    outcomes = payload.get("outcomes")
    need(isinstance(outcomes, list) and outcomes, "no list of outcomes")
    seen = set()
    for k, o in enumerate(outcomes):
        need(isinstance(o, dict), f"outcome {k} is not an object")
        h = o.get("config_hash")
        need(isinstance(h, str) and _HEX64.fullmatch(h), f"outcome {k} has no valid config_hash")
        need(h not in seen, f"outcome {k} repeats run {h[:12]}")
        seen.add(h)
        need(o.get("status") in ("done", "failed"), f"outcome {k} has status {o.get('status')!r}")
        metrics = o.get("metrics")
        need(metrics is None or isinstance(metrics, dict), f"outcome {k} has metrics that are not an object")
        need(o["status"] != "done" or isinstance(metrics, dict), f"outcome {k} is 'done' without metrics")
        need(o.get("error") is None or isinstance(o.get("error"), str), f"outcome {k} has an error that is not text")
        d = o.get("duration")
        need(d is None or (isinstance(d, (int, float)) and not isinstance(d, bool)),
             f"outcome {k} has a duration that is not a number")
    return outcomes, worker


def _number(value) -> float | None:
    """A finite REAL/INTEGER column's value as a float, else None (NULL, text, blob)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if abs(value) < float("inf") else None


def _ro_uri(path) -> str:
    """An SQLite URI that opens ``path`` read-only (the characters URIs reserve escaped)."""
    from urllib.parse import quote

    return f"file:{quote(str(Path(path).absolute()))}?mode=ro"


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
