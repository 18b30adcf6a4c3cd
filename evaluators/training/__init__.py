"""Training parallel plans: the ``training-sim`` evaluator and its analytical model.

=================  ===========================================================================
space              ``search_spaces/training.py`` (``training``; its constraints are
                   ``_plan.plan_errors``, so space and simulator agree on validity)
evaluators         ``sim.py``: ``training-sim`` (:class:`TrainingSimEvaluator`)
model modules      ``_plan`` (config -> Plan, validity rules), ``_profile`` (stack profiles:
                   schema, loading, hot-loop constants), ``_stages`` (pipeline layouts, even
                   or not), ``_shapes`` (layer GEMM shapes, FLOPs), ``_time`` (layer compute,
                   TP/CP communication and its overlap), ``_moe`` (router, expert GEMMs,
                   dispatch), ``_memory`` (model state, activations, allowance per stage),
                   ``_step`` (pipeline, data-parallel / ZeRO / FSDP collectives, optimizer)
profiles           ``profiles/<framework>.toml``: megatron, torchtitan, fsdp, deepspeed
shared pieces      ``evaluators/_perf.py`` (roofline), ``evaluators/_catalog.py`` + ``catalog/``,
                   ``evaluators/_profiles.py`` + ``_calibration.py`` (profiles, calibration)
data               ``data/*.csv``: Megatron-LM A100 tables; ``data/validation/*.csv``: published
                   runs per stack with citations and fit/validation split (its README);
                   ``data/attention_kernels.toml``: fused-attention efficiency per kernel
validation         ``validation.py`` (``tuner validate training``; ``--fit FRAMEWORK``),
                   ``_reference.py`` (reference rows, the sources' FLOP definitions)
studies            ``studies/training-*.toml``, ``studies/quickstart.toml``
tests              ``tests/evaluators/training/``, ``tests/search_spaces/test_training_space.py``
figures            ``python -m tuner.benchmarks.training_speed``
bench problems     ``tuner/bench/problems.toml``: ``training-70b-h100x64``,
                   ``training-mixtral-a100x32``
=================  ===========================================================================
"""

from tuner.evaluators.training.sim import TrainingSimEvaluator, clear_caches

__all__ = ["TrainingSimEvaluator", "clear_caches"]
