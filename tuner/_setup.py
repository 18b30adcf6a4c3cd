"""Building a study: the space, the evaluator, the sampler and what the study says about itself.

``StudySetup.build(spec)`` is the one construction every loop shares (the runner, the fleet
worker, the CI job): it builds the space from the registry, picks and checks the evaluator
(``finish_spec`` fills default objectives and checks metric names against it), computes the
evaluator's fingerprint (the cache key's half that says *which* evaluator) and settles the
sampler's name and options once. Samplers are built from it on demand, since the worker builds
its own with another seed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tuner import registry
from tuner._errors import BadInput
from tuner._secrets import redact_secrets
from tuner.samplers import default_sampler, make_sampler
from tuner.spec import StudySpec, finish_spec

#: stop when the sampler proposes only already-evaluated configs this many times in a row
MAX_CONSECUTIVE_REPEATS = 500


@runtime_checkable
class Exhaustible(Protocol):
    """A sampler that knows when a finite space has nothing left to propose (the grid, the
    cost model): the loops stop with "every valid config evaluated" instead of asking more."""

    def exhausted(self, study: Any) -> bool: ...


def exhausted(sampler: Any, study: Any) -> bool:
    """True when ``sampler`` implements ``Exhaustible`` and says the study is exhausted."""
    return isinstance(sampler, Exhaustible) and bool(sampler.exhausted(study))


def default_memory_limit_mib(workers: int) -> int:
    """Three quarters of physical memory shared by the evaluation processes, >= 2 GiB each."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        total = 16384
    return max(2048, int(total * 0.75 / max(1, workers)))


@dataclass(frozen=True)
class StudySetup:
    """Everything built from a study spec before any trial runs."""

    spec: StudySpec
    space: Any  # a tuner.BaseSpace
    evaluator_name: str
    evaluator_cls: type
    fingerprint: str
    sampler_name: str
    #: the study file's sampler options (none when the command line names another sampler)
    sampler_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, spec: StudySpec, sampler: str | None = None) -> StudySetup:
        """Space, evaluator and sampler choice for ``spec`` (``sampler`` overrides the file).

        Raises ``BadInput``/``UnknownName`` naming the field for anything the spec gets wrong.
        """
        space_cls = registry.space_class(spec.space.domain)
        space = space_cls(spec.space.context, spec.space.params)
        evaluator_name = spec.evaluator.name or space.default_evaluator
        if not evaluator_name:
            raise BadInput("evaluator.name", "required for this domain; valid: "
                           + ", ".join(registry.EVALUATORS))
        evaluator_cls = registry.evaluator_class(evaluator_name)
        finish_spec(spec, space, evaluator_cls)
        name = sampler or spec.sampler.name or default_sampler(space, spec.directions,
                                                               evaluator_cls)
        options = dict(spec.sampler.options) if sampler in (None, spec.sampler.name) else {}
        screen = spec.sampler.screen
        if screen is not None and name == "cost-model":  # the objectives name the metrics
            options["screen"] = {**screen.model_dump(),
                                 "metrics": [o.metric for o in spec.objectives]}
        elif screen is not None and sampler in (None, spec.sampler.name):
            raise BadInput("sampler.screen", f"only the cost-model sampler starts from a "
                           f"screen; this study's sampler is {name!r}")
        evaluator = evaluator_cls(**spec.evaluator.options)  # checks the options
        _check_config_keys(space, evaluator)
        evaluator.check_context(space.context)
        evaluator_cls.preflight(spec.evaluator.options)
        fingerprint = evaluator.fingerprint()
        return cls(spec, space, evaluator_name, evaluator_cls, fingerprint, name, options)

    def make_sampler(self, seed: int | None = None, **extra: Any) -> Any:
        """A fresh sampler; ``extra`` options are defaults the study file may override."""
        options = {**extra, **self.sampler_options}
        return make_sampler(self.sampler_name, self.space, self.spec.directions, seed, options)

    def memory_limit_mib(self, workers: int) -> int:
        return self.spec.budget.memory_limit_mib or default_memory_limit_mib(workers)

    def pool(self, workers: int, factory: Callable[..., Any] | None = None) -> Any:
        """Evaluation processes for this study (``factory``: an ``EvalPool``-like class)."""
        if factory is None:
            from tuner._pool import EvalPool

            factory = EvalPool
        return factory(self.evaluator_name, self.spec.evaluator.options, workers,
                       self.spec.budget.trial_timeout_s, self.memory_limit_mib(workers))

    def study_attrs(self, trials_target: int | None) -> dict[str, Any]:
        """What the study records about itself (secrets in options masked)."""
        spec = self.spec
        return {
            "tuner.spec": redact_secrets(spec.model_dump(mode="json", exclude={"storage"})),
            "tuner.domain": spec.space.domain, "tuner.evaluator": self.evaluator_name,
            "tuner.sampler": self.sampler_name, "tuner.fingerprint": self.fingerprint,
            "tuner.objectives": [o.model_dump() for o in spec.objectives],
            "tuner.constraints": [c.model_dump() for c in spec.constraints],
            "tuner.trials_target": trials_target,
            # a space spanning domains says which domain each parameter belongs to (the
            # dashboard's per-domain breakdown of the front reads it)
            **({"tuner.param_domains": self.space.domain_of()}
               if callable(getattr(self.space, "domain_of", None)) else {}),
        }

    def check_compatible(self, rdb: Any, study_id: int, restart_hint: str = "") -> None:
        """Refuse to continue a stored study as another problem: other objectives or
        directions, another domain, fixed context, evaluator, evaluator options or
        constraints (the search space and the sampler may change: they do not change what a
        stored trial means). ``restart_hint`` names the flag that starts the study over."""
        spec = self.spec
        how = f"use another study name{restart_hint}"
        stored_dirs = [d.name.lower() for d in rdb.get_study_directions(study_id)]
        attrs = rdb.get_study_user_attrs(study_id)
        stored = attrs.get("tuner.spec") if isinstance(attrs.get("tuner.spec"), dict) else {}
        now = redact_secrets(spec.model_dump(mode="json", exclude={"storage"}))
        stored_objs = [(o.get("metric"), o.get("direction"))
                       for o in attrs.get("tuner.objectives") or [] if isinstance(o, dict)]
        objs = [(o.metric, o.direction) for o in spec.objectives]
        if stored_dirs != spec.directions or (stored_objs and stored_objs != objs):
            was = ", ".join(f"{m} {d}" for m, d in stored_objs) if stored_objs else \
                ", ".join(stored_dirs)
            raise BadInput("objectives", f"study {spec.name!r} already holds trials for "
                           f"objectives [{was}], not [{', '.join(f'{m} {d}' for m, d in objs)}]"
                           f"; {how}")
        checks: list[tuple[str, Any, Any]] = [
            ("space.domain", attrs.get("tuner.domain"), spec.space.domain),
            ("evaluator.name", attrs.get("tuner.evaluator"), self.evaluator_name)]
        if stored:
            checks += [
                ("space.context", (stored.get("space") or {}).get("context"),
                 now["space"]["context"]),
                ("evaluator.options", (stored.get("evaluator") or {}).get("options"),
                 now["evaluator"]["options"]),
                ("constraints", [_constraint_text(c) for c in stored.get("constraints") or []],
                 [_constraint_text(c) for c in now["constraints"]])]
        for field_, was, is_ in checks:
            if was is not None and was != is_:
                raise BadInput(field_, f"study {spec.name!r} already holds trials for "
                               f"{field_} {_shown(was)}; this file says {_shown(is_)}, another "
                               f"problem ({_difference(was, is_)}); {how}")


def _constraint_text(c: Any) -> str:
    if not isinstance(c, dict):
        return str(c)
    return f"{c.get('metric')} {c.get('op')} {c.get('value')}"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k} = {v!r}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(str(v) for v in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _difference(was: Any, is_: Any) -> str:
    """What changed, in a few words: the keys of two tables that differ."""
    if isinstance(was, dict) and isinstance(is_, dict):
        keys = sorted({k for k in set(was) | set(is_) if was.get(k) != is_.get(k)}, key=str)
        parts = [f"{k}: {was.get(k, '(none)')!r} -> {is_.get(k, '(none)')!r}" for k in keys]
        return "; ".join(parts)[:200]
    return "changed"


def _check_config_keys(space: Any, evaluator: Any) -> None:
    """Every key a config of ``space`` holds must be one the evaluator reads."""
    keys = evaluator.config_keys
    if keys is None:
        return
    for where, names in (("space.context", space.context), ("space.params", space.fixed),
                         ("space.params", space.params)):
        unknown = sorted((k for k in names if k not in keys), key=str)
        if unknown:
            raise BadInput(f"{where}.{unknown[0]}", f"not a config key of evaluator "
                           f"{evaluator.name}; it reads: {', '.join(sorted(keys))}")


def state_attrs(state: str, error: str | None = None) -> dict[str, Any]:
    """``tuner.state`` (running | finished | interrupted | failed) with the time it was set
    and, for a failed run, ``tuner.error`` (one line)."""
    out: dict[str, Any] = {"tuner.state": state, "tuner.updated_at": time.time()}
    if state in ("failed", "running"):
        out["tuner.error"] = error
    return out


def build(spec: StudySpec, sampler_name: str | None = None) -> tuple[Any, Any, Any, str]:
    """Space, evaluator class, sampler and the evaluator's name for a spec."""
    setup = StudySetup.build(spec, sampler_name)
    return setup.space, setup.evaluator_cls, setup.make_sampler(spec.seed), setup.evaluator_name


__all__ = ["Exhaustible", "MAX_CONSECUTIVE_REPEATS", "StudySetup", "build",
           "default_memory_limit_mib", "exhausted", "state_attrs"]
