"""LLM serving plans and scheduler knobs: ``serving-sim`` (simulated) and ``serving-real``.

=================  ===========================================================================
space              ``search_spaces/serving.py`` (``serving``; its constraints are
                   ``_plan.problems``, so space and simulator agree on validity)
evaluators         ``sim.py``: ``serving-sim`` (:class:`ServingSimEvaluator`, discrete-event
                   simulator); ``real.py``: ``serving-real`` (:class:`ServingRealEvaluator`, a
                   real engine per config, measured under the same workload and metric names)
model modules      ``_plan`` (config -> plan per engine), ``_geometry`` (per-GPU shapes and
                   memory), ``_latency`` (GPU step times), ``_cpu_plan`` / ``_cpu_latency``
                   (llama.cpp on a CPU profile), ``_engine`` (one engine's scheduler and KV
                   cache), ``_decoders`` (the decode aggregate), ``_cluster`` (API front end,
                   replicas, router, prefill/decode split), ``_workloads`` (arrivals, lengths,
                   traces),
                   ``_engines`` (config -> each real engine's flags), ``_load`` (drives a
                   workload against a live endpoint)
shared pieces      ``evaluators/_perf.py`` (roofline), ``evaluators/_catalog.py`` + ``catalog/``
                   (``catalog/workloads/`` holds the named workloads)
profiles           ``profiles/<engine>.toml``: vllm, sglang, trtllm, llama.cpp (constants with
                   sources, ``[fit]`` bounds for ``tuner calibrate``)
data               ``data/validation/`` (published runs per engine and effects, with a
                   README), ``data/cpu_example.toml`` (a measured CPU hardware profile)
validation         ``validation.py`` (``tuner validate serving``; ``--fit`` re-fits constants)
studies            ``studies/serving-*.toml``
tests              ``tests/evaluators/serving/``, ``tests/search_spaces/test_serving_space.py``
figures            ``python -m tuner.benchmarks.serving_speed``
bench problems     ``tuner/bench/problems.toml``: ``serving-70b-goodput``,
                   ``serving-70b-cost-latency``
=================  ===========================================================================
"""

from tuner.evaluators.serving.real import ServingRealEvaluator
from tuner.evaluators.serving.sim import ServingSimEvaluator, clear_caches

__all__ = ["ServingRealEvaluator", "ServingSimEvaluator", "clear_caches"]
