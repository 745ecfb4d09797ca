"""The mechanism study's per feature numbers at every T of a store, for what its report section
does not show (docs/experiment.md section 10).

The section shows Adam's gains and the per count table at the bump's T only. This prints, per
procedure and T, from every finished run of the store (with or without snapshots; a run
without has no gains, ``analysis.mechanism.load``):

- the tail table of the section (``tail_shares``);
- the stretched features (|W_i| > ``LONG``): how many per seed, their median b_i, and their
  share among the features seen once, twice and 3-5 times; the median b_i of those seen once;
- with ``--gains`` (slow: a full-batch gradient per snapshot of every run), the median Adam
  gain of the features seen 1-2 times, over training and over its second half.

    PYTHONPATH=src python benchmarks/mechanism_tables.py --store runs.sqlite [--gains]
"""

from __future__ import annotations

import argparse

import pandas as pd

from toyrelu import analysis
from toyrelu.analysis import mechanism
from toyrelu.analysis.tail import LONG
from toyrelu.core.config import LOSS_REDUCTIONS
from toyrelu.runs.store import Store


def stretched(features: pd.DataFrame) -> pd.DataFrame:
    """Per procedure and T: the stretched features (module docstring) and, where measured,
    the median gains of the features seen 1-``RARE`` times."""
    rows = []
    for (reduction, eps, T), part in features.groupby(mechanism.KEYS):
        long = part[part["W_norm"] > LONG]
        rare = part[(part["count"] >= 1) & (part["count"] <= mechanism.RARE)]
        row = {"loss_reduction": reduction, "eps": eps, "n_train": T,
               "stretched_per_seed": len(long) / part["seed"].nunique(),
               "stretched_b": long["b"].median(),
               "b_seen_once": part[part["count"] == 1]["b"].median(),
               "rare_gain": rare["gain"].median(), "rare_late_gain": rare["late_gain"].median()}
        for label in ("1", "2", "3-5"):
            seen = part[part["bin"] == label]
            row[f"stretched_seen_{label}"] = float((seen["W_norm"] > LONG).mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    rank = {r: k for k, r in enumerate(LOSS_REDUCTIONS)}
    return table.sort_values(["loss_reduction", "eps", "n_train"], key=lambda c: c.map(rank)
                             if c.name == "loss_reduction" else c).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--gains", action="store_true",
                        help="estimate Adam's gains of every snapshot run (slow)")
    args = parser.parse_args()
    with Store(args.store) as store:
        runs = analysis.ok_runs(store)
        measured = mechanism.measure(store, runs, None if args.gains else ())
    with pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.float_format", "{:.3g}".format):
        print(mechanism.tail_shares(measured).to_string(index=False))
        print()
        print(stretched(measured.features).to_string(index=False))


if __name__ == "__main__":
    main()
