"""As much of the paper's dSprites sweep (Table 1, experiments/grids/dsprites_paper.yml) as fits in a budget.

Seeds (and betas) of one model are fused into one train_many call per task; tasks are taken breadth-first
(seed 0 of every model and beta before seed 1, models in the grid's order), and a task starts only if its
partners (the other models' tasks at the same seeds) fit too (:func:`next_task`), so a partial sweep leaves
pairs.
Every finished run goes to the ledger at once; rerunning continues where the last call stopped. Before a
task starts, its duration is predicted from a short timing of its fused group
(isa_lib.experiments.task_timing: the task's setup once, the time per step x the run's steps, and per run the
slowest evaluation so far, or before the first task one evaluation timed on the probe's model), or, for a
task of a shape that ran before, from what that task took (the ledger's timings); a task that would not end
inside the budget with a margin (--margin, 1.2: the first GPU loan's first task took 16 % longer than its
probe said) is split (fewer runs fused) or, if one run does not fit, the sweep stops,
so that no budget is spent on a task that would be cut off and lost. On CUDA, float32 matrix products use
TF32 unless --no-tf32 (recorded per run as timings.float32_matmul).

    python benchmarks/gpu_sweep.py --budget-s 540 --ledger runs/paper.db --fuse 10      # one GPU
    python benchmarks/gpu_sweep.py --cpu-smoke --ledger /tmp/smoke.db                    # tiny, on the CPU
    python benchmarks/gpu_sweep.py --prepare-data                  # only build the grid's data sets (the cache)

The built-in dSprites of the paper scale (737,280 images, 3 GB) is not shipped: it is generated into the cache
($ISA_VAE_CACHE) on the machine that trains, once; --prepare-data does only that, so that a GPU session can
time it apart from the sweep (benchmarks/gpu_session.sh).
"""
import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isa_lib.experiments import Ledger, RunConfig, load_grid, sweep, task_timing  # noqa: E402
from isa_lib.experiments.sweeps import assign_fusion  # noqa: E402

# --cpu-smoke: the paper grid's structure (models, breadth-first order, fusing) on a tiny sub-grid.
SMOKE = dict(epochs=2.0, batch_size=32, latent_dim=4, layout=(2, 2), hidden=32, image_size=16, mig_samples=64,
             subgrid=(("orientation", (0, 10)), ("posX", (0, 10, 20, 31)), ("posY", (0, 10, 20, 31)),
                      ("scale", (0, 5)), ("shape", (0, 1))))


def run_key(config):
    """What pairs runs of different models: the same budget fraction, seed and beta (the same seed gives each
    model the same initial weights and data order)."""
    return (config.budget_fraction, config.seed, config.beta)


def order_queue(queue, rank):
    """Breadth-first over what is still to do: the task holding the smallest (fraction, seed, beta) first, the
    grid's model order (``rank``) breaking ties. A model that a budget left behind (a loan that ended between
    the arms) therefore catches up first in the next call."""
    queue.sort(key=lambda g: (min(run_key(c) for c in g), rank[g[0].model]))


def next_task(queue, left, predicted, rank, say=print, margin=1.0):
    """The next task to train, taken from ``queue`` (groups of runs of one model each; changed in place), or
    None to stop.

    A task starts only if it fits in ``left`` seconds together with its partners: the tasks of the other models
    at the same (fraction, seed, beta), each assumed to cost what this one does. A task that does not fit is
    halved (fewer runs fused); a task whose runs' partners are done (a model catching up) is first cut to
    those runs, so that it trains exactly the seeds the other models have. So a budget that ends mid-grid
    leaves pairs, not one arm: the first GPU loan (450 s, 2026-12-04) trained 5 beta-VAE runs and no
    ISA-VAE run before this rule. A single run that does not fit with its partners stops the call.
    ``margin`` (>= 1) multiplies every prediction before it is compared with what is left: a task cut off at
    the end of a loan loses all its runs (that loan's first task took 16 % longer than its probe predicted)."""
    while queue:
        order_queue(queue, rank)
        group = queue.pop(0)
        queued = {}                                         # run key -> the models still to train it
        for g in queue:
            for c in g:
                queued.setdefault(run_key(c), set()).add(c.model)
        n_partners = [len(queued.get(run_key(c), set()) - {c.model}) for c in group]
        alone = [c for c, n in zip(group, n_partners) if n == 0]
        if alone and len(alone) < len(group):               # catch up first, on exactly the seeds others have
            queue[:0] = [alone, [c for c, n in zip(group, n_partners) if n > 0]]
            continue
        group = assign_fusion(group, len(group))[0]       # a split part is trained (and hashed) as fused K'
        guess = predicted(group)                          # (the first timing also builds the data set)
        partners = max(n_partners)
        need = guess * (1 + partners) * margin
        parts = ([f"with {partners} partner task(s)"] if partners else []) + ([f"x {margin:g} margin"] if margin != 1 else [])
        with_partners = f" ({', '.join(parts)}: ~{need:.0f} s)" if parts else ""
        if need <= left():
            return group, guess
        if len(group) > 1:  # split: the halves go back to the queue
            half = (len(group) + 1) // 2
            queue[:0] = [group[:half], group[half:]]
            say(f"a task of {len(group)} x {group[0].model} would take ~{guess:.0f} s{with_partners}, "
                f"{left():.0f} s left: splitting it")
            continue
        say(f"stopping: one {group[0].model} run would take ~{guess:.0f} s{with_partners}, "
            f"{need - left():.0f} s more than what is left")
        return None, guess
    return None, 0.0


def still_to_train(ledger, configs, fuse: int) -> list:
    """The grid's runs not yet done under any fusion up to ``fuse`` (copies such as beta-TCVAE at beta = 1
    are not trained: :meth:`Ledger.runs_to_do`)."""
    done = {r["config_hash"] for r in ledger.rows("done")}
    return [c for c in ledger.runs_to_do(configs) if not any_fusion_done(c, fuse, done)]


def any_fusion_done(config, fuse: int, done: set) -> bool:
    """Whether ``config`` is recorded done under any fusion up to ``fuse`` (a task split to fit the budget
    trains its runs fused in fewer; those runs answer the same question and are not trained again)."""
    sizes = range(1, (fuse if config.fusable else 1) + 1)
    return any(dataclasses.replace(config, fused=k).config_hash() in done for k in sizes)


def prepare_data(configs) -> int:
    """Build each data set the configurations use (dataset, sub-grid, generator version) into the cache."""
    from isa_lib import datasets

    for key in dict.fromkeys((c.dataset, c.subgrid, c.data_version) for c in configs):
        t = time.perf_counter()
        ds = datasets.load(key[0], subgrid=dict(key[1]) if key[1] else None, version=key[2])
        print(f"data set {key[0]} (version {key[2]}): {len(ds.images):,} images of {tuple(ds.images.shape[1:])} "
              f"ready in {time.perf_counter() - t:.1f} s", flush=True)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default=str(ROOT / "experiments" / "grids" / "dsprites_paper.yml"))
    ap.add_argument("--ledger", default=str(ROOT / "runs" / "dsprites_paper.db"))
    ap.add_argument("--budget-s", type=float, default=540.0)
    ap.add_argument("--fuse", type=int, default=10, help="runs per fused task")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (changes the run hashes)")
    ap.add_argument("--no-tf32", action="store_true", help="full float32 matrix products on CUDA")
    ap.add_argument("--probe-steps", type=int, default=10, help="steps timed to predict a task's duration")
    ap.add_argument("--margin", type=float, default=1.2,
                    help="a task starts only if margin x its predicted time (with its partners') is left")
    ap.add_argument("--max-tasks", type=int, default=None, help="stop after this many tasks (budget or not)")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny version on the CPU, 3 seeds")
    ap.add_argument("--export", default=None, metavar="CSV")
    ap.add_argument("--prepare-data", action="store_true",
                    help="build (or verify) the grid's data sets in the cache, then stop; trains nothing")
    args = ap.parse_args(argv)
    if not args.margin >= 1:
        ap.error(f"--margin must be >= 1 (a factor on every predicted task time), got {args.margin}")

    t0 = time.perf_counter()
    configs = load_grid(args.grid)
    if args.cpu_smoke:
        configs = [dataclasses.replace(c, **SMOKE, device="cpu") for c in configs if c.seed < 3]
        args.fuse = min(args.fuse, 4)
    else:
        import torch
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            sys.exit("no CUDA device: use --cpu-smoke for a CPU run")
        configs = [dataclasses.replace(c, device=args.device, amp=args.amp) for c in configs]
        torch.set_float32_matmul_precision("highest" if args.no_tf32 else "high")
    # breadth-first: all settings of seed 0 first (and, in a grid of budget fractions, every run's 1/8 first)
    configs.sort(key=lambda c: (c.budget_fraction, c.seed, c.beta))
    if args.prepare_data:
        return prepare_data(configs)
    ledger = Ledger(args.ledger)
    with ledger.lease():                                  # one sweep per ledger; the sweeps below reuse it
        return _run_budgeted(args, configs, ledger, t0)


def _run_budgeted(args, configs, ledger, t0) -> int:
    ledger.recover_side_files()
    ledger.requeue_running()                              # runs of a killed call start again
    configs, planned = assign_fusion(configs, args.fuse)  # a fused run carries its group's size in its hash
    todo = still_to_train(ledger, configs, args.fuse)      # a split task's runs count as done
    left_to_do = {c.config_hash() for c in todo}
    # a task trains only its runs still to do (of a group split last time, the half not yet trained)
    tasks = [h for h in ([c for c in g if c.config_hash() in left_to_do] for g in planned) if h]
    rank = {m: i for i, m in enumerate(dict.fromkeys(c.model for c in configs))}
    print(f"{len(configs)} runs in the grid, {ledger.counts().get('done', 0)} recorded, {len(todo)} to run "
          f"in {len(tasks)} tasks of <= {args.fuse}; budget {args.budget_s:.0f} s", flush=True)

    ran, n_tasks, timing = 0, 0, {}
    # the slowest evaluation recorded by an earlier call (None: the first task times one on its probe)
    evals = [r["metrics"]["timings"]["eval_s"] for r in ledger.rows("done") if "timings" in (r["metrics"] or {})]
    eval_s = max(evals) if evals else None

    def trained_before(group):
        """Seconds (data load + training) an earlier task of this group's shape took (the same fused configuration
        up to seed and beta), from the ledger's timings: what the task really costs, where a probe of 10 and 20
        steps can be off by tens of percent. None if no such task ran yet."""
        key = group[0].fuse_key().config_hash()
        seen = [r["metrics"]["timings"]["load_s"] + r["metrics"]["timings"]["train_s"] for r in ledger.rows("done")
                if "timings" in (r["metrics"] or {}) and "train_s" in r["metrics"]["timings"]
                and RunConfig.from_dict(r["config"]).fuse_key().config_hash() == key]
        return max(seen) if seen else None

    source = ["a probe"]      # where the last prediction came from: next_task returns the group it predicted last

    def predicted(group):
        """Seconds the group's task should take: an earlier task of its shape's load and training time, else its
        setup and timed steps x the run's steps (a probe); plus per run the slowest evaluation so far (before the
        first task: one evaluation timed on the probe's model)."""
        before = trained_before(group)
        if before is not None and eval_s is not None:
            source[0] = "the ledger"
            return before + eval_s * len(group)
        source[0] = "a probe"
        key = (group[0].fuse_key(), len(group))
        if key not in timing:
            timing[key] = task_timing(group, steps=args.probe_steps, score=eval_s is None)
        t = timing[key]
        per_run = eval_s if eval_s is not None else (t.eval_s or 0.0)
        return t.setup_s + t.step_s * group[0].train_steps + per_run * len(group)

    queue = list(tasks)
    while queue:
        if args.max_tasks is not None and n_tasks >= args.max_tasks:
            print(f"stopping after {n_tasks} tasks (--max-tasks)", flush=True)
            break
        group, guess = next_task(queue, lambda: args.budget_s - (time.perf_counter() - t0), predicted, rank,
                                 say=lambda line: print(line, flush=True), margin=args.margin)
        if group is None:
            break
        t = time.perf_counter()
        # No checkpoints: each task is sized to finish in the budget, and a fused paper-scale checkpoint is GBs;
        # but a run stopped at a fraction of its budget is continued from its checkpoint by the next fraction.
        fractions = any(c.budget_fraction < 1 for c in group)
        s = sweep(group, args.ledger, fuse=len(group), progress=False, checkpoints=fractions)
        dt = time.perf_counter() - t
        evals = [r["metrics"]["timings"]["eval_s"]
                 for r in ledger.rows("done", hashes=[c.config_hash() for c in group]) if "timings" in r["metrics"]]
        if evals:                                         # (none found: still unknown, probed again)
            eval_s = max([eval_s or 0.0] + evals)
        ran += s["ran"]
        n_tasks += 1
        print(f"[{time.perf_counter() - t0:6.0f} s] {len(group)} x {group[0].model} "
              f"(seeds {sorted({c.seed for c in group})}, betas {sorted({c.beta for c in group})}): "
              f"{s['done']} done, {s['failed']} failed in {dt:.1f} s (predicted {guess:.0f} s from {source[0]})", flush=True)
    ledger.fill_equivalents(configs)
    counts = ledger.counts()
    # the ledger's 'pending' rows include the planned (fused K) rows of runs that a split task trained under a
    # smaller fusion; what the grid still needs is counted over every fusion
    to_train = len(still_to_train(ledger, configs, args.fuse))
    summary = {"ran": ran, "tasks": n_tasks, "elapsed_s": round(time.perf_counter() - t0, 1), "ledger": counts,
               "grid_total": len(configs), "grid_still_to_train": to_train}
    print(json.dumps(summary), flush=True)
    if args.export:
        print(f"exported {ledger.export_csv(args.export)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
