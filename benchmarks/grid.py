"""Command-line options shared by the benchmarks that train a grid of runs over (m, T)."""

from __future__ import annotations

import argparse


def add_grid_arguments(parser: argparse.ArgumentParser, *, steps: int, n_train: str,
                       n_hidden: str) -> None:
    """--n-features, --sparsity (default: the reduced setting), --steps, and the comma lists
    --n-train (T) and --n-hidden (m), with the given defaults."""
    parser.add_argument("--n-features", type=int, default=1_000)
    parser.add_argument("--sparsity", type=float, default=0.99)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--n-train", default=n_train, help="comma list of T")
    parser.add_argument("--n-hidden", default=n_hidden, help="comma list of m")


def values(text: str) -> list[int]:
    """The integers of a comma list."""
    return [int(value) for value in text.split(",")]
