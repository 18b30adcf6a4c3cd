"""Training parallel plans: the ``training-sim`` evaluator and its analytical model.

=================  ===========================================================================
space              ``search_spaces/training.py`` (``training``; its constraints are
                   ``_plan.plan_errors``, so space and simulator agree on validity)
evaluators         ``sim.py``: ``training-sim`` (:class:`TrainingSimEvaluator`)
model modules      ``_plan`` (config -> Plan, validity rules), ``_shapes`` (layer GEMM shapes,
                   FLOPs), ``_time`` (compute, communication, pipeline bubble), ``_memory``
                   (weights, gradients, optimizer state, activations per stage)
shared pieces      ``evaluators/_perf.py`` (roofline), ``evaluators/_catalog.py`` + ``catalog/``
data               ``data/*.csv``: published Megatron-LM runs with their citations
validation         ``validation.py`` (``tuner validate training``)
studies            ``studies/training-*.toml``, ``studies/quickstart.toml``
tests              ``tests/evaluators/training/``, ``tests/search_spaces/test_training_space.py``
figures            ``python -m tuner.benchmarks.training_speed``
bench problems     ``tuner/bench/problems.toml``: ``training-70b-h100x64``,
                   ``training-mixtral-a100x32``
=================  ===========================================================================
"""

from evaluators.training.sim import TrainingSimEvaluator, clear_caches

__all__ = ["TrainingSimEvaluator", "clear_caches"]
