"""Deprecated import path of the LLM proposer (removed in 0.3.0).

Name the sampler ``llm`` in a study file; the code lives in ``tuner.samplers._llm``.
"""

import warnings

from tuner.samplers._llm import (
    BASE_URL_ENV,
    LEDGER_ATTR,
    MODEL_ENV,
    POINT_ATTR,
    SOURCE_ATTR,
    TRIAL_LEDGER_ATTR,
    LLMSampler,
    llm,
    new_ledger,
)

warnings.warn("tuner.samplers.llm is deprecated and will be removed in 0.3.0: use the sampler "
              "name 'llm' or import from tuner.samplers._llm (tuner.samplers._llm:llm)",
              FutureWarning, stacklevel=2)

__all__ = ["BASE_URL_ENV", "LEDGER_ATTR", "MODEL_ENV", "POINT_ATTR", "SOURCE_ATTR",
           "TRIAL_LEDGER_ATTR", "LLMSampler", "llm", "new_ledger"]
