"""Tables and checked claims computed from stored runs; nothing here draws.

``tables`` (the m = 2 sweep's tables and findings, re-exported here), ``regimes`` (where a
test-loss curve generalizes and its bump: the one definition of the bump), ``curves`` (the
tables the other experiments share: curves, bumps, trends), ``procedures`` (which training
procedure runs follow: a summed or an averaged loss, never pooled), ``sensitivity`` (the
sensitivity study) and ``dynamics`` (one run's snapshots). Each experiment's own tables and
claims are in its record, ``toyrelu.experiments``.
"""

from toyrelu.analysis.tables import (
    LEARNED_D,
    POSITION_FACTOR,
    SWEPT,
    Finding,
    dimensionality_table,
    findings,
    geometry,
    mark_kept,
    ok_runs,
    per_T,
    setting_keys,
)
from toyrelu.core.config import fmt_T

__all__ = ["LEARNED_D", "POSITION_FACTOR", "SWEPT", "Finding",
           "dimensionality_table", "findings", "fmt_T", "geometry", "mark_kept", "ok_runs",
           "per_T", "setting_keys"]
