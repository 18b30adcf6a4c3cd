"""Moved: ``KernelSimEvaluator`` lives in :mod:`tuner.evaluators.kernels` (registered as
``tuner.evaluators.kernels:KernelSimEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from tuner.evaluators.kernels.sim import DEFAULTS, KernelSimEvaluator, best_config

warnings.warn("tuner.evaluators.kernel_sim moved to tuner.evaluators.kernels "
              "(tuner.evaluators.kernels:KernelSimEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["DEFAULTS", "KernelSimEvaluator", "best_config"]
