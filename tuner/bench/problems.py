"""Benchmark problems with exact ground truth: finite spaces scored exhaustively.

A problem is a study in miniature (domain, context, parameter overrides, evaluator, objectives,
constraints), defined as data in ``problems.toml``. ``build_table`` enumerates every grid point
of its space once, rejects what the space's constraints reject, scores the rest with the
evaluator (the analytical simulator, or a replay of recorded GPU measurements), and keeps the
outcomes in memory, so a sampler run is a dictionary lookup per trial. Tables are cached on disk
by a hash of the problem and the evaluator's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import tomllib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuner._errors import BadInput, UnknownName
from tuner.samplers._features import values_key

PROBLEMS_FILE = Path(__file__).with_name("problems.toml")
CACHE_ENV = "TUNER_BENCH_CACHE"


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    value: float

    def violation(self, metrics: Mapping[str, float]) -> float:
        """> 0 when violated (Optuna's convention, as the runner stores it)."""
        from tuner.spec import ConstraintSpec

        return ConstraintSpec(metric=self.metric, op=self.op, value=self.value).violation(
            dict(metrics))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Problem:
    """One benchmark problem (a finite study)."""

    name: str
    domain: str
    evaluator: str
    objectives: tuple[tuple[str, str], ...]
    context: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    evaluator_options: Mapping[str, Any] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    description: str = ""
    #: "analytical" (a simulator) or "replay" (recorded GPU measurements)
    kind: str = "analytical"
    #: cost-model options of the "cost-model-warm" variant (a prior from another source)
    warm_start: Mapping[str, Any] = field(default_factory=dict)

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]

    @property
    def metrics(self) -> list[str]:
        return [m for m, _ in self.objectives]

    def space(self) -> Any:
        from tuner.registry import space_class

        return space_class(self.domain)(dict(self.context), dict(self.params))

    def digest(self, fingerprint: str) -> str:
        """Identity of the scored grid (space + evaluator): problems that differ only in
        objectives or constraints share one table."""
        raw = json.dumps({"domain": self.domain, "context": self.context, "params": self.params,
                          "evaluator": self.evaluator, "options": self.evaluator_options,
                          "fp": fingerprint}, sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def problem_from_dict(d: Mapping[str, Any]) -> Problem:
    """A problem from its TOML table (the same keys as a study file, flattened)."""
    where = f"problem {d.get('name', '?')!r}"
    try:
        objectives = tuple((o["metric"], o["direction"]) for o in d["objectives"])
        constraints = tuple(Constraint(c["metric"], c["op"], float(c["value"]))
                            for c in d.get("constraints", ()))
        return Problem(name=d["name"], domain=d["domain"], evaluator=d["evaluator"],
                       objectives=objectives, context=d.get("context", {}),
                       params=d.get("params", {}),
                       evaluator_options=d.get("evaluator_options", {}),
                       constraints=constraints, description=d.get("description", ""),
                       kind=d.get("kind", "analytical"), warm_start=d.get("warm_start", {}))
    except KeyError as exc:
        raise BadInput(where, f"missing key {exc.args[0]!r}") from None


def load_problems(path: Path = PROBLEMS_FILE) -> dict[str, Problem]:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return {p["name"]: problem_from_dict(p) for p in data.get("problem", [])}


def available_problems(problems: Mapping[str, Problem] | None = None) -> dict[str, str]:
    """name -> "" when its space and evaluator import, else why not (a domain not present)."""
    from tuner.registry import evaluator_class, space_class

    out = {}
    for name, p in (problems or load_problems()).items():
        try:
            space_class(p.domain)
            evaluator_class(p.evaluator)
            out[name] = ""
        except (ImportError, UnknownName, AttributeError) as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


@dataclass
class Outcome:
    """What the runner would record for one config."""

    status: str  # ok | infeasible | failed
    values: tuple[float, ...] | None  # objective values when measured
    feasible: bool
    violations: tuple[float, ...]
    reason: str | None = None


@dataclass
class Table:
    """Every grid point of a problem, scored: the exact ground truth."""

    problem: Problem
    outcomes: dict[Hashable, Outcome]
    n_grid: int
    seconds: float = 0.0

    def __post_init__(self) -> None:
        feas = [o.values for o in self.outcomes.values() if o.feasible and o.values]
        if not feas:
            raise BadInput(f"problem {self.problem.name!r}", "no feasible config in the space")
        self.feasible_values = np.array(feas, dtype=float)
        sign = np.array([1.0 if d == "minimize" else -1.0 for d in self.problem.directions])
        self._sign = sign
        mins = self.feasible_values * sign
        if len(sign) == 1:
            self.optimum = float(np.min(mins[:, 0]) * sign[0])
            self.front = np.array([[self.optimum]])
        else:
            from tuner._pareto import pareto_mask

            mins = np.unique(mins, axis=0)  # one front point per objective vector
            self.front = mins[pareto_mask(mins, ["minimize"] * len(sign))] * sign
            self.optimum = math.nan
        front_min = self.front * sign
        self.ideal = front_min.min(axis=0)
        self.nadir = front_min.max(axis=0)

    @property
    def n_valid(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.status != "rejected")

    @property
    def n_feasible(self) -> int:
        return len(self.feasible_values)

    def within(self, tol: float = 0.01) -> int:
        """Feasible configs within ``tol`` of the optimum (one objective): how easy 1% is."""
        if len(self.problem.objectives) > 1:
            return len(self.front)
        v = self.feasible_values[:, 0]
        return int(np.sum(relative_regret(v, self.optimum, self.problem.directions[0]) <= tol))

    def lookup(self, values: Mapping[str, Any]) -> Outcome | None:
        return self.outcomes.get(values_key(values))

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """Objective vectors to [0, 1] per objective between the true front's ideal and nadir
        (minimization); the hypervolume reference is 1.1 in every objective."""
        span = np.where(self.nadir > self.ideal, self.nadir - self.ideal, 1.0)
        return (np.asarray(values, dtype=float) * self._sign - self.ideal) / span

    def true_hypervolume(self) -> float:
        return normalized_hypervolume(self.normalize(self.front))


def relative_regret(best: Any, optimum: float, direction: str) -> Any:
    gap = (np.asarray(best) - optimum) if direction == "minimize" else (optimum -
                                                                         np.asarray(best))
    return np.maximum(gap, 0.0) / max(abs(optimum), 1e-300)


def normalized_hypervolume(points: np.ndarray) -> float:
    if not len(points):
        return 0.0
    from tuner._pareto import hypervolume

    m = points.shape[1]
    return hypervolume(points.tolist(), ["minimize"] * m, [1.1] * m)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, "~/.cache/tuner/bench")).expanduser()


def build_table(problem: Problem, use_cache: bool = True) -> Table:
    """Score every grid point of ``problem`` (or load the cached scores)."""
    from tuner.registry import make_evaluator

    space = problem.space()
    if not space.is_finite():
        raise BadInput(f"problem {problem.name!r}", "space has continuous parameters; "
                       "benchmark problems need finite spaces (give a step)")
    evaluator = make_evaluator(problem.evaluator, dict(problem.evaluator_options))
    slug = f"{problem.domain}-{problem.evaluator}".replace(":", "_").replace("/", "_")
    path = cache_dir() / f"{slug}-{problem.digest(evaluator.fingerprint())}.json"
    scored = _load_scores(path) if use_cache else None
    t0 = time.perf_counter()
    if scored is None:
        scored = _score_grid(space, evaluator)
        if use_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"seconds": time.perf_counter() - t0,
                                           "rows": scored}))
                tmp.replace(path)
            except OSError:
                pass
    outcomes = {values_key(r[0]): _outcome(problem, r[1], r[2], r[3]) for r in scored}
    return Table(problem, outcomes, len(scored), time.perf_counter() - t0)


def _load_scores(path: Path) -> list[list[Any]] | None:
    try:
        rows = json.loads(path.read_text())["rows"]
        return rows if isinstance(rows, list) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: rescored


def _score_grid(space: Any, evaluator: Any) -> list[list[Any]]:
    """[values, status, metrics, reason] for every grid point ("rejected": by the space)."""
    rows: list[list[Any]] = []
    evaluator.setup()
    try:
        for cfg in space.enumerate(valid_only=False):
            values = space.param_values(cfg)
            reasons = space.constraints(cfg)
            if reasons:
                rows.append([values, "rejected", {}, "; ".join(reasons)[:300]])
                continue
            try:
                res = evaluator.evaluate(cfg)
            except Exception as exc:  # an evaluator bug is a failed trial, as in the runner
                rows.append([values, "failed", {}, f"{type(exc).__name__}: {exc}"[:300]])
                continue
            status = getattr(res.status, "value", res.status)
            metrics = {k: float(v) for k, v in res.metrics.items()
                       if isinstance(v, (int, float)) and math.isfinite(v)}
            rows.append([values, status, metrics, res.reason])
    finally:
        evaluator.teardown()
    return rows


def _outcome(problem: Problem, status: str, metrics: Mapping[str, float],
             reason: str | None) -> Outcome:
    """The runner's reading of one result (as ``tuner._record.judge`` reads it)."""
    if status == "rejected":
        return Outcome("rejected", None, False, (1.0,), reason)
    if status == "failed":
        return Outcome("failed", None, False, (), reason)
    if status != "ok":
        return Outcome("infeasible", None, False, (1.0,), reason)
    vals = [metrics.get(m) for m in problem.metrics]
    if not all(v is not None for v in vals):
        return Outcome("failed", None, False, (), "objective metric missing")
    viol = tuple(c.violation(metrics) for c in problem.constraints)
    feasible = all(v <= 0 for v in viol)
    why = None if feasible else "violates " + ", ".join(
        str(c) for c, v in zip(problem.constraints, viol) if v > 0)
    return Outcome("ok", tuple(float(v) for v in vals), feasible, viol or (0.0,), why)


def select_problems(names: Sequence[str] | None) -> list[Problem]:
    problems = load_problems()
    if not names:
        return list(problems.values())
    out = []
    for n in names:
        if n not in problems:
            raise UnknownName("--problems", n, list(problems))
        out.append(problems[n])
    return out


__all__ = ["Constraint", "Outcome", "Problem", "Table", "available_problems", "build_table",
           "cache_dir", "load_problems", "normalized_hypervolume", "problem_from_dict",
           "relative_regret", "select_problems"]
