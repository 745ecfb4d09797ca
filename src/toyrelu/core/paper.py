"""The paper's numbers, in one place: what "Superposition, Memorization, and Double Descent"
(Henighan et al., 2023) states, as docs/experiment.md restates it.

Everything that compares toyrelu with the paper (presets, claims, figures, the report) imports
these names; the tolerances with which a measurement counts as agreeing live beside the checks.
The paper works at n = 10,000 and S = 0.999; ``scale`` carries its T positions to another
sparsity.
"""

from __future__ import annotations

import math

# The setting (docs/experiment.md sections 2-3).
N_FEATURES = 10_000
SPARSITY = 0.999
DENSITY = 0.001  # 1 - S: each feature is active in 0.1% of examples
N_HIDDEN = 2
STEPS = 50_000
SEEDS = 4
# The reduced setting an independent replication used: the same phenomena at about 10x smaller T.
REDUCED_N_FEATURES = 1_000
REDUCED_SPARSITY = 0.99

# The T lists (section 5): the m = 2 sweep (T = infinity: a fresh batch every step) and the
# columns of the geometry figure.
T_LIST = (3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000,
          50_000, 100_000, 200_000, 500_000, math.inf)
GEOMETRY_T = (3, 5, 6, 8, 10, 15, 30)

# Figure 2, test loss at m = 2: a bump peaking at about 1.015 near T = 2,000, then just below
# predicting zero (L = 1) from T = 10,000 on, and at T = infinity.
BUMP_PEAK = 1.015
BUMP_T = 2_000
LARGE_T = 10_000
LARGE_T_LOSS = 0.999
INFINITE_T_LOSS = 0.9988
# Generalization (about five features learned) from the large T on.
ONSET_T = LARGE_T

# Figures 3-4: at large T five features (a pentagon) at D 0.2-0.3; ‖W‖_F peaks near T = 30 in
# the memorization regime and plateaus at sqrt(5), five unit-length features.
LEARNED_FEATURES = 5
PENTAGON_D = (0.2, 0.3)
NORM_PEAK_T = 30
W_NORM_PLATEAU = math.sqrt(LEARNED_FEATURES)

# Figure 5: the heatmap's grid and where its ridge of raised test loss sits per m.
HEATMAP_M = (2, 3, 4, 5, 6, 7, 8, 9, 10, 16)
HEATMAP_T = (200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000)
RIDGE_T = {2: 2_000, 4: 5_000, 8: 20_000}

# Appendix (m = 4): weight decay 1.0 removes the bump.
APPENDIX_N_HIDDEN = 4
BUMP_FREE_WEIGHT_DECAY = 1.0

# Repeated data (m = 2, T = 30,000): a point repeated about 5 times is memorized and displaces
# a pentagon feature; the boundary is about R = 0.4 T / n.
REPEATED_T = 30_000
REPEATED_T_OVER_N = REPEATED_T / N_FEATURES
REPEATS_MEMORISED = 5
BOUNDARY_SLOPE = 0.4

# Across sparsities, generalization starts once each feature has appeared about 10 times:
# T (1 - S) near 10.
ONSET_COUNT = 10.0


def scale(sparsity: float) -> float:
    """Factor from the paper's T (S = 0.999) to T at sparsity S: 0.001 / (1 - S). The
    transitions depend on how often each feature is seen, T (1 - S): the reduced setting
    (S = 0.99) has them at 10x smaller T."""
    return DENSITY / (1.0 - sparsity)
