"""The result tables ``tuner run``, ``show`` and ``pareto`` print, readable at 80 columns.

A front has a column per objective and per constraint metric (the numbers a reader checks a
config against), then one ``config`` column holding the knobs that differ along the front
(``tp=8 pp=4 ...``), which wraps instead of being cut; the knobs every config shares are
printed once below. Numbers are never shortened (no ``…``): their columns are as wide as the
widest value. When even the number columns do not fit the console, each config is printed
as a block of ``name = value`` lines instead.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

#: narrowest the config column may get before the table is printed as blocks instead
MIN_CONFIG_WIDTH = 24


def fmt(v: Any) -> str:
    """A value as tables show it: big numbers with thousands separators, others to 4
    significant digits, anything else as text."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(v)


def _columns(res: Any, front: Sequence[Any]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(header, cell texts) of the number columns: objectives, then constraint metrics."""
    cols: list[tuple[str, list[str]]] = []
    for i, o in enumerate(res.objectives):
        arrow = "↑" if o["direction"] == "maximize" else "↓"
        cols.append((f"{o['metric']} {arrow}", [fmt(t.values[i]) for t in front]))
    metrics = [o["metric"] for o in res.objectives]
    for c in res.attrs.get("tuner.constraints") or []:
        m = c.get("metric") if isinstance(c, dict) else None
        if m and m not in metrics:
            metrics.append(m)
            limit = f"{c.get('op')} {fmt(c.get('value'))}"
            cols.append((f"{m} ({limit})",
                         [fmt(t.user_attrs.get("metrics", {}).get(m, "-")) for t in front]))
    return cols, metrics


def print_front(res: Any, console: Any, limit: int = 20) -> None:
    """The Pareto front of a ``StudyResults`` (its best trial for one objective)."""
    from rich.table import Table

    front = res.pareto()
    title = "Pareto front" if len(res.objectives) > 1 else "Best trial"
    if not front:
        console.print(f"{title}: no feasible trial yet", highlight=False)
        return
    if len(res.objectives) == 1:
        front = front[:1]
    shown = front[:limit]
    params = list(dict.fromkeys(p for t in front for p in t.params))
    same = [p for p in params if len({repr(t.params.get(p)) for t in front}) == 1] \
        if len(front) > 1 else []
    varying = [p for p in params if p not in same]
    cols, _ = _columns(res, shown)
    numbers = ["trial"] + [h for h, _ in cols]
    widths = [max([len(str(t.number)) for t in shown] + [5])]
    # a header may wrap onto two lines; a number never does
    widths += [max(max(len(v) for v in vals), min(len(h), 12)) for h, vals in cols]
    needed = sum(w + 3 for w in widths) + MIN_CONFIG_WIDTH + 4
    heading = f"{title} ({len(front)} configs)" if len(res.objectives) > 1 else title
    if varying and needed > console.width or not varying and needed - MIN_CONFIG_WIDTH > \
            console.width:
        _print_blocks(console, heading, shown, cols, varying)
    else:
        table = Table(title=heading)
        for name, w in zip(numbers, widths):
            table.add_column(name, justify="right", min_width=w, overflow="fold")
        if varying:
            table.add_column("config", overflow="fold", ratio=1)
        for j, t in enumerate(shown):
            row = [str(t.number)] + [vals[j] for _, vals in cols]
            if varying:
                row.append(" ".join(f"{p}={fmt(t.params.get(p, '-'))}" for p in varying))
            table.add_row(*row)
        console.print(table)
    if same:
        console.print("same on the whole front: " + ", ".join(
            f"{p}={fmt(front[0].params[p])}" for p in same), highlight=False, soft_wrap=False)
    if len(front) > limit:
        console.print(f"... {len(front) - limit} more (tuner pareto {res.name})",
                      highlight=False)
    if len(res.objectives) > 1:
        ref = res.reference()
        console.print(f"hypervolume {res.hypervolume():.6g} against reference point "
                      f"{[round(r, 6) for r in ref or []]}", highlight=False)


def _print_blocks(console: Any, heading: str, front: Sequence[Any],
                  cols: list[tuple[str, list[str]]], varying: list[str]) -> None:
    """The front as one block per config (when the columns do not fit the console)."""
    console.print(heading, highlight=False)
    for j, t in enumerate(front):
        console.print(f"trial {t.number}", highlight=False)
        for h, vals in cols:
            console.print(f"  {h} = {vals[j]}", highlight=False)
        if varying:
            text = " ".join(f"{p}={fmt(t.params.get(p, '-'))}" for p in varying)
            for line in textwrap.wrap(text, width=max(40, console.width - 2),
                                      initial_indent="  config: ",
                                      subsequent_indent="          "):
                console.print(line, highlight=False, soft_wrap=True)


def print_result(out: dict[str, Any], console: Any) -> None:
    """One ``tuner evaluate`` result as a metric/value table."""
    from rich.table import Table

    table = Table(title=f"status: {out['status']}")
    table.add_column("metric")
    table.add_column("value", justify="right", no_wrap=True)
    for k, v in out["metrics"].items():
        table.add_row(k, f"{v:.6g}")
    console.print(table)
    if out.get("reason"):
        console.print(f"reason: {out['reason']}", highlight=False)


__all__ = ["MIN_CONFIG_WIDTH", "fmt", "print_front", "print_result"]
