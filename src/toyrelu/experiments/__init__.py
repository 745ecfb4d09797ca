"""The experiments of the paper, one record each (``record.Experiment``).

A record holds an experiment's swept setting, its run filter, the paper's claims it checks
(with the paper's numbers from ``toyrelu.core.paper``), its figures and its report section, in
one module: ``double_descent`` (m = 2, figures 1-4), ``heatmap`` (figure 5), ``weight_decay``
and ``training_length`` (the appendix), ``repeated`` and ``sparsity`` (follow-ups) and
``max_dimensionality`` (D*), and ``mechanism`` (why the procedure decides the bump, measured
per feature). ``RECORDS`` lists them in the report's order, by the key presets
name them by (``Preset.experiment``); ``common`` holds what their sections share. To add an
experiment, write its module with a ``RECORD`` and list it here.
"""

from toyrelu.experiments import (
    double_descent,
    heatmap,
    max_dimensionality,
    mechanism,
    repeated,
    sparsity,
    training_length,
    weight_decay,
)
from toyrelu.experiments.record import Claim, Experiment, Figure, Section

RECORDS: dict[str, Experiment] = {record.key: record for record in (
    double_descent.RECORD, heatmap.RECORD, weight_decay.RECORD, training_length.RECORD,
    repeated.RECORD, sparsity.RECORD, max_dimensionality.RECORD, mechanism.RECORD)}

__all__ = ["RECORDS", "Claim", "Experiment", "Figure", "Section"]
