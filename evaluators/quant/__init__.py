"""Quantization mixes: ``quant-sim`` (memory/roofline model + quality proxy) and ``quant-real``.

=================  ===========================================================================
space              ``search_spaces/quantization.py`` (``quantization``)
evaluators         ``sim.py``: ``quant-sim`` (:class:`QuantSimEvaluator`); ``real.py``:
                   ``quant-real`` (:class:`QuantRealEvaluator`, MiniLM quantized on the CPU)
model modules      ``_plan`` (formats, bits, targets, plans, budgets, sensitivity data),
                   ``_quantize`` (torch quantized linears and fake-quant of weights and KV)
tools              ``python -m tuner.evaluators.quant.sensitivity`` re-measures the sensitivity
                   table
shared pieces      ``evaluators/_perf.py`` (roofline), ``evaluators/_catalog.py`` + ``catalog/``
data               ``data/``: corpus, measured MiniLM sensitivity, validation mixes (README)
validation         ``validation.py`` (``tuner validate quantization``)
studies            ``studies/quant-*.toml``
tests              ``tests/evaluators/quant/``, ``tests/search_spaces/test_quant_space.py``
figures            ``python -m tuner.benchmarks.quant_results``
bench problems     ``tuner/bench/problems.toml``: ``quant-70b-latency-at-quality``,
                   ``quant-70b-quality-size-latency``
=================  ===========================================================================

Besides the evaluators, the face exports the model pieces that baselines and figures build on.
"""

from tuner.evaluators.quant._plan import (
    MINILM,
    ROLES,
    Target,
    bits_per_weight,
    build_plan,
    depth_profile,
    minilm_sensitivity,
    resolve_target,
    size_gib,
    uniform_config,
)
from tuner.evaluators.quant.real import QuantRealEvaluator
from tuner.evaluators.quant.sim import QuantSimEvaluator, role_mean, unit_drop

__all__ = ["MINILM", "ROLES", "QuantRealEvaluator", "QuantSimEvaluator", "Target",
           "bits_per_weight", "build_plan", "depth_profile", "minilm_sensitivity",
           "resolve_target", "role_mean", "size_gib", "uniform_config", "unit_drop"]
