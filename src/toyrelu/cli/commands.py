"""The commands: each turns parsed arguments into calls to the layers below and prints.

What a command computes lives in those layers (``runs`` sweeps and stores, ``report`` writes
the summaries, figures and exports); here are only the checks of the input that argparse cannot
make and the lines for the user. Heavy layers are imported inside the command that needs them,
so that ``toyrelu presets`` and ``--help`` load no numerical library.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from toyrelu.cli import placement
from toyrelu.cli.options import overrides
from toyrelu.cli.parser import DamagedRuns, RunsFailed, UsageError
from toyrelu.runs import limits
from toyrelu.runs.presets import PRESETS, Preset
from toyrelu.runs.resources import default_workers, usable_workers

if TYPE_CHECKING:
    from toyrelu.cli.placement import Cluster
    from toyrelu.core.config import RunConfig
    from toyrelu.runs.knobs import Study
    from toyrelu.runs.store import Store


def cmd_reproduce(args: argparse.Namespace) -> None:
    from toyrelu.report import reproduce
    from toyrelu.runs.store import Store

    preset = _preset(args)
    workers = _workers(args)
    out = _out_dir(args.out)
    with placement.open_cluster(args, out) as cluster:
        device = placement.device(args, cluster)
        configs = _checked(preset, workers, device, cluster, args.gpu_batch_rows)
        with Store(out / "runs.sqlite") as store:
            _sweep(preset, configs, store, args, workers, device, cluster)
            found = reproduce.write(preset, store, out)
    for f in found:
        print(f"{'ok ' if f.holds else 'NOT'} {f.claim}: {f.measured}")
    print(f"toyrelu: figures and summary.md in {out}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from toyrelu.runs.store import Store

    preset = _preset(args)
    workers = _workers(args)
    # SLURM's job files go beside the store: a folder the nodes share, as the store's.
    with placement.open_cluster(args, Path(args.store).parent) as cluster:
        device = placement.device(args, cluster)
        configs = _checked(preset, workers, device, cluster, args.gpu_batch_rows)
        with Store(args.store) as store:
            _sweep(preset, configs, store, args, workers, device, cluster)


def cmd_figures(args: argparse.Namespace) -> None:
    from toyrelu.report import store_figures
    from toyrelu.runs.store import Store

    with Store(args.store, create=False) as store:
        names, pooled = store_figures.write(store, _out_dir(args.out))
    if pooled:
        print(f"toyrelu: note: the figures pool runs that differ in {', '.join(pooled)}",
              file=sys.stderr)
    print(f"toyrelu: wrote {', '.join(names)} (and SVG twins) to {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    from toyrelu.report import build as report
    from toyrelu.runs.store import Store

    out = _out_dir(args.out)
    with Store(args.store, create=False) as store:
        html_path, _ = report.write(store, out)
    print(f"toyrelu: wrote {html_path} and report.md (figures beside them)")


def cmd_export(args: argparse.Namespace) -> None:
    from toyrelu.report import export
    from toyrelu.runs.outputs import target
    from toyrelu.runs.store import Store

    if args.run or args.arrays:
        if not (args.run and args.arrays):
            raise UsageError("export: --run and --arrays go together")
        target(args.arrays, "arrays", inputs=[args.store])
    elif args.out != "-":
        target(args.out, "out", inputs=[args.store])
    with Store(args.store, create=False) as store:
        if args.arrays:
            names = export.write_arrays(store, args.run, args.arrays)
            print(f"toyrelu: wrote {', '.join(names)} of run {args.run} to {args.arrays}")
            return
        table = export.runs_table(store)
    export.write_table(table, sys.stdout if args.out == "-" else args.out, args.format)


def cmd_animate(args: argparse.Namespace) -> None:
    from toyrelu.analysis import dynamics
    from toyrelu.figures import animation
    from toyrelu.runs.outputs import target
    from toyrelu.runs.store import Store

    target(args.out, "out", inputs=[args.store])
    try:
        animation.movie_writer(args.out, args.fps)  # bad names fail before any work
        with Store(args.store, create=False) as store:
            trajectory = dynamics.load(store, args.run)
        out = animation.write(trajectory, args.out, fps=args.fps)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"toyrelu: wrote {len(trajectory)} frames of run {args.run} to {out}")


def cmd_check(args: argparse.Namespace) -> None:
    from toyrelu.runs.store import Store

    with Store(args.store, create=False, write=args.drop) as store:
        damaged = store.check(drop=args.drop)
        total = len(store)
    for run_id, problem in damaged:
        print(f"{run_id}: {problem}")
    if not damaged:
        print(f"toyrelu: {total} runs in {args.store}, none damaged")
    elif args.drop:
        print(f"toyrelu: dropped {len(damaged)} damaged runs from {args.store}; {total} runs "
              "left")
    else:
        raise DamagedRuns(f"{len(damaged)} of {total} runs in {args.store} are damaged; "
                          f"toyrelu check --store {args.store} --drop removes them")


def cmd_presets(args: argparse.Namespace) -> None:
    for name, preset in PRESETS.items():
        print(f"{name}: {preset.description} ({len(preset.configs())} runs)")


def cmd_sensitivity(args: argparse.Namespace) -> None:
    from toyrelu.analysis import sensitivity
    from toyrelu.report import sensitivity as sensitivity_report
    from toyrelu.report.reproduce import status_counts
    from toyrelu.report.table import run_counts
    from toyrelu.runs.knobs import study as make_study
    from toyrelu.runs.store import Store

    knobs = None if args.knobs is None else [k.strip() for k in args.knobs.split(",")]
    study = make_study(args.base, knobs, args.seeds)
    workers, out = _workers(args), _out_dir(args.out)
    configs = _study_configs(study)
    with placement.open_cluster(args, out) as cluster:
        device = placement.device(args, cluster)
        placement.check_runs(configs, workers, device, cluster, args.gpu_batch_rows)
        with Store(out / "runs.sqlite") as store:
            print(f"toyrelu: sensitivity around the {args.base} base: {len(study.knobs)} knobs, "
                  f"{len(study.configs())} runs into {store.path}", file=sys.stderr)
            study = sensitivity.run(study, store,
                                    placement.executor(args, workers, device, cluster),
                                    progress=sys.stderr)
            tables, sentence, _ = sensitivity_report.write(study, store, out)
            counts = (status_counts(store, {c.run_id for c in study.configs()})
                      if tables.bumps.empty else {})
    if tables.bumps.empty:
        # An empty analysis: no run finished, or those that did wait for restarts stopped by
        # errors or lost by the cluster.
        total = len(study.configs())
        what = (f"every run of the study failed ({total})" if counts.get("failed") == total else
                f"no run of the study can be analysed yet ({run_counts(counts)}; the next run "
                "trains those not finished)")
        raise RunsFailed(f"{what}, so nothing is written to {out}; the reasons are in the error "
                         f"column of toyrelu export --store {store.path}")
    for row in tables.ranking.itertuples(index=False):
        print(f"{row.knob:>12}  x{row.factor:<8.3g} lowest {row.lowest_value} "
              f"({row.lowest_peak:.4g}; base {row.base_peak:.4g})")
    print(sentence)
    print(f"toyrelu: figures and sensitivity.md in {out}")


COMMANDS = {
    "reproduce": cmd_reproduce,
    "sweep": cmd_sweep,
    "figures": cmd_figures,
    "report": cmd_report,
    "export": cmd_export,
    "check": cmd_check,
    "animate": cmd_animate,
    "presets": cmd_presets,
    "sensitivity": cmd_sensitivity,
}


def _preset(args: argparse.Namespace) -> Preset:
    if args.preset not in PRESETS:
        raise UsageError(f"preset: {args.preset!r} is unknown (choose from {', '.join(PRESETS)})")
    values = overrides(args)
    restarts = getattr(args, "restarts", None)
    if restarts is not None:
        if restarts < 1:
            raise UsageError(f"restarts: {restarts} must be an integer >= 1")
        if restarts > limits.MAX_RESTARTS:
            raise UsageError(f"restarts: {restarts} initialisations of each dataset are more "
                             f"than one sweep keeps (allowed: restarts <= {limits.MAX_RESTARTS:,})")
        if "restart" in values:
            raise UsageError("restarts: give either --restarts K or --restart values, not both")
        values["restart"] = list(range(restarts))
    return PRESETS[args.preset].override(values)


def _workers(args: argparse.Namespace) -> int:
    if args.workers is None:
        return default_workers()
    if args.workers < 1:
        raise UsageError(f"workers: {args.workers} must be an integer >= 1")
    workers = usable_workers(args.workers)
    if workers < args.workers:
        print(f"toyrelu: note: --workers {args.workers} capped at {workers}, the cores this "
              "process may use", file=sys.stderr)
    return workers


def _checked(preset: Preset, workers: int, device: str, cluster: Cluster | None = None,
             rows: int | None = None) -> list[RunConfig]:
    """The preset's runs, counted before they are built (``Preset.configs``) and checked by
    ``placement.check_runs``."""
    configs = preset.configs()
    placement.check_runs(configs, workers, device, cluster, rows)
    return configs


def _study_configs(study: Study) -> list[RunConfig]:
    """The sensitivity study's runs, counted (knob values, restarts, T and seeds) before they
    are built: no more than a sweep's ``limits.MAX_RUNS``."""
    values = sum(value.restarts for knob in study.knobs for value in knob.values)
    count = values * len(study.base.n_train) * len(study.seeds)
    if count > limits.MAX_RUNS:
        raise UsageError(f"seeds: {len(study.seeds):,} seeds make {count:,} runs of the study "
                         f"(allowed: at most {limits.MAX_RUNS:,} runs in one sweep)")
    return study.configs()


def _out_dir(path: str) -> Path:
    if not path:
        raise UsageError("out: an empty path names no folder")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"out: {out} exists and is not a folder")
    return out


def _sweep(preset: Preset, configs: list[RunConfig], store: Store, args: argparse.Namespace,
           workers: int, device: str, cluster: Cluster | None = None) -> None:
    where = "on the GPU" if device == "cuda" else f"on {workers} CPU process(es)"
    if cluster is not None:
        where = cluster.describe(device)
    print(f"toyrelu: preset {preset.name}: {len(configs)} runs into {store.path}, {where}",
          file=sys.stderr)
    placement.note_few_batches(configs, args, device, cluster)
    from toyrelu.runs.sweep import run_sweep

    report = run_sweep(configs, store, placement.executor(args, workers, device, cluster),
                       progress=sys.stderr, retry_failed=args.retry_failed)
    lost = f", {report.lost} lost by the cluster" * bool(report.lost)
    retried = " (trained by the next run)" * bool(report.lost)
    again = f", {report.damaged} damaged in the store and trained again" * bool(report.damaged)
    errors = f"{report.errors} error{'s' * (report.errors != 1)}"
    print(f"toyrelu: {report.ok} finished, {report.failed} failed, {errors} "
          f"(retried by the next run), {report.skipped} already stored{lost}{retried}{again}",
          file=sys.stderr)
    if (report.failed or report.errors or report.lost) and not report.ok:
        what = (f"every run trained failed ({report.failed})"
                if not (report.errors or report.lost) else
                f"no run trained finished ({report.failed} failed, {errors}{lost})")
        raise RunsFailed(f"{what}; the reasons are in the error column of toyrelu export "
                         f"--store {store.path}")
