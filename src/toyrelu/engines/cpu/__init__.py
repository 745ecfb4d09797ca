"""The fused CPU engine: ``engine`` trains, ``kernels`` generates and compiles the fused step,
``cells`` the split-cell step, ``cache`` keeps the compiled kernels on disk."""
