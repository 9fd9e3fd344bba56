"""The SQLite ledger: one row per run, keyed by :meth:`RunConfig.config_hash`, safe for many writers.

What it guarantees, and how (each tested in ``tests/test_ledger.py``):

- a committed row survives a SIGKILL of its writer (every write is one transaction, WAL, synchronous FULL);
- a fused task's runs are written in one transaction, all or none (:meth:`Ledger.record_many`), so an
  interrupted task is trained again as the same fused group;
- one sweep at a time (:meth:`Ledger.lease`: the owner's host and pid and a heartbeat);
- results that cannot be written (disk full, read-only) are retried, then saved to a side file that the
  next sweep reads back (:meth:`Ledger.keep`, :meth:`Ledger.recover_side_files`).

The ledger keeps no checksums of its own: a file damaged on disk is detected only as far as SQLite
detects it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import sys
import tempfile
import threading
import time
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


class LedgerError(RuntimeError):
    """A ledger path that cannot serve as a ledger (not SQLite, another application's, unreadable)."""


class LedgerBusyError(LedgerError):
    """Another live sweep holds the ledger."""


class LedgerWriteError(LedgerError):
    """Finished runs could not be written; the message names the side file that holds them."""


class LedgerReadOnlyError(LedgerError):
    """A sweep was asked to write into a ledger it can only read (read-only file, folder or file system)."""


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
        where = f"they are saved in {side}" if side else "no side file could be written either"
        raise LedgerWriteError(f"could not write {len(outcomes)} finished run(s) to ledger {self.path} "
                               f"({type(last).__name__}: {last}); {where}; the next sweep on this ledger "
                               f"reads them back")

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
    def _side_dirs(self) -> list[Path]:
        key = hashlib.sha1(str(Path(self.path).resolve()).encode()).hexdigest()[:12]
        return [Path(self.path + ".unrecorded"), Path(tempfile.gettempdir()) / "isa-vae-unrecorded" / key]

    def save_side_file(self, outcomes: Sequence[Mapping], worker: str | None = None) -> Path | None:
        """Write outcomes that the ledger refused as JSON next to it (or, if that fails too, under the
        temporary directory); returns the file, or None if nothing could be written."""
        text = json.dumps({"ledger": str(Path(self.path).resolve()), "worker": worker or _worker_id(),
                           "outcomes": [_jsonable(o) for o in outcomes]}, allow_nan=False)
        name = f"{socket.gethostname()}.{os.getpid()}.{time.time_ns()}.json"
        for folder in self._side_dirs():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{name}.tmp"
                tmp.write_text(text)
                os.replace(tmp, folder / name)
                return folder / name
            except OSError:
                continue
        return None

    def recover_side_files(self) -> int:
        """Write back the outcomes that earlier sweeps saved to side files; each file is deleted once its
        runs are in the ledger (an unreadable one is left and named). Returns how many runs came back."""
        n = 0
        for folder in self._side_dirs():
            for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                try:
                    payload = json.loads(f.read_text())
                    outcomes = payload["outcomes"]
                except (OSError, ValueError, KeyError, TypeError) as err:
                    print(f"ledger {self.path}: side file {f} cannot be read ({err}); left in place",
                          file=sys.stderr)
                    continue
                self.record_many(outcomes, payload.get("worker"))
                f.unlink()
                n += len(outcomes)
        return n

    # ------------------------------------------------------------------ one sweep at a time
    def lease_holder(self) -> dict | None:
        """The sweep that holds the ledger (host, pid, started, heartbeat, command), or None."""
        with self._connect() as db:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'lease'").fetchone():
                return None
            row = db.execute("SELECT * FROM lease WHERE id = 1").fetchone()
        return None if row is None else dict(row)

    @contextlib.contextmanager
    def lease(self, heartbeat_s: float = LEASE_HEARTBEAT_S, stale_s: float = LEASE_STALE_S):
        """Hold the ledger for one sweep: a row with this host and pid, renewed every ``heartbeat_s`` by a
        thread and removed on exit. A live holder raises :class:`LedgerBusyError` naming it; a holder that
        is gone (its pid is dead on this host, or no heartbeat for ``stale_s``) is taken over. Re-entrant:
        inside a lease this process holds, it just yields."""
        me = (socket.gethostname(), os.getpid())
        now = time.time()
        with self._tx() as db:
            db.execute(_LEASE_SCHEMA)
            row = db.execute("SELECT * FROM lease WHERE id = 1").fetchone()
            held = row is not None and (row["host"], row["pid"]) == me
            if row is not None and not held and not _stale(row, stale_s):
                started = _number(row["started"])
                started = ("at an unknown time" if started is None else
                           time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started)))
                raise LedgerBusyError(
                    f"ledger {self.path} is in use by another sweep: pid {row['pid']} on {row['host']} "
                    f"(started {started}, last heartbeat {now - row['heartbeat']:.0f} s ago, "
                    f"command {row['command']!r}); wait for it to finish or stop it, or use another ledger")
            if not held:
                db.execute("INSERT OR REPLACE INTO lease (id, host, pid, started, heartbeat, command) "
                           "VALUES (1, ?, ?, ?, ?, ?)", (*me, now, now, " ".join(sys.argv)[:500]))
        if held:  # this process already holds it (a sweep inside a sweep): the outer hold stays in charge
            yield self
            return
        stop = threading.Event()

        def beat():
            while not stop.wait(heartbeat_s):
                with contextlib.suppress(sqlite3.Error):  # a missed beat; stale only after stale_s
                    with self._tx() as db:
                        db.execute("UPDATE lease SET heartbeat = ? WHERE id = 1 AND host = ? AND pid = ?",
                                   (time.time(), *me))

        thread = threading.Thread(target=beat, name="ledger-lease", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            with contextlib.suppress(sqlite3.Error):
                with self._tx() as db:
                    db.execute("DELETE FROM lease WHERE id = 1 AND host = ? AND pid = ?", me)


def _stale(row, stale_s: float) -> bool:
    """Whether a lease row's sweep is gone: its process is dead (same host) or its heartbeat is old.

    A row no live sweep of this library would leave counts as gone: a heartbeat that is not a number (NULL,
    text) or lies more than ``stale_s`` in the future (a live holder renews it every few seconds). A pid that
    is not a whole number cannot be checked, so only the heartbeat decides then."""
    beat = _number(row["heartbeat"])
    if beat is None or abs(time.time() - beat) > stale_s:
        return True
    pid = row["pid"]
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    return row["host"] == socket.gethostname() and not pid_alive(pid)


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
