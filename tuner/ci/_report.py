"""The CI job's report: ``summary.md`` (for people and GitHub's job summary), ``report.json``
(for machines) and ``plot.png`` (the front, or best-so-far for one objective)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from tuner._errors import MissingExtra
from tuner._results import StudyResults

FRONT_ROWS = 20


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.4g}"
    return str(v)


def _pct(v: float | None) -> str:
    if v is None:
        return "–"
    if math.isinf(v):
        return "+∞" if v > 0 else "-∞"
    return f"{v:+.1f}%"


def _cell(v: Any) -> str:
    return _num(v).replace("|", "\\|")


def markdown(report: dict[str, Any], plot: str | None) -> str:
    objs = report["objectives"]
    status = "✅ passed" if report["passed"] else "❌ regression"
    base = report.get("baseline")
    lines = [f"# tuner ci: {report['study']} — {status}", ""]
    for f in report["failures"]:
        lines.append(f"- **{f}**")
    for n in report["notes"]:
        lines.append(f"- {n}")
    if not report["failures"]:
        lines.append(f"- no regression beyond {report['max_regression_pct']:g}% "
                     f"(first objective: {objs[0]['metric']}, {objs[0]['direction']})"
                     if base else "- first run: this report is the reference")
    counts = report["trials"]
    lines += ["", "| run | |", "|---|---|",
              f"| study run | `{report['run']}` |",
              f"| evaluator | `{report['evaluator']}` (fingerprint `{report['fingerprint']}`) |",
              f"| sampler | `{report['sampler']}` |",
              f"| budget | {_budget(report['budget'])}; stopped: {report['stop_reason']} |",
              f"| trials | {report['trials_total']} ("
              + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + ") |",
              f"| warm start | {len(report['warm_start'])} configs from the previous front |",
              f"| elapsed | {report['elapsed_s']:.1f} s |",
              f"| baseline | {_baseline_cell(report)} |"]
    best = report["best"]
    recheck = (base or {}).get("recheck")
    lines += ["", "## Best config", ""]
    if best is None:
        lines.append("No feasible trial.")
    else:
        head = ["metric", "best this run"]
        if base:
            head[1:1] = ["baseline (recorded)", "baseline config now"]
            head.append("change vs baseline")
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, o in enumerate(objs):
            arrow = "↑" if o["direction"] == "maximize" else "↓"
            row = [f"{o['metric']} {arrow}", _num(best["values"][i])]
            if base:
                now = (recheck or {}).get("metrics", {}).get(o["metric"])
                row[1:1] = [_num(base["best"]["values"][i]),
                            _num(now) + (f" ({_pct(report['drift_pct'].get(o['metric']))})"
                                         if now is not None else "")]
                row.append(_pct(report["change_pct"].get(o["metric"])))
            lines.append("| " + " | ".join(row) + " |")
        if recheck and recheck.get("status") != "ok":
            lines += ["", f"Baseline config now: **{recheck['status']}** — "
                          f"{recheck.get('reason')}"]
        names = list(best["params"])
        if base:
            names += [k for k in base["best"]["params"] if k not in names]
        lines += ["", "| parameter | " + ("baseline | " if base else "") + "best this run |",
                  "|---|" + ("---|" if base else "") + "---|"]
        for k in names:
            cells = [_cell(best["params"].get(k))]
            if base:
                cells.insert(0, _cell(base["best"]["params"].get(k)))
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    front = report["pareto"]
    if len(objs) > 1 and front:
        lines += ["", f"## Pareto front ({len(front)} configs"
                      + (f", hypervolume {report['hypervolume']:.6g}" if report.get(
                          "hypervolume") is not None else "") + ")", ""]
        params = list(front[0]["params"])
        head = ["trial", *[f"{o['metric']}" for o in objs], *params]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for p in front[:FRONT_ROWS]:
            lines.append("| " + " | ".join([str(p["trial"]), *[_num(v) for v in p["values"]],
                                            *[_cell(p["params"].get(k)) for k in params]])
                         + " |")
        if len(front) > FRONT_ROWS:
            lines.append(f"\n… {len(front) - FRONT_ROWS} more in report.json")
    if plot:
        lines += ["", f"![{'Pareto front' if len(objs) > 1 else 'best so far'}]({plot})"]
    return "\n".join(lines) + "\n"


def _baseline_cell(report: dict[str, Any]) -> str:
    base = report.get("baseline")
    text = f"`{base['file']}` from {base.get('created')}" if base else "none"
    return text + ("; updated by this run" if report["baseline_updated"] else "")


def _budget(b: dict[str, Any]) -> str:
    parts = []
    if b.get("trials"):
        parts.append(f"{b['trials']} trials")
    if b.get("wall_time_s"):
        parts.append(f"{b['wall_time_s']:g} s")
    return " and ".join(parts) or "–"


def plot(report: dict[str, Any], res: StudyResults, path: Path) -> None:
    """The front on the first two objectives (or best-so-far for one), baseline marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra("matplotlib", "dashboard") from None
    objs = report["objectives"]
    base = report.get("baseline")
    recheck = (base or {}).get("recheck") or {}
    feas = [t for t in res.trials if t.state == TrialState.COMPLETE
            and t.user_attrs.get("feasible", True)]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    if len(objs) >= 2:
        mx, my = objs[0]["metric"], objs[1]["metric"]
        ax.scatter([t.values[0] for t in feas], [t.values[1] for t in feas], s=12,
                   color="0.7", label="feasible trials")
        front = sorted(report["pareto"], key=lambda p: p["values"][0])
        ax.plot([p["values"][0] for p in front], [p["values"][1] for p in front], "o-",
                color="tab:blue", label="Pareto front (this run)")
        if base:
            bx, by = base["best"]["values"][0], base["best"]["values"][1]
            ax.scatter([bx], [by], marker="*", s=160, color="tab:orange", zorder=5,
                       label="baseline best (recorded)")
            nx, ny = recheck.get("metrics", {}).get(mx), recheck.get("metrics", {}).get(my)
            if nx is not None and ny is not None:
                ax.scatter([nx], [ny], marker="X", s=90, color="tab:red", zorder=5,
                           label="baseline config now")
                ax.annotate("", (nx, ny), (bx, by),
                            arrowprops={"arrowstyle": "->", "color": "tab:red"})
        ax.set_xlabel(f"{mx} ({objs[0]['direction']})")
        ax.set_ylabel(f"{my} ({objs[1]['direction']})")
    else:
        m, d = objs[0]["metric"], objs[0]["direction"]
        pts = sorted((t.number, t.values[0]) for t in feas)
        best, run = [], None
        for _, v in pts:
            run = v if run is None else (max(run, v) if d == "maximize" else min(run, v))
            best.append(run)
        ax.scatter([n for n, _ in pts], [v for _, v in pts], s=10, color="0.7",
                   label="feasible trials")
        ax.step([n for n, _ in pts], best, where="post", color="tab:blue",
                label="best so far")
        if base:
            ax.axhline(base["best"]["values"][0], color="tab:orange", ls="--",
                       label="baseline best (recorded)")
            now = recheck.get("metrics", {}).get(m)
            if now is not None:
                ax.axhline(now, color="tab:red", ls=":", label="baseline config now")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{m} ({d})")
    verdict = "passed" if report["passed"] else "REGRESSION"
    ax.set_title(f"{report['study']}: {verdict}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict[str, Any], res: StudyResults, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "summary.md",
             "plot": out / "plot.png"}
    plot(report, res, paths["plot"])
    report["plot"] = paths["plot"].name
    paths["json"].write_text(json.dumps(report, indent=1, default=str) + "\n",
                             encoding="utf-8")
    paths["markdown"].write_text(markdown(report, paths["plot"].name), encoding="utf-8")
    return paths
