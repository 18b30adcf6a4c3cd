"""What the LLM proposer is told, and how its reply is read.

* ``reply_schema`` — the JSON schema of a reply: ``{"configs": [{param: value, ...}, ...]}``
  with each parameter's allowed values (sent as the endpoint's ``response_format``).
* ``build_messages`` — system + user messages: the space's schema, the objectives and
  constraints, the best trials or Pareto set, recent failures with their reasons, proposals
  rejected last time and why, and the budget left.
* ``parse_reply`` — the reply is data: ``json.loads`` then a check of every value against the
  space (choices, ranges, steps, conditions, constraints) and against configs already tried.
  Nothing in a reply is ever evaluated or executed; anything that fails a check is rejected
  and counted by kind.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner._space import Categorical, Float, Int, is_active
from tuner.samplers._features import values_key

#: a reply longer than this is not parsed at all
MAX_REPLY_CHARS = 65_536
#: longest text of a trial's reason or metric list quoted in a prompt
MAX_REASON_CHARS = 160


def _param_schema(p: Any) -> dict[str, Any]:
    if isinstance(p, Categorical):
        return {"enum": list(p.choices)}
    if isinstance(p, Int):
        return {"type": "integer", "minimum": p.low, "maximum": p.high}
    return {"type": "number", "minimum": p.low, "maximum": p.high}


def reply_schema(space: Any, batch: int) -> dict[str, Any]:
    """JSON schema of a reply holding 1..``batch`` configs."""
    props = {name: _param_schema(p) for name, p in space.params.items()}
    required = [name for name, p in space.params.items() if not p.when]
    item = {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}
    return {"type": "object", "properties": {"configs": {
        "type": "array", "items": item, "minItems": 1, "maxItems": int(batch)}},
        "required": ["configs"], "additionalProperties": False}


@dataclass
class PromptContext:
    """Everything a prompt says about the study so far."""

    domain: str
    objectives: list[tuple[str, str]]  # (name, direction)
    constraints: list[str]
    best: list[dict[str, Any]]  # {"params": {...}, "values": [...]} best first / Pareto set
    failures: list[dict[str, Any]]  # {"params": {...}, "status": ..., "reason": ...}
    rejected: list[str]  # why recent proposals were rejected
    n_trials: int
    budget_left: int | None
    batch: int
    recent: list[dict[str, Any]] = field(default_factory=list)


def _short(text: Any, n: int = MAX_REASON_CHARS) -> str:
    s = re.sub(r"\s+", " ", str(text)).strip()
    return s if len(s) <= n else s[:n - 1] + "…"


def build_messages(space: Any, ctx: PromptContext) -> list[dict[str, str]]:
    """System and user messages for one proposal request."""
    objectives = ", ".join(f"{d} {m}" for m, d in ctx.objectives)
    system = (
        "You tune configurations of an ML system. You propose new configurations to measure. "
        "Reply with one JSON object only, no prose: "
        '{"configs": [{"<parameter>": <value>, ...}, ...]}. Use only the listed parameters '
        "and only their allowed values. Propose configurations that were not tried yet.")
    lines = [f"Domain: {ctx.domain}.", f"Objectives: {objectives}."]
    fixed = {k: v for k, v in space.context.items() if isinstance(v, (int, float, str, bool))}
    if fixed:
        lines.append("Fixed context (not searched): " + _short(json.dumps(fixed), 600))
    lines.append("Parameters (JSON schema): " + json.dumps(space.schema(), default=str))
    if ctx.constraints:
        lines.append("Constraints on the measured metrics: " + "; ".join(ctx.constraints) + ".")
    lines.append("Some parameter combinations are invalid (the recent failures below say why).")
    lines.append(f"Trials so far: {ctx.n_trials}."
                 + (f" Budget left: {ctx.budget_left} trials." if ctx.budget_left is not None
                    else ""))
    if ctx.best:
        title = "Best trials so far" if len(ctx.objectives) == 1 else "Pareto set so far"
        lines.append(f"{title} (parameters -> {', '.join(m for m, _ in ctx.objectives)}):")
        for b in ctx.best:
            vals = ", ".join(f"{v:.4g}" for v in b["values"])
            lines.append(f"- {json.dumps(b['params'], default=str)} -> {vals}")
    if ctx.recent:
        lines.append("Most recent trials:")
        for r in ctx.recent:
            lines.append(f"- {json.dumps(r['params'], default=str)} -> {r['outcome']}")
    if ctx.failures:
        lines.append("Recent failures (do not repeat them):")
        for f in ctx.failures:
            lines.append(f"- {json.dumps(f['params'], default=str)}: {f['status']}: "
                         f"{_short(f['reason'])}")
    if ctx.rejected:
        lines.append("Your last proposals were rejected: " + "; ".join(
            _short(r, 120) for r in ctx.rejected[:6]) + ".")
    lines.append(f"Propose {ctx.batch} new configuration(s) likely to improve the objectives, "
                 "mixing refinements of the best trials with a few bolder changes.")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


@dataclass
class ParsedReply:
    """Proposals that passed every check, and what was rejected (kind, detail)."""

    valid: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    n_items: int = 0


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _strip_fences(text: str) -> str:
    m = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, flags=re.DOTALL)
    return m.group(1) if m else text


def parse_reply(text: str, space: Any, batch: int, tried: set[Hashable]) -> ParsedReply:
    """Read a reply as data and check each proposal against the space (never executed)."""
    out = ParsedReply()
    if not isinstance(text, str):
        out.rejected.append(("bad_shape", "reply is not text"))
        return out
    if len(text) > MAX_REPLY_CHARS:
        out.rejected.append(("too_large", f"{len(text)} characters"))
        return out
    try:
        data = json.loads(_strip_fences(text), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        out.rejected.append(("invalid_json", _short(exc, 100)))
        return out
    items = data.get("configs") if isinstance(data, dict) else data
    if not isinstance(items, list):
        out.rejected.append(("bad_shape", 'expected {"configs": [...]}'))
        return out
    out.n_items = len(items)
    seen = set(tried)
    for i, item in enumerate(items):
        if i >= batch:
            out.rejected.append(("extra", f"{len(items) - batch} configs beyond the {batch} "
                                 "asked for"))
            break
        kind, detail, values = check_config(item, space)
        if values is None:
            out.rejected.append((kind, detail))
            continue
        key = values_key(values)
        if key in seen:
            out.rejected.append(("duplicate", _short(json.dumps(values, default=str), 120)))
            continue
        seen.add(key)
        out.valid.append(values)
    return out


def check_config(item: Any, space: Any) -> tuple[str, str, dict[str, Any] | None]:
    """(kind, detail, None) for a bad proposal; ("", "", values) for a good one."""
    if not isinstance(item, dict):
        return "bad_item", f"{type(item).__name__} instead of an object", None
    unknown = [k for k in item if k not in space.params]
    if unknown:
        return "unknown_param", f"{_short(unknown[0], 40)!r} is not a parameter", None
    values: dict[str, Any] = {}
    for name, p in space.params.items():
        if not is_active(p, {**space.fixed, **values}):
            continue  # a value for an inactive parameter is ignored
        if name not in item:
            return "missing_param", f"{name} missing", None
        ok, v = coerce_value(p, item[name])
        if not ok:
            return "bad_value", f"{name}={_short(repr(item[name]), 60)} not allowed", None
        values[name] = v
    reasons = space.constraints(space.config(values))
    if reasons:
        return "constraint", _short(reasons[0]), None
    return "", "", values


def coerce_value(p: Any, v: Any) -> tuple[bool, Any]:
    """The allowed value equal to ``v`` (4.0 -> 4 for an integer choice); never a conversion
    from text, and booleans only where booleans are allowed."""
    if isinstance(p, Categorical):
        for c in p.choices:
            if isinstance(c, bool) or isinstance(v, bool):
                if isinstance(c, bool) and isinstance(v, bool) and c == v:
                    return True, c
                continue
            if isinstance(c, (int, float)) and isinstance(v, (int, float)):
                if math.isfinite(v) and float(c) == float(v):
                    return True, c
            elif type(c) is type(v) and c == v:
                return True, c
        return False, None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return False, None
    if isinstance(p, Int):
        if float(v) != int(v):
            return False, None
        iv = int(v)
        ok = p.low <= iv <= p.high and (iv - p.low) % p.step == 0
        return ok, iv if ok else None
    assert isinstance(p, Float)
    fv = float(v)
    if not p.low <= fv <= p.high:
        return False, None
    if p.step is not None:
        k = round((fv - p.low) / p.step)
        if abs(p.low + k * p.step - fv) > 1e-9 * max(1.0, abs(fv)):
            return False, None
        fv = round(p.low + k * p.step, 12)
    return True, fv


def history_context(trials: Sequence[Any], space: Any, directions: Sequence[str],
                    metrics: Sequence[str], n_best: int = 8, n_fail: int = 6, n_recent: int = 5
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(best or Pareto set, recent failures, recent trials) from finished Optuna trials."""
    from optuna.trial import TrialState

    from tuner._pareto import pareto_mask

    params = set(space.params)
    good: list[dict[str, Any]] = []
    fails: list[dict[str, Any]] = []
    recent: list[dict[str, Any]] = []
    for t in trials:
        p = {k: v for k, v in t.params.items() if k in params}
        status = t.user_attrs.get("status", "ok" if t.state == TrialState.COMPLETE else
                                  "failed")
        feasible = t.user_attrs.get("feasible", status == "ok")
        if t.state == TrialState.COMPLETE and feasible and t.values:
            good.append({"params": p, "values": list(t.values)})
            recent.append({"params": p, "outcome": ", ".join(f"{v:.4g}" for v in t.values)})
        elif t.state in (TrialState.COMPLETE, TrialState.FAIL):
            reason = t.user_attrs.get("reason") or ("failed" if t.state == TrialState.FAIL
                                                   else "infeasible")
            fails.append({"params": p, "status": status, "reason": reason})
            recent.append({"params": p, "outcome": f"{status}: {_short(reason, 80)}"})
    if len(directions) == 1:
        sign = -1.0 if directions[0] == "maximize" else 1.0
        best = sorted(good, key=lambda g: sign * g["values"][0])[:n_best]
    else:
        mask = pareto_mask([g["values"] for g in good], list(directions)) if good else []
        best = [g for g, m in zip(good, mask) if m][:n_best]
    return best, fails[-n_fail:], recent[-n_recent:]


__all__ = ["MAX_REPLY_CHARS", "ParsedReply", "PromptContext", "build_messages", "check_config",
           "coerce_value", "history_context", "parse_reply", "reply_schema"]
