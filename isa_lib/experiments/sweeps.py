"""Sweeps: grouping runs into fused tasks, executing them in-process or as Ray tasks, and the
``isa-vae sweep`` command."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import socket
import sqlite3
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

from .config import RunConfig
from .grids import GridError, load_grid
from .ledger import Ledger, LedgerError, _worker_id
from .run import _error_text, checkpoint_folder, remove_checkpoints, run_group


def plan_groups(configs: Sequence[RunConfig], fuse: int = 1) -> list[list[RunConfig]]:
    """Fused tasks: runs equal but for seed/beta, in chunks of at most ``fuse`` (1 for unfusable runs),
    ordered by their first run's place in ``configs``, so a grid ordered by seed fills seeds evenly."""
    _check_fuse(fuse)
    buckets: "OrderedDict[RunConfig, list[RunConfig]]" = OrderedDict()
    for c in configs:
        buckets.setdefault(c.fuse_key(), []).append(c)
    groups = []
    for key, members in buckets.items():
        k = fuse if key.fusable else 1
        groups += [members[i:i + k] for i in range(0, len(members), k)]
    # Tasks run in the order of their first member, so a seed-first grid stays seed-first.
    position = {id(c): i for i, c in enumerate(configs)}
    return sorted(groups, key=lambda g: position[id(g[0])])


def assign_fusion(configs: Sequence[RunConfig], fuse: int = 1) -> tuple[list[RunConfig], list[list[RunConfig]]]:
    """The fusion each run of a sweep is trained with, recorded in its configuration (:attr:`RunConfig.fused`).

    Fused training (:func:`isa_lib.train.train_many`) equals separate training only up to floating-point
    reduction order, so a run trained in a fused group of K > 1 is another run than the same configuration
    trained alone: ``fused=K`` enters its hash, and a run trained alone keeps ``fused=1`` and the hash it always
    had. The groups are planned over the distinct runs of the whole sweep (each run that repeats another,
    :meth:`RunConfig.equivalent`, takes the fusion of the run it repeats) by :func:`plan_groups`, so a resumed
    sweep with the same grid and ``fuse`` finds the same hashes and groups. Returns the configurations with
    their fusion, in order, and the groups of distinct runs (with their fusion) that tasks train together."""
    plain = [dataclasses.replace(c, fused=1) for c in configs]
    sources = list(OrderedDict((c.equivalent().config_hash(), c.equivalent()) for c in plain).values())
    groups = plan_groups(sources, fuse)
    size = {c.config_hash(): len(g) for g in groups for c in g}
    planned = [[dataclasses.replace(c, fused=len(g)) if len(g) > 1 else c for c in g] for g in groups]
    return [dataclasses.replace(c, fused=size[c.equivalent().config_hash()]) if size[c.equivalent().config_hash()] > 1
            else c for c in plain], planned


def _check_gpu_request(configs: Sequence[RunConfig], backend: str, gpus_per_task) -> None:
    """Ray hides every GPU from a task that asks for none (its CUDA_VISIBLE_DEVICES is empty), so runs on a
    CUDA device under Ray without ``gpus_per_task`` would each fail with "no CUDA device"; so would every run
    of a local sweep on a machine whose torch sees no GPU. Both are refused here, before any run is recorded
    failed (a Ray cluster's GPUs are on its nodes, not necessarily here: not checked)."""
    cuda = sorted({c.device for c in configs if str(c.device).startswith("cuda")})
    if backend == "ray" and cuda and not gpus_per_task > 0:
        raise ValueError(f"runs on device {cuda[0]!r} under Ray need gpus_per_task > 0 (--gpus-per-task): Ray "
                         f"hides the GPUs from a task that asks for none, got gpus_per_task={gpus_per_task!r}")
    if backend == "local" and cuda:
        import torch

        if not torch.cuda.is_available():   # each run would be recorded failed, to be retried by hand
            raise ValueError(f"runs on device {cuda[0]!r}, but torch {torch.__version__} sees no CUDA device on "
                             f"this machine (a CPU build of torch, or no GPU): nothing was run")


def _check_fuse(fuse) -> int:
    if isinstance(fuse, bool) or not isinstance(fuse, int) or fuse < 1:
        raise ValueError(f"fuse must be a whole number >= 1 (runs trained together per task), got {fuse!r}")
    return fuse


def _check_resources(cpus_per_task, gpus_per_task, backend: str = "local", address: str | None = None) -> int:
    """Check a task's CPU and GPU request before anything runs; returns the torch threads each task uses.

    Both are finite numbers (CPUs > 0, GPUs >= 0). On this machine (the local backend, or a Ray cluster
    started here) a task cannot hold more CPUs than the machine has: Ray would never schedule it, and as
    torch threads so many make OpenMP abort mid-sweep. On a remote cluster (``address``) a node may be larger,
    so only the number itself is checked there; each worker still uses at most its own cores."""
    for name, v, low_ok in (("cpus_per_task", cpus_per_task, False), ("gpus_per_task", gpus_per_task, True)):
        if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                or v < 0 or (v == 0 and not low_ok)):
            raise ValueError(f"{name} must be a finite number {'>= 0' if low_ok else '> 0'}, got {v!r}")
    cores = os.cpu_count() or 1
    if (backend == "local" or address is None) and cpus_per_task > cores:
        raise ValueError(f"cpus_per_task {cpus_per_task:g} exceeds the {cores} CPU(s) of this machine: no task "
                         f"could hold them (give at most {cores})")
    return max(1, int(cpus_per_task))


class ClusterResourceError(RuntimeError):
    """The Ray cluster has no node that can hold one task's CPUs and GPUs: the tasks would wait forever."""


def check_cluster(nodes, cpus_per_task: float, gpus_per_task: float) -> None:
    """Raise :class:`ClusterResourceError` unless some live node of ``nodes`` (``ray.nodes()``) has at least
    ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs in all (Ray places a task on one node)."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", n.get("alive", True))]
    if any(r.get("CPU", 0) >= cpus_per_task and r.get("GPU", 0) >= gpus_per_task for r in alive):
        return
    have = ", ".join(f"{r.get('CPU', 0):g} CPU / {r.get('GPU', 0):g} GPU" for r in alive) or "no live node"
    raise ClusterResourceError(f"no node of the Ray cluster can hold a task of {cpus_per_task:g} CPU(s) and "
                               f"{gpus_per_task:g} GPU(s) (its nodes: {have}); the tasks would wait forever. "
                               f"Lower --cpus-per-task/--gpus-per-task or add such a node")


def default_fuse(device: str = "cpu") -> int:
    """Runs trained together per task by default: 1 on a CPU, where fusing gains nothing measurable and a
    kill loses more; 4 on a GPU, where K small networks fill the device better than one."""
    return 1 if str(device).split(":")[0] == "cpu" else 4


def execute_group(configs: Sequence[RunConfig], ledger_path: str, cache=None, retry_failed: bool = True,
                  progress: bool = False, checkpoints: bool = True, threads: int | None = None) -> list[dict]:
    """A worker's task: claim the group's runs in the ledger, run them, and write their results in one
    transaction once all are finished (all or none: an interrupted task is redone as the same group).

    With ``checkpoints``, training checkpoints next to the ledger (``<ledger>.checkpoints/``), so a killed
    task resumes where its last checkpoint left it; the files are deleted once the results are stored.
    Ledger writes that fail (e.g. a node that cannot see the file) are left to the driver: outcomes carry
    ``written`` and the metrics. ``threads`` sets torch's intra-op threads for the task. Returns the outcomes
    of the runs this call executed.
    """
    if threads is not None:
        import torch

        # No more threads than this node has cores (a larger request came from a remote cluster's driver).
        torch.set_num_threads(max(1, min(int(threads), os.cpu_count() or 1)))
    worker = _worker_id()
    ledger = None
    configs = list(configs)
    try:
        ledger = Ledger(ledger_path)
        claimed = set(ledger.claim([c.config_hash() for c in configs], worker, retry_failed=retry_failed))
        todo = [c for c in configs if c.config_hash() in claimed]
    except (sqlite3.Error, LedgerError):
        ledger, todo = None, list(configs)
    if not todo:
        return []
    by_hash = {c.config_hash(): c for c in todo}
    # A group planned fused (every run's ``fused`` is the group's size) trains whole, so the runs it records
    # have the numbers their hash stands for; members already done ride along and are not recorded again.
    # Anything else trains each claimed run alone (``fused`` 1).
    together = len(configs) > 1 and all(c.fused == len(configs) for c in configs)
    train_groups = [configs] if together else [[c] for c in todo]
    folder = checkpoint_folder(ledger_path) if checkpoints else None
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            folder = None  # a node that cannot write there trains without checkpoints

    def on_result(o: dict) -> None:
        if progress:
            c = by_hash[o["config_hash"]]
            what = (f"MIG={o['metrics']['mig']:.3f} recon={o['metrics']['reconstruction']:.1f}"
                    if o["status"] == "done" else o["error"].splitlines()[0])
            print(f"  {o['status']:6s} {c.short()}  {what}  ({o['duration']:.1f} s)", file=sys.stderr, flush=True)

    results = []
    for group in train_groups:
        outcomes = run_group(group, on_result=lambda o: on_result(o) if o["config_hash"] in by_hash else None,
                             cache=cache, checkpoint_dir=folder)
        results += [o for o in outcomes if o["config_hash"] in by_hash]
    for o in results:
        o["written"] = False
    if ledger is not None:
        try:
            ledger.record_many(results, worker)
            for o in results:
                o["written"] = True
        except sqlite3.Error:
            pass
    if folder is not None:
        remove_checkpoints(folder, {o["config_hash"] for o in results if o["written"]})
    return results


class _Progress:
    """Runs done out of runs to do, with an ETA from the finished tasks' pace, one line per task."""

    def __init__(self, total: int, say: Callable):
        self.total, self.done, self.say, self.t0 = total, 0, say, time.perf_counter()

    def task_done(self, n_runs: int, what: str) -> None:
        self.done += n_runs
        elapsed = time.perf_counter() - self.t0
        left = self.total - self.done
        eta = f", ETA {_clock(elapsed / self.done * left)}" if self.done and left else ""
        self.say(f"[{self.done}/{self.total} runs, {_clock(elapsed)} elapsed{eta}] {what}")


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def sweep(configs: Sequence[RunConfig], ledger_path, backend: str = "local", address: str | None = None,
          gpus_per_task: float = 0, fuse: int | None = None, progress: bool = True, cpus_per_task: float = 1,
          retry_failed: bool = False, cache=None, checkpoints: bool = True) -> dict:
    """Run every configuration not yet 'done' in the ledger (and not 'failed', unless ``retry_failed``).

    A run that repeats another exactly (beta-TCVAE at beta = 1, :meth:`RunConfig.equivalent`) is not
    computed twice: its row is copied from the other's. Runs are grouped into fused tasks of up to ``fuse``
    seeds/betas (:func:`plan_groups`; default :func:`default_fuse` of the runs' device) and executed
    in-process (``backend="local"``) or as Ray tasks (``"ray"``: a local cluster unless ``address`` names
    one; ``num_gpus=gpus_per_task``, ``num_cpus=cpus_per_task`` each). The sweep holds the ledger's lease
    (:meth:`Ledger.lease`) throughout; each task writes its runs in one transaction when they are finished
    and checkpoints its training (``checkpoints``), so a kill loses at most a tenth of a task's training.
    A failing run is recorded as 'failed' with its traceback and the sweep goes on; the runs of a task lost
    to the infrastructure (a Ray worker or node died) go back to 'pending' with their checkpoints, for the
    next sweep to resume (:func:`lost_task`). Returns a summary
    (counts of this sweep's configurations by status, and what was run).

    Fusion and the ledger's keys: fused training equals separate training only up to floating-point reduction
    order (not digit for digit), so the fusion is part of a run's identity. A run trained in a fused group of
    K > 1 carries ``fused=K`` in its configuration and hash; a run trained alone (``fuse=1``, FactorVAE, the conv
    nets, or a group of one) keeps ``fused=1`` and exactly the hash it had before fusion was recorded. The
    same grid swept with ``fuse=1`` and ``fuse=4`` thus makes two rows per fused run, never one row with
    either's numbers (:func:`assign_fusion` plans the groups over the whole grid, so a resumed sweep finds the
    same hashes). A fused group with runs still to do trains whole, the members already done riding along
    unrecorded, so every recorded run was trained in a group of the size its hash says; if the fused training
    fails, each run is trained alone and recorded under its planned hash (its ``timings.fused`` says 1).
    Ledgers written before this rule whose rows were trained fused are re-keyed when opened
    (:meth:`Ledger.rekey_fused_rows`).
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    unique = list(OrderedDict((c.config_hash(), c) for c in configs).values())
    if not unique:
        raise ValueError("sweep: no configurations to run (an empty grid?)")
    fuse = _check_fuse(default_fuse(unique[0].device) if fuse is None else fuse)
    threads = _check_resources(cpus_per_task, gpus_per_task, backend, address)
    _check_gpu_request(unique, backend, gpus_per_task)
    unique, planned = assign_fusion(unique, fuse)          # fused runs (K > 1) carry K in their hash
    unique = list(OrderedDict((c.config_hash(), c) for c in unique).values())
    ledger = Ledger(ledger_path)
    ledger.check_writable()  # a read-only ledger is named here, not by the lease's first write
    with ledger.lease(), _ray_for(backend, address, cpus_per_task, gpus_per_task, progress):
        say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
        recovered = ledger.recover_side_files()
        if recovered:
            say(f"sweep: {recovered} finished run(s) read back from side files into {ledger.path}")
        requeued = ledger.requeue_running()
        todo = ledger.runs_to_do(unique, retry_failed)
        todo_hashes = {c.config_hash() for c in todo}
        groups = [g for g in planned if any(c.config_hash() in todo_hashes for c in g)]
        repeats = sum(1 for c in unique if c.equivalent() != c)
        say(f"sweep: {len(unique)} runs ({repeats} repeat another exactly: copied, not run), {len(todo)} to run in "
            f"{len(groups)} task(s) of up to {fuse} on {backend}"
            + (f"; {requeued} interrupted run(s) requeued" if requeued else ""))
        t0 = time.perf_counter()
        # Build each dataset cache once here, not concurrently in every worker.
        for key in OrderedDict.fromkeys((c.dataset, c.subgrid, c.data_version) for c in todo):
            from .. import datasets
            datasets.load(key[0], subgrid=dict(key[1]) if key[1] else None, cache=cache, version=key[2])
        meter = _Progress(sum(len(g) for g in groups), say)   # (with the done members a fused group retrains)

        def driver_record(outcomes: list[dict]) -> None:
            ledger.keep([o for o in outcomes if not o.get("written")], worker=f"driver:{_worker_id()}")
            ledger.check_lease()  # another sweep took the ledger over: stop before more work

        # One torch thread per CPU the task holds (default 1): on a busy CPU more threads than cores spin.
        task_args = (ledger.path, cache, retry_failed, progress, checkpoints, threads)
        if backend == "local":
            for i, g in enumerate(groups, 1):
                say(f"task {i}/{len(groups)}: {len(g)} x {g[0].model} ({', '.join(c.short() for c in g)})")
                driver_record(execute_group(g, *task_args))
                meter.task_done(len(g), f"task {i}/{len(groups)} finished")
        else:
            _run_on_ray(groups, ledger, task_args, driver_record, meter, address=address,
                        cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, log=progress)
        ledger.fill_equivalents(unique)
        finished = {h for h, st in ledger.statuses().items() if st in ("done", "failed")}
        remove_checkpoints(checkpoint_folder(ledger.path), finished)  # also those of runs read back from side files
        final = ledger.statuses([c.config_hash() for c in unique])
        counts = {s: sum(1 for v in final.values() if v == s) for s in ("done", "failed", "pending", "running")}
        summary = {"total": len(unique), "ran": len(todo), "tasks": len(groups), **counts,
                   "elapsed_s": time.perf_counter() - t0}
        say(f"sweep finished in {summary['elapsed_s']:.1f} s: {counts['done']} done, {counts['failed']} failed"
            + (f", {counts['pending']} pending (lost tasks: a rerun resumes them from their checkpoints)"
               if counts["pending"] else ""))
        return summary


@contextlib.contextmanager
def _ray_for(backend: str, address: str | None, cpus_per_task: float, gpus_per_task: float, log: bool):
    """For a Ray sweep: Ray started (unless it already is) and the cluster checked to hold one task
    (:func:`check_cluster`) before the sweep reads side files, adds runs or builds any data; shut down
    afterwards if started here. Nothing for the local backend."""
    if backend != "ray":
        yield
        return
    import ray

    started = not ray.is_initialized()
    if started:
        start_ray(address, log_to_driver=log)
    try:
        check_cluster(ray.nodes(), cpus_per_task, gpus_per_task)
        yield
    finally:
        if started:
            ray.shutdown()


class RayConnectionError(ConnectionError):
    """The Ray cluster named by ``--address`` cannot be reached (one message, within a bounded time)."""


#: Seconds a sweep waits for a TCP connection to a Ray cluster's address before it gives up.
RAY_CONNECT_TIMEOUT_S = 15.0


def _probe_ray_address(address: str, timeout_s: float) -> None:
    """Open and close a TCP connection to a cluster address (``host:port``, ``ray://host:port``; the ports
    default to Ray's 6379 and 10001) within ``timeout_s``, else :class:`RayConnectionError`. ``auto`` and
    ``local`` are left to Ray."""
    from urllib.parse import urlsplit

    if address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    try:
        parts = urlsplit(address if "://" in address else f"ray-gcs://{address}")
        host, port = parts.hostname, parts.port or (10001 if client else 6379)
    except ValueError as err:
        raise RayConnectionError(f"Ray address {address!r} is not host:port or ray://host:port ({err})") from None
    if not host:
        raise RayConnectionError(f"Ray address {address!r} names no host; give host:port or ray://host:port")
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            answer = None if _ray_tls() else _http2_answer(conn, timeout_s)
    except OSError as err:
        reason = "timed out" if isinstance(err, socket.timeout) else (err.strerror or str(err))
        raise RayConnectionError(f"cannot reach the Ray cluster at {address} ({host}:{port}: {reason}, waited at "
                                 f"most {timeout_s:g} s); check --address, or leave it out to start a local "
                                 f"cluster") from None
    if answer is not None:
        raise RayConnectionError(f"cannot reach the Ray cluster at {address}: {host}:{port} is open but is not "
                                 f"Ray ({answer}; Ray's GCS and client server speak gRPC over HTTP/2, whose "
                                 f"servers answer a connection with a SETTINGS frame); check --address and its "
                                 f"port, or leave it out to start a local cluster")


#: What an HTTP/2 client sends first (RFC 9113, Sec. 3.4): the preface, then an empty SETTINGS frame.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _ray_tls() -> bool:
    """Whether Ray's gRPC runs over TLS here (``RAY_USE_TLS``): then the plain HTTP/2 check is skipped."""
    return os.environ.get("RAY_USE_TLS", "0").strip().lower() not in ("", "0", "false", "no")


def _http2_answer(conn, timeout_s: float) -> str | None:
    """None if the service on ``conn`` answers an HTTP/2 client preface with a SETTINGS frame within
    ``timeout_s`` (a server's first frame must be SETTINGS, RFC 9113 Sec. 3.4: every gRPC server, so Ray's GCS
    and its client server, does so at once); else what it did instead. A plain TCP service that never answers,
    closes, or answers something else is told apart from Ray in bounded time, where ``ray.init`` retried for
    minutes."""
    deadline = time.monotonic() + timeout_s
    try:
        conn.settimeout(timeout_s)
        conn.sendall(_HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"no HTTP/2 answer within {timeout_s:g} s"
            conn.settimeout(left)
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return "it closed the connection without an HTTP/2 answer"
            head += chunk
    except socket.timeout:
        return f"no HTTP/2 answer within {timeout_s:g} s"
    except OSError as err:
        return f"the connection failed during the handshake ({err.strerror or err})"
    if head[3] != 0x04:
        return f"its first bytes {head!r} are not an HTTP/2 SETTINGS frame"
    return None


def start_ray(address: str | None = None, attempts: int = 3, connect_timeout_s: float | None = None,
              **kw) -> None:
    """``ray.init`` (a local node unless ``address``), tried ``attempts`` times: on a loaded machine a local
    node can miss Ray's fixed 30 s start-up wait, and a second start usually makes it (that retry is for a
    local node only, and it never gives up on a slow machine before ``attempts`` starts). An ``address`` is
    first reached over TCP and asked for an HTTP/2 handshake (:func:`_http2_answer`), each within
    ``connect_timeout_s`` (default :data:`RAY_CONNECT_TIMEOUT_S`), so a wrong or unreachable address, or an open
    port that is not Ray, is one :class:`RayConnectionError` within twice that time instead of minutes of
    Ray's retries."""
    if address:
        _probe_ray_address(address, RAY_CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s)
    import ray

    kw = dict(include_dashboard=False, ignore_reinit_error=True, **kw)
    for k in range(attempts):
        try:
            ray.init(address=address, **kw) if address else ray.init(**kw)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises a plain Exception on a start-up timeout
            ray.shutdown()
            if k + 1 == attempts or "timed out" not in str(err).lower():
                raise
            print(f"ray: the node did not start in time ({err}); starting it again", file=sys.stderr, flush=True)


def _run_on_ray(groups: list[list[RunConfig]], ledger: Ledger, task_args: tuple, record: Callable,
                meter: _Progress, address: str | None = None, cpus_per_task: float = 1,
                gpus_per_task: float = 0, log: bool = True) -> None:
    """Run each group as a Ray task ``execute_group(group, *task_args)`` (on a local cluster unless ``address``
    names one) and pass each task's outcomes to ``record`` as it returns. A task that was lost (its worker
    died) has its unfinished runs put back to 'pending' with their checkpoints (:func:`lost_task`)."""
    import ray

    started = False
    if not ray.is_initialized():
        start_ray(address, log_to_driver=log)
        started = True
    try:
        check_cluster(ray.nodes(), cpus_per_task, gpus_per_task)   # before any task is queued
        remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)(execute_group)
        pending = {remote.remote(g, *task_args): g for g in groups}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            g = pending.pop(ready[0])
            try:
                outcomes = ray.get(ready[0])
            except Exception as err:  # noqa: BLE001 - the task was lost (worker or node died), not failed
                outcomes = lost_task(ledger, g, err, log)
            record(outcomes)
            meter.task_done(len(g), f"task of {len(g)} x {g[0].model} finished")
    finally:
        if started:
            ray.shutdown()


def lost_task(ledger: Ledger, group: Sequence[RunConfig], err: BaseException, log: bool = True) -> list[dict]:
    """A task that Ray lost (its worker or node died, or execute_group itself raised): an infrastructure
    failure, not a failed run. Its unfinished runs go back to 'pending' with the error noted
    (:meth:`Ledger.release`) and keep their checkpoints, so a rerun resumes them where the last checkpoint
    left them; runs it had already recorded stay as they are. Returns the outcomes to record (none)."""
    note = f"task lost (infrastructure, not the run; back to pending): {_error_text(err)}"
    n = ledger.release([c.config_hash() for c in group], note)
    if log:
        print(f"sweep: a task of {len(group)} x {group[0].model} was lost ({type(err).__name__}); {n} unfinished "
              f"run(s) back to pending with their checkpoints; a rerun resumes them", file=sys.stderr, flush=True)
    return []


def sweep_main(argv: Sequence[str] | None = None) -> int:
    """``isa-vae sweep``: expand a YAML grid and run it into a ledger (exit 0 if every run is done)."""
    ap = argparse.ArgumentParser(prog="isa-vae sweep", description=sweep_main.__doc__)
    ap.add_argument("--grid", required=True, help="grid file (experiments/grids/*.yml)")
    ap.add_argument("--ledger", required=True, help="SQLite ledger (created if missing)")
    ap.add_argument("--backend", default="local", choices=("local", "ray"))
    ap.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    ap.add_argument("--gpus-per-task", type=float, default=0)
    ap.add_argument("--cpus-per-task", type=float, default=1,
                    help="CPUs each task holds, and its torch threads (default 1: on a busy CPU more threads "
                         "than free cores spin against each other)")
    ap.add_argument("--fuse", type=int, default=None,
                    help="seeds/betas trained together per task (default: 1 on a CPU, 4 on a GPU)")
    ap.add_argument("--no-checkpoints", action="store_true",
                    help="do not checkpoint training (a kill then loses the task's whole training)")
    ap.add_argument("--device", default=None, help="override the grid's device (cpu, cuda)")
    ap.add_argument("--retry-failed", action="store_true", help="run 'failed' runs again")
    ap.add_argument("--export", default=None, metavar="CSV",
                    help="write the ledger as CSV afterwards (with --dry-run: now, running nothing; e.g. to "
                         "commit a study as it stands while its sweep goes on)")
    ap.add_argument("--dry-run", action="store_true", help="list the runs and what the ledger holds, run nothing")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        configs = load_grid(args.grid)
        if args.device:
            configs = [dataclasses.replace(c, device=args.device) for c in configs]
        fuse = _check_fuse(default_fuse(configs[0].device) if args.fuse is None else args.fuse)
        _check_resources(args.cpus_per_task, args.gpus_per_task, args.backend, args.address)
        if args.dry_run:
            # only read: a read-only ledger can be listed and exported, a missing one is not created
            ledger = Ledger(args.ledger, readonly=True) if Path(args.ledger).exists() else None
            status = ledger.statuses() if ledger else {}
        else:
            Ledger(args.ledger).check_writable()  # a path that cannot be a ledger is named before anything runs
    except (GridError, OSError, ValueError, LedgerError, sqlite3.Error) as err:
        print(f"isa-vae sweep: error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        configs, _ = assign_fusion(configs, fuse)      # the keys the sweep would use (fused runs carry K)
        for c in configs:
            same = "" if c.equivalent() == c else f"  (same as {c.equivalent().config_hash()[:12]})"
            print(f"{c.config_hash()[:12]}  {status.get(c.config_hash(), 'new'):8s} {c.short()}{same}")
        distinct = list(OrderedDict((c.equivalent().config_hash(), c.equivalent()) for c in configs).values())
        todo = [c for c in distinct if status.get(c.config_hash()) != "done"]
        print(f"{len(configs)} runs ({len(configs) - len(distinct)} repeat another exactly), {len(todo)} to compute "
              f"in {len(plan_groups(todo, fuse))} tasks")
        if args.export and ledger is not None:
            try:
                print(f"exported {ledger.export_csv(args.export)}")
            except (LedgerError, OSError) as err:
                print(f"isa-vae sweep: error: {err}", file=sys.stderr)
                return 2
        return 0
    try:
        summary = sweep(configs, args.ledger, backend=args.backend, address=args.address,
                        gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, fuse=fuse,
                        progress=not args.quiet, retry_failed=args.retry_failed,
                        checkpoints=not args.no_checkpoints)
    except (LedgerError, ClusterResourceError, RayConnectionError) as err:
        print(f"isa-vae sweep: error: {err}", file=sys.stderr)
        return 2
    exported = True
    if args.export:
        try:
            print(f"exported {Ledger(args.ledger).export_csv(args.export)}")
        except (LedgerError, OSError) as err:
            exported = False
            print(f"isa-vae sweep: error: {err} (the runs are in the ledger; export it again with --dry-run "
                  f"--export)", file=sys.stderr)
    print(json.dumps(summary))
    if not exported:
        return 2
    return 0 if summary["done"] == summary["total"] else 1


if __name__ == "__main__":
    sys.exit(sweep_main())
