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
    "training-sim": "evaluators.training:TrainingSimEvaluator",
    "serving-sim": "evaluators.serving:ServingSimEvaluator",
    "kernel-sim": "evaluators.kernels:KernelSimEvaluator",
    "kernel-gpu": "evaluators.kernels:KernelGpuEvaluator",
    "kernel-replay": "evaluators.kernels:KernelReplayEvaluator",
    "quant-real": "evaluators.quant:QuantRealEvaluator",
    "quant-sim": "evaluators.quant:QuantSimEvaluator",
    "command": "evaluators.command:CommandEvaluator",
    "serving-real": "evaluators.serving:ServingRealEvaluator",
}

#: sampler factories: ``factory(space, directions, seed, **options) -> optuna BaseSampler``
SAMPLERS: dict[str, str] = {
    "tpe": "tuner.samplers._optuna:tpe",
    "nsga2": "tuner.samplers._optuna:nsga2",
    "gp": "tuner.samplers._optuna:gp",
    "cmaes": "tuner.samplers._optuna:cmaes",
    "random": "tuner.samplers._optuna:random",
    "grid": "tuner.samplers._grid:grid",
    "exhaustive": "tuner.samplers._exhaustive:exhaustive",
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

#: ``tuner validate DOMAIN``: functions returning a ``tuner.ValidationReport``
VALIDATIONS: dict[str, str] = {
    "training": "evaluators.training.validation:run",
    "serving": "evaluators.serving.validation:run",
    "kernels": "evaluators.kernels.validation:run",
    "quantization": "evaluators.quant.validation:run",
}
