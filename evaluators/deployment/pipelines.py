"""What the joint search buys: the joint search against the pipeline a practitioner runs one
domain at a time, and against uniform fp8 / uniform int4, at the same SLOs, quality budget,
and space.

* **joint**: one TPE search over the whole deployment space (plan x mix x scheduler).
* **sequential**: (1) the mix for quality and size: the smallest model (``model_size_gib``) whose
  quality drop is within the budget, ties to the lower drop (so KV and activations stay at 16
  bits unless they are free), scored by the quantization model alone; (2) the serving plan and
  scheduler for that model, searched exactly (:func:`exact_search`: every valid config of the
  sub-space, simulated cheapest floor first), so the baseline is as strong as it can be;
  (3) tiles: the best tile of each dominant GEMM for the chosen plan (the kernel model's own).
* **uniform fp8** (W8A8 fp8 weights, fp8 KV) and **uniform int4** (W4A16, groups of 128, bf16
  KV as AWQ/GPTQ deployments run by default): the mix fixed, plan and scheduler searched
  exactly.

The joint search is TPE only (its space is too large to enumerate), so its gain over the
others is a lower bound.

Every search minimizes ``cost_usd_per_mtok`` subject to ``ttft_ms_p99 <= slo_ttft_ms``,
``tpot_ms_p99 <= slo_tpot_ms`` and ``quality_drop <= quality_budget``; infeasible configs (the
space's constraints) cost no simulation, and a mix over the quality budget is refused before
simulating it (the quality proxy needs no simulation).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner import Categorical, Status, is_active
from tuner.evaluators.deployment._compose import compose, problems
from tuner.evaluators.deployment._kernels import best_tile, dominant_gemms
from tuner.evaluators.deployment._keys import DOMAIN_OF
from tuner.evaluators.deployment._mix import mix_of
from tuner.evaluators.deployment._params import deployment_params
from tuner.evaluators.deployment.sim import DeploymentSimEvaluator
from tuner.evaluators.quant import ROLES

PENALTY = 1e6  # objective of a config that breaks a constraint (TPE learns to avoid it)

UNIFORM = {
    "uniform fp8": {**{f"{r}_bits": 8 for r in ROLES}, "act_bits": 8, "kv_bits": 8,
                    "protect_frac": 0.0},
    "uniform int4": {**{f"{r}_bits": 4 for r in ROLES}, "act_bits": 16, "kv_bits": 16,
                     "protect_frac": 0.0},
}


@dataclass
class Outcome:
    """The cheapest config one pipeline found within the SLOs and quality budget."""

    name: str
    config: dict[str, Any] | None = None
    metrics: dict[str, float] | None = None
    simulations: int = 0
    note: str = ""
    artifacts: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> float:
        return self.metrics["cost_usd_per_mtok"] if self.metrics else math.inf


@dataclass(frozen=True)
class Goal:
    slo_ttft_ms: float
    slo_tpot_ms: float
    quality_budget: float

    def violations(self, m: Mapping[str, float]) -> float:
        """0 when every constraint holds, else the summed relative excess."""
        return (max(0.0, m["ttft_ms_p99"] / self.slo_ttft_ms - 1)
                + max(0.0, m["tpot_ms_p99"] / self.slo_tpot_ms - 1)
                + max(0.0, m["quality_drop"] / self.quality_budget - 1))


class _SubSpace:
    """The deployment space's parameters with some fixed: what one pipeline step searches."""

    def __init__(self, context: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
        gpus = context["gpu"] if isinstance(context["gpu"], list) else [context["gpu"]]
        self.context = {k: v for k, v in context.items() if k != "gpu" or len(gpus) == 1}
        model = compose({**self.context, "gpu": gpus[0]}).plan.model
        self.fixed = {k: v["fixed"] for k, v in overrides.items() if "fixed" in v}
        self.params = {}
        for k, p in deployment_params(tuple(gpus), model.is_moe, False).items():
            if k in self.fixed:
                continue
            if k in overrides:  # narrowed choices
                p = Categorical(tuple(overrides[k]["choices"]), when=p.when)
            self.params[k] = p

    def suggest(self, trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = dict(self.fixed)
        for name, p in self.params.items():
            if is_active(p, values):
                values[name] = trial.suggest_categorical(name, list(p.choices))
        return {**self.context, **values}

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        return problems(config)

    def enumerate(self) -> list[dict[str, Any]]:
        """Every config of the sub-space (conditional parameters only where active)."""
        names = list(self.params)
        out: list[dict[str, Any]] = []

        def rec(i: int, values: dict[str, Any]) -> None:
            if i == len(names):
                out.append({**self.context, **values})
                return
            p = self.params[names[i]]
            if not is_active(p, values):
                rec(i + 1, values)
                return
            for v in p.choices:
                rec(i + 1, {**values, names[i]: v})

        rec(0, dict(self.fixed))
        return out


def _space(context: Mapping[str, Any], overrides: Mapping[str, Any]) -> _SubSpace:
    return _SubSpace(context, overrides)


def tpe_search(name: str, context: Mapping[str, Any], overrides: Mapping[str, Any],
               goal: Goal, trials: int, seed: int = 0) -> Outcome:
    """Cheapest config within ``goal`` found by ``trials`` TPE suggestions."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _space(context, overrides)
    ev = DeploymentSimEvaluator()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    best = Outcome(name)
    seen: dict[tuple, float] = {}
    for _ in range(trials):
        trial = study.ask()
        cfg = space.suggest(trial)
        key = tuple(sorted(cfg.items(), key=lambda kv: kv[0]))
        key = tuple((k, repr(v)) for k, v in key)
        if key in seen:
            study.tell(trial, seen[key])
            continue
        value = _score(space, ev, cfg, goal, best)
        seen[key] = value
        study.tell(trial, value)
    return best


def cost_floor(config: Mapping[str, Any]) -> float:
    """A lower bound of ``cost_usd_per_mtok``: the plan's GPUs for the workload's arrival span
    at the very least, serving every output token (a run lasts at least from the first
    arrival to the last)."""
    from tuner.evaluators.serving._plan import plan_workload

    plan = compose(config).plan
    wl = plan_workload(plan)
    w = wl.warmup
    span = 0.0 if wl.is_closed else max(wl.arrival_s[w:]) - min(wl.arrival_s[w:])
    tokens = sum(wl.output_len[w:])
    return plan.gpus_used * plan.hw.price_usd_per_hour / 3600 * span / tokens * 1e6


def exact_search(name: str, context: Mapping[str, Any], overrides: Mapping[str, Any],
                 goal: Goal) -> Outcome:
    """The cheapest config of a fixed-mix sub-space within ``goal``, exactly: every valid
    config, simulated in order of :func:`cost_floor` until the floor passes the best cost."""
    space = _space(context, overrides)
    ev = DeploymentSimEvaluator()
    best = Outcome(name)
    valid = [c for c in space.enumerate() if not space.constraints(c)]
    for floor, cfg in sorted(((cost_floor(c), c) for c in valid), key=lambda fc: fc[0]):
        if floor >= best.cost:
            break
        _score(space, ev, cfg, goal, best)
    best.note = f"{len(valid)} valid configs, exact"
    return best


def _score(space: Any, ev: DeploymentSimEvaluator, cfg: dict[str, Any], goal: Goal,
           best: Outcome) -> float:
    reasons = space.constraints(cfg)
    if reasons:
        return PENALTY * 3
    drop = mix_of(cfg, compose(cfg).plan.hw).quality_drop
    if drop > goal.quality_budget:
        return PENALTY * (2 + drop / goal.quality_budget)
    best.simulations += 1
    r = ev.evaluate(cfg)
    if r.status is not Status.OK:
        return PENALTY * 2
    over = goal.violations(r.metrics)
    if over > 0:
        return PENALTY * (1 + over)
    cost = r.metrics["cost_usd_per_mtok"]
    if cost < best.cost:
        best.config, best.metrics, best.artifacts = dict(cfg), dict(r.metrics), r.artifacts
    return cost


def mix_choices(overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every mix of the deployment space's quantization parameters (after ``overrides``)."""
    values = {f"{r}_bits": (16, 8, 4) for r in ROLES}
    values.update(act_bits=(16, 8), kv_bits=(16, 8), protect_frac=(0.0, 0.1))
    for k, ov in overrides.items():
        if k in values:
            values[k] = (ov["fixed"],) if "fixed" in ov else tuple(ov["choices"])
    names = list(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*values.values())]


def quality_first_mix(context: Mapping[str, Any], overrides: Mapping[str, Any],
                      goal: Goal) -> tuple[dict[str, Any], Any]:
    """Step 1 of the sequential pipeline: the smallest mix within the quality budget (ties:
    the lower drop, then fewer quantized pieces), judged by the quantization model alone."""
    gpu = context["gpu"] if isinstance(context.get("gpu"), str) else context["gpu"][0]
    hw = compose({**context, "gpu": gpu}).plan.hw
    scored = []
    for mix in mix_choices(overrides):
        m = mix_of({"model": context["model"], **mix}, hw)
        if m.quality_drop <= goal.quality_budget:
            scored.append((round(m.size_gib, 6), m.quality_drop, mix, m))
    if not scored:
        raise ValueError("no mix of the space meets the quality budget")
    scored.sort(key=lambda s: (s[0], s[1]))
    return scored[0][2], scored[0][3]


def fixed(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {"fixed": v} for k, v in values.items()}


def best_tiles(config: Mapping[str, Any]) -> dict[str, int]:
    """Step 3 of the sequential pipeline: the kernel model's best tile of each dominant GEMM
    for this plan and mix, as tile keys."""
    out = {}
    for phase, g in dominant_gemms(compose(config).plan).items():
        tile, _ = best_tile(g)
        out.update({f"{phase}_{k}": v for k, v in tile})
    return out


def _with_tiles(outcome: Outcome) -> Outcome:
    if outcome.config is None:
        return outcome
    cfg = {**outcome.config, **best_tiles(outcome.config)}
    r = DeploymentSimEvaluator().evaluate(cfg)
    outcome.simulations += 1
    if r.status is Status.OK:
        outcome.config, outcome.metrics, outcome.artifacts = cfg, dict(r.metrics), r.artifacts
    return outcome


def sequential(context: Mapping[str, Any], overrides: Mapping[str, Any], goal: Goal
               ) -> Outcome:
    mix, m = quality_first_mix(context, overrides, goal)
    out = exact_search("sequential", context, {**overrides, **fixed(mix)}, goal)
    out.note += (f"; step 1 mix: {m.size_gib:.1f} GiB, quality_drop {m.quality_drop:.4f} "
                 f"({_mix_text(mix)})")
    return _with_tiles(out)


def joint(context: Mapping[str, Any], overrides: Mapping[str, Any], goal: Goal, trials: int,
          seed: int = 0) -> Outcome:
    return _with_tiles(tpe_search(f"joint s{seed}", context, overrides, goal, trials, seed))


def uniform(name: str, context: Mapping[str, Any], overrides: Mapping[str, Any],
            goal: Goal) -> Outcome:
    mix = UNIFORM[name]
    gpu = context["gpu"] if isinstance(context.get("gpu"), str) else context["gpu"][0]
    hw = compose({**context, "gpu": gpu}).plan.hw
    drop = mix_of({"model": context["model"], **mix}, hw).quality_drop
    relaxed = Goal(goal.slo_ttft_ms, goal.slo_tpot_ms, max(goal.quality_budget, drop))
    out = _with_tiles(exact_search(name, context, {**overrides, **fixed(mix)}, relaxed))
    out.note += f"; quality_drop {drop:.4f}" + (" (over the quality budget)"
                                                if drop > goal.quality_budget else "")
    return out


def _mix_text(mix: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in mix.items())


def domain_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per domain, the parameters whose values differ between two configs (``a -> b``)."""
    out: dict[str, list[str]] = {}
    for k in sorted(set(a) | set(b)):
        if k in DOMAIN_OF and a.get(k) != b.get(k):
            out.setdefault(DOMAIN_OF[k], []).append(f"{k} {a.get(k)} -> {b.get(k)}")
    return out



def compare(context: Mapping[str, Any], overrides: Mapping[str, Any], goal: Goal,
            trials: int, seeds: Sequence[int] = (0,)) -> list[Outcome]:
    """The pipelines on one study: the joint search once per TPE seed (its result depends on
    the seed), then the sequential pipeline and the uniform mixes (exact: run once)."""
    return [*(joint(context, overrides, goal, trials, s) for s in seeds),
            sequential(context, overrides, goal),
            *(uniform(n, context, overrides, goal) for n in UNIFORM)]


__all__ = ["Goal", "Outcome", "UNIFORM", "best_tiles", "compare", "cost_floor", "domain_diff",
           "exact_search", "joint", "mix_choices", "quality_first_mix", "sequential",
           "tpe_search", "uniform"]
