"""Figures drawn from tables computed elsewhere: ``plot_x(ax, table, *, style=None) -> Axes``.

``base`` (the style, the m = 2 figures and ``save``, re-exported here), ``experiments`` (the
helpers the experiments' records draw with: T axes with infinity, curves per value), ``sensitivity``
and ``animation``. Each experiment's own figure is drawn by its record (``toyrelu.experiments``).
"""

from toyrelu.figures.base import (
    T_LABEL,
    Style,
    as_style,
    geometry_grid,
    label_T_axes,
    plot_dimensionality,
    plot_features,
    plot_hidden,
    plot_loss,
    plot_norms,
    save,
    summary_figure,
)

__all__ = ["T_LABEL", "Style", "as_style", "geometry_grid", "label_T_axes",
           "plot_dimensionality", "plot_features", "plot_hidden", "plot_loss", "plot_norms",
           "save", "summary_figure"]
