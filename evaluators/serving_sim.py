"""Moved: ``ServingSimEvaluator`` lives in :mod:`tuner.evaluators.serving` (registered as
``tuner.evaluators.serving:ServingSimEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from tuner.evaluators.serving.sim import METRICS, ServingSimEvaluator, percentile, serving_metrics

warnings.warn("tuner.evaluators.serving_sim moved to tuner.evaluators.serving "
              "(tuner.evaluators.serving:ServingSimEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["METRICS", "ServingSimEvaluator", "percentile", "serving_metrics"]
