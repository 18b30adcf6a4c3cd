"""Name -> import path registries for spaces, evaluators and samplers (imported lazily).

A name may also be an import path ``package.module:Class`` so that users plug in their own
evaluator or space without editing this file. A plug-in runs code (importing its module runs
it), so name only modules you trust; what a name may resolve to is checked before it is used:
a space must be a ``tuner.BaseSpace`` subclass, an evaluator a ``tuner.BaseEvaluator``
subclass, a sampler an ``optuna.samplers.BaseSampler`` subclass or a factory marked with
``tuner.samplers.sampler_plugin``. ``os:system`` and the like are refused, never called.
"""

from __future__ import annotations

import importlib
from typing import Any

from tuner._errors import BadInput, UnknownName

SPACES: dict[str, str] = {
    "training": "tuner.search_spaces.training:TrainingSpace",
    "serving": "tuner.search_spaces.serving:ServingSpace",
    "kernel-gemm": "tuner.search_spaces.kernels:GemmTileSpace",
    "kernel-attention": "tuner.search_spaces.kernels:AttentionTileSpace",
    "quantization": "tuner.search_spaces.quantization:QuantSpace",
    "deployment": "tuner.search_spaces.deployment:DeploymentSpace",
}

EVALUATORS: dict[str, str] = {
    "training-sim": "tuner.evaluators.training:TrainingSimEvaluator",
    "serving-sim": "tuner.evaluators.serving:ServingSimEvaluator",
    "kernel-sim": "tuner.evaluators.kernels:KernelSimEvaluator",
    "kernel-gpu": "tuner.evaluators.kernels:KernelGpuEvaluator",
    "kernel-replay": "tuner.evaluators.kernels:KernelReplayEvaluator",
    "quant-real": "tuner.evaluators.quant:QuantRealEvaluator",
    "quant-sim": "tuner.evaluators.quant:QuantSimEvaluator",
    "command": "tuner.evaluators.command:CommandEvaluator",
    "serving-real": "tuner.evaluators.serving:ServingRealEvaluator",
    "deployment-sim": "tuner.evaluators.deployment:DeploymentSimEvaluator",
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


#: import roots that now install inside ``tuner``: a stored study may still name them
_MOVED_ROOTS = ("evaluators.", "search_spaces.", "dashboard.")


def resolve(kind: str, table: dict[str, str], name: str, plugins: bool = True) -> Any:
    """The object registered as ``name`` in ``table`` (or, with ``plugins``, the one an
    import path ``module:attr`` names); ``kind`` names the field in errors."""
    if isinstance(name, str) and name in table:
        return _load(table[name])
    if plugins and isinstance(name, str) and ":" in name:
        if name.startswith(_MOVED_ROOTS):
            name = f"tuner.{name}"
        module, _, attr = name.partition(":")
        if not module or not attr or not all(p.isidentifier() for p in module.split(".")) \
                or not attr.isidentifier():
            raise BadInput(kind, f"{name!r} is not an import path 'package.module:Name'; "
                           f"or one of: {', '.join(sorted(table))}")
        try:
            return _load(name)
        except (ImportError, AttributeError) as exc:
            raise BadInput(kind, f"cannot import {name!r} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); or one of: "
                           f"{', '.join(sorted(table))}") from None
    raise UnknownName(kind, name, list(table))


def _subclass(kind: str, name: str, obj: Any, base: type, what: str) -> Any:
    if isinstance(obj, type) and issubclass(obj, base):
        return obj
    raise BadInput(kind, f"{name!r} is {_describe(obj)}, not {what}; a plug-in must be a "
                   f"{base.__module__.split('.')[0]}.{base.__name__} subclass")


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    if callable(obj):
        return f"the function {getattr(obj, '__name__', '?')}"
    return f"a {type(obj).__name__}"


def space_class(name: str) -> Any:
    from tuner._space import BaseSpace

    return _subclass("space.domain", name, resolve("space.domain", SPACES, name), BaseSpace,
                     "a search space")


def evaluator_class(name: str) -> Any:
    from tuner._evaluator import BaseEvaluator

    return _subclass("evaluator.name", name, resolve("evaluator.name", EVALUATORS, name),
                     BaseEvaluator, "an evaluator")


#: the attribute ``tuner.samplers.sampler_plugin`` sets on a plug-in sampler factory
FACTORY_MARK = "__tuner_sampler_factory__"


def sampler_factory(name: str) -> Any:
    """``factory(space, directions, seed, **options) -> BaseSampler`` for ``name``: a
    registered sampler, a plug-in factory marked with ``tuner.samplers.sampler_plugin``, or
    an ``optuna.samplers.BaseSampler`` subclass (built as ``cls(seed=seed, **options)``)."""
    obj = resolve("sampler.name", SAMPLERS, name)
    if name in SAMPLERS or getattr(obj, FACTORY_MARK, False) or _registered(obj):
        return obj
    import optuna

    if isinstance(obj, type) and issubclass(obj, optuna.samplers.BaseSampler):
        def build(space: Any, directions: Any, seed: int | None = None, **options: Any) -> Any:
            import inspect

            takes_seed = "seed" in inspect.signature(obj).parameters
            try:
                if takes_seed:
                    return obj(seed=seed, **options)  # type: ignore[call-arg]
                return obj(**options)
            except TypeError as exc:
                raise BadInput("sampler.options", f"{name}: {exc}") from None

        return build
    raise BadInput("sampler.name", f"{name!r} is {_describe(obj)}, not a sampler; a plug-in "
                   "must be an optuna.samplers.BaseSampler subclass or a factory marked with "
                   "@tuner.samplers.sampler_plugin")


def _registered(obj: Any) -> bool:
    """``obj`` is one of the registered sampler factories (reached by another import path)."""
    name = getattr(obj, "__name__", None)
    return any(path.rpartition(":")[2] == name and _load(path) is obj
               for path in SAMPLERS.values())


def make_evaluator(name: str, options: dict[str, Any] | None = None) -> Any:
    return evaluator_class(name)(**(options or {}))

#: ``tuner validate DOMAIN``: functions returning a ``tuner.ValidationReport``
VALIDATIONS: dict[str, str] = {
    "training": "tuner.evaluators.training.validation:run",
    "serving": "tuner.evaluators.serving.validation:run",
    "kernels": "tuner.evaluators.kernels.validation:run",
    "quantization": "tuner.evaluators.quant.validation:run",
}
