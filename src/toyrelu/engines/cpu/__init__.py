"""The fused CPU engine: ``engine`` trains; ``kernels`` generates the fused step's kernels and
``drivers`` holds its compiled loops; ``cells`` and ``cell_drivers`` do the same for the
split-cell step; ``target`` sets what they compile for, and ``cache`` keeps them on disk.

``MAX_HIDDEN`` is the largest hidden size the kernels are generated for: their source grows
with m, and so does their compile time, to minutes past it (docs/engines.md, "Limits")."""

MAX_HIDDEN = 64
