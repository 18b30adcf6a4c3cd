"""Moved: ``KernelGpuEvaluator`` lives in :mod:`tuner.evaluators.kernels` (registered as
``tuner.evaluators.kernels:KernelGpuEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from tuner.evaluators.kernels.gpu import (
    NO_GPU,
    TOLERANCE,
    KernelGpuEvaluator,
    max_rel_error,
    reference_attention,
)

warnings.warn("tuner.evaluators.kernel_gpu moved to tuner.evaluators.kernels "
              "(tuner.evaluators.kernels:KernelGpuEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["KernelGpuEvaluator", "NO_GPU", "TOLERANCE", "max_rel_error", "reference_attention"]
