"""Moved: ``QuantSimEvaluator`` lives in :mod:`tuner.evaluators.quant` (registered as
``tuner.evaluators.quant:QuantSimEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from tuner.evaluators.quant.sim import QuantSimEvaluator, quality_proxy, unit_drop

warnings.warn("tuner.evaluators.quant_sim moved to tuner.evaluators.quant "
              "(tuner.evaluators.quant:QuantSimEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["QuantSimEvaluator", "quality_proxy", "unit_drop"]
