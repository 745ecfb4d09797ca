"""Training engines, each keeping the contract of ``toyrelu.core.trainer``.

``reference`` (plain PyTorch autograd, the oracle every fast engine is tested against), ``cpu``
(the fused numba engine) and ``gpu`` (batched Triton kernels). Engines do not import each other.
"""
