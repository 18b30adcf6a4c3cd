"""Kernel tile sizes (Triton GEMM and FlashAttention forward): model, real kernels and replay.

=================  ===========================================================================
space              ``search_spaces/kernels.py`` (``kernel-gemm``, ``kernel-attention``); its
                   parameters and constraints come from ``_tiles``
evaluators         ``sim.py``: ``kernel-sim`` (:class:`KernelSimEvaluator`, analytical tile
                   model); ``gpu.py``: ``kernel-gpu`` (:class:`KernelGpuEvaluator`, compiled
                   and timed); ``replay.py``: ``kernel-replay`` (:class:`KernelReplayEvaluator`)
model modules      ``_tiles`` (contexts, choices, resources, occupancy, validity reasons),
                   ``_triton`` (the Triton kernels), ``_replay_analysis`` (replay-table figures)
shared pieces      ``evaluators/_perf.py``, ``evaluators/_catalog.py`` + ``catalog/``,
                   ``evaluators/data/gemm/`` (measured H100 GEMMs: _perf's curve, validation)
data               ``data/replay/``: recorded replay tables (README)
validation         ``validation.py`` (``tuner validate kernels``)
studies            ``studies/kernel-*.toml``
tests              ``tests/evaluators/kernels/``, ``tests/search_spaces/test_kernel_spaces.py``
figures            ``python -m tuner.benchmarks.kernel_speed``, ``kernel_sweep`` (records a
                   replay table on a GPU), ``kernel_analysis`` (figures from a table)
bench problems     ``tuner/bench/problems.toml``: ``gemm-4096-bf16``, ``gemm-decode-fp8``,
                   ``attention-8k-causal``
=================  ===========================================================================
"""

from tuner.evaluators.kernels._replay_analysis import (
    WITHIN,
    ShapeResult,
    analyse,
    measurements_to_within,
    summary,
)
from tuner.evaluators.kernels.gpu import KernelGpuEvaluator
from tuner.evaluators.kernels.replay import KernelReplayEvaluator, ReplayTable, resolve_table
from tuner.evaluators.kernels.sim import KernelSimEvaluator, best_config

__all__ = ["WITHIN", "KernelGpuEvaluator", "KernelReplayEvaluator", "KernelSimEvaluator",
           "ReplayTable", "ShapeResult", "analyse", "best_config", "measurements_to_within",
           "resolve_table", "summary"]
