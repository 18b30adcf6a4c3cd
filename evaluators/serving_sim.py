"""Moved: ``ServingSimEvaluator`` lives in :mod:`evaluators.serving` (registered as
``evaluators.serving:ServingSimEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from evaluators.serving.sim import METRICS, ServingSimEvaluator, percentile, serving_metrics

warnings.warn("evaluators.serving_sim moved to evaluators.serving "
              "(evaluators.serving:ServingSimEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["METRICS", "ServingSimEvaluator", "percentile", "serving_metrics"]
