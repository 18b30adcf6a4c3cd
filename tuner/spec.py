"""The study file (TOML), validated with pydantic into a ``StudySpec``.

Every error is one line naming the field, the bad value and the allowed values.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuner._errors import BadInput, UnknownName
from tuner import registry

_OPS = ("<=", "<", ">=", ">", "==")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class SpaceSpec(_Strict):
    domain: str
    context: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)


class EvaluatorSpec(_Strict):
    name: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class ObjectiveSpec(_Strict):
    metric: str
    direction: Literal["maximize", "minimize"]
    #: hypervolume reference value for this objective (default: worst observed + 10% of range)
    reference: float | None = None


class ConstraintSpec(_Strict):
    metric: str
    op: Literal["<=", "<", ">=", ">", "=="]
    value: float

    def violation(self, metrics: dict[str, float]) -> float:
        """> 0 when violated (by how much), <= 0 when satisfied; Optuna's convention."""
        x = metrics.get(self.metric)
        if x is None:
            return 1.0
        if self.op in ("<=", "<"):
            v = x - self.value
            return v if self.op == "<=" else (v if v > 0 else (1e-12 if v == 0 else v))
        if self.op in (">=", ">"):
            v = self.value - x
            return v if self.op == ">=" else (v if v > 0 else (1e-12 if v == 0 else v))
        return abs(x - self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


class ScreenSpec(_Strict):
    """An analytical sibling that scores every valid config before the search."""

    evaluator: str
    options: dict[str, Any] = Field(default_factory=dict)
    #: context keys set for the screen only (e.g. the GPU a replay table was recorded on)
    context: dict[str, Any] = Field(default_factory=dict)


class SamplerSpec(_Strict):
    name: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    #: cost-model only: start from the full ranking of this analytical evaluator
    #: (``screen = "kernel-sim"`` or a table with evaluator, options, context)
    screen: ScreenSpec | None = None

    @field_validator("screen", mode="before")
    @classmethod
    def _screen_name(cls, v: Any) -> Any:
        return {"evaluator": v} if isinstance(v, str) else v


class BudgetSpec(_Strict):
    trials: int | None = Field(default=None, gt=0)
    wall_time_s: float | None = Field(default=None, gt=0)
    #: hard per-trial limit enforced by the runner (the worker process is killed)
    trial_timeout_s: float = Field(default=600.0, gt=0)
    #: address-space limit per evaluation worker; None: a share of the machine's memory
    memory_limit_mib: int | None = Field(default=None, gt=0)


class StudySpec(_Strict):
    name: str
    description: str = ""
    seed: int | None = 0
    space: SpaceSpec
    evaluator: EvaluatorSpec = Field(default_factory=EvaluatorSpec)
    objectives: list[ObjectiveSpec] = Field(default_factory=list)
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    storage: str | None = None
    workers: int = Field(default=1, ge=1, le=256)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v):
            raise ValueError("must be 1-128 characters of letters, digits, '.', '_' or '-'")
        return v

    @field_validator("constraints", mode="before")
    @classmethod
    def _constraint_strings(cls, v: Any) -> Any:
        # accept "peak_memory_gib <= 80" as well as tables
        if not isinstance(v, list):
            return v
        out = []
        for item in v:
            if isinstance(item, str):
                m = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|<|>)\s*(\S+)\s*", item)
                if not m:
                    raise ValueError(f"{item!r} is not 'metric OP number' with OP one of "
                                     + " ".join(_OPS))
                try:
                    value = float(m.group(3))
                except ValueError:
                    raise ValueError(f"{item!r}: {m.group(3)!r} is not a number") from None
                item = {"metric": m.group(1), "op": m.group(2), "value": value}
            out.append(item)
        return out

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]


def _format_error(err: pydantic.ValidationError, model: type[BaseModel]) -> BadInput:
    e = err.errors()[0]
    loc = [str(x) for x in e["loc"]]
    field = ".".join(loc) or "study"
    if e["type"] == "extra_forbidden":
        parent: Any = model
        for part in loc[:-1]:
            ann = parent.model_fields.get(part) if hasattr(parent, "model_fields") else None
            if ann is None:
                parent = None
                break
            t = ann.annotation
            args = getattr(t, "__args__", ())
            parent = next((a for a in (t, *args) if isinstance(a, type)
                           and issubclass(a, BaseModel)), None)
            if parent is None:
                break
        allowed = ", ".join(parent.model_fields) if parent is not None else "see docs"
        return BadInput(field, f"unknown key {loc[-1]!r}; allowed: {allowed}")
    if e["type"] == "missing":
        return BadInput(field, "required key is missing")
    value = e.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a table"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    msg = e["msg"].replace("Value error, ", "")
    return BadInput(field, f"{shown}: {msg}")


def parse_spec(data: dict[str, Any]) -> StudySpec:
    """Validate a study dict (types and names, without building the space)."""
    try:
        spec = StudySpec.model_validate(data)
    except pydantic.ValidationError as err:
        raise _format_error(err, StudySpec) from None
    if spec.space.domain not in registry.SPACES and ":" not in spec.space.domain:
        raise UnknownName("space.domain", spec.space.domain, list(registry.SPACES))
    if spec.evaluator.name is not None and spec.evaluator.name not in registry.EVALUATORS \
            and ":" not in spec.evaluator.name:
        raise UnknownName("evaluator.name", spec.evaluator.name, list(registry.EVALUATORS))
    if spec.sampler.name is not None and spec.sampler.name not in registry.SAMPLERS \
            and ":" not in spec.sampler.name:
        raise UnknownName("sampler.name", spec.sampler.name, list(registry.SAMPLERS))
    metrics = [o.metric for o in spec.objectives]
    if len(set(metrics)) != len(metrics):
        raise BadInput("objectives", f"metric listed twice in {metrics}")
    return spec


def load_spec(path: str | Path) -> StudySpec:
    path = Path(path)
    if not path.is_file():
        raise BadInput("study", f"file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BadInput("study", f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput("study", f"malformed TOML in {path}: {exc}") from None
    return parse_spec(data)


def finish_spec(spec: StudySpec, space: Any, evaluator_cls: Any) -> StudySpec:
    """Fill defaults from the space and check metric names against the evaluator."""
    if not spec.objectives:
        spec.objectives = [ObjectiveSpec(metric=m, direction=d)  # type: ignore[arg-type]
                           for m, d in space.default_objectives]
        if not spec.objectives:
            raise BadInput("objectives", "required: at least one [[objectives]] table")
    known = list(getattr(evaluator_cls, "metrics", ()))
    if known:
        for i, o in enumerate(spec.objectives):
            if o.metric not in known:
                raise UnknownName(f"objectives[{i}].metric", o.metric, known)
        for i, c in enumerate(spec.constraints):
            if c.metric not in known:
                raise UnknownName(f"constraints[{i}].metric", c.metric, known)
    return spec
