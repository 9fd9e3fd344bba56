"""The ``isa-vae`` command line: list, run and build the book's chapters.

    isa-vae list
    isa-vae run 03 --scale paper -p seed 1 -p n_samples 50000
    isa-vae book                 # build the book from the executed notebooks in book/chapters/
    isa-vae quickstart           # run the main experiment at the small scale, then build the book
    isa-vae sweep --grid experiments/grids/dsprites_small.yml --ledger runs/small.db [--backend ray]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import runner, threads


def _params(pairs: list[list[str]] | None) -> dict:
    return {name: runner.parse_cli_value(value, name) for name, value in (pairs or [])}


def cmd_list(args) -> int:
    root = runner.project_root()
    for ch in runner.chapters(root):
        done = runner.executed_scale(ch.output(root))
        print(f"{ch.name}  (executed: {done or 'no'})")
        for name, value in runner.notebook_parameters(ch.source).items():
            print(f"    {name} = {value!r}")
    return 0


def cmd_run(args) -> int:
    chapter = runner.find_chapter(args.notebook)
    if args.dry_run:
        params = runner.resolve_parameters(chapter, args.scale, _params(args.param))
        for name, value in params.items():
            print(f"{name} = {value!r}")
        try:
            settings = runner.run_settings(params)
        except ValueError as err:  # e.g. a dataset without this scale
            raise runner.ParameterError(f"{chapter.name} at scale {args.scale!r}: {err}") from None
        if settings is not None:
            print(f"# the run these make (isa_lib.experiments.config_for; None above = the scale's value):")
            for name, value in settings.items():
                if name != "subgrid":
                    print(f"#   {name} = {value!r}")
            if settings.get("subgrid"):
                print(f"#   subgrid = {settings['subgrid']!r}")
        return 0
    t = time.perf_counter()
    out = runner.run_chapter(chapter, args.scale, _params(args.param), args.output, force=args.force,
                             threads=args.threads)
    print(f"executed {chapter.name} at scale {args.scale!r} in {_elapsed(t)} -> {out}")
    return 0


def cmd_book(args) -> int:
    index = runner.build_book(quiet=args.quiet)
    print(f"book built: open {index}")
    return 0


#: The main job of the quick start: one ISA-VAE run on the built-in dSprites (Sec. 4).
MAIN_CHAPTER = "05_isa_vae_experiment"


def _printed_lines(notebook: Path, prefix: str) -> list[str]:
    nb = json.loads(Path(notebook).read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    return [line for line in text.splitlines() if line.startswith(prefix)]


def _elapsed(t0: float) -> str:
    s = round(time.perf_counter() - t0)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def cmd_quickstart(args) -> int:
    """Run the main experiment at a scale into _build/quickstart/ (the book's own chapters are kept),
    execute any chapter that has never been executed, and build the book."""
    root = runner.project_root()
    all_chapters = runner.chapters(root)
    # Check every chapter's parameters before spending time on any of them.
    for ch in all_chapters:
        runner.resolve_parameters(ch, args.scale)
    main_chapter = runner.find_chapter(args.main, root)
    out = root / "_build" / "quickstart" / f"{main_chapter.name}.ipynb"
    t0 = time.perf_counter()
    n = threads.choose(args.scale, args.threads)
    print(f"running the main experiment, {main_chapter.name}, at scale {args.scale!r} ({n} torch thread(s); "
          f"papermill's bar shows the cells) ...", flush=True)
    runner.run_chapter(main_chapter, args.scale, output=out, force=True, progress=not args.quiet, threads=n)
    for line in _printed_lines(out, "MIG ="):
        print(f"  {line}")
    book_scale = runner.executed_scale(main_chapter.output(root))
    print(f"  (these are the {args.scale!r} scale's numbers"
          + (f"; the book's page of this chapter was run at scale {book_scale!r}, so it shows others)"
             if book_scale not in (None, args.scale) else ")"))
    print(f"  executed notebook: {out} ({_elapsed(t0)})", flush=True)
    for ch in all_chapters:
        if not ch.output(root).exists():
            t = time.perf_counter()
            print(f"running {ch.name} at scale {args.scale!r} (no executed notebook yet) ...", flush=True)
            runner.run_chapter(ch, args.scale, progress=not args.quiet, threads=n)
            print(f"  done in {_elapsed(t)}", flush=True)
    t = time.perf_counter()
    print("building the book ...", flush=True)
    index = runner.build_book(root, quiet=True)
    print(f"book built in {_elapsed(t)}: open {index} (quick start: {_elapsed(t0)} in all)")
    return 0


def _threads_arg(text: str) -> int:
    try:
        n = threads.choose(requested=text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    cores = os.cpu_count() or 1
    if n > cores:  # more threads than cores only spin, and OpenMP aborts at very large counts
        raise argparse.ArgumentTypeError(f"threads {n} exceeds the {cores} CPU(s) of this machine; "
                                         f"give at most {cores}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isa-vae", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the chapters and their parameters")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="execute one chapter with papermill at a scale")
    p.add_argument("notebook", help="path, name or unique prefix of a notebook in notebooks/")
    p.add_argument("--scale", default="small", choices=runner.SCALES)
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override a parameter (value parsed as YAML); repeatable")
    p.add_argument("-o", "--output", help="executed notebook path (default book/chapters/NAME.ipynb)")
    p.add_argument("--force", action="store_true", help="replace a result made at a larger scale")
    p.add_argument("--dry-run", action="store_true", help="print the resolved parameters and stop")
    p.add_argument("--threads", type=_threads_arg, default=None,
                   help="torch threads for the kernel (default: OMP_NUM_THREADS, else 1; the thread count "
                        "changes the numbers, see isa_lib.threads)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("book", help="build the Jupyter Book from the executed notebooks")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_book)

    # Listed for the help text only: main() hands `sweep` and its options to experiments.sweep_main.
    sub.add_parser("sweep", help="run a grid of experiments into a SQLite ledger, locally or on Ray "
                                 "(isa-vae sweep --help for its options)", add_help=False)

    p = sub.add_parser("quickstart", help="run the main experiment at a scale (default small), execute any "
                                          "chapter never executed, then build the book")
    p.add_argument("--scale", default="small", choices=runner.SCALES)
    p.add_argument("--main", default=MAIN_CHAPTER, help=f"the main experiment's chapter (default {MAIN_CHAPTER})")
    p.add_argument("--threads", type=_threads_arg, default=None, help="torch threads (default as for `run`)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sweep"]:
        from . import experiments

        return experiments.sweep_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (runner.ParameterError, FileNotFoundError) as err:
        print(f"isa-vae: error: {err}", file=sys.stderr)
        return 2
    except runner.NotebookError as err:
        print(f"isa-vae: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
