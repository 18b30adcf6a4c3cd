"""Moved: ``KernelReplayEvaluator`` lives in :mod:`tuner.evaluators.kernels` (registered as
``tuner.evaluators.kernels:KernelReplayEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from tuner.evaluators.kernels.replay import (
    DATA_DIR,
    SCHEMA,
    KernelReplayEvaluator,
    ReplayTable,
    iter_shapes,
    resolve_table,
    table_names,
)

warnings.warn("tuner.evaluators.kernel_replay moved to tuner.evaluators.kernels "
              "(tuner.evaluators.kernels:KernelReplayEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["DATA_DIR", "KernelReplayEvaluator", "ReplayTable", "SCHEMA", "iter_shapes",
           "resolve_table", "table_names"]
