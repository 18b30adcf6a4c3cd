"""The registry factory of the cost model: its options checked, its warm start chosen.

``cost_model(space, directions, seed, **options)`` builds a ``CostModelSampler``; a warm start
comes from one of ``warm_start_study`` (a stored study), ``prior_evaluator`` (a sample scored
by another evaluator) or ``screen`` (every valid config scored by an analytical sibling:
``[sampler] screen`` in a study file, which ``tuner._setup`` hands over with the objectives'
metrics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuner._errors import BadInput
from tuner.samplers._cost_model._prior import (
    prior_from_evaluator,
    prior_from_screen,
    prior_from_study,
)
from tuner.samplers._cost_model._sampler import CostModelSampler

_OPTIONS = {"surrogate", "trust_region", "n_startup", "n_candidates", "n_models", "epsilon",
            "kappa", "scalarize", "batch", "min_p_feasible", "constraint_values",
            "max_enumerate", "warm_start_study", "warm_start_storage", "prior_evaluator",
            "prior_evaluator_options", "prior_metrics", "prior_samples", "prior_context",
            "screen"}


def cost_model(space: Any, directions: Sequence[str], seed: int | None = None,
               **options: Any) -> CostModelSampler:
    """Registry factory. Options: see ``CostModelSampler``; warm start with
    ``warm_start_study`` (+ ``warm_start_storage``) or ``prior_evaluator`` (+
    ``prior_evaluator_options``, ``prior_metrics``, ``prior_samples``, ``prior_context``)."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise BadInput(f"sampler.options.{min(unknown)}", "unknown option for "
                       "cost-model; allowed: " + ", ".join(sorted(_OPTIONS)))
    prior: Any = None
    study_name = options.pop("warm_start_study", None)
    storage = options.pop("warm_start_storage", None)
    ev = options.pop("prior_evaluator", None)
    ev_options = options.pop("prior_evaluator_options", None) or {}
    metrics = options.pop("prior_metrics", None)
    samples = options.pop("prior_samples", 1000)
    prior_context = options.pop("prior_context", None) or {}
    screen = options.pop("screen", None)
    if not isinstance(prior_context, Mapping):
        raise BadInput("sampler.options.prior_context", f"{prior_context!r} must be a table "
                       "of context keys, e.g. {gpu = \"a100_sxm_80gb\"}")
    if sum(bool(x) for x in (study_name, ev, screen)) > 1:
        raise BadInput("sampler.options", "give one of warm_start_study, prior_evaluator or "
                       "[sampler] screen")
    if screen:
        prior = _screen_prior(screen, len(directions))
    elif study_name:
        prior = prior_from_study(str(study_name), storage)
    elif ev:
        if metrics is None:
            defaults = [m for m, _ in getattr(space, "default_objectives", ())]
            if len(defaults) != len(directions):
                raise BadInput("sampler.options.prior_metrics", "name the metric of each "
                               "objective, e.g. prior_metrics = [\"tokens_per_s\"]")
            metrics = defaults
        if not isinstance(metrics, (list, tuple)) or len(metrics) != len(directions):
            raise BadInput("sampler.options.prior_metrics", f"{metrics!r}: give one metric "
                           f"name per objective ({len(directions)})")
        from tuner.registry import evaluator_class

        evaluator_class(str(ev))  # unknown names fail now, listing the valid ones
        prior = prior_from_evaluator(str(ev), list(metrics), ev_options, int(samples),
                                     seed or 0, prior_context)
    for k in ("n_startup", "n_candidates", "n_models", "batch", "max_enumerate"):
        if k in options and (isinstance(options[k], bool) or not isinstance(options[k], int)
                             or options[k] < 1):
            raise BadInput(f"sampler.options.{k}", f"{options[k]!r} must be an integer >= 1")
    for k in ("epsilon", "kappa", "scalarize", "min_p_feasible", "trust_region"):
        if k in options and (isinstance(options[k], bool) or
                             not isinstance(options[k], (int, float)) or options[k] < 0):
            raise BadInput(f"sampler.options.{k}", f"{options[k]!r} must be a number >= 0")
    return CostModelSampler(space, directions, seed, prior=prior, **options)


def _screen_prior(screen: Any, n_objectives: int) -> Any:
    """The prior of ``[sampler] screen`` (``tuner.spec.ScreenSpec`` plus the objectives'
    metrics, which ``StudySetup`` adds)."""
    if not isinstance(screen, Mapping) or not isinstance(screen.get("evaluator"), str):
        raise BadInput("sampler.screen", f"{screen!r}: give an evaluator name, e.g. screen = "
                       "\"kernel-sim\"")
    metrics = screen.get("metrics")
    if not isinstance(metrics, (list, tuple)) or len(metrics) != n_objectives:
        raise BadInput("sampler.screen", "set it as [sampler] screen = \"...\" in the study "
                       "file (the study's objectives name the screen's metrics)")
    for key in ("options", "context"):
        if not isinstance(screen.get(key) or {}, Mapping):
            raise BadInput(f"sampler.screen.{key}", f"{screen[key]!r} must be a table")
    return prior_from_screen(screen["evaluator"], list(metrics), screen.get("options") or {},
                             screen.get("context") or {})


__all__ = ["cost_model"]
