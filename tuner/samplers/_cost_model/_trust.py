"""A trust region around the incumbent: a Hamming ball whose radius follows success.

A global model proposes wherever it predicts the most; when it is wrong about a far region, or
the best configs sit in a narrow basin (a lone optimum one knob away from a good one), that is
where trials go to waste. CASMOPOLITAN (Wan et al., ICML 2021) searches categorical spaces in
a trust region instead: the configs within Hamming distance ``radius`` of the incumbent, the
radius grown after ``succ_tol`` improvements in a row and shrunk after ``fail_tol`` trials
without one, reset when it would shrink below one (TuRBO's rule, Eriksson et al. 2019). Here
the region restricts only a share of the proposals (``CostModelSampler``'s ``trust_region``);
the rest stay global.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def hamming(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    """Parameters whose values differ (a parameter active in only one counts)."""
    return sum(1 for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


class TrustRegion:
    """Radius bookkeeping; ``observe`` after each model fit, ``mask`` for candidates."""

    def __init__(self, n_params: int, succ_tol: int = 2, fail_tol: int | None = None) -> None:
        self.max_radius = max(1, n_params)
        self.initial = max(1, (n_params + 1) // 2)
        self.radius = self.initial
        self.succ_tol = succ_tol
        self.fail_tol = fail_tol or max(3, n_params // 2)
        self._succ = self._fail = 0
        #: radius after each update (what the region did, for reports)
        self.history: list[int] = []

    def observe(self, improved: bool, n_new: int) -> None:
        """Count ``n_new`` finished trials: one success when they ``improved`` on the
        incumbent (a better best, or a new point on the Pareto front), else failures."""
        if n_new <= 0:
            return
        if improved:
            self._succ += 1
            self._fail = 0
        else:
            self._succ = 0
            self._fail += n_new
        if self._succ >= self.succ_tol:
            self.radius = min(self.max_radius, self.radius + 1)
            self._succ = 0
        elif self._fail >= self.fail_tol:
            self.radius -= 1
            self._fail = 0
            if self.radius < 1:  # converged here: start over with a wide region
                self.radius = self.initial
        self.history.append(self.radius)

    def mask(self, candidates: Sequence[Mapping[str, Any]],
             incumbent: Mapping[str, Any]) -> np.ndarray:
        """Candidates inside the region (the incumbent itself excluded)."""
        return np.array([0 < hamming(c, incumbent) <= self.radius for c in candidates],
                        dtype=bool)


__all__ = ["TrustRegion", "hamming"]
