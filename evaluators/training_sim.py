"""Moved: ``TrainingSimEvaluator`` lives in :mod:`evaluators.training` (registered as
``evaluators.training:TrainingSimEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from evaluators.training.sim import DEFAULT_OPTIONS, TrainingSimEvaluator, estimate

warnings.warn("evaluators.training_sim moved to evaluators.training "
              "(evaluators.training:TrainingSimEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["DEFAULT_OPTIONS", "TrainingSimEvaluator", "estimate"]
