"""kernel-replay: serve recorded kernel measurements so searches run on real numbers anywhere.

A replay table is one JSON file (``evaluators/kernels/data/replay/<name>.json``), schema
``tuner.kernel_replay/1``::

    {
      "schema": "tuner.kernel_replay/1",
      "device": "NVIDIA H100 80GB HBM3",      # what the timings were measured on
      "gpu": "h100_sxm",                       # catalog name, or null (CPU interpreter tables)
      "software": {"torch": "...", "triton": "...", "cuda": "...", "python": "..."},
      "recorded_at": "2026-01-01T00:00:00Z",
      "timer": "triton.testing.do_bench (L2 flushed)",
      "note": "free text: how the sweep was run, what was sampled",
      "records": [
        {"kernel": "gemm", "shape": {"m": 4096, "n": 4096, "k": 4096, "dtype": "bf16"},
         "config": {"block_m": 128, ...}, "status": "ok", "time_us": 190.2,
         "time_us_p20": 189.9, "time_us_p80": 190.8, "samples": 520, "reason": null},
        {"kernel": "gemm", ..., "status": "failed", "reason": "OutOfResources: ..."}
      ],
      "baselines": [{"kernel": "gemm", "shape": {...}, "torch_time_us": 181.0}]
    }

Failed configs are stored too, so they are never measured twice and replay as ``failed``. A
config, a shape or a GPU missing from the table is ``failed`` with a reason that says what is
recorded (searches move on; nothing is invented); naming a table that does not exist is a
``BadInput``. Which table: the option ``table`` (a name in the data folder or a path); by
default the table named after the config's ``gpu``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner import BadInput, BaseEvaluator, EvalResult, Option
from tuner.evaluators._catalog import get_hardware
from tuner.evaluators.kernels._tiles import CONFIG_KEYS, attention_context, gemm_context

SCHEMA = "tuner.kernel_replay/1"
DATA_DIR = Path(__file__).parent / "data" / "replay"
SHAPE_KEYS = {"gemm": ("m", "n", "k", "dtype"),
              "attention": ("batch", "heads", "seq_len", "head_dim", "dtype", "causal")}
TILE_KEYS = {"gemm": ("block_m", "block_n", "block_k", "group_m", "num_warps", "num_stages",
                      "split_k"),
             "attention": ("block_m", "block_n", "num_warps", "num_stages")}
_TOP_KEYS = {"schema", "device", "gpu", "software", "recorded_at", "timer", "note", "records",
             "baselines"}
_RECORD_KEYS = {"kernel", "shape", "config", "status", "time_us", "time_us_p20", "time_us_p80",
                "samples", "reason"}
_BASELINE_KEYS = {"kernel", "shape", "torch_time_us"}


def shape_key(kernel: str, shape: Mapping[str, Any]) -> tuple:
    return (kernel,) + tuple(shape[k] for k in SHAPE_KEYS[kernel])


def tile_key(kernel: str, config: Mapping[str, Any]) -> tuple:
    return tuple(config[k] for k in TILE_KEYS[kernel])


def _strict(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise BadInput(where, f"unknown key {sorted(unknown)[0]!r}; allowed: "
                       + ", ".join(sorted(allowed)))


@dataclass
class ReplayTable:
    """An in-memory replay table; ``load``/``save`` read and write the JSON schema above."""

    device: str
    gpu: str | None
    software: dict[str, str]
    recorded_at: str = ""
    timer: str = ""
    note: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    baselines: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index: dict[tuple, dict[tuple, dict[str, Any]]] = {}
        for r in self.records:
            self._index.setdefault(shape_key(r["kernel"], r["shape"]), {})[
                tile_key(r["kernel"], r["config"])] = r
        self._base = {shape_key(b["kernel"], b["shape"]): b["torch_time_us"]
                      for b in self.baselines}

    # -- io -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReplayTable:
        where = f"replay table {Path(path).name}"
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BadInput("table", f"{path}: cannot read ({exc})") from None
        if data.get("schema") != SCHEMA:
            raise BadInput("table", f"{where}: schema {data.get('schema')!r}, expected {SCHEMA!r}")
        _strict(data, _TOP_KEYS, where)
        for key in ("device", "gpu", "software", "records"):
            if key not in data:
                raise BadInput("table", f"{where}: missing key {key!r}")
        for i, r in enumerate(data["records"]):
            _strict(r, _RECORD_KEYS, f"{where} record {i}")
            if r.get("kernel") not in SHAPE_KEYS or r.get("status") not in (
                    "ok", "failed", "infeasible"):
                raise BadInput("table", f"{where} record {i}: bad kernel or status")
            missing = [k for k in SHAPE_KEYS[r["kernel"]] if k not in r.get("shape", {})]
            missing += [k for k in TILE_KEYS[r["kernel"]] if k not in r.get("config", {})]
            if r["status"] == "ok":
                missing += [k for k in ("time_us",) if r.get(k) is None]
            if missing:
                raise BadInput("table", f"{where} record {i}: missing {missing[0]!r}")
        for i, b in enumerate(data.get("baselines", [])):
            _strict(b, _BASELINE_KEYS, f"{where} baseline {i}")
        return cls(device=data["device"], gpu=data["gpu"], software=dict(data["software"]),
                   recorded_at=data.get("recorded_at", ""), timer=data.get("timer", ""),
                   note=data.get("note", ""), records=list(data["records"]),
                   baselines=list(data.get("baselines", [])))

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "device": self.device, "gpu": self.gpu,
                "software": self.software, "recorded_at": self.recorded_at, "timer": self.timer,
                "note": self.note, "records": self.records, "baselines": self.baselines}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Atomic write (temp file + rename): an interrupted sweep never leaves half a table."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_json(), fh, indent=1, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)

    # -- content ------------------------------------------------------------------------------
    def add(self, kernel: str, shape: Mapping[str, Any], config: Mapping[str, Any],
            result: EvalResult) -> dict[str, Any]:
        m = result.metrics
        rec = {"kernel": kernel, "shape": {k: shape[k] for k in SHAPE_KEYS[kernel]},
               "config": {k: config[k] for k in TILE_KEYS[kernel]},
               "status": result.status.value, "time_us": m.get("time_us"),
               "time_us_p20": m.get("time_us_p20"), "time_us_p80": m.get("time_us_p80"),
               "samples": result.artifacts.get("samples"), "reason": result.reason}
        self.records.append(rec)
        self._index.setdefault(shape_key(kernel, rec["shape"]), {})[
            tile_key(kernel, rec["config"])] = rec
        return rec

    def set_baseline(self, kernel: str, shape: Mapping[str, Any], torch_time_us: float) -> None:
        key = shape_key(kernel, shape)
        self.baselines = [b for b in self.baselines
                          if shape_key(b["kernel"], b["shape"]) != key]
        self.baselines.append({"kernel": kernel,
                               "shape": {k: shape[k] for k in SHAPE_KEYS[kernel]},
                               "torch_time_us": torch_time_us})
        self._base[key] = torch_time_us

    def shapes(self) -> list[tuple]:
        return list(self._index)

    def lookup(self, kernel: str, shape: Mapping[str, Any],
               config: Mapping[str, Any]) -> dict[str, Any] | None:
        return self._index.get(shape_key(kernel, shape), {}).get(tile_key(kernel, config))

    def shape_records(self, kernel: str, shape: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(self._index.get(shape_key(kernel, shape), {}).values())

    def baseline(self, kernel: str, shape: Mapping[str, Any]) -> float | None:
        return self._base.get(shape_key(kernel, shape))

    def has_shape(self, kernel: str, shape: Mapping[str, Any]) -> bool:
        return shape_key(kernel, shape) in self._index


def table_names() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.json"))


def resolve_table(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        return p
    candidate = DATA_DIR / f"{p.stem if p.suffix == '.json' else name_or_path}.json"
    if candidate.exists():
        return candidate
    raise BadInput("table", f"no replay table {name_or_path!r}; available: "
                   + (", ".join(table_names()) or "none"))


def _shape_text(kernel: str, shape: Mapping[str, Any]) -> str:
    return kernel + " " + " ".join(f"{k}={shape[k]}" for k in SHAPE_KEYS[kernel])


class KernelReplayEvaluator(BaseEvaluator):
    """Answers kernel-gemm / kernel-attention configs from a recorded table.

    Options:
        table: table name in ``evaluators/kernels/data/replay`` or a path (default: the
            config's ``gpu``).
    """

    name = "kernel-replay"
    version = "1"
    domains = ("kernel-gemm", "kernel-attention")
    #: always reported; GPU tables add ``pct_of_peak``, ``time_us_p20``/``time_us_p80`` and,
    #: where torch was timed on the shape, ``torch_time_us`` and ``pct_of_cublas``/``pct_of_sdpa``
    metrics = ("time_us", "tflops")
    options_table = {"table": Option(str, None, "table name in evaluators/kernels/data/replay "
                                     "or a path (default: the config's gpu)")}
    config_keys = CONFIG_KEYS

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._tables: dict[Path, ReplayTable] = {}

    def _table(self, gpu: str) -> tuple[Path, ReplayTable]:
        path = resolve_table(str(self.options.get("table") or gpu))
        if path not in self._tables:
            self._tables[path] = ReplayTable.load(path)
        return path, self._tables[path]

    def environment(self) -> dict[str, str]:
        """The tables' content is part of what a cached result depends on."""
        env = {"schema": SCHEMA}
        name = self.options.get("table")
        paths = [resolve_table(str(name))] if name else sorted(DATA_DIR.glob("*.json"))
        digest = hashlib.sha256()
        for p in paths:
            digest.update(p.name.encode() + b"\0" + p.read_bytes())
        env["tables"] = ",".join(p.name for p in paths)
        env["tables_sha256"] = digest.hexdigest()[:16]
        return env

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        kernel = config.get("kernel") or ("attention" if "head_dim" in config else "gemm")
        if not isinstance(kernel, str) or kernel not in SHAPE_KEYS:
            raise BadInput("kernel", f"{kernel!r} is not a kernel; allowed: attention, gemm")
        keys = SHAPE_KEYS[kernel] + ("gpu",)
        ctx = (gemm_context if kernel == "gemm" else attention_context)(
            {k: config[k] for k in keys if k in config})
        try:
            path, table = self._table(ctx["gpu"])
        except BadInput as exc:
            if self.options.get("table"):  # the user named a table that does not exist
                raise
            return EvalResult.failed(f"no replay table for gpu {ctx['gpu']!r} ({exc}); "
                                     "record one with python -m tuner.benchmarks.kernel_sweep")
        if table.gpu is not None and table.gpu != ctx["gpu"]:
            return EvalResult.failed(f"config gpu {ctx['gpu']!r} but replay table {path.name} "
                                     f"was recorded on {table.gpu!r} ({table.device})")
        if not table.has_shape(kernel, ctx):
            shapes = [_shape_text(s[0], dict(zip(SHAPE_KEYS[s[0]], s[1:])))
                      for s in table.shapes()]
            return EvalResult.failed(f"{_shape_text(kernel, ctx)} is not in replay table "
                                     f"{path.name}; recorded: " + "; ".join(shapes))
        try:
            rec = table.lookup(kernel, ctx, config)
        except (KeyError, TypeError) as exc:
            return EvalResult.infeasible(f"missing or malformed tile parameter: {exc}")
        if rec is None:
            n = len(table.shape_records(kernel, ctx))
            tile = {k: config[k] for k in TILE_KEYS[kernel]}
            return EvalResult.failed(f"config {tile} was not recorded in replay table "
                                     f"{path.name} ({n} configs recorded for this shape)")
        if rec["status"] != "ok":
            return EvalResult(rec["status"], {}, rec.get("reason") or "recorded as "
                              + rec["status"], {})
        return EvalResult.ok(self._metrics(kernel, ctx, rec, table),
                             artifacts={"device": table.device, "table": path.name})

    @staticmethod
    def _metrics(kernel: str, ctx: Mapping[str, Any], rec: Mapping[str, Any],
                 table: ReplayTable) -> dict[str, float]:
        t = float(rec["time_us"])
        if kernel == "gemm":
            flops = 2.0 * ctx["m"] * ctx["n"] * ctx["k"]
        else:
            s = ctx["seq_len"]
            pairs = s * (s + 1) / 2 if ctx["causal"] else float(s) * s
            flops = 4.0 * ctx["batch"] * ctx["heads"] * ctx["head_dim"] * pairs
        out = {"time_us": t, "tflops": flops / (t * 1e-6) * 1e-12}
        for q in ("time_us_p20", "time_us_p80"):
            if rec.get(q) is not None:
                out[q] = float(rec[q])
        if table.gpu is not None:  # a CPU interpreter table has no GPU peak to compare with
            out["pct_of_peak"] = 100.0 * flops / (t * 1e-6) / get_hardware(table.gpu).peak(
                ctx["dtype"])
            base = table.baseline(kernel, ctx)
            if base is not None:
                out["torch_time_us"] = base
                out["pct_of_cublas" if kernel == "gemm" else "pct_of_sdpa"] = 100.0 * base / t
        return out


def iter_shapes(table: ReplayTable) -> Iterable[tuple[str, dict[str, Any]]]:
    for key in table.shapes():
        yield key[0], dict(zip(SHAPE_KEYS[key[0]], key[1:]))


__all__ = ["DATA_DIR", "KernelReplayEvaluator", "ReplayTable", "SCHEMA", "iter_shapes",
           "resolve_table", "table_names"]
