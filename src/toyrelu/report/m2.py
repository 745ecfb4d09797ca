"""The m = 2 figures and findings of ``toyrelu figures`` and ``toyrelu reproduce``.

Everything about the m = 2 double-descent experiment lives in its record,
``toyrelu.experiments.double_descent``; this module keeps the command line's entry point.
"""

from toyrelu.experiments.double_descent import write_figures

__all__ = ["write_figures"]
