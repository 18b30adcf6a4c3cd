"""Serving workloads: arrival processes, length distributions and request-trace replay.

A workload is given inline as a table (``{"mode": "poisson", "rate": 8, ...}``), by the name
of a file in ``catalog/workloads/`` (``"sharegpt-like"``, optionally with overrides:
``{"name": "sharegpt-like", "rate": 4}``), or as a trace (``{"trace": "path.csv"}``).

Modes:
    closed   fixed ``concurrency``: a new request is sent the moment one finishes (the mode of
             ``vllm bench serve --max-concurrency``; ``rate`` is ignored).
    poisson  open loop, exponential inter-arrival times at ``rate`` requests/s.
    gamma    open loop, Gamma inter-arrival times at ``rate`` with shape ``burstiness``
             (vLLM's ``--burstiness``: 1 is Poisson, below 1 is burstier; CV = 1/sqrt(shape)).
    burst    all ``num_requests`` arrive at t=0 (``--request-rate inf``).
    trace    replay of a CSV: ``timestamp,input_tokens,output_tokens[,priority]`` or the
             BurstGPT layout ``Timestamp,Model,Request tokens,Response tokens,Total tokens,
             Log Type``. Rows with zero tokens (BurstGPT's failed requests) are skipped and
             counted. ``rate`` rescales the timestamps to that mean rate; ``speedup`` divides
             them; ``max_requests``, ``start_s``, ``duration_s`` and ``model_filter`` select
             rows.

Lengths (``input_len``, ``output_len``): an integer, or a table
``{"dist": "uniform", "low": 100, "high": 900}``,
``{"dist": "lognormal", "mean": 220, "cv": 1.2, "min": 4, "max": 1024}`` or
``{"dist": "normal", "mean": 512, "std": 64, "min": 1, "max": 2048}``.
Or ``dataset`` instead of both: ``"sharegpt"`` draws (prompt, completion) pairs from the
token lengths of ShareGPT's first turns (``catalog/workloads/sharegpt_lengths.csv``: what
``vllm bench serve --dataset-name sharegpt`` sends); as a table
``{"name": "sharegpt", "input_mean": 217.4, "output_mean": 201.6}`` the drawn lengths are
scaled so that their means are those (another tokenizer, or a run's printed token totals).
``warmup_requests`` (any mode): the first N requests issued are simulated but left out of
the metrics, as a benchmark client's warm-up or steady-state measurement window does
(``genai-perf``/``perf_analyzer`` measure stable windows, not the ramp-up of a closed loop).

Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import random
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import BadInput, UnknownName, as_written
from tuner.evaluators._catalog import CATALOG_DIR

WORKLOAD_DIR = CATALOG_DIR / "workloads"

MODES = ("closed", "poisson", "gamma", "burst", "trace")
_KEYS = {
    "name", "description", "source", "mode", "rate", "burstiness", "concurrency",
    "num_requests", "duration_s", "input_len", "output_len", "seed", "priority_levels",
    "trace", "speedup", "max_requests", "start_s", "model_filter", "warmup_requests",
    "dataset",
}
_DISTS = {"fixed": ("value",), "uniform": ("low", "high"), "lognormal": ("mean", "cv"),
          "normal": ("mean", "std")}
_DIST_OPTIONAL = ("min", "max")
#: requests one simulated run may hold (about half a minute of simulation on one core)
MAX_REQUESTS = 1_000_000
#: ``dataset`` names -> CSV of (prompt_tokens, completion_tokens) in ``catalog/workloads/``
DATASETS = {"sharegpt": "sharegpt_lengths.csv"}

#: accepted CSV header names (case-insensitive) for each field
_TRACE_COLUMNS = {
    "timestamp": ("timestamp", "arrival_s", "arrival_time", "time", "time_s"),
    "input": ("request tokens", "input_tokens", "input_len", "prompt_tokens", "input"),
    "output": ("response tokens", "output_tokens", "output_len", "completion_tokens",
               "output"),
    "priority": ("priority",),
    "model": ("model",),
}


@dataclass(frozen=True)
class Workload:
    """Requests as parallel tuples (plain data, fast to iterate).

    ``arrival_s`` is ignored in closed loop, where ``concurrency`` requests are in flight.
    """

    arrival_s: tuple[float, ...]
    input_len: tuple[int, ...]
    output_len: tuple[int, ...]
    priority: tuple[int, ...]
    concurrency: int | None = None
    description: str = ""
    skipped_rows: int = 0
    warmup: int = 0  # the first requests issued, simulated but not measured

    def __len__(self) -> int:
        return len(self.input_len)

    @property
    def is_closed(self) -> bool:
        return self.concurrency is not None

    def stats(self) -> dict[str, float]:
        n = len(self)
        span = (self.arrival_s[-1] - self.arrival_s[0]) if n > 1 else 0.0
        return {"num_requests": n, "mean_input_len": sum(self.input_len) / n,
                "mean_output_len": sum(self.output_len) / n,
                "max_input_len": max(self.input_len), "max_output_len": max(self.output_len),
                "max_total_len": max(i + o for i, o in zip(self.input_len, self.output_len)),
                "offered_rate_req_s": (n - 1) / span if span > 0 else math.inf}


# -- parsing helpers ---------------------------------------------------------------------
def _num(spec: Mapping[str, Any], key: str, field: str, *, integer: bool = False,
         positive: bool = True, default: Any = None) -> Any:
    v = spec.get(key, default)
    if v is None:
        raise BadInput(f"{field}.{key}", "required for this workload mode")
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or (isinstance(v, float) and not math.isfinite(v)):
        kind = "an integer" if integer else "a number"
        raise BadInput(f"{field}.{key}", f"{as_written(v)} must be {kind}")
    if positive and v <= 0:
        raise BadInput(f"{field}.{key}", f"{v!r} must be > 0")
    if not positive and v < 0:
        raise BadInput(f"{field}.{key}", f"{v!r} must be >= 0")
    return v


def _length_sampler(spec: Any, field: str) -> Any:
    """A function ``rng -> int >= 1`` for one length spec."""
    if isinstance(spec, bool) or spec is None:
        raise BadInput(field, f"{spec!r} must be a positive integer or a distribution table")
    if isinstance(spec, int):
        if spec <= 0:
            raise BadInput(field, f"{spec} must be a positive integer")
        return lambda rng: spec
    if not isinstance(spec, Mapping):
        raise BadInput(field, f"{spec!r} must be a positive integer or a distribution table")
    dist = spec.get("dist")
    if not isinstance(dist, str) or dist not in _DISTS:
        raise UnknownName(f"{field}.dist", dist, list(_DISTS))
    allowed = {"dist", *_DISTS[dist], *_DIST_OPTIONAL}
    unknown = set(spec) - allowed
    if unknown:
        raise BadInput(field, f"unknown key {sorted(unknown)[0]!r}; allowed: "
                       + ", ".join(sorted(allowed)))
    lo = int(_num(spec, "min", field, integer=True, default=1))
    hi = int(_num(spec, "max", field, integer=True, default=10**9))
    if lo > hi:
        raise BadInput(field, f"min {lo} > max {hi}")

    def clip(x: float) -> int:
        return max(lo, min(hi, int(round(x))))

    if dist == "fixed":
        v = clip(_num(spec, "value", field, integer=True))
        return lambda rng: v
    if dist == "uniform":
        a = _num(spec, "low", field, integer=True)
        b = _num(spec, "high", field, integer=True)
        if a > b:
            raise BadInput(field, f"low {a} > high {b}")
        return lambda rng: clip(rng.randint(a, b))
    if dist == "normal":
        mu, sd = _num(spec, "mean", field), _num(spec, "std", field, positive=False)
        return lambda rng: clip(rng.gauss(mu, sd))
    # lognormal parameterised by its mean and coefficient of variation
    mean, cv = _num(spec, "mean", field), _num(spec, "cv", field)
    sigma2 = math.log(1.0 + cv * cv)
    mu, sigma = math.log(mean) - sigma2 / 2, math.sqrt(sigma2)
    return lambda rng: clip(rng.lognormvariate(mu, sigma))


@functools.cache
def _dataset_pairs(name: str) -> tuple[tuple[int, int], ...]:
    with (WORKLOAD_DIR / DATASETS[name]).open(newline="") as fh:
        rows = csv.reader(fh)
        next(rows)
        return tuple((int(p), int(c)) for p, c in rows)


def _dataset_lengths(spec: Any, count: int, rng: random.Random, field: str
                     ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``count`` (prompt, completion) pairs drawn from a dataset, scaled to the spec's means."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise BadInput(field, f"{spec!r} must be a dataset name or a table")
    unknown = set(spec) - {"name", "input_mean", "output_mean"}
    if unknown:
        raise BadInput(field, f"unknown key {sorted(unknown)[0]!r}; allowed: input_mean, "
                       "name, output_mean")
    name = spec.get("name")
    if name not in DATASETS:
        raise UnknownName(f"{field}.name", name, list(DATASETS))
    pairs = _dataset_pairs(name)
    drawn = [pairs[rng.randrange(len(pairs))] for _ in range(count)]
    out = []
    for i, key in enumerate(("input_mean", "output_mean")):
        lengths = [p[i] for p in drawn]
        scale = 1.0
        if key in spec:
            scale = _num(spec, key, field) * count / sum(lengths)
        out.append(tuple(max(1, round(x * scale)) for x in lengths))
    return out[0], out[1]


@functools.cache
def _catalog_entry(name: str) -> dict[str, Any]:
    path = WORKLOAD_DIR / f"{name}.toml"
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    unknown = set(data) - _KEYS
    if unknown:
        raise BadInput(f"catalog/workloads/{path.name}", f"unknown key {sorted(unknown)[0]!r}")
    return data


def workload_names() -> list[str]:
    return sorted(p.stem for p in WORKLOAD_DIR.glob("*.toml"))


def resolve_spec(spec: Any, field: str = "workload") -> dict[str, Any]:
    """Expand a catalog name (string or ``{"name": ...}`` with overrides) into a full table."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise BadInput(field, f"{spec!r} must be a table or a workload name; names: "
                       + ", ".join(workload_names()))
    unknown = set(spec) - _KEYS
    if unknown:
        raise BadInput(field, f"unknown key {sorted(unknown)[0]!r}; allowed: "
                       + ", ".join(sorted(_KEYS)))
    if "name" in spec:
        name = spec["name"]
        if not isinstance(name, str) or name not in workload_names():
            raise UnknownName(f"{field}.name", name, workload_names())
        base = dict(_catalog_entry(name))
        if "trace" in base:  # catalog traces live beside the catalog file
            base["trace"] = str(WORKLOAD_DIR / base["trace"])
        spec = {**base, **{k: v for k, v in spec.items() if k != "name"}, "name": name}
    return dict(spec)


def load_workload(spec: Any, field: str = "workload") -> Workload:
    """Build the request list of a workload spec; raises ``BadInput`` naming the field."""
    spec = resolve_spec(spec, field)
    workload = _requests(spec, field)
    warmup = int(_num(spec, "warmup_requests", field, integer=True, positive=False, default=0))
    if warmup >= len(workload):
        raise BadInput(f"{field}.warmup_requests",
                       f"{warmup} leaves no request to measure (the workload has "
                       f"{len(workload)}; allowed 0-{len(workload) - 1})")
    return dataclasses.replace(workload, warmup=warmup) if warmup else workload


def _requests(spec: Mapping[str, Any], field: str) -> Workload:
    mode = spec.get("mode", "trace" if "trace" in spec else None)
    if mode not in MODES:
        raise UnknownName(f"{field}.mode", mode, list(MODES))
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadInput(f"{field}.seed", f"{seed!r} must be an integer")
    levels = int(_num(spec, "priority_levels", field, integer=True, default=1))
    desc = str(spec.get("description", spec.get("name", mode)))
    if mode == "trace":
        return _load_trace(spec, field, levels, seed, desc)
    rng = random.Random(seed)
    n = spec.get("num_requests")
    if n is not None:
        n = int(_num(spec, "num_requests", field, integer=True))
        if n > MAX_REQUESTS:
            raise BadInput(f"{field}.num_requests", f"{n} is above the {MAX_REQUESTS} "
                           "requests one simulated run may hold")
    dataset = spec.get("dataset")
    if dataset is not None:
        both = [k for k in ("input_len", "output_len") if k in spec]
        if both:
            raise BadInput(f"{field}.{both[0]}", "give either dataset or input_len and "
                           "output_len, not both")
    else:
        in_s = _length_sampler(spec.get("input_len"), f"{field}.input_len")
        out_s = _length_sampler(spec.get("output_len"), f"{field}.output_len")
    arrivals: list[float] = []
    concurrency = None
    if mode == "closed":
        concurrency = int(_num(spec, "concurrency", field, integer=True))
        n = n if n is not None else min(concurrency * 10, MAX_REQUESTS)
        arrivals = [0.0] * n
    elif mode == "burst":
        if n is None:
            raise BadInput(f"{field}.num_requests", "required for burst mode")
        arrivals = [0.0] * n
    else:
        rate = _num(spec, "rate", field)
        shape = 1.0 if mode == "poisson" else _num(spec, "burstiness", field)
        duration = spec.get("duration_s")
        if n is None and duration is None:
            raise BadInput(f"{field}.num_requests", "give num_requests or duration_s")
        if duration is not None:
            duration = _num(spec, "duration_s", field)
        t = 0.0
        while (n is None or len(arrivals) < n) and (duration is None or t <= duration):
            if len(arrivals) == MAX_REQUESTS:
                raise BadInput(f"{field}.duration_s", f"rate x duration_s brings more than "
                               f"{MAX_REQUESTS} requests, the most one simulated run may "
                               "hold")
            arrivals.append(t)
            # Gamma(shape, 1/(rate*shape)) has mean 1/rate; shape 1 is exponential
            t += rng.gammavariate(shape, 1.0 / (rate * shape))
        if not arrivals:
            raise BadInput(f"{field}.duration_s", "no request arrives in this duration")
    count = len(arrivals)
    if dataset is not None:
        inputs, outputs = _dataset_lengths(dataset, count, rng, f"{field}.dataset")
    else:
        inputs = tuple(in_s(rng) for _ in range(count))
        outputs = tuple(out_s(rng) for _ in range(count))
    prios = tuple(rng.randrange(levels) for _ in range(count)) if levels > 1 else (0,) * count
    return Workload(tuple(arrivals), inputs, outputs, prios, concurrency, desc)


def _match_columns(header: list[str], path: str, field: str) -> dict[str, int]:
    lower = [h.strip().lower() for h in header]
    cols: dict[str, int] = {}
    for key, names in _TRACE_COLUMNS.items():
        for name in names:
            if name in lower:
                cols[key] = lower.index(name)
                break
    for key in ("timestamp", "input", "output"):
        if key not in cols:
            want = " or ".join(repr(n) for n in _TRACE_COLUMNS[key][:3])
            # the header itself is not echoed: a wrong file (a credentials file) would leak
            raise BadInput(f"{field}.trace", f"{path} line 1: no {key} column (expected "
                           f"{want}) among its {len(header)} header field(s); is it the "
                           "right file?")
    return cols


def _load_trace(spec: Mapping[str, Any], field: str, levels: int, seed: int,
                desc: str) -> Workload:
    raw = spec.get("trace")
    if not isinstance(raw, str) or not raw:
        raise BadInput(f"{field}.trace", f"{raw!r} must be a path to a CSV file")
    path = Path(raw)
    if not path.is_file() and (WORKLOAD_DIR / raw).is_file():
        path = WORKLOAD_DIR / raw
    if not path.is_file():
        raise BadInput(f"{field}.trace", f"{raw}: no such file")
    model_filter = spec.get("model_filter")
    start = _num(spec, "start_s", field, positive=False, default=0.0)
    duration = spec.get("duration_s")
    rows: list[tuple[float, int, int, int]] = []
    skipped = 0
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise BadInput(f"{field}.trace", f"{raw}: empty file (expected a CSV header)")
        cols = _match_columns(header, raw, field)
        width = max(cols.values()) + 1
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < width:
                raise BadInput(f"{field}.trace", f"{raw} line {lineno}: {len(row)} columns, "
                               f"expected at least {width}")
            try:
                ts = float(row[cols["timestamp"]])
                if not math.isfinite(ts) or ts < 0:
                    raise ValueError
            except ValueError:
                raise BadInput(f"{field}.trace", f"{raw} line {lineno}: timestamp "
                               f"{row[cols['timestamp']]!r} is not a non-negative number"
                               ) from None
            vals = []
            for key in ("input", "output"):
                cell = row[cols[key]].strip()
                try:
                    v = int(float(cell))
                    if v < 0 or float(cell) != v:
                        raise ValueError
                except ValueError:
                    raise BadInput(f"{field}.trace", f"{raw} line {lineno}: {key} tokens "
                                   f"{cell!r} is not a non-negative integer") from None
                vals.append(v)
            prio = 0
            if "priority" in cols:
                try:
                    prio = int(row[cols["priority"]])
                except ValueError:
                    raise BadInput(f"{field}.trace", f"{raw} line {lineno}: priority "
                                   f"{row[cols['priority']]!r} is not an integer") from None
            if model_filter is not None and "model" in cols \
                    and row[cols["model"]].strip() != model_filter:
                continue
            if ts < start or (duration is not None and ts > start + duration):
                continue
            if vals[0] == 0 or vals[1] == 0:  # BurstGPT logs failed requests with 0 tokens
                skipped += 1
                continue
            rows.append((ts, vals[0], vals[1], prio))
    if not rows:
        raise BadInput(f"{field}.trace", f"{raw}: no usable data rows"
                       + (f" ({skipped} rows with zero tokens skipped)" if skipped else ""))
    rows.sort(key=lambda r: r[0])
    max_req = spec.get("max_requests")
    if max_req is not None:
        rows = rows[:int(_num(spec, "max_requests", field, integer=True))]
    if len(rows) > MAX_REQUESTS:
        raise BadInput(f"{field}.max_requests", f"the trace selects {len(rows)} requests, above "
                       f"the {MAX_REQUESTS} one simulated run may hold: set max_requests (or "
                       "start_s and duration_s)")
    t0 = rows[0][0]
    times = [r[0] - t0 for r in rows]
    if "rate" in spec:
        rate = _num(spec, "rate", field)
        span = times[-1]
        if span > 0:
            scale = (len(times) - 1) / rate / span
            times = [t * scale for t in times]
    elif "speedup" in spec:
        speed = _num(spec, "speedup", field)
        times = [t / speed for t in times]
    if levels > 1 and "priority" not in cols:
        rng = random.Random(seed)
        prios = tuple(rng.randrange(levels) for _ in rows)
    else:
        prios = tuple(r[3] for r in rows)
    return Workload(tuple(times), tuple(r[1] for r in rows), tuple(r[2] for r in rows), prios,
                    None, desc or path.name, skipped)


def synthetic_burstgpt_rows(n: int = 2000, rate: float = 2.0, seed: int = 0
                            ) -> list[tuple[float, str, int, int, int, str]]:
    """SYNTHETIC rows in BurstGPT's column layout (not BurstGPT data).

    Shaped after the properties the BurstGPT paper reports (Wang et al., arXiv 2401.17644):
    bursty arrivals (Gamma inter-arrival times, shape 0.5 here), heavy-tailed request lengths,
    a mix of short and long responses, a ChatGPT/GPT-4 mix, and failed requests logged with
    zero response tokens. Used to test the loader and to run trace-replay studies offline.
    """
    rng = random.Random(seed)
    t = 0.0
    rows = []
    for _ in range(n):
        t += rng.gammavariate(0.5, 1.0 / (rate * 0.5))
        model = "ChatGPT" if rng.random() < 0.8 else "GPT-4"
        req = max(1, min(16000, int(rng.lognormvariate(math.log(450), 1.1))))
        if rng.random() < 0.03:
            resp = 0  # failed request
        elif rng.random() < 0.3:
            resp = max(1, int(rng.lognormvariate(math.log(25), 0.8)))
        else:
            resp = max(1, min(4000, int(rng.lognormvariate(math.log(260), 0.7))))
        log = "Conversation log" if rng.random() < 0.6 else "API log"
        rows.append((round(t, 3), model, req, resp, req + resp, log))
    return rows


def write_synthetic_burstgpt(path: Path, n: int = 2000, rate: float = 2.0, seed: int = 0) -> None:
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens",
                    "Log Type"])
        w.writerows(synthetic_burstgpt_rows(n, rate, seed))


__all__ = ["DATASETS", "MODES", "Workload", "load_workload", "resolve_spec",
           "synthetic_burstgpt_rows", "workload_names", "write_synthetic_burstgpt"]
