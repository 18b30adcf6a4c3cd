"""Deployments across domains: ``deployment-sim`` scores a serving plan x quantization mix x
scheduler knobs x kernel tiles jointly, composing the other wings' models.

=================  ===========================================================================
space              ``search_spaces/deployment.py`` (``deployment``; its constraints are
                   ``_compose.problems``, so space and simulator agree on validity)
evaluators         ``sim.py``: ``deployment-sim`` (:class:`DeploymentSimEvaluator`)
model modules      ``_keys`` (config keys and the domain of each), ``_mix`` (a quantization
                   mix through ``tuner.evaluators.quant``: size, quality, bytes and compute
                   dtype per layer group), ``_kernels`` (dominant GEMM shapes and tiles through
                   ``tuner.evaluators.kernels``), ``_compose`` (the serving plan with the mix's
                   weights and the kernels' multipliers, and the reasons it cannot run)
pipelines          ``pipelines.py``: the joint search, the sequential practitioner pipeline
                   (mix for quality and size, then plan, then tiles) and uniform fp8 / int4
shared pieces      ``evaluators/serving`` (hooks ``Plan.weight_mix``, ``Plan.gemm_time_scale``),
                   ``evaluators/quant``, ``evaluators/kernels``, ``evaluators/catalog/``
studies            ``studies/deployment-*.toml``
tests              ``tests/evaluators/deployment/``,
                   ``tests/search_spaces/test_deployment_space.py``
figures            ``python -m tuner.benchmarks.deployment_joint``
=================  ===========================================================================
"""

from tuner.evaluators.deployment._compose import compose, problems
from tuner.evaluators.deployment._kernels import TILE_CHOICES
from tuner.evaluators.deployment._keys import DOMAIN_OF, DOMAINS
from tuner.evaluators.deployment.sim import DeploymentSimEvaluator

__all__ = ["DOMAINS", "DOMAIN_OF", "TILE_CHOICES", "DeploymentSimEvaluator", "compose",
           "problems"]
