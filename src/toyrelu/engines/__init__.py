"""Training engines. ``reference`` and ``cpu`` keep the contract of ``toyrelu.core.trainer``;
``gpu`` trains a batch of runs at once (``train_many``), each as that contract says.

``reference`` (plain PyTorch autograd, the oracle every fast engine is tested against), ``cpu``
(the fused numba engine) and ``gpu`` (batched Triton kernels). Engines do not import each other.
"""
