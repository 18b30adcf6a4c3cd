"""Plotly figures drawn from ``tuner.analysis`` results (drawing only: no analysis here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

import tuner.analysis as A
from tuner._readonly_storage import TrialRow

COLORS = {"feasible": "#4C78A8", "violates constraint": "#F2A541", "infeasible": "#B0B0B0",
          "failed": "#D62728", "running": "#9467BD"}
FRONT = "#E4572E"
SERIES = ["#4C78A8", "#E4572E", "#54A24B", "#B279A2", "#F2A541", "#72B7B2", "#9D755D",
          "#FF9DA6"]
# WebGL beyond this many points (SVG scatter gets slow); the e2e test checks either renders
WEBGL_ABOVE = 2000
MAX_HOVER_PARAMS = 12


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    return str(v)


def hover_text(row: TrialRow, axes: Sequence[A.Objective], coords: Sequence[float]) -> str:
    lines = [f"<b>trial {row.number}</b> ({A.outcome(row)})"]
    lines += [f"{a.metric} = {_fmt(float(c))}" for a, c in zip(axes, coords)]
    params = list(row.params.items())
    if params:
        lines.append("—")
        lines += [f"{k} = {_fmt(v)}" for k, v in params[:MAX_HOVER_PARAMS]]
        if len(params) > MAX_HOVER_PARAMS:
            lines.append(f"… {len(params) - MAX_HOVER_PARAMS} more")
    return "<br>".join(lines)


def _axis_title(a: A.Objective) -> str:
    return f"{a.metric} {a.arrow}"


def _layout(fig: go.Figure, height: int = 480, title: str | None = None,
            **kw: Any) -> go.Figure:
    # title on the first line, legend on the second, so they never overlap
    top = 80 if title else 40
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=top, b=10),
                      title=dict(text=title, x=0, xanchor="left", y=1.0, yanchor="top",
                                 pad=dict(t=12, l=8)) if title else None,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0), **kw)
    return fig


def pareto_figure(view: A.ParetoView, others: Sequence[tuple[TrialRow, Sequence[float]]] = (),
                  title: str | None = None, log_axes: Sequence[bool] = ()) -> go.Figure:
    """2D or 3D scatter: dominated feasible trials, optional others (greyed), the front."""
    axes = view.axes
    three = len(axes) == 3
    n = len(view.rows)
    dominated = [i for i in range(n) if not view.on_front[i]]
    front = view.front
    fig = go.Figure()
    scatter: Any = go.Scatter3d if three else (go.Scattergl if n + len(others) > WEBGL_ABOVE
                                              else go.Scatter)

    big = n + len(others) > WEBGL_ABOVE

    def trace(idx: Sequence[int], name: str, marker: dict, mode: str = "markers",
              full_hover: bool = True, **extra: Any) -> None:
        xyz = {k: [float(view.coords[i][j]) for i in idx] for j, k in
               enumerate("xyz"[:len(axes)])}
        if full_hover or not big:
            hover: dict[str, Any] = dict(
                hovertext=[hover_text(view.rows[i], axes, view.coords[i]) for i in idx],
                hoverinfo="text")
        else:  # thousands of points: a short label keeps the page light (config: select it)
            hover = dict(hovertemplate="trial %{customdata}<br>" + "<br>".join(
                f"{a.metric} = %{{{k}:.5g}}" for a, k in zip(axes, "xyz")) + "<extra></extra>")
        fig.add_trace(scatter(**xyz, mode=mode, name=name, marker=marker,
                              customdata=[view.rows[i].number for i in idx], **hover, **extra))

    if others:
        xyz = {k: [float(c[j]) for _, c in others] for j, k in enumerate("xyz"[:len(axes)])}
        hover = dict(hovertext=[hover_text(r, axes, c) for r, c in others],
                     hoverinfo="text") if not big else dict(
            hovertemplate="trial %{customdata} (not feasible)<extra></extra>")
        fig.add_trace(scatter(
            **xyz, mode="markers", name="not feasible",
            marker=dict(color=COLORS["infeasible"], size=5 if not three else 3, symbol="x"),
            customdata=[r.number for r, _ in others], **hover))
    trace(dominated, "dominated", dict(color=COLORS["feasible"], size=6 if not three else 3,
                                       opacity=0.55), full_hover=False)
    if front:
        if three:
            trace(front, "Pareto front", dict(color=FRONT, size=6, line=dict(width=1)))
        else:
            shape = "hv" if axes[0].direction == "minimize" else "vh"
            trace(front, "Pareto front", dict(color=FRONT, size=10, line=dict(width=1,
                                                                                color="white")),
                  mode="lines+markers", line=dict(color=FRONT, width=1.5, dash="dot",
                                                  shape=shape))
    if view.knee is not None:
        trace([view.knee], "knee (balanced pick)",
              dict(color="#111111", size=16 if not three else 8, symbol="star" if not three
                   else "diamond"))
    title = title or ("Pareto front" + (f" — {len(front)} configs" if front else ""))
    if three:
        fig.update_layout(scene=dict(xaxis_title=_axis_title(axes[0]),
                                     yaxis_title=_axis_title(axes[1]),
                                     zaxis_title=_axis_title(axes[2])))
        return _layout(fig, 620, title=title)
    log = list(log_axes) + [False, False]
    fig.update_xaxes(title=_axis_title(axes[0]), type="log" if log[0] else None)
    fig.update_yaxes(title=_axis_title(axes[1]), type="log" if log[1] else None)
    return _layout(fig, 520, title=title, hovermode="closest", dragmode="select")


def convergence_figure(conv: A.Convergence) -> go.Figure:
    """Per objective: each feasible trial's value and the best so far."""
    objs = conv.objectives
    fig = make_subplots(rows=len(objs), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"{o.metric} {o.arrow}" for o in objs])
    for k, o in enumerate(objs, start=1):
        xs = [n for n, v in zip(conv.numbers, conv.values[o.metric]) if v is not None]
        ys = [v for v in conv.values[o.metric] if v is not None]
        sc = go.Scattergl if len(xs) > WEBGL_ABOVE else go.Scatter
        fig.add_trace(sc(x=xs, y=ys, mode="markers", name="feasible trial",
                         marker=dict(color=COLORS["feasible"], size=4, opacity=0.5),
                         showlegend=k == 1), row=k, col=1)
        fig.add_trace(go.Scatter(x=conv.numbers, y=conv.best[o.metric], mode="lines",
                                 name="best so far", line=dict(color=FRONT, width=2,
                                                               shape="hv"),
                                 showlegend=k == 1), row=k, col=1)
    fig.update_xaxes(title="trial", row=len(objs), col=1)
    return _layout(fig, 260 * len(objs) + 60, title="Best so far")


def hypervolume_figure(series: Sequence[tuple[str, Sequence[int], Sequence[float]]],
                       reference: Sequence[float] | None) -> go.Figure:
    fig = go.Figure()
    for i, (label, xs, hv) in enumerate(series):
        fig.add_trace(go.Scatter(x=list(xs), y=list(hv), mode="lines", name=label,
                                 line=dict(color=SERIES[i % len(SERIES)], width=2,
                                           shape="hv")))
    ref = ", ".join(f"{v:.4g}" for v in reference) if reference else "-"
    fig.update_xaxes(title="trial")
    fig.update_yaxes(title="hypervolume")
    return _layout(fig, 360, title=f"Hypervolume (reference point {ref})")


def feasible_share_figure(conv: A.Convergence) -> go.Figure:
    fig = go.Figure(go.Scatter(x=conv.numbers, y=[100 * s for s in conv.feasible_share],
                               mode="lines", line=dict(color=COLORS["feasible"])))
    fig.update_xaxes(title="trial")
    fig.update_yaxes(title="% feasible so far", range=[0, 100])
    return _layout(fig, 260, title="Share of feasible trials")


def parallel_figure(axes: Sequence[A.Axis], color_by: A.Axis | None) -> go.Figure:
    dims = []
    for a in axes:
        vals = [math.nan if v is None else v for v in a.values]
        d: dict[str, Any] = dict(label=a.label, values=vals)
        if a.ticks is not None:
            d.update(tickvals=[t for t, _ in a.ticks], ticktext=[s for _, s in a.ticks],
                     range=[-0.5, max(0.5, len(a.ticks) - 0.5)])
        elif a.integer:  # an integer knob: whole-number ticks, never 2.5
            ticks = a.integer_ticks()
            d.update(tickvals=ticks, ticktext=[str(t) for t in ticks])
        dims.append(d)
    line: dict[str, Any] = dict(color=COLORS["feasible"])
    if color_by is not None:
        cvals = [math.nan if v is None else v for v in color_by.values]
        line = dict(color=cvals, colorscale="Viridis", showscale=True,
                    colorbar=dict(title=color_by.label))
    fig = go.Figure(go.Parcoords(dimensions=dims, line=line))
    _layout(fig, 560, title="Parallel coordinates")
    fig.update_layout(margin=dict(l=70, r=130, t=110, b=30))  # room for labels, colour bar
    return fig


def importance_figure(imps: A.Importances) -> go.Figure:
    items = list(imps.importances.items())[::-1]
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color=COLORS["feasible"],
                           text=[f"{100 * v:.1f} %" for _, v in items],
                           textposition="auto"))
    fig.update_xaxes(title="share of variance (fANOVA)", range=[0, 1])
    return _layout(fig, max(220, 40 * len(items) + 100),
                   title=f"Importance for {imps.target} ({imps.n_trials} trials)")


def outcome_bar(counts: dict[str, int]) -> go.Figure:
    fig = go.Figure()
    for o in A.OUTCOMES:
        if counts.get(o):
            fig.add_trace(go.Bar(x=[counts[o]], y=["trials"], orientation="h", name=o,
                                 marker_color=COLORS[o], text=[counts[o]],
                                 textposition="inside"))
    fig.update_layout(barmode="stack")
    fig.update_yaxes(visible=False)
    return _layout(fig, 150)


def feasibility_heatmap(fmap: A.FeasibilityMap) -> go.Figure:
    """Rows: parameters; cells: their value buckets, coloured by share of bad trials."""
    params = list(fmap.cells)
    width = max((len(c) for c in fmap.cells.values()), default=0)
    z, text, hover = [], [], []
    for p in params:
        cells = fmap.cells[p]
        z.append([c.bad_share for c in cells] + [None] * (width - len(cells)))
        text.append([f"{c.label}<br>{100 * c.bad_share:.0f}%" for c in cells]
                    + [""] * (width - len(cells)))
        hover.append([f"{p} = {c.label}<br>{c.n} trials<br>" + "<br>".join(
            f"{k}: {v}" for k, v in c.counts.items()) for c in cells]
            + [""] * (width - len(cells)))
    fig = go.Figure(go.Heatmap(z=z, y=params, x=list(range(1, width + 1)), text=text,
                               texttemplate="%{text}", hovertext=hover, hoverinfo="text",
                               colorscale=[[0, "#E8F1E4"], [0.5, "#F2A541"], [1, "#D62728"]],
                               zmin=0, zmax=1, xgap=2, ygap=2,
                               colorbar=dict(title="not feasible", tickformat=".0%")))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, 70 * len(params) + 120,
                   title="Share of trials that are not feasible, per parameter value")


def param_outcome_bars(cells: Sequence[A.Cell]) -> go.Figure:
    fig = go.Figure()
    labels = [c.label for c in cells]
    for o in A.OUTCOMES:
        ys = [c.counts.get(o, 0) for c in cells]
        if any(ys):
            fig.add_trace(go.Bar(x=labels, y=ys, name=o, marker_color=COLORS[o]))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(type="category", title=cells[0].param if cells else "")
    fig.update_yaxes(title="trials")
    return _layout(fig, 340)


def grid_heatmap(grid: A.FeasibilityGrid) -> go.Figure:
    text = [[("" if s is None else f"{100 * s:.0f}%<br>n={n}") for s, n in zip(rs, ns)]
            for rs, ns in zip(grid.bad_share, grid.n)]
    fig = go.Figure(go.Heatmap(z=grid.bad_share, x=grid.x_labels, y=grid.y_labels, text=text,
                               texttemplate="%{text}", zmin=0, zmax=1,
                               colorscale=[[0, "#E8F1E4"], [0.5, "#F2A541"], [1, "#D62728"]],
                               colorbar=dict(title="not feasible", tickformat=".0%")))
    fig.update_xaxes(title=grid.param_x, type="category")
    fig.update_yaxes(title=grid.param_y, type="category")
    return _layout(fig, 420, title=f"{grid.param_y} × {grid.param_x}")


def compare_fronts_figure(cmp: A.Comparison, log_axes: Sequence[bool] = ()) -> go.Figure:
    three = len(cmp.axes) == 3
    fig = go.Figure()
    for i, (label, view) in enumerate(zip(cmp.labels, cmp.fronts)):
        color = SERIES[i % len(SERIES)]
        dom = [j for j in range(len(view.rows)) if not view.on_front[j]]
        for idx, name, marker, mode in (
                (dom, f"{label} (dominated)", dict(color=color, size=4 if not three else 2,
                                                   opacity=0.3), "markers"),
                (view.front, f"{label} front", dict(color=color, size=9 if not three else 5),
                 "markers" if three else "lines+markers")):
            coords = {k: [float(view.coords[j][d]) for j in idx] for d, k in
                      enumerate("xyz"[:len(cmp.axes)])}
            kw: dict[str, Any] = {}
            if not three and mode != "markers":
                kw["line"] = dict(color=color, shape="hv" if cmp.axes[0].direction ==
                                  "minimize" else "vh")
            cls = go.Scatter3d if three else (go.Scattergl if len(idx) > WEBGL_ABOVE
                                              else go.Scatter)
            fig.add_trace(cls(**coords, mode=mode, name=name, marker=marker,
                              hovertext=[f"{label}<br>" + hover_text(view.rows[j], cmp.axes,
                                                                     view.coords[j])
                                         for j in idx], hoverinfo="text", **kw))
    if three:
        fig.update_layout(scene=dict(xaxis_title=_axis_title(cmp.axes[0]),
                                     yaxis_title=_axis_title(cmp.axes[1]),
                                     zaxis_title=_axis_title(cmp.axes[2])))
    else:
        log = list(log_axes) + [False, False]
        fig.update_xaxes(title=_axis_title(cmp.axes[0]), type="log" if log[0] else None)
        if len(cmp.axes) > 1:
            fig.update_yaxes(title=_axis_title(cmp.axes[1]), type="log" if log[1] else None)
    return _layout(fig, 560, title="Pareto fronts")


def compare_best_figure(cmp: A.Comparison, metric: str) -> go.Figure:
    fig = go.Figure()
    for i, (label, conv) in enumerate(zip(cmp.labels, cmp.convergence)):
        fig.add_trace(go.Scatter(x=list(range(1, len(conv.numbers) + 1)),
                                 y=conv.best.get(metric, []), mode="lines", name=label,
                                 line=dict(color=SERIES[i % len(SERIES)], shape="hv")))
    fig.update_xaxes(title="trials")
    fig.update_yaxes(title=f"best {metric}")
    return _layout(fig, 360, title=f"Best {metric} so far")


def fidelity_figure(mf: A.MetricFidelity) -> go.Figure:
    xs = [p.measured for p in mf.pairs]
    ys = [p.predicted for p in mf.pairs]
    lo, hi = min(xs + ys), max(xs + ys)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = measured",
                             line=dict(color="#333", dash="dash")))
    for f, name in ((1.1, "±10 %"), (0.9, None)):
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * f, hi * f], mode="lines", name=name,
                                 showlegend=name is not None,
                                 line=dict(color="#aaa", dash="dot", width=1)))
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", name="config", marker=dict(color=COLORS["feasible"],
                                                                size=7),
        hovertext=[f"predicted trial {p.predicted_number} / measured trial "
                   f"{p.measured_number}<br>error {p.error_pct:+.1f} %" for p in mf.pairs],
        hoverinfo="text"))
    fig.update_xaxes(title=f"measured {mf.metric}")
    fig.update_yaxes(title=f"predicted {mf.metric}")
    return _layout(fig, 440, title=f"{mf.metric}: mean |error| {mf.mean_abs_error_pct:.1f} %")


def error_histogram(mf: A.MetricFidelity) -> go.Figure:
    fig = go.Figure(go.Histogram(x=[p.error_pct for p in mf.pairs], nbinsx=30,
                                 marker_color=COLORS["feasible"]))
    fig.update_xaxes(title="error % ((predicted − measured) / measured)")
    fig.update_yaxes(title="configs")
    return _layout(fig, 300, title="Error distribution")


def bench_figure(view: A.BenchView, log_y: bool = False) -> go.Figure:
    fig = go.Figure()
    for i, c in enumerate(view.curves):
        color = SERIES[i % len(SERIES)]
        fig.add_trace(go.Scatter(x=c.trials + c.trials[::-1], y=c.high + c.low[::-1],
                                 fill="toself", fillcolor=color, opacity=0.15,
                                 line=dict(width=0), hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=c.trials, y=c.median, mode="lines",
                                 name=f"{c.sampler} (median of {c.seeds})",
                                 line=dict(color=color, width=2)))
    fig.update_xaxes(title="trials")
    fig.update_yaxes(title=view.metric, type="log" if log_y else "linear")
    return _layout(fig, 460, title=f"{view.problem}: {view.metric} "
                   f"({'lower' if view.direction == 'minimize' else 'higher'} is better)")
