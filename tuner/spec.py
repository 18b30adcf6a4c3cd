"""The study file (TOML), validated with pydantic into a ``StudySpec``.

Every error is one line naming the field, the bad value and the allowed values.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuner import registry
from tuner._errors import BadInput, UnknownName

_OPS = ("<=", "<", ">=", ">", "==")
#: evaluation processes one run may start (``workers``, ``--workers``)
MAX_WORKERS = 256
#: below this an evaluation process cannot start Python and import an evaluator
MIN_MEMORY_LIMIT_MIB = 256
#: a study file or a JSON config larger than this is refused before it is parsed
MAX_INPUT_BYTES = 1 << 20
#: tables and lists nested deeper than this are refused (no real study needs more than ~6)
MAX_DEPTH = 32


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

    @field_validator("reference")
    @classmethod
    def _finite_reference(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class ConstraintSpec(_Strict):
    metric: str
    op: Literal["<=", "<", ">=", ">", "=="]
    value: float

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):  # nan compares false with everything: nothing would pass
            raise ValueError("must be a finite number (not nan or inf)")
        return v

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
    memory_limit_mib: int | None = None

    @field_validator("memory_limit_mib")
    @classmethod
    def _enough_to_start(cls, v: int | None) -> int | None:
        if v is not None and v < MIN_MEMORY_LIMIT_MIB:
            raise ValueError(f"must be >= {MIN_MEMORY_LIMIT_MIB} (MiB): less cannot start "
                             "an evaluation process")
        return v


class FidelitySpec(_Strict):
    """``[fidelity]``: screen with a simulator, measure its best with the study's evaluator."""

    screen: str
    screen_options: dict[str, Any] = Field(default_factory=dict)
    top_k: int = Field(default=8, ge=1, le=10_000)
    #: configs per round chosen to spread over the space rather than for their rank: the
    #: top of a front is often near-duplicates, which cannot tell a profile's constants apart
    explore: int = Field(default=0, ge=0, le=10_000)
    rounds: int = Field(default=3, ge=1, le=100)
    recalibrate: bool = True
    #: configs the screen scores per round (a finite space smaller than this: all of them)
    pool: int = Field(default=20_000, ge=1, le=10_000_000)
    #: write the final calibrated profile here (TOML)
    profile_out: str | None = None


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
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    fidelity: FidelitySpec | None = None

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
    errors = err.errors()
    missing = [".".join(str(x) for x in e["loc"]) for e in errors if e["type"] == "missing"]
    if len(missing) > 1:  # every missing key at once, not one per run
        return BadInput("study", "required keys are missing: " + ", ".join(missing))
    e = errors[0]
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
    if spec.fidelity is not None and spec.fidelity.screen not in registry.EVALUATORS \
            and ":" not in spec.fidelity.screen:
        raise UnknownName("fidelity.screen", spec.fidelity.screen, list(registry.EVALUATORS))
    if spec.sampler.name is not None and spec.sampler.name not in registry.SAMPLERS \
            and ":" not in spec.sampler.name:
        raise UnknownName("sampler.name", spec.sampler.name,
                          list(registry.SAMPLERS))
    metrics = [o.metric for o in spec.objectives]
    if len(set(metrics)) != len(metrics):
        raise BadInput("objectives", f"metric listed twice in {metrics}")
    return spec


def check_depth(data: Any, field: str, limit: int = MAX_DEPTH) -> None:
    """``BadInput`` when tables/lists in ``data`` nest deeper than ``limit``."""
    todo = [(data, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise BadInput(field, f"nested more than {limit} levels deep")
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                 else item))


def load_spec(path: str | Path) -> StudySpec:
    path = Path(path)
    if not path.is_file():
        raise BadInput("study", f"file not found: {path}")
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise BadInput("study", f"{path} is {size:,} bytes; a study file is at most "
                       f"{MAX_INPUT_BYTES:,}")
    raw = path.read_bytes()
    if b"\0" in raw:
        raise BadInput("study", f"{path} is a binary file, not a TOML study file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput("study", f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput("study", f"malformed TOML in {path}: {exc}") from None
    except RecursionError:
        raise BadInput("study", f"{path}: nested more than {MAX_DEPTH} levels deep") from None
    check_depth(data, "study")
    return parse_spec(data)


def finish_spec(spec: StudySpec, space: Any, evaluator_cls: Any) -> StudySpec:
    """Fill defaults from the space and check metric names against the evaluator."""
    if not spec.objectives:
        spec.objectives = [ObjectiveSpec(metric=m, direction=d)
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
