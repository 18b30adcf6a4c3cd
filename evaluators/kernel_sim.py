"""Moved: ``KernelSimEvaluator`` lives in :mod:`evaluators.kernels` (registered as
``evaluators.kernels:KernelSimEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from evaluators.kernels.sim import DEFAULTS, KernelSimEvaluator, best_config

warnings.warn("evaluators.kernel_sim moved to evaluators.kernels "
              "(evaluators.kernels:KernelSimEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["DEFAULTS", "KernelSimEvaluator", "best_config"]
