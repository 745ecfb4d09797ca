"""Figures drawn from tables computed elsewhere: ``plot_x(ax, table, *, style=None) -> Axes``.

``base`` (the style, the m = 2 figures and ``save``, re-exported here), ``experiments``,
``sensitivity`` and ``animation``.
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
