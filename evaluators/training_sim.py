"""Moved: ``TrainingSimEvaluator`` lives in :mod:`tuner.evaluators.training` (registered as
``tuner.evaluators.training:TrainingSimEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from tuner.evaluators.training.sim import DEFAULT_OPTIONS, TrainingSimEvaluator, estimate

warnings.warn("tuner.evaluators.training_sim moved to tuner.evaluators.training "
              "(tuner.evaluators.training:TrainingSimEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["DEFAULT_OPTIONS", "TrainingSimEvaluator", "estimate"]
