"""Quantization mixes vs uniform int8 / int4 and a HAWQ-style greedy baseline.

``python -m tuner.benchmarks.quant_results [--trials N] [--skip-real] [--json PATH]``

Part 1, all-MiniLM-L6-v2 on the CPU, every number measured by ``quant-real``:

- uniform baselines: int8 = W8A8 int8 everywhere (embeddings int8), int4 = W4A16 int4-g128
  everywhere (embeddings int4-g128), and bf16;
- mix search: (a) a multi-objective study (NSGA-II, quality_drop x model_size_gib x
  latency_ms) run directly on quant-real; (b) quant-sim's measured-sensitivity proxy swept
  over the whole space, the best-predicted mixes at each baseline's size then measured;
- (c) the same proxy driving NSGA-II over the 4-bit corner at ``depth_bands`` = the number of
  layers (each layer gets its own group sizes; too large to sweep), best predictions measured;
- HAWQ-style greedy at equal size: start from bf16 and repeatedly lower the unit (one layer
  group of one layer, or the embeddings) with the least sensitivity increase per bit saved
  (bf16 -> int8 -> int4-g32 -> g64 -> g128 -> per-channel, weights only), sensitivities from
  the measured single-unit table, until the model fits the baseline's size; then measured.
  It allocates per unit, a finer grain than the compact space's layer groups.

Part 2, Llama-3.1-70B on one H100 (quant-sim): the same comparison on the simulator over the
study space of ``studies/quant-llama70b-h100.toml`` (swept whole), plus the 4-bit corner over
4 depth bands.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from tuner._pareto import pareto_mask
from tuner.evaluators.quant import (
    MINILM,
    ROLES,
    Target,
    bits_per_weight,
    build_plan,
    depth_profile,
    minilm_sensitivity,
    resolve_target,
    role_mean,
    size_gib,
    uniform_config,
    unit_drop,
)

#: HAWQ-greedy's precision ladder, in decreasing stored bits (weights only)
LADDER = ("bf16", "int8", "int4-g32", "int4-g64", "int4-g128", "int4-ch")
#: the embedding table's formats (those measured for it)
EMBED_LADDER = ("bf16", "int8", "int4-g128")
OBJ = ("quality_drop", "model_size_gib", "latency_ms")


def _units(target: Target) -> list[tuple[str, int, int]]:
    """(unit name, parameter count, input features) of every quantizable unit."""
    out = [("embed", target.embed_params, target.hidden)]
    for i, layer in enumerate(target.layers):
        for r in ROLES:
            mats = layer[r]
            out.append((f"layer{i}.{r}", sum(m.params for m in mats), mats[0].cols))
    return out


def unit_sensitivity(target: Target) -> Callable[[str, str], float]:
    """Quality drop of one unit in one format: measured (MiniLM) or the quant-sim proxy."""
    sens = minilm_sensitivity()

    def f(unit: str, fmt: str) -> float:
        if fmt == "bf16":
            return 0.0
        if unit == "embed":
            return sens[(-1, "embed", fmt)]
        layer, role = unit[5:].split(".")
        i = int(layer)
        if target.kind == "real":
            return unit_drop(i, role, fmt, 16)
        return depth_profile(target.num_layers)[i] * 6 / target.num_layers * role_mean(
            role, fmt, 16)
    return f


def hawq_greedy(target: Target, max_gib: float, base: Mapping[str, Any]) -> dict[str, Any]:
    """Per-unit greedy bit allocation under a size budget (HAWQ-style ordering)."""
    sens = unit_sensitivity(target)
    units = _units(target)
    level = {u: 0 for u, _, _ in units}
    cfg = {**base, "pin": {}}

    def size() -> float:
        cfg["pin"] = {u: ladder(u)[level[u]] for u, _, _ in units}
        return size_gib(build_plan(cfg, target))

    def ladder(u: str) -> tuple[str, ...]:
        return EMBED_LADDER if u == "embed" else LADDER

    while size() > max_gib:
        best, best_score = None, math.inf
        for u, n, cols in units:
            lad = ladder(u)
            if level[u] + 1 >= len(lad):
                continue
            cur, nxt = lad[level[u]], lad[level[u] + 1]
            saved = n * (bits_per_weight(cur, cols) - bits_per_weight(nxt, cols))
            score = max(sens(u, nxt) - sens(u, cur), 0.0) / saved
            if score < best_score:
                best, best_score = u, score
        if best is None:
            break
        level[best] += 1
    return cfg


def _row(name: str, m: Mapping[str, float], extra: str = "") -> dict[str, Any]:
    return {"name": name, **{k: m.get(k, float("nan")) for k in (
        "quality_drop", "neighbor_agreement", "model_size_gib", "avg_bits", "latency_ms",
        "prefill_ms", "memory_gib")}, "note": extra}


def _print(title: str, rows: list[dict[str, Any]], cols: tuple[str, ...]) -> None:
    print(f"\n{title}")
    head = f"{'mix':<34}" + "".join(f"{c:>18}" for c in cols)
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, float("nan"))
            cells.append(f"{v:>18.5g}" if isinstance(v, float) else f"{v!s:>18}")
        print(f"{r['name']:<34}" + "".join(cells) + (f"  {r['note']}" if r["note"] else ""))


def _describe(cfg: Mapping[str, Any]) -> str:
    parts = []
    bands = cfg.get("depth_bands", 1)
    for r in ROLES:
        names = []
        for band in range(bands):
            sfx = "" if bands == 1 else f"_b{band}"
            b = cfg.get(f"{r}_bits{sfx}", 16)
            s = {16: "bf16", 8: "fp8" if cfg.get(f"{r}_format{sfx}") == "fp8" else "int8"}.get(b)
            if b == 4:
                g = cfg.get(f"{r}_group{sfx}", 128)
                s = f"int4-{'ch' if g == -1 else f'g{g}'}"
            names.append(s)
        parts.append(f"{r}={'/'.join(names)}")
    parts.append(f"emb={cfg.get('embed_bits', 16)} act={cfg.get('act_bits', 16)}")
    kv = [str(cfg[k]) for k in ["kv_bits"] + [f"kv_bits_b{b}" for b in range(bands)]
          if k in cfg]
    if kv:
        parts.append(f"kv={'/'.join(kv)}")
    if cfg.get("protect_frac"):
        parts.append(f"protect={cfg['protect_frac']}")
    return " ".join(parts)


def sweep_sim(space: Any, sim: Any) -> list[tuple[dict[str, Any], dict[str, float]]]:
    out = []
    for cfg in space.enumerate(valid_only=True):
        res = sim.evaluate(cfg)
        if res.status.value == "ok":
            out.append((cfg, dict(res.metrics)))
    return out


def best_under(points: list[tuple[dict, dict]], size: float, quality: float | None = None,
               k: int = 1) -> list[tuple[dict, dict]]:
    """Lowest-quality-drop points at size <= ``size`` (and quality <= ``quality``: then the
    smallest first)."""
    cand = [p for p in points if p[1]["model_size_gib"] <= size * (1 + 1e-9)]
    if quality is not None:
        cand = [p for p in cand if p[1]["quality_drop"] <= quality]
        cand.sort(key=lambda p: (p[1]["model_size_gib"], p[1]["quality_drop"]))
    else:
        cand.sort(key=lambda p: (p[1]["quality_drop"], p[1]["model_size_gib"]))
    return cand[:k]


def dominates(a: Mapping[str, float], b: Mapping[str, float], keys=OBJ) -> bool:
    return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)


# -- part 1 ------------------------------------------------------------------------------

def int4_band_space(context: Mapping[str, Any], bands: int, kv_bits: int | None = None) -> Any:
    """The space narrowed to 4-bit weights everywhere, one group size per role and band."""
    from tuner.search_spaces.quantization import QuantSpace

    fixed: dict[str, Any] = {f"{r}_bits_b{b}": 4 for r in ROLES for b in range(bands)}
    fixed.update(embed_bits=4, protect_frac=0.0, act_bits=16)
    if kv_bits is not None:
        fixed.update({f"kv_bits_b{b}": kv_bits for b in range(bands)})
    return QuantSpace({**context, "depth_bands": bands},
                      {k: {"fixed": v} for k, v in fixed.items()})


def proxy_search(space: Any, sim: Any, max_gib: float, trials: int, seed: int
                 ) -> list[tuple[dict, dict]]:
    """NSGA-II on quant-sim's proxy: minimize quality_drop, size over ``max_gib`` penalized."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.NSGAIISampler(seed=seed))
    out = []
    for _ in range(trials):
        trial = study.ask()
        cfg = space.suggest(trial)
        res = sim.evaluate(cfg)
        m = dict(res.metrics)
        ok = res.status.value == "ok"
        if ok:
            out.append((cfg, m))
        over = max(m.get("model_size_gib", max_gib) - max_gib, 0.0) / max_gib
        study.tell(trial, m.get("quality_drop", 1.0) + 10 * over + (0.0 if ok else 1.0))
    return out


def _distinct(points: list[tuple[dict, dict]]) -> list[tuple[dict, dict]]:
    seen, out = set(), []
    for cfg, m in points:
        key = json.dumps(cfg, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append((cfg, m))
    return out


def minilm_part(trials: int, seed: int, report: dict[str, Any], band_trials: int = 3000,
                corner_trials: int = 30) -> None:
    import optuna

    from tuner.evaluators.quant import QuantRealEvaluator, QuantSimEvaluator
    from tuner.search_spaces.quantization import QuantSpace

    target = resolve_target(MINILM)
    real = QuantRealEvaluator()
    t0 = time.perf_counter()
    real.setup()
    setup_s = time.perf_counter() - t0
    base = {"bf16": uniform_config(target, "bf16"),
            "uniform int8 (W8A8)": uniform_config(target, "int8", act_bits=8),
            "uniform int8 (W8A16)": uniform_config(target, "int8"),
            "uniform int4-g128 (W4A16)": uniform_config(target, "int4-g128")}
    measured: dict[str, dict[str, float]] = {}
    times = []
    for name, cfg in base.items():
        t0 = time.perf_counter()
        measured[name] = dict(real.evaluate(cfg).metrics)
        times.append(time.perf_counter() - t0)
    i8, i4 = measured["uniform int8 (W8A8)"], measured["uniform int4-g128 (W4A16)"]

    # (a) multi-objective study directly on the measured evaluator
    space = QuantSpace({"model": MINILM})
    study = optuna.create_study(directions=["minimize"] * 3,
                                sampler=optuna.samplers.NSGAIISampler(seed=seed,
                                                                      population_size=20))
    trial_points: list[tuple[dict, dict]] = []
    for _ in range(trials):
        trial = study.ask()
        cfg = space.suggest(trial)
        t0 = time.perf_counter()
        res = real.evaluate(cfg)
        times.append(time.perf_counter() - t0)
        if res.status.value != "ok":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        trial_points.append((cfg, dict(res.metrics)))
        study.tell(trial, [res.metrics[k] for k in OBJ])

    # (b) proxy sweep of the whole space, best predictions measured
    sim = QuantSimEvaluator()
    t0 = time.perf_counter()
    swept = sweep_sim(space, sim)
    sweep_s = time.perf_counter() - t0
    picks = best_under(swept, i8["model_size_gib"], quality=i8["quality_drop"], k=6) \
        + best_under(swept, i4["model_size_gib"], k=6)
    for cfg, _ in picks:
        trial_points.append((cfg, dict(real.evaluate(cfg).metrics)))
    # (c) the 4-bit corner: every group at 4 bits, group sizes searched per layer (NSGA-II
    # on the proxy), best predictions at the int4 size measured
    corner = int4_band_space({"model": MINILM}, target.num_layers)
    band_points = proxy_search(corner, sim, i4["model_size_gib"], band_trials, seed)
    corner_picks = _distinct(best_under(band_points, i4["model_size_gib"], k=200))[:6]
    picks += corner_picks
    # (d) the proxy is additive and misses interactions in that corner: a short measured
    # search (TPE on quant-real, size over budget penalized) starting from the proxy's picks
    tstudy = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed,
                                                                    multivariate=True))
    for cfg, _ in corner_picks:
        tstudy.enqueue_trial(corner.param_values(cfg))
    for _ in range(corner_trials):
        trial = tstudy.ask()
        cfg = corner.suggest(trial)
        m = dict(real.evaluate(cfg).metrics)
        trial_points.append((cfg, m))
        over = max(m["model_size_gib"] - i4["model_size_gib"], 0.0) / i4["model_size_gib"]
        tstudy.tell(trial, m.get("quality_drop", 1.0) + 10 * over)
    trial_points = _distinct(trial_points)

    rows = [_row(n, m) for n, m in measured.items()]
    hawq = {}
    for label, ref in (("int8", i8), ("int4", i4)):
        cfg = hawq_greedy(target, ref["model_size_gib"], {"model": MINILM})
        hawq[label] = dict(real.evaluate(cfg).metrics)
        rows.append(_row(f"HAWQ-greedy @ {label} size", hawq[label]))
    dom8 = [p for p in trial_points if dominates(p[1], i8)]
    dom8_2 = [p for p in trial_points if dominates(p[1], i8, OBJ[:2])]
    best8 = min(dom8, key=lambda p: p[1]["model_size_gib"]) if dom8 else None
    small8 = min(dom8_2, key=lambda p: p[1]["model_size_gib"]) if dom8_2 else None
    good8 = min(dom8_2, key=lambda p: p[1]["quality_drop"]) if dom8_2 else None
    eq4 = [p for p in trial_points if p[1]["model_size_gib"] <= i4["model_size_gib"]]
    best4 = min(eq4, key=lambda p: p[1]["quality_drop"]) if eq4 else None
    if best8:
        rows.append(_row("mix: smallest dominating int8", best8[1], _describe(best8[0])))
    if small8:
        rows.append(_row("mix: smallest, q+size dom. int8", small8[1], _describe(small8[0])))
    if good8 and good8 is not small8:
        rows.append(_row("mix: best q, q+size dom. int8", good8[1], _describe(good8[0])))
    if best4:
        rows.append(_row("mix: best at <= int4 size", best4[1], _describe(best4[0])))
    cols = ("quality_drop", "neighbor_agreement", "model_size_gib", "avg_bits", "latency_ms")
    _print("all-MiniLM-L6-v2 on CPU (quant-real, measured; size in GiB)", rows, cols)
    mask = pareto_mask([[p[1][k] for k in OBJ] for p in trial_points], ["minimize"] * 3)
    front = sorted([p for p, keep in zip(trial_points, mask) if keep],
                   key=lambda p: p[1]["model_size_gib"])
    _print(f"measured Pareto front (quality_drop x size x latency), {len(front)} of "
           f"{len(trial_points)} measured mixes", [_row(f"front #{i}", p[1], _describe(p[0]))
                                                 for i, p in enumerate(front)], cols)
    print(f"\nmixes measured: {len(trial_points)} distinct ({trials} NSGA-II trials, "
          f"{len(picks)} proxy picks, up to 6 of them from {band_trials} proxy trials of the "
          f"per-layer 4-bit space, {corner_trials} measured TPE trials there); "
          f"dominating uniform int8 (W8A8) on quality and size: {len(dom8_2)}, on quality, size "
          f"and latency: {len(dom8)}; proxy sweep of {len(swept)} configs "
          f"in {sweep_s:.1f} s; quant-real setup {setup_s:.1f} s, evaluation median "
          f"{sorted(times)[len(times) // 2]:.2f} s, max {max(times):.2f} s")
    report["minilm"] = {"rows": rows, "front": [{"config": p[0], "metrics": p[1]}
                                                for p in front],
                        "eval_s_median": sorted(times)[len(times) // 2],
                        "eval_s_max": max(times), "setup_s": setup_s,
                        "dominating_int8": len(dom8),
                        "dominating_int8_quality_size": len(dom8_2)}


# -- part 2 ------------------------------------------------------------------------------

def llama_part(report: dict[str, Any]) -> None:
    from pathlib import Path

    from tuner.evaluators.quant import QuantSimEvaluator
    from tuner.search_spaces.quantization import QuantSpace
    from tuner.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "studies"
                     / "quant-llama70b-h100.toml")
    space = QuantSpace(spec.space.context, spec.space.params)
    target = space.target
    sim = QuantSimEvaluator()
    ctx = dict(space.context)
    base = {"uniform int8 (W8A8, KV8)": {**ctx, **uniform_config(target, "int8", 8, 8)},
            "uniform int4-g128 (W4A16, KV4)": {**ctx, **uniform_config(target, "int4-g128",
                                                                      16, 4)},
            "uniform fp8 (W8A8, KV8)": {**ctx, **uniform_config(target, "fp8", 8, 8)}}
    measured = {n: sim.evaluate(c) for n, c in base.items()}
    rows = [_row(n, r.metrics, r.reason or "") for n, r in measured.items()]
    i8, i4 = measured["uniform int8 (W8A8, KV8)"].metrics, \
        measured["uniform int4-g128 (W4A16, KV4)"].metrics
    t0 = time.perf_counter()
    swept = sweep_sim(space, sim)
    sweep_s = time.perf_counter() - t0
    n_all = space.size()
    dom8_all = [p for p in swept if dominates(p[1], i8, OBJ + ("prefill_ms",))]
    dom8 = [p for p in swept if dominates(p[1], i8)]
    best8 = min(dom8, key=lambda p: (p[1]["model_size_gib"], p[1]["latency_ms"])) \
        if dom8 else None
    fast8 = min(dom8, key=lambda p: p[1]["latency_ms"]) if dom8 else None
    bands = proxy_search(int4_band_space(ctx, 4, kv_bits=4), sim, i4["model_size_gib"], 1000,
                         0)
    best4 = best_under(swept + bands, i4["model_size_gib"])
    for label, ref, kv in (("int8", i8, 8), ("int4", i4, 4)):
        cfg = hawq_greedy(target, ref["model_size_gib"], {**ctx, "kv_bits": kv})
        res = sim.evaluate(cfg)
        rows.append(_row(f"HAWQ-greedy @ {label} size", res.metrics,
                         f"KV{kv}" + (f" ({res.reason})" if res.reason else "")))
    if best8:
        rows.append(_row("mix: smallest dominating int8", best8[1], _describe(best8[0])))
    if fast8 and fast8 is not best8:
        rows.append(_row("mix: fastest dominating int8", fast8[1], _describe(fast8[0])))
    if best4:
        rows.append(_row("mix: best at <= int4 size", best4[0][1], _describe(best4[0][0])))
    cols = ("quality_drop", "model_size_gib", "avg_bits", "latency_ms", "prefill_ms",
            "memory_gib")
    _print(f"{target.name} on 1x {ctx['gpu']} (quant-sim; batch {ctx['batch_size']}, prompt "
           f"{ctx['prompt_len']}, output {ctx['output_len']}; latency = decode ms/token)",
           rows, cols)
    mask = pareto_mask([[p[1][k] for k in OBJ] for p in swept], ["minimize"] * 3)
    front = [p for p, keep in zip(swept, mask) if keep]
    per_eval_us = sweep_s / max(n_all, 1) * 1e6
    print(f"\nswept {n_all} configs ({len(swept)} fit in memory) in {sweep_s:.1f} s "
          f"({per_eval_us:.0f} us per config incl. enumeration); Pareto front: {len(front)}; "
          f"mixes dominating uniform int8 (W8A8, KV8) on quality, size and decode: {len(dom8)}, "
          f"also on prefill: {len(dom8_all)}; 4-bit corner: 1000 proxy trials over 4 depth "
          f"bands")
    report["llama"] = {"rows": rows, "front_size": len(front), "swept": n_all,
                       "feasible": len(swept), "us_per_eval": per_eval_us,
                       "dominating_int8": len(dom8), "dominating_int8_with_prefill": len(dom8_all)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="quantization mixes vs uniform and HAWQ baselines")
    ap.add_argument("--trials", type=int, default=60, help="NSGA-II trials on quant-real")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-real", action="store_true", help="only the quant-sim part")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report: dict[str, Any] = {}
    if not args.skip_real:
        minilm_part(args.trials, args.seed, report)
    llama_part(report)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
