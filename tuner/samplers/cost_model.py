"""Deprecated import path of the cost-model sampler (removed in 0.3.0).

Name the sampler ``cost-model`` in a study file; the code lives in
``tuner.samplers._cost_model``.
"""

import warnings

from tuner.samplers._cost_model import (
    POINT_ATTR,
    SOURCE_ATTR,
    CostModelSampler,
    Observation,
    PriorData,
    cost_model,
    observation_from_trial,
    prior_from_evaluator,
    prior_from_study,
    shared_featurizer,
    valid_grid,
)

warnings.warn("tuner.samplers.cost_model is deprecated and will be removed in 0.3.0: use the "
              "sampler name 'cost-model' or import from tuner.samplers._cost_model "
              "(tuner.samplers._cost_model:cost_model)", FutureWarning, stacklevel=2)

__all__ = ["POINT_ATTR", "SOURCE_ATTR", "CostModelSampler", "Observation", "PriorData",
           "cost_model", "observation_from_trial", "prior_from_evaluator", "prior_from_study",
           "shared_featurizer", "valid_grid"]
