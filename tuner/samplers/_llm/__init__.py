"""The LLM proposer: an OpenAI-compatible chat model proposes configs, checked as data.

``_sampler`` holds ``LLMSampler`` and the registry factory ``llm`` (registry name ``llm``),
``_client`` the stdlib chat client (timeouts, reply-size cap, API key from the environment
only), ``_prompt`` what the model is told and how its reply is parsed and checked.
"""

from tuner.samplers._llm._sampler import (
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

__all__ = ["BASE_URL_ENV", "LEDGER_ATTR", "MODEL_ENV", "POINT_ATTR", "SOURCE_ATTR",
           "TRIAL_LEDGER_ATTR", "LLMSampler", "llm", "new_ledger"]
