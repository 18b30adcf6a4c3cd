"""``tuner validate serving``: serving-sim against published measurements and effects.

Quantitative rows come from ``data/validation/measurements.toml`` (each case a config
reproducing a published benchmark run and the figures its source prints, tagged
``calibration`` when it was used to fit a constant of ``data/engine.toml`` (only the
metrics listed in its ``fit``, if given) and ``validation`` otherwise). Qualitative rows come
from ``effects.toml``: each effect the literature reports is simulated as two configs and
becomes a row with metric
``qualitative_effect`` (predicted 1 if the effect holds, reference 1).

``python -m evaluators.serving.validation --fit`` re-fits the calibration constants by a small
grid search on the calibration rows (mean absolute log error) and prints them; it does not
write the data file.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import tomllib
from pathlib import Path
from typing import Any, Iterator, Mapping

from evaluators.serving import _plan
from evaluators.serving.sim import ServingSimEvaluator
from tuner import ValidationReport, ValidationRow

DATA = Path(__file__).parent / "data" / "validation"
_EXPECT = re.compile(r"\s*([ab])\.(\w+)\s*(<=|>=|<|>)\s*(?:([0-9.]+)\s*\*\s*)?([ab])\.(\w+)\s*")

#: metric group -> (target mean |error| %, target max |error| %)
TARGETS = {
    "tpot_ms_p50": (15.0, 35.0), "tpot_ms_mean": (15.0, 35.0), "e2e_ms_p50": (15.0, 35.0),
    "ttft_ms_p50": (50.0, 80.0), "ttft_ms_mean": (50.0, 80.0), "total_tok_s": (35.0, 60.0),
    "qualitative_effect": (0.0, 0.0),
}


def _load(name: str) -> dict[str, Any]:
    with (DATA / name).open("rb") as fh:
        return tomllib.load(fh)


def cases() -> list[dict[str, Any]]:
    return _load("measurements.toml")["case"]


def effects() -> list[dict[str, Any]]:
    return _load("effects.toml")["effect"]


def _evaluate(ev: ServingSimEvaluator, config: Mapping[str, Any]) -> Mapping[str, float]:
    res = ev.evaluate(config)
    if res.status.value != "ok":
        raise RuntimeError(f"validation config did not run: {res.reason}")
    return res.metrics


def measurement_rows(ev: ServingSimEvaluator | None = None) -> Iterator[ValidationRow]:
    ev = ev or ServingSimEvaluator()
    for case in cases():
        metrics = _evaluate(ev, case["config"])
        for metric, ref in case["reference"].items():
            yield ValidationRow(f"{case['id']} [{split_of(case, metric)}]", metric,
                                metrics[metric], float(ref), case["source"])


def split_of(case: Mapping[str, Any], metric: str) -> str:
    """"calibration" when this metric of this case was used to fit constants."""
    if case["split"] == "calibration" and metric in case.get("fit", case["reference"]):
        return "calibration"
    return "validation"


def check_effect(effect: Mapping[str, Any], ev: ServingSimEvaluator | None = None
                 ) -> tuple[bool, str]:
    """Simulate an effect's two configs; (holds, the comparisons with their values)."""
    ev = ev or ServingSimEvaluator()
    side = {k: _evaluate(ev, {**effect["base"], **effect[k]}) for k in ("a", "b")}
    ok, shown = True, []
    for text in effect["expect"]:
        m = _EXPECT.fullmatch(text)
        if m is None:
            raise ValueError(f"effects.toml {effect['id']}: cannot parse {text!r}")
        s1, m1, op, factor, s2, m2 = m.groups()
        x, y = side[s1][m1], float(factor or 1.0) * side[s2][m2]
        holds = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
        ok = ok and holds
        shown.append(f"{text} ({x:.4g} vs {y:.4g}: {'yes' if holds else 'NO'})")
    return ok, "; ".join(shown)


def effect_rows(ev: ServingSimEvaluator | None = None) -> Iterator[ValidationRow]:
    ev = ev or ServingSimEvaluator()
    for effect in effects():
        ok, shown = check_effect(effect, ev)
        yield ValidationRow(f"{effect['id']}: {shown}", "qualitative_effect", 1.0 if ok else 0.0,
                            1.0, effect["source"])


def _median_abs(rows: list[ValidationRow]) -> float:
    return statistics.median(abs(r.error_pct) for r in rows) if rows else math.nan


def run() -> ValidationReport:
    ev = ServingSimEvaluator()
    rows = list(measurement_rows(ev)) + list(effect_rows(ev))
    notes = []
    for split in ("calibration", "validation"):
        sel = [r for r in rows if f"[{split}]" in r.case]
        tpot = [r for r in sel if r.metric.startswith("tpot") or r.metric == "e2e_ms_p50"]
        ttft = [r for r in sel if r.metric.startswith("ttft")]
        notes.append(f"{split} rows: median |error| TPOT/e2e {_median_abs(tpot):.1f}% "
                     f"({len(tpot)} rows), TTFT {_median_abs(ttft):.1f}% ({len(ttft)} rows)")
    notes.append("calibration rows fitted 3 constants of evaluators/serving/data/engine.toml "
                 "(FIT_GRID); validation rows were not used to fit anything")
    notes.append("qualitative_effect rows: 1 = the effect reported in the literature appears in "
                 "the simulation (values in the case text), 0 = it does not")
    return ValidationReport("serving", rows, dict(TARGETS), notes)


# -- calibration -----------------------------------------------------------------------------
FIT_GRID = {
    ("step", "step_overhead_us"): (0.0, 100.0, 200.0, 300.0, 400.0, 600.0, 800.0, 1000.0),
    ("comm", "allreduce_latency_us"): (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0),
    ("frontend", "request_overhead_ms"): (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0),
}


def _score(cal: list[dict[str, Any]], consts: dict[str, Any]) -> float:
    original = _plan.engine_constants
    _plan.engine_constants = lambda: consts  # type: ignore[assignment]
    try:
        ev = ServingSimEvaluator()
        errs = []
        for case in cal:
            cfg = dict(case["config"])
            if "api_overhead_ms" not in cfg:
                cfg["api_overhead_ms"] = consts["frontend"]["request_overhead_ms"]
            m = _evaluate(ev, cfg)
            used = case.get("fit", list(case["reference"]))
            errs += [abs(math.log(m[k] / v)) for k, v in case["reference"].items() if k in used]
        return statistics.fmean(errs)
    finally:
        _plan.engine_constants = original  # type: ignore[assignment]


def fit(grid: Mapping[tuple[str, str], tuple[float, ...]] = FIT_GRID, passes: int = 2
        ) -> dict[str, Any]:
    """Coordinate-wise grid search of engine constants minimising the mean absolute log
    error on the calibration rows (each constant in turn, ``passes`` sweeps)."""
    cal = [c for c in cases() if c["split"] == "calibration"]
    consts = {s: dict(t) if isinstance(t, dict) else t
              for s, t in _plan.engine_constants().items()}
    score = _score(cal, consts)
    for _ in range(passes):
        for (section, key), values in grid.items():
            for v in values:
                trial = {s: dict(t) if isinstance(t, dict) else t for s, t in consts.items()}
                trial.setdefault(section, {})[key] = v
                got = _score(cal, trial)
                if got < score - 1e-9:
                    score, consts = got, trial
    return {"mean_abs_log_error": score,
            **{f"{s}.{k}": consts[s][k] for s, k in grid}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="re-fit the calibration constants")
    args = ap.parse_args()
    if args.fit:
        print(fit())
        return
    report = run()
    for r in report.rows:
        print(f"{r.error_pct:+7.1f}%  {r.metric:20s} {r.predicted:10.4g} {r.reference:10.4g}  "
              f"{r.case}")
    for note in report.notes:
        print("note:", note)


if __name__ == "__main__":
    main()
