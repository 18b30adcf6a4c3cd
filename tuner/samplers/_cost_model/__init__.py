"""The learned cost-model sampler (registry name ``cost-model``), one part per module.

``_sampler``: ``CostModelSampler`` (Optuna's sampler interface and the proposal loop);
``_factory``: the registry factory ``cost_model`` (options, warm starts). ``_history``:
finished trials as observations. ``_universe``: the featurized candidate universe (valid pool,
validity cache, local moves, process-wide grid and featurizer caches). ``_surrogate``: the
models (boosted trees, Bayesian ridge, their blend). ``_acquisition``: scores as pure
functions (P(feasible), expected and hypervolume improvement, Chebyshev scalarization).
``_trust``: the trust region around the incumbent. ``_prior``: warm starts from a stored
study, an analytical evaluator's sample or a screen of every config.
"""

from tuner.samplers._cost_model._factory import cost_model
from tuner.samplers._cost_model._history import (
    POINT_ATTR,
    SOURCE_ATTR,
    Observation,
    observation_from_trial,
)
from tuner.samplers._cost_model._prior import PriorData, prior_from_evaluator, prior_from_study
from tuner.samplers._cost_model._sampler import CostModelSampler
from tuner.samplers._cost_model._universe import shared_featurizer, valid_grid

__all__ = ["POINT_ATTR", "SOURCE_ATTR", "CostModelSampler", "Observation", "PriorData",
           "cost_model", "observation_from_trial", "prior_from_evaluator", "prior_from_study",
           "shared_featurizer", "valid_grid"]
