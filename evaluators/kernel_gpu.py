"""Moved: ``KernelGpuEvaluator`` lives in :mod:`evaluators.kernels` (registered as
``evaluators.kernels:KernelGpuEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from evaluators.kernels.gpu import (
    NO_GPU,
    TOLERANCE,
    KernelGpuEvaluator,
    max_rel_error,
    reference_attention,
)

warnings.warn("evaluators.kernel_gpu moved to evaluators.kernels "
              "(evaluators.kernels:KernelGpuEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["KernelGpuEvaluator", "NO_GPU", "TOLERANCE", "max_rel_error", "reference_attention"]
