"""Which domain's choices moved each objective, for studies whose parameters span domains.

A space that spans domains (``deployment``: serving plan, quantization, scheduler, kernels)
records ``param -> domain`` with the study (``tuner.param_domains``). Two plain measures, per
objective, computed over the feasible trials:

* ``shares`` (over all feasible trials): for each parameter, the share of the objective's
  variance its values explain on their own, as the bias-corrected correlation ratio epsilon^2
  ``(SS_between - (k - 1) MS_within) / SS_total`` (k values seen; clipped at 0, so a parameter
  whose levels differ by chance scores about 0); summed per domain and normalised to 1.
  Parameters interact, so this is a first-order reading, not a decomposition;
* ``front_moves`` (along the Pareto front): the front sorted by the objective, and each step
  between neighbours charged to the domains whose parameters differ between them (split
  equally when several do); the share of the front's total change each domain carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tuner._readonly_storage import TrialRow
from tuner.analysis._common import Objective, metric_value


@dataclass(frozen=True)
class DomainBreakdown:
    objective: str
    shares: dict[str, float]  # domain -> share of explained variance (sums to 1, or empty)
    front_moves: dict[str, float]  # domain -> share of the change along the front
    n_trials: int
    n_front: int


def _epsilon_squared(pairs: Sequence[tuple[object, float]]) -> float:
    n = len(pairs)
    ys = [y for _, y in pairs]
    mean = sum(ys) / n
    total = sum((y - mean) ** 2 for y in ys)
    groups: dict[str, list[float]] = {}
    for v, y in pairs:
        groups.setdefault(repr(v), []).append(y)
    k = len(groups)
    if total <= 0 or k < 2 or n <= k:
        return 0.0
    between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    within = (total - between) / (n - k)
    return max(0.0, (between - (k - 1) * within) / total)


def _normalised(d: Mapping[str, float]) -> dict[str, float]:
    s = sum(d.values())
    return {k: v / s for k, v in d.items()} if s > 0 else {}


def domain_breakdown(rows: Sequence[TrialRow], param_domains: Mapping[str, str],
                     objectives: Sequence[Objective],
                     front_numbers: Sequence[int] = ()) -> list[DomainBreakdown]:
    """One :class:`DomainBreakdown` per objective (see the module docstring for the method)."""
    feasible = [r for r in rows if r.feasible]
    front = [r for r in feasible if r.number in set(front_numbers)]
    domains = sorted(set(param_domains.values()))
    out = []
    for o in objectives:
        scored = [(r, metric_value(r, o.metric, objectives)) for r in feasible]
        scored = [(r, y) for r, y in scored if y is not None]
        per_domain = dict.fromkeys(domains, 0.0)
        for p, d in param_domains.items():
            pairs = [(r.params.get(p), y) for r, y in scored]
            if len(pairs) > 2:
                per_domain[d] += _epsilon_squared(pairs)
        moves = dict.fromkeys(domains, 0.0)
        ranked = sorted(((r, metric_value(r, o.metric, objectives)) for r in front),
                        key=lambda ry: (ry[1] is None, ry[1]))
        for (a, ya), (b, yb) in zip(ranked, ranked[1:]):
            if ya is None or yb is None:
                continue
            changed = {d for p, d in param_domains.items()
                       if a.params.get(p) != b.params.get(p)}
            for d in changed:
                moves[d] += abs(yb - ya) / len(changed)
        out.append(DomainBreakdown(o.metric, _normalised(per_domain), _normalised(moves),
                                   len(scored), len(front)))
    return out


__all__ = ["DomainBreakdown", "domain_breakdown"]
