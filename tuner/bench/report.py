"""Benchmark outputs: ``bench.json`` (every run), ``bench.md`` (tables) and ``bench.png``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def _clean(x: Any) -> Any:
    """JSON has no infinity: "inf" marks a median whose target was not reached."""
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(_clean(result), indent=1))


def write_curves(result: dict[str, Any], curves: dict[tuple[str, str], list[np.ndarray]],
                 folder: Path) -> None:
    """One file per problem in the shape ``tuner.analysis`` loads: per-run convergence curves
    (relative regret, or hypervolume ratio for several objectives) with final scores."""
    folder.mkdir(parents=True, exist_ok=True)
    scores: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in result["scores"]:
        if not r.get("error"):
            scores.setdefault((r["problem"], r["sampler"]), []).append(r)
    for p in result["problems"]:
        mo = p["n_objectives"] > 1
        runs = []
        for s in result["meta"]["samplers"]:
            for r, c in zip(scores.get((p["name"], s), []), curves.get((p["name"], s), [])):
                keep = np.flatnonzero(~np.isnan(c))
                runs.append({"sampler": s, "seed": r["seed"],
                             "curve": {"trial": (keep + 1).tolist(),
                                       "value": c[keep].tolist()},
                             "final": {"evals_to_1pct": r["evals_to_target"],
                                       "distinct_evaluations": r["distinct_evaluations"]}})
        data = {"problem": p["name"], "metric": "hv_ratio" if mo else "relative_regret",
                "direction": "maximize" if mo else "minimize",
                "ground_truth": {"n_configs": p["n_valid"], "n_feasible": p["n_feasible"],
                                 "optimum": p["optimum"], "front_size": p["front_size"]},
                "runs": runs}
        (folder / f"{p['name']}.json").write_text(json.dumps(_clean(data)))


def _fmt_evals(x: Any, budget: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, str) or math.isinf(x):
        return f">{budget}"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.3e}"


def _targets_md(t: dict[str, Any], budget: int, label: str) -> list[str]:
    """The target checks of one problem set (``metrics._targets``) as markdown lines."""
    if not t:
        return []
    ratio = t["ratio"]
    shown = "–" if ratio is None else ("<= " if t.get("ratio_is_upper_bound") else "") + \
        f"{ratio:.2f}"
    reached = t.get("reached_candidate")
    return [f"## Targets: {label}", "",
            f"* evaluations to within 1% (median over {t['pairs']} problem x seed "
            f"pairs): {t['candidate']} {_fmt_evals(t['median_evals_candidate'], budget)}, "
            f"{t['reference']} {_fmt_evals(t['median_evals_reference'], budget)}; ratio "
            f"{shown} (target <= 0.50: {'met' if t['evals_target_met'] else 'NOT met'}); "
            f"{t['problems_at_half_or_better']} of {len(t['per_problem'])} problems at "
            f"half or better, {t.get('problems_neither_reaches', 0)} where neither gets "
            f"within 1% in {budget} trials.",
            *([f"* runs within 1% in {budget} trials: {t['candidate']} {reached:.0%}, "
               f"{t['reference']} {t['reached_reference']:.0%} (target >= 67%: "
               f"{'met' if t['reached_target_met'] else 'NOT met'})."]
              if reached is not None else []),
            (f"* hypervolume ratio after {budget} trials ({t['candidate']}, "
             f"multi-objective problems): median {_fmt(t['hv_ratio_at_budget_median'], 4)}"
             f", worst {_fmt(t['hv_ratio_at_budget_min'], 4)} (target median >= 0.98: "
             f"{'met' if t['hv_target_met'] else 'NOT met'})."
             if t["hv_ratio_at_budget_median"] is not None else
             "* hypervolume: no multi-objective problem in this set."), ""]


def _samplers_md(summary: dict[str, Any], samplers: list[str], budgets: list[str],
                 budget: int, label: str) -> list[str]:
    lines = ["", f"## Samplers ({label})", "",
             "| sampler | median evals to 1% | runs reaching it | "
             + " | ".join(f"regret@{b}" for b in budgets) + " | "
             + " | ".join(f"HV ratio@{b}" for b in budgets) + " | ms per trial |",
             "|---|---:|---:|" + "---:|" * (2 * len(budgets)) + "---:|"]
    for s in samplers:
        a = summary["per_sampler"].get(s)
        if a is None:
            continue
        reg = [_fmt(a["median_regret_at"].get(b)) for b in budgets] if a[
            "median_regret_at"] else ["–"] * len(budgets)
        hv = [_fmt(a["median_hv_ratio_at"].get(b), 4) for b in budgets] if a[
            "median_hv_ratio_at"] else ["–"] * len(budgets)
        lines.append(f"| {s} | {_fmt_evals(a['median_evals_to_target'], budget)} | "
                     f"{100 * a['reached']:.0f}% | " + " | ".join(reg + hv)
                     + f" | {1000 * a['seconds_per_trial']:.1f} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    meta, summary = result["meta"], result["summary"]
    budget = meta["budget"]
    samplers = [s for s in meta["samplers"] if s in summary["per_sampler"]]
    seeds = f"{meta['seeds']} seed" + ("s" if meta["seeds"] != 1 else "")
    lines = [f"# Sampler benchmark ({seeds}, {budget} trials per run)", "",
             f"Command: `{meta['command']}`  ", f"Measured {meta['date']} on "
             f"{meta['machine']}; {meta['elapsed_s']:.0f} s in all.", ""]
    sets = result.get("by_set") or {}
    for label, summ in ([("all problems", summary)] if not sets else
                        [(f"{k} problems", v) for k, v in sets.items()]):
        lines += _targets_md(summ.get("targets") or {}, budget, label)
    lines += ["## Problems", "", "| problem | set | domain | objectives | constraints | valid |"
              " feasible | within 1% / front | what |", "|---|---|---|---|---|---:|---:|---:|---|"]
    for p in result["problems"]:
        objs = ", ".join(f"{'max' if d == 'maximize' else 'min'} {m}"
                         for m, d in p["objectives"])
        lines.append(f"| {p['name']} | {p.get('set', '-')} | {p['domain']} | {objs} | "
                     f"{', '.join(p['constraints']) or '–'} | {p['n_valid']} | "
                     f"{p['n_feasible']} | {p['within_1pct']} | {p['description']} |")
    warm = [f"{p['name']}: {p['warm_start']}" for p in result["problems"] if p.get("warm_start")]
    if warm and "cost-model-warm" in samplers:
        lines += ["", "`cost-model-warm` is the cost model started from a prior (its evaluations "
                  "are not counted): " + "; ".join(warm) + "."]
    budgets = [str(b) for b in (25, 50, 100, 200) if b <= budget]
    for label, summ in ([("all problems and seeds", summary)] if not sets else
                        [(f"{k} problems", v) for k, v in sets.items()]):
        lines += _samplers_md(summ, samplers, budgets, budget, label)
    lines += ["", "Regret is |best − optimum| / |optimum| (median over runs); HV ratio is the "
              "hypervolume of the feasible points found over the true front's, objectives "
              "normalized between the true front's ideal and nadir, reference point 1.1.", "",
              "## Median evaluations to within 1% per problem", "",
              "| problem | " + " | ".join(samplers) + " |",
              "|---|" + "---:|" * len(samplers)]
    for p, row in summary["per_problem"].items():
        cells = [_fmt_evals(row[s]["median_evals_to_target"], budget) if s in row else "n/a"
                 for s in samplers]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    errors = [r for r in result["scores"] if r.get("error")]
    if errors:
        lines += ["", "## Not run", ""]
        seen = set()
        for r in errors:
            k = (r["sampler"], r["problem"])
            if k not in seen:
                seen.add(k)
                lines.append(f"* {r['sampler']} on {r['problem']}: {r['error']}")
    for note in meta.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], curves: dict[tuple[str, str], list[np.ndarray]],
         path: Path) -> bool:
    """Median convergence curve per sampler, one panel per problem. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    problems = [p["name"] for p in result["problems"]]
    samplers = result["meta"]["samplers"]
    cols = min(4, max(1, len(problems)))
    rows = math.ceil(len(problems) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, p in zip(axes.flat, problems):
        mo = next(x for x in result["problems"] if x["name"] == p)["n_objectives"] > 1
        for i, s in enumerate(samplers):
            cs = curves.get((p, s))
            if not cs:
                continue
            arr = np.vstack(cs)
            if mo:
                y = np.median(1.0 - arr, axis=0)
            else:
                y = np.nanmedian(np.where(np.isnan(arr), 1.0, arr), axis=0)
            x = np.arange(1, len(y) + 1)
            lw = 2.2 if s == "cost-model" else 1.2
            ax.plot(x, np.maximum(y, 1e-5), label=s, color=colors[i % len(colors)], lw=lw)
        ax.axhline(0.01, color="grey", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(p, fontsize=9)
        ax.set_xlabel("trials", fontsize=8)
        ax.set_ylabel("1 - HV ratio" if mo else "relative regret", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(problems):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=8)
    fig.suptitle("median over seeds (dotted: the 1% target)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


__all__ = ["markdown", "plot", "write_curves", "write_json"]
