"""Moved: ``QuantSimEvaluator`` lives in :mod:`evaluators.quant` (registered as
``evaluators.quant:QuantSimEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from evaluators.quant.sim import QuantSimEvaluator, quality_proxy, unit_drop

warnings.warn("evaluators.quant_sim moved to evaluators.quant "
              "(evaluators.quant:QuantSimEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["QuantSimEvaluator", "quality_proxy", "unit_drop"]
