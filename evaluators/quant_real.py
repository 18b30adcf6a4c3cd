"""Moved: ``QuantRealEvaluator`` lives in :mod:`tuner.evaluators.quant` (registered as
``tuner.evaluators.quant:QuantRealEvaluator``).
This module path is kept for one release and removed in 0.3.0."""

import warnings

from tuner.evaluators.quant.real import MiniLM, QuantRealEvaluator, load_corpus

warnings.warn("tuner.evaluators.quant_real moved to tuner.evaluators.quant "
              "(tuner.evaluators.quant:QuantRealEvaluator); "
              "the old path is removed in 0.3.0", FutureWarning, stacklevel=2)

__all__ = ["MiniLM", "QuantRealEvaluator", "load_corpus"]


if __name__ == "__main__":  # ``python -m tuner.evaluators.quant_real --measure-sensitivity``
    import sys

    from tuner.evaluators.quant.sensitivity import main

    main([a for a in sys.argv[1:] if a != "--measure-sensitivity"])
