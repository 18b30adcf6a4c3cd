"""``tuner catalog``: every name a study file may use, with what it accepts.

Spaces and their parameters (with the values each may take, for the domain's example
context: some ranges depend on the context, e.g. tile sizes on the matrix shape), evaluators
with their metrics and options, samplers, software stacks (training frameworks, serving
engines), hardware, models and serving workloads.
"""

from __future__ import annotations

import argparse
import tomllib
from typing import Any

from tuner._tables import fmt

SECTIONS = ("spaces", "params", "evaluators", "metrics", "samplers", "stacks", "hardware",
            "models", "workloads")


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("what", nargs="?", choices=SECTIONS,
                   help="one section (default: all)")


def _console() -> Any:
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=80)


def _table(title: str, columns: tuple[str, ...]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title))  # "[space]" is the study file's table, not markup
    for i, c in enumerate(columns):
        t.add_column(c, overflow="fold", no_wrap=i == 0)
    return t


def _values(p: Any) -> str:
    """The values a parameter takes, as a study file writes them."""
    from tuner._space import Categorical

    if isinstance(p, Categorical):
        return "choices " + ", ".join(fmt(v) for v in p.choices)
    text = f"{fmt(p.low)} .. {fmt(p.high)}"
    if p.step not in (None, 1):
        text += f" step {fmt(p.step)}"
    if p.log:
        text += " (log)"
    return ("integers " if type(p).__name__ == "Int" else "numbers ") + text


def _params(console: Any) -> None:
    from tuner import registry

    for name in registry.SPACES:
        cls = registry.space_class(name)
        ctx = cls.example_contexts[0] if cls.example_contexts else {}
        space = cls(ctx)
        t = _table(f"{name}: parameters ([space.params.NAME]: choices / low, high, step / "
                   f"fixed), for context {ctx}", ("parameter", "values", "when"))
        for pname, p in space.params.items():
            when = ", ".join(f"{k} in {list(v)}" for k, v in p.when.items())
            t.add_row(pname, _values(p), when or "-")
        console.print(t)


def _evaluators(console: Any, metrics_only: bool) -> None:
    from tuner import registry

    if metrics_only:
        t = _table("metrics (objectives and constraints name these)", ("evaluator", "metrics"))
    else:
        t = _table("evaluators ([evaluator] name; options: [evaluator.options])",
                   ("name", "domains", "options"))
    for name in registry.EVALUATORS:
        try:
            cls = registry.evaluator_class(name)
        except Exception as exc:  # an optional dependency missing: say so, list the rest
            t.add_row(name, f"(unavailable: {type(exc).__name__})", "")
            continue
        if metrics_only:
            t.add_row(name, ", ".join(cls.metrics) or "whatever the command reports")
            continue
        table = cls.options_table
        if table is None:
            opts = "(checked by the evaluator)"
        elif not table:
            opts = "none"
        else:
            opts = "; ".join(f"{k}{' (required)' if o.required else ''}"
                             f"{'' if o.default is None else ' = ' + fmt(o.default)}"
                             for k, o in table.items())
        t.add_row(name, ", ".join(cls.domains) or "any", opts)
    console.print(t)


def _workloads(console: Any) -> None:
    from tuner.evaluators._catalog import CATALOG_DIR

    t = _table("workloads (serving: config key workload = NAME)", ("name", "description"))
    for path in sorted((CATALOG_DIR / "workloads").glob("*.toml")):
        try:
            desc = tomllib.loads(path.read_text(encoding="utf-8")).get("description", "")
        except (OSError, tomllib.TOMLDecodeError):
            desc = "(unreadable)"
        t.add_row(path.stem, str(desc))
    console.print(t)


def _stacks(console: Any) -> None:
    from tuner.evaluators._profiles import load_profile, profile_names

    t = _table("software stacks (training: config key framework; serving: config key engine)",
               ("name", "config key", "profile"))
    for domain, key in (("training", "framework"), ("serving", "engine")):
        for name in profile_names(domain):
            t.add_row(name, key, load_profile(domain, name, key).description)
    console.print(t)


def run(args: argparse.Namespace) -> int:
    from tuner import registry
    from tuner.evaluators import _catalog as cat

    console = _console()
    what = args.what
    if what in (None, "spaces"):
        t = _table("spaces ([space] domain)", ("name", "default evaluator", "objectives"))
        for name in registry.SPACES:
            cls = registry.space_class(name)
            t.add_row(name, cls.default_evaluator, ", ".join(
                f"{m} ({d})" for m, d in cls.default_objectives))
        console.print(t)
    if what in (None, "params"):
        _params(console)
    if what in (None, "evaluators"):
        _evaluators(console, metrics_only=False)
    if what in (None, "metrics"):
        _evaluators(console, metrics_only=True)
    if what in (None, "samplers"):
        t = _table("samplers ([sampler] name)", ("name", "implementation"))
        for k, v in registry.SAMPLERS.items():
            t.add_row(k, v)
        console.print(t)
    if what in (None, "stacks"):
        _stacks(console)
    if what in (None, "hardware"):
        t = _table("hardware (config key gpu)", ("name", "HBM GiB", "HBM TB/s", "bf16 TF/s",
                                                 "fp8 TF/s", "SMs", "GPUs/node",
                                                 "link GB/s", "$/h"))
        for hw in (cat.get_hardware(n) for n in cat.hardware_names()):
            t.add_row(hw.name, fmt(hw.hbm_gib), fmt(hw.hbm_tb_s),
                      fmt(hw.peak_tflops.get("bf16", 0)), fmt(hw.peak_tflops.get("fp8", "-")),
                      str(hw.sm_count), str(hw.gpus_per_node), fmt(hw.nvlink_gb_s),
                      fmt(hw.price_usd_per_hour))
        console.print(t)
    if what in (None, "models"):
        t = _table("models (config key model)", ("name", "layers", "hidden", "heads/kv",
                                                 "experts", "aliases"))
        for m in (cat.get_model(n) for n in cat.model_names()):
            t.add_row(m.name, str(m.num_layers), str(m.hidden_size),
                      f"{m.num_heads}/{m.num_kv_heads}",
                      f"{m.num_experts} top-{m.top_k}" if m.is_moe else "-",
                      ", ".join(m.aliases))
        console.print(t)
    if what in (None, "workloads"):
        _workloads(console)
    return 0


__all__ = ["SECTIONS", "add_arguments", "run"]
