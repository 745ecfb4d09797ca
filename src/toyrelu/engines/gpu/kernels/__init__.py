"""Triton kernels of the GPU engine: ``dense`` (passes A and B), ``dots`` (their tensor-core
forms), ``update`` (AdamW), ``cell_bounds`` and ``cell_pairs`` (the split-cell step)."""
