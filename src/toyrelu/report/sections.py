"""What each experiment contributes to the report: figures, tables and checked claims.

A provider is ``section(store, out) -> Section | None``: it draws its figures into ``out`` from
the store's finished runs (None when the store holds none of its runs) and returns what the
report shows. The experiments' records (``toyrelu.experiments``) are the built-in providers and
define ``Section`` and ``Figure``, re-exported here for the report and for other providers; the
report (``toyrelu.report.build``) only lays sections out.
"""

from toyrelu.experiments.record import Figure, Section

__all__ = ["Figure", "Section"]
