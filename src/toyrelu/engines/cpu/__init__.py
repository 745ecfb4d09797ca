"""The fused CPU engine: ``engine`` trains; ``kernels`` generates the fused step's kernels and
``drivers`` holds its compiled loops; ``cells`` and ``cell_drivers`` do the same for the
split-cell step; ``target`` sets what they compile for, and ``cache`` keeps them on disk."""
