"""``tuner validate serving``: serving-sim against published measurements and effects.

Quantitative rows come from ``data/validation/measurements.toml``: each case is one published
run of one engine (``engine``: vllm | sglang | trtllm), a config reproducing it and the figures
its source prints. Rows are split by publication (``source_group``), per engine: the groups in
``CALIBRATION_SOURCES`` fitted that engine's profile constants (``FIT_CONSTANTS``; ``--fit``
re-fits them), every other row is held out. Qualitative rows come from ``effects.toml``: each
effect the literature reports is simulated as two configs and becomes a row with metric
``qualitative_effect`` (predicted 1 if the effect holds, reference 1).

Targets, per engine on held-out rows (medians of absolute errors): throughput and TPOT
<= 8%, TTFT <= 20% (``ENGINE_TARGETS``); the notes say which are met, and each engine's
medians are rows of their own (``heldout_median_<group>``) that ``--check`` holds to them.

``python -m tuner.evaluators.serving.validation --fit [ENGINE]`` re-fits the constants on the
calibration rows (bounded least squares on log errors with a prior holding each constant near
its shipped value, from a per-constant grid search, as ``tuner calibrate`` does) and prints
them with the leave-one-source-out error; it does not write the profiles.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tuner import ValidationReport, ValidationRow
from tuner.evaluators._calibration import coordinate_search
from tuner.evaluators._profiles import Profile, load_profile, with_constants
from tuner.evaluators.serving.sim import ServingSimEvaluator

DATA = Path(__file__).parent / "data" / "validation"
_EXPECT = re.compile(r"\s*([ab])\.(\w+)\s*(<=|>=|<|>)\s*(?:([0-9.]+)\s*\*\s*)?([ab])\.(\w+)\s*")
ENGINES = ("vllm", "sglang", "trtllm")

#: publications whose rows fitted each engine's constants (everything else is held out)
CALIBRATION_SOURCES = {
    "vllm": ("gpustack-qwen3-8b", "vllm-ci", "gpustack-qwen3-14b", "gpustack-qwen3-235b-a22b"),
    "sglang": ("gpustack-qwen3-8b", "gpustack-qwen3-14b", "gpustack-qwen3-235b-a22b"),
    "trtllm": ("gpustack-qwen3-8b", "gpustack-qwen3-14b"),
}
#: the profile constants each engine's calibration rows fit
_FITTED = ("per_seq_overhead_us", "frontend_ms_per_request", "step_overhead_us",
           "api_latency_ms", "prefill_attention_efficiency", "gemm_efficiency")
FIT_CONSTANTS = {"vllm": _FITTED + ("allreduce_latency_us", "expert_efficiency"),
                 "sglang": _FITTED + ("expert_efficiency",),
                 "trtllm": _FITTED}
#: metric -> group of the issue's targets
GROUPS = {"throughput_tok_s": "throughput", "throughput_tok_s_per_gpu": "throughput",
          "total_tok_s": "throughput",
          "request_throughput_req_s": "throughput", "tpot_ms_p50": "tpot",
          "tpot_ms_mean": "tpot", "e2e_ms_p50": "tpot", "ttft_ms_p50": "ttft",
          "ttft_ms_mean": "ttft"}
#: held-out median |error| targets per engine and group (%)
ENGINE_TARGETS = {"throughput": 8.0, "tpot": 8.0, "ttft": 20.0}
#: per-metric (mean |error| %, max |error| %) over all rows, for ``--check``: the effects, and
#: one summary row per engine and group whose error is that engine's held-out median (so the
#: max over engines must meet the target)
TARGETS = {"qualitative_effect": (0.0, 0.0),
           **{f"heldout_median_{g}": (t, t) for g, t in ENGINE_TARGETS.items()}}
PRIOR_WEIGHT = 1.0


def _load(name: str) -> dict[str, Any]:
    with (DATA / name).open("rb") as fh:
        return tomllib.load(fh)


def cases(engine: str | None = None) -> list[dict[str, Any]]:
    return [c for c in _load("measurements.toml")["case"]
            if engine is None or c["engine"] == engine]


def effects() -> list[dict[str, Any]]:
    return _load("effects.toml")["effect"]


def split_of(case: Mapping[str, Any]) -> str:
    """"calibration" when the case's publication fitted its engine's constants."""
    return "calibration" if case["source_group"] in CALIBRATION_SOURCES[case["engine"]] \
        else "validation"


def _evaluate(ev: ServingSimEvaluator, config: Mapping[str, Any],
              profile: Profile | None = None) -> Mapping[str, float]:
    res = ev.evaluate(config) if profile is None else ev.evaluate_with(config, profile)
    if res.status.value != "ok":
        raise RuntimeError(f"validation config did not run: {res.reason}")
    return res.metrics


def measurement_rows(ev: ServingSimEvaluator | None = None) -> Iterator[ValidationRow]:
    ev = ev or ServingSimEvaluator()
    for case in cases():
        metrics = _evaluate(ev, case["config"])
        for metric, ref in case["reference"].items():
            yield ValidationRow(f"{case['id']} [{case['engine']}, {split_of(case)}]", metric,
                                metrics[metric], float(ref), case["source"])


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


#: a measurement row's case text: "<case id> [<engine>, <split>]"
_ROW_CASE = re.compile(r"(\S+) \[(\w+), (\w+)\]")


def _grouped(rows: list[ValidationRow]) -> Iterator[tuple[str, str, str, str, float]]:
    """(case id, engine, split, group, |error| %) of each measurement row of a grouped metric."""
    for r in rows:
        group = GROUPS.get(r.metric)
        m = _ROW_CASE.fullmatch(r.case)
        if group and m:
            yield m.group(1), m.group(2), m.group(3), group, abs(r.error_pct)


def medians(rows: list[ValidationRow]) -> dict[tuple[str, str, str], tuple[float, int]]:
    """(engine, split, group) -> (median |error| %, rows) over the grouped metrics."""
    acc: dict[tuple[str, str, str], list[float]] = {}
    for _, engine, split, group, err in _grouped(rows):
        acc.setdefault((engine, split, group), []).append(err)
    return {k: (statistics.median(v), len(v)) for k, v in acc.items()}


def run_kind(case: Mapping[str, Any]) -> str:
    """The kind of benchmark run a case is, by its workload (for the breakdown notes)."""
    wl = case["config"]["workload"]
    if wl.get("mode") == "closed":
        return "closed loops"
    if wl.get("mode") != "burst":
        return "open loops"
    if "dataset" in wl:
        return "ShareGPT bursts"  # the only dataset
    prompt = wl.get("input_len")
    if not isinstance(prompt, int):
        return "bursts of sampled lengths"
    if prompt >= 16000:
        return "bursts of 16k+-token prompts"
    return "bursts of <=256-token prompts" if prompt <= 256 else "bursts of 257-16k-token prompts"


def breakdown(rows: list[ValidationRow], label: Mapping[str, str]) -> list[str]:
    """One note per engine: held-out medians per label of the case (kind of run, publication)."""
    acc: dict[tuple[str, str, str], list[float]] = {}
    for case, engine, split, group, err in _grouped(rows):
        if split == "validation" and case in label:
            acc.setdefault((engine, label[case], group), []).append(err)
    notes = []
    for engine in ENGINES:
        parts = []
        for name in sorted({k[1] for k in acc if k[0] == engine}):
            got = [acc.get((engine, name, g), []) for g in ENGINE_TARGETS]
            parts.append(f"{name} " + " / ".join(
                f"{statistics.median(v):.1f}% ({len(v)})" if v else "-" for v in got))
        if parts:
            notes.append(f"{engine} held-out medians, throughput / TPOT / TTFT (rows): "
                         + "; ".join(parts))
    return notes


def run() -> ValidationReport:
    ev = ServingSimEvaluator()
    rows = list(measurement_rows(ev)) + list(effect_rows(ev))
    notes = []
    med = medians(rows)
    for (engine, split, group), (value, n) in sorted(med.items()):
        if split == "validation":  # predicted 100 + median vs 100: its error is the median
            rows.append(ValidationRow(f"{engine}: median |error| of {n} held-out {group} rows",
                                      f"heldout_median_{group}", 100.0 + value, 100.0,
                                      "data/validation/measurements.toml"))
    for engine in ENGINES:
        parts = []
        for split in ("validation", "calibration"):
            for group, target in ENGINE_TARGETS.items():
                got = med.get((engine, split, group))
                if got is None:
                    continue
                verdict = ("meets" if got[0] <= target else "MISSES") + f" <= {target:g}%" \
                    if split == "validation" else "fitted"
                parts.append(f"{split} {group} {got[0]:.1f}% ({got[1]} rows, {verdict})")
        notes.append(f"{engine}: " + "; ".join(parts))
    all_cases = cases()
    notes.append("by kind of run:")
    notes += breakdown(rows, {c["id"]: run_kind(c) for c in all_cases})
    notes.append("by publication:")
    notes += breakdown(rows, {c["id"]: c["source_group"] for c in all_cases})
    for engine in ENGINES:
        notes.append(f"{engine} profile constants {', '.join(FIT_CONSTANTS[engine])} were "
                     f"fitted on rows from {', '.join(CALIBRATION_SOURCES[engine])} only")
    notes.append("qualitative_effect rows: 1 = the effect reported in the literature appears in "
                 "the simulation (values in the case text), 0 = it does not")
    return ValidationReport("serving", rows, dict(TARGETS), notes)


def targets_met(report: ValidationReport) -> dict[tuple[str, str], bool]:
    """(engine, group) -> whether the held-out median meets ``ENGINE_TARGETS``."""
    med = medians(report.rows)
    return {(e, g): med[(e, "validation", g)][0] <= t for e in ENGINES
            for g, t in ENGINE_TARGETS.items() if (e, "validation", g) in med}


# -- calibration -----------------------------------------------------------------------------
def _residual_fn(ev: ServingSimEvaluator, rows: list[dict[str, Any]], base: Profile,
                 names: tuple[str, ...]) -> Any:
    lo = [base.fit_bounds[n][0] for n in names]
    hi = [base.fit_bounds[n][1] for n in names]
    start = [float(base.constants[n]) for n in names]

    def f(x: Any) -> list[float]:
        prof = with_constants(base, {n: float(v) for n, v in zip(names, x)})
        out = []
        for case in rows:
            res = ev.evaluate_with(case["config"], prof)
            for k, ref in case["reference"].items():
                if k not in GROUPS or (GROUPS[k] == "ttft" and _all_at_once(case)):
                    continue
                p = res.metrics.get(k) if res.status.value == "ok" else None
                out.append(math.log(p / ref) if p and p > 0 else 3.0)
        out += [PRIOR_WEIGHT * (v - s) / (b - a) for v, s, a, b in zip(x, start, lo, hi)]
        return out
    return f, lo, hi, start


def _all_at_once(case: Mapping[str, Any]) -> bool:
    """Every request sent at t=0: TTFT is the depth of the queue the burst builds, through an
    API server handling a thousand streams, not the engine's constants."""
    wl = case["config"]["workload"]
    return isinstance(wl, dict) and wl.get("mode") == "burst" and wl.get("num_requests", 0) > 64


def fit_engine(engine: str, rows: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """The fitted constants of ``engine`` on ``rows`` (default: its calibration rows)."""
    from scipy.optimize import least_squares

    ev = ServingSimEvaluator()
    base = load_profile("serving", engine, "engine")
    rows = rows if rows is not None else [c for c in cases(engine)
                                          if split_of(c) == "calibration"]
    names = FIT_CONSTANTS[engine]
    f, lo, hi, start = _residual_fn(ev, rows, base, names)
    res = least_squares(f, coordinate_search(f, start, lo, hi),
                        bounds=(lo, hi), x_scale=[b - a for a, b in zip(lo, hi)],
                        diff_step=1e-3, max_nfev=100)
    return {n: float(v) for n, v in zip(names, res.x)}


def leave_one_source_out(engine: str) -> dict[str, float]:
    """Median |error| % of each calibration source's rows predicted by a fit on the others."""
    ev = ServingSimEvaluator()
    base = load_profile("serving", engine, "engine")
    cal = [c for c in cases(engine) if split_of(c) == "calibration"]
    out = {}
    for group in sorted({c["source_group"] for c in cal}):
        fitted = fit_engine(engine, [c for c in cal if c["source_group"] != group])
        prof = with_constants(base, fitted)
        errs = []
        for case in (c for c in cal if c["source_group"] == group):
            m = _evaluate(ev, case["config"], prof)
            errs += [abs(100 * (m[k] / v - 1)) for k, v in case["reference"].items()
                     if k in GROUPS]
        out[group] = statistics.median(errs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", nargs="?", const="all", help="re-fit the constants of an engine "
                    "(or all) on its calibration rows")
    args = ap.parse_args()
    if args.fit:
        for engine in ENGINES if args.fit == "all" else (args.fit,):
            print(engine, {k: round(v, 3) for k, v in fit_engine(engine).items()})
            for group, err in leave_one_source_out(engine).items():
                print(f"  leave {group} out: its rows' median |error| {err:.1f}%")
        return
    report = run()
    for r in report.rows:
        print(f"{r.error_pct:+7.1f}%  {r.metric:24s} {r.predicted:10.4g} {r.reference:10.4g}  "
              f"{r.case}")
    for note in report.notes:
        print("note:", note)


if __name__ == "__main__":
    main()
