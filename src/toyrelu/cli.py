"""Command line: ``toyrelu reproduce | sweep | figures | export | presets``.

Every config field is an option (``--n-features 10000``); a comma list makes it a sweep axis
(``--n-train 3,5,10``). Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from toyrelu import analysis, summary
from toyrelu.config import (
    BIAS_INITS,
    DTYPES,
    ENGINES,
    LOSS_REDUCTIONS,
    SCHEDULES,
    ConfigError,
    RunConfig,
    field_names,
)
from toyrelu.presets import PRESETS, Preset
from toyrelu.store import Store, StoreError
from toyrelu.sweep import default_workers, executor, run_sweep

EXPORT_COLUMNS = [
    "run_id", "status", "n_features", "n_hidden", "sparsity", "n_train", "seed", "steps", "lr",
    "weight_decay", "train_loss", "test_loss", "W_norm", "b_norm", "wall_seconds",
]
ALIASES = {"seeds": "seed"}
CHOICES = {
    "schedule": SCHEDULES,
    "loss_reduction": LOSS_REDUCTIONS,
    "bias_init": BIAS_INITS,
    "dtype": DTYPES,
    "engine": ENGINES,
}


class UsageError(Exception):
    """Bad command-line input; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parse_value(name: str, kind: str, text: str) -> Any:
    text = text.strip()
    try:
        if kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if "None" in kind and text.lower() == "none":
            return None
        if kind.startswith("int"):
            number = float(text.replace("_", ""))
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind == "float":
            return float(text)
        return text
    except ValueError:
        expected = "true or false" if kind == "bool" else kind.replace(" | None", " or none")
        raise ConfigError(f"{name}: {text!r} is not a valid value (expected {expected})") from None


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "config overrides (each replaces the preset's value; a comma list sweeps the field)"
    )
    for f in dataclasses.fields(RunConfig):
        flags = [f"--{f.name.replace('_', '-')}"]
        flags += [f"--{alias}" for alias, target in ALIASES.items() if target == f.name]
        metavar = "|".join(CHOICES[f.name]) if f.name in CHOICES else str(f.type).upper()
        group.add_argument(*flags, dest=f"set_{f.name}", metavar=metavar)


def _overrides(args: argparse.Namespace) -> dict[str, list[Any]]:
    values = {}
    for f in dataclasses.fields(RunConfig):
        raw = getattr(args, f"set_{f.name}", None)
        if raw is not None:
            parts = [p for p in raw.split(",") if p.strip()]
            if not parts:
                raise ConfigError(f"{f.name}: empty value")
            values[f.name] = [_parse_value(f.name, str(f.type), p) for p in parts]
    return values


def _preset(args: argparse.Namespace) -> Preset:
    if args.preset not in PRESETS:
        raise UsageError(f"preset: {args.preset!r} is unknown (choose from {', '.join(PRESETS)})")
    return PRESETS[args.preset].override(_overrides(args))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="toyrelu", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    reproduce = commands.add_parser("reproduce", help="sweep, figures and summary in one folder")
    reproduce.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)}")
    reproduce.add_argument("--out", default="toyrelu-out", help="output folder")
    reproduce.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    _add_overrides(reproduce)

    sweep = commands.add_parser("sweep", help="run (or resume) a sweep into a store")
    sweep.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)}")
    sweep.add_argument("--store", required=True, help="SQLite file (created if missing)")
    sweep.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    _add_overrides(sweep)

    figures = commands.add_parser("figures", help="draw every figure a store supports")
    figures.add_argument("--store", required=True)
    figures.add_argument("--out", required=True, help="output folder")

    export = commands.add_parser("export", help="runs as CSV/JSON, or one run's arrays as .npz")
    export.add_argument("--store", required=True)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--out", default="-", help="file, or - for stdout")
    export.add_argument("--run", help="run_id whose arrays to export (with --arrays)")
    export.add_argument("--arrays", help="output .npz for --run")

    commands.add_parser("presets", help="list the presets")
    return parser


def _workers(args: argparse.Namespace) -> int:
    if args.workers is None:
        return default_workers()
    if args.workers < 1:
        raise UsageError(f"workers: {args.workers} must be an integer >= 1")
    return args.workers


def _sweep(preset: Preset, store: Store, workers: int) -> None:
    configs = preset.configs()
    print(f"toyrelu: preset {preset.name}: {len(configs)} runs into {store.path}", file=sys.stderr)
    report = run_sweep(configs, store, executor(workers), progress=sys.stderr)
    print(f"toyrelu: {report.ok} finished, {report.failed} failed, {report.skipped} already "
          f"stored", file=sys.stderr)


def write_figures(
    store: Store,
    out: Path,
    geometry_T: Sequence[int],
    run_ids: Collection[str] | None = None,
) -> tuple[list[str], Any]:
    """Draw every figure the store supports into ``out`` (PNG + SVG), from all its finished runs
    or those in ``run_ids``; returns the PNG names and the (per-T table, findings)."""
    from toyrelu import figures

    runs = analysis.ok_runs(store, run_ids)
    if runs.empty:
        raise StoreError(f"store: {store.path} holds no finished runs to draw")
    dims = analysis.dimensionality_table(store, runs)
    names = []
    geometry = analysis.geometry(store, runs, tuple(geometry_T))
    if geometry:
        figures.save(figures.geometry_grid(geometry), out, "geometry")
        names.append("geometry.png")
    for name, plot, table in (
        ("loss", figures.plot_loss, runs),
        ("norms", figures.plot_norms, runs),
    ):
        fig, ax = _axes()
        plot(ax, table)
        figures.save(fig, out, name)
        names.append(f"{name}.png")
    for m, part in dims.groupby("n_hidden"):
        fig, ax = _axes()
        figures.plot_dimensionality(ax, part)
        name = "dimensionality" if dims["n_hidden"].nunique() == 1 else f"dimensionality_m{m}"
        figures.save(fig, out, name)
        names.append(f"{name}.png")
    if runs["n_hidden"].nunique() == 1:
        figures.save(figures.summary_figure(runs, dims), out, "summary")
        names.insert(0, "summary.png")
    table = analysis.per_T(runs, dims)
    return names, (table, analysis.findings(table, dims))


def _axes() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    return fig, fig.add_subplot()


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"out: {out} exists and is not a folder")
    return out


def cmd_reproduce(args: argparse.Namespace) -> None:
    preset = _preset(args)
    workers = _workers(args)
    out = _out_dir(args.out)
    with Store(out / "runs.sqlite") as store:
        _sweep(preset, store, workers)
        # The folder may hold runs of another preset too: report on this preset's runs only.
        run_ids = {c.run_id for c in preset.configs()}
        names, (table, found) = write_figures(store, out, preset.geometry_T, run_ids)
        stored = store.runs()
        counts = stored[stored["run_id"].isin(run_ids)]["status"].value_counts().to_dict()
    settings = {"preset": preset.name, "description": preset.description}
    settings.update({k: v for k, v in preset.base.to_dict().items() if k not in preset.axes})
    settings.update({k: ", ".join(map(str, v)) for k, v in preset.axes.items()})
    text = summary.markdown(f"toyrelu reproduce: {preset.name}", settings, table, found, names,
                            counts)
    (out / "summary.md").write_text(text)
    for f in found:
        print(f"{'ok ' if f.holds else 'NOT'} {f.claim}: {f.measured}")
    print(f"toyrelu: figures and summary.md in {out}")


def cmd_sweep(args: argparse.Namespace) -> None:
    preset = _preset(args)
    workers = _workers(args)
    with Store(args.store) as store:
        _sweep(preset, store, workers)


def cmd_figures(args: argparse.Namespace) -> None:
    with Store(args.store, create=False) as store:
        names, _ = write_figures(store, _out_dir(args.out), PRESETS["quick"].geometry_T)
        runs = analysis.ok_runs(store)
    # Figures put T on x, average over seeds and split by m; any other setting that varies is
    # pooled, which the user should know about.
    pooled = [f for f in field_names() if f not in ("n_train", "seed", "n_hidden")
              and f in runs and runs[f].nunique(dropna=False) > 1]
    if pooled:
        print(f"toyrelu: note: the figures pool runs that differ in {', '.join(pooled)}",
              file=sys.stderr)
    print(f"toyrelu: wrote {', '.join(names)} (and SVG twins) to {args.out}")


def cmd_export(args: argparse.Namespace) -> None:
    with Store(args.store, create=False) as store:
        if args.run or args.arrays:
            if not (args.run and args.arrays):
                raise UsageError("export: --run and --arrays go together")
            arrays = store.arrays(args.run)
            with open(args.arrays, "wb") as f:  # a file object keeps the name exactly as given
                np.savez(f, **arrays)  # type: ignore[arg-type]
            print(f"toyrelu: wrote {', '.join(arrays)} of run {args.run} to {args.arrays}")
            return
        runs = store.runs()
    runs = runs.reindex(columns=EXPORT_COLUMNS + [c for c in runs if c not in EXPORT_COLUMNS])
    target = sys.stdout if args.out == "-" else args.out
    if args.format == "csv":
        runs.to_csv(target, index=False)
    else:
        runs.to_json(target, orient="records", indent=1, double_precision=15)


def cmd_presets(args: argparse.Namespace) -> None:
    for name, preset in PRESETS.items():
        print(f"{name}: {preset.description} ({len(preset.configs())} runs)")


COMMANDS = {
    "reproduce": cmd_reproduce,
    "sweep": cmd_sweep,
    "figures": cmd_figures,
    "export": cmd_export,
    "presets": cmd_presets,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except (UsageError, ConfigError, StoreError) as exc:
        print(f"toyrelu: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output path that cannot be written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"toyrelu: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("toyrelu: interrupted; finished runs are stored, rerun the same command to resume",
              file=sys.stderr)
        return 130
    return 0
