"""Name -> import path registries for spaces, evaluators and samplers (imported lazily).

A name may also be an import path ``package.module:Class`` so that users plug in their own
evaluator or space without editing this file.
"""

from __future__ import annotations

import importlib
from typing import Any

from tuner._errors import UnknownName

SPACES: dict[str, str] = {
    "training": "search_spaces.training:TrainingSpace",
    "serving": "search_spaces.serving:ServingSpace",
    "kernel-gemm": "search_spaces.kernels:GemmTileSpace",
    "kernel-attention": "search_spaces.kernels:AttentionTileSpace",
    "quantization": "search_spaces.quantization:QuantSpace",
}

EVALUATORS: dict[str, str] = {
    "training-sim": "evaluators.training_sim:TrainingSimEvaluator",
    "serving-sim": "evaluators.serving_sim:ServingSimEvaluator",
    "kernel-sim": "evaluators.kernel_sim:KernelSimEvaluator",
    "kernel-gpu": "evaluators.kernel_gpu:KernelGpuEvaluator",
    "kernel-replay": "evaluators.kernel_replay:KernelReplayEvaluator",
    "quant-real": "evaluators.quant_real:QuantRealEvaluator",
    "quant-sim": "evaluators.quant_sim:QuantSimEvaluator",
    "command": "evaluators.command:CommandEvaluator",
    "serving-real": "evaluators.serving.real:ServingRealEvaluator",
}

#: sampler factories: ``factory(space, directions, seed, **options) -> optuna BaseSampler``
SAMPLERS: dict[str, str] = {
    "tpe": "tuner.samplers._optuna:tpe",
    "nsga2": "tuner.samplers._optuna:nsga2",
    "gp": "tuner.samplers._optuna:gp",
    "cmaes": "tuner.samplers._optuna:cmaes",
    "random": "tuner.samplers._optuna:random",
    "grid": "tuner.samplers._grid:grid",
    "cost-model": "tuner.samplers._cost_model:cost_model",
    "llm": "tuner.samplers._llm:llm",
}


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def resolve(kind: str, table: dict[str, str], name: str) -> Any:
    """The object registered as ``name`` in ``table``; ``kind`` names the field in errors."""
    if name in table:
        return _load(table[name])
    if isinstance(name, str) and ":" in name:
        try:
            return _load(name)
        except (ImportError, AttributeError) as exc:
            raise UnknownName(kind, name, list(table)) from exc
    raise UnknownName(kind, name, list(table))


def space_class(name: str) -> Any:
    return resolve("space.domain", SPACES, name)


def evaluator_class(name: str) -> Any:
    return resolve("evaluator.name", EVALUATORS, name)


def sampler_factory(name: str) -> Any:
    return resolve("sampler.name", SAMPLERS, name)


def make_evaluator(name: str, options: dict[str, Any] | None = None) -> Any:
    return evaluator_class(name)(**(options or {}))

#: ``tuner validate DOMAIN``: functions returning a ``tuner._validation.ValidationReport``
VALIDATIONS: dict[str, str] = {
    "training": "evaluators.validate_training:run",
    "serving": "evaluators.validate_serving:run",
    "kernels": "evaluators.validate_kernels:run",
    "quantization": "evaluators.validate_quant:run",
}
