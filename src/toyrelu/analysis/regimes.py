"""The regimes of T read from a test-loss curve: where generalization starts, and the bump.

The paper's figure 2 (docs/experiment.md section 5): the test loss is about 1 or above in the
memorization regime, rises to a bump in the middle regime, then falls below 1 once features are
learned. The bump is therefore the peak that the curve falls from into generalization, not the
highest loss over T: small T can cost as much or more (an irregular triangle at T = 3, a
training set the model did not quite memorize at T = 10), and it belongs to another regime.
Every table, claim and sentence that names "the bump" takes it from ``bump`` (the definition,
with the measurements that motivate it, is docs/experiment.md section 5, "The bump").

Pure numpy: a curve is a sequence of mean test losses ordered by T (T = infinity last).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bump", "generalizes_from", "holds_from"]


def holds_from(flags: Sequence[bool] | np.ndarray) -> int:
    """The index from which every one of ``flags`` holds to the end (``len(flags)`` when the
    last does not): where a transition settles for good."""
    failing = np.flatnonzero(~np.asarray(flags, dtype=bool))
    return 0 if len(failing) == 0 else int(failing[-1]) + 1


def generalizes_from(losses: Sequence[float] | np.ndarray) -> int:
    """The index of the T from which the test loss stays below the zero predictor's 1 to the
    end of the curve (``len(losses)`` when its last T is not below 1)."""
    return holds_from(np.asarray(losses, dtype=float) < 1.0)


def bump(losses: Sequence[float] | np.ndarray) -> int:
    """The index of the bump of a test-loss curve ordered by T: the peak of its last rise
    before it settles below 1.

    From the last T before ``generalizes_from`` the curve is walked towards smaller T while the
    loss keeps rising; the bump is where it stops rising, the local maximum nearest to
    generalization. Earlier maxima (the memorization regime's) are never taken, however high.
    A curve that never settles below 1 is walked from its last T; one below 1 at every T has no
    rise, and its highest point is returned (below 1: no bump, as every caller checks).

    A non-finite loss (NaN where no run of a T has a test loss, infinity where one diverged)
    is no point of the curve: the bump is found among the finite losses, and the index is into
    ``losses`` as given. The index may be the first or the last T: callers that need a bump
    inside the T range check for that themselves. ValueError on a curve with no finite loss.
    """
    values = np.asarray(losses, dtype=float)
    kept = np.flatnonzero(np.isfinite(values))
    if kept.size == 0:
        raise ValueError(f"bump: a test-loss curve with no finite loss ({values.size} points)")
    finite = values[kept]
    start = generalizes_from(finite)
    if start == 0:
        return int(kept[np.argmax(finite)])
    top = start - 1
    while top > 0 and finite[top - 1] > finite[top]:
        top -= 1
    return int(kept[top])
