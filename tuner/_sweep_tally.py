"""What an exhaustive sweep keeps of the configs it scores: counts, the Pareto front, the best
configs per objective and a uniform sample.

A ``Tally`` takes results one by one (``add``, the hot path: a few microseconds per config) and
merges with another tally of other configs of the same sweep (``merge``), so shards scored in
other processes reduce to the same answer as one process scoring everything:

* the front keeps one config per distinct objective vector, the one first in enumeration
  order; above ``max_front`` vectors it is thinned evenly along the first objective when stored
  (its true size is still counted);
* the best ``n_best`` configs per objective, ties broken by enumeration order;
* the sample is a bottom-k sample: every config gets a pseudo-random priority from its
  enumeration index and the sweep's seed (splitmix64), and the ``sample`` lowest are kept: a
  uniform sample without replacement of everything scored, whichever process scored what.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner._evaluator import EvalResult, Status

_M64 = (1 << 64) - 1
#: how many front candidates wait before they are filtered against the front
_FRONT_BUFFER = 2048


def priority(seed: int, index: int) -> int:
    """splitmix64 of (seed, index): the sample priority of the config at ``index``."""
    z = (index + (seed + 1) * 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


@dataclass
class Scored:
    """One scored config the tally may store: where it came in the sweep, what was searched
    (the space's parameter values), what the evaluator said and how long it took."""

    index: int
    values: dict[str, Any]
    result: EvalResult
    eval_s: float

    def export(self) -> tuple[int, dict[str, Any], dict[str, Any], float]:
        return self.index, self.values, self.result.to_json(artifacts=True), self.eval_s

    @classmethod
    def load(cls, data: Sequence[Any]) -> Scored:
        index, values, result, eval_s = data
        return cls(index, values, EvalResult.from_json(result), eval_s)


def nondominated(Y: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``Y`` (all objectives minimized) no other row dominates; of equal
    rows only the first counts (callers order rows by preference)."""
    n = len(Y)
    if n == 0:
        return np.zeros(0, dtype=bool)
    keep = np.ones(n, dtype=bool)
    if Y.shape[1] == 1:
        keep[:] = False
        keep[int(np.argmin(Y[:, 0]))] = True
        return keep
    if Y.shape[1] == 2:
        # sort by the first objective (then the second, then row order); a row is on the front
        # iff its second objective beats every earlier row's
        order = np.lexsort((np.arange(n), Y[:, 1], Y[:, 0]))
        best = math.inf
        keep[:] = False
        for i in order:
            if Y[i, 1] < best:
                best = Y[i, 1]
                keep[i] = True
        return keep
    for i in range(n):  # dominance is transitive: dropping what a kept row beats is enough
        if not keep[i]:
            continue
        le = np.all(Y[i] <= Y, axis=1)
        lt = np.any(Y[i] < Y, axis=1)
        same = le & ~lt
        same[:i + 1] = False
        keep &= ~((le & lt) | same)
    return keep


@dataclass
class Counts:
    scored: int = 0
    ok: int = 0  # measured (feasible or breaking a metric constraint)
    feasible: int = 0
    infeasible: int = 0
    failed: int = 0

    @property
    def violating(self) -> int:
        return self.ok - self.feasible

    def merge(self, other: Counts) -> None:
        for k in ("scored", "ok", "feasible", "infeasible", "failed"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict[str, int]:
        return {"scored": self.scored, "ok": self.ok, "feasible": self.feasible,
                "violating": self.violating, "infeasible": self.infeasible,
                "failed": self.failed}


@dataclass
class Tally:
    """The reduction of a sweep (see the module doc).

    ``objectives``: ``(metric, direction)`` pairs; ``constraints``: objects with
    ``violation(metrics) -> float`` (> 0: violated), as the study's.
    """

    objectives: Sequence[tuple[str, str]]
    constraints: Sequence[Any] = ()
    n_best: int = 10
    sample_size: int = 200
    seed: int = 0
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self.metrics = [m for m, _ in self.objectives]
        self.sign = [1.0 if d == "minimize" else -1.0 for _, d in self.objectives]
        #: per objective: a max-heap (by negated key) of the n_best smallest (value, index)
        self._best: list[list[tuple[float, int, int, Scored]]] = [[] for _ in self.metrics]
        #: max-heap of the sample_size lowest priorities
        self._sample: list[tuple[int, int, Scored]] = []
        self._front_y: np.ndarray = np.empty((0, len(self.metrics)))
        self._front: list[Scored] = []
        self._buffer_y: list[list[float]] = []
        self._buffer: list[Scored] = []

    # -- the hot path --------------------------------------------------------------------
    def add(self, index: int, values: dict[str, Any], result: EvalResult,
            eval_s: float) -> None:
        c = self.counts
        c.scored += 1
        item: Scored | None = None
        p = priority(self.seed, index)
        if len(self._sample) < self.sample_size:
            item = Scored(index, values, result, eval_s)
            heapq.heappush(self._sample, (-p, -index, item))
        elif -p > self._sample[0][0]:
            item = Scored(index, values, result, eval_s)
            heapq.heapreplace(self._sample, (-p, -index, item))
        status = result.status
        if status is Status.FAILED:
            c.failed += 1
            return
        if status is not Status.OK:
            c.infeasible += 1
            return
        metrics = result.metrics
        y: list[float] = []
        for m, s in zip(self.metrics, self.sign):
            v = metrics.get(m)
            if v is None or not math.isfinite(v):
                c.failed += 1  # judged as the record judges it: no objective, failed
                return
            y.append(s * v)
        c.ok += 1
        for con in self.constraints:
            if con.violation(metrics) > 0:
                return
        c.feasible += 1
        if item is None:
            item = Scored(index, values, result, eval_s)
        for j, v in enumerate(y):
            heap = self._best[j]
            if len(heap) < self.n_best:
                heapq.heappush(heap, (-v, -index, index, item))
            elif (-v, -index) > heap[0][:2]:
                heapq.heapreplace(heap, (-v, -index, index, item))
        if len(y) > 1:
            self._buffer_y.append(y)
            self._buffer.append(item)
            if len(self._buffer) >= _FRONT_BUFFER:
                self._flush()

    # -- reductions ----------------------------------------------------------------------
    def _flush(self) -> None:
        if not self._buffer:
            return
        new_y = np.asarray(self._buffer_y, dtype=float)
        new = self._buffer
        self._buffer_y, self._buffer = [], []
        if len(self._front):  # most candidates are dominated by the front already
            F = self._front_y
            dominated = np.zeros(len(new_y), dtype=bool)
            for start in range(0, len(F), 256):
                f = F[start:start + 256]
                le = np.all(f[None, :, :] <= new_y[:, None, :], axis=2)
                dominated |= np.any(le, axis=1)  # equal vectors too: the front's came first
            new_y, new = new_y[~dominated], [s for s, d in zip(new, dominated) if not d]
        self._merge_front(new_y, new)

    def _merge_front(self, new_y: np.ndarray, new: list[Scored]) -> None:
        if not len(new):
            return
        Y = np.vstack([self._front_y, new_y])
        items = self._front + new
        order = np.argsort([s.index for s in items], kind="stable")  # first seen wins ties
        Y, items = Y[order], [items[i] for i in order]
        keep = nondominated(Y)
        self._front_y = Y[keep]
        self._front = [s for s, k in zip(items, keep) if k]

    def merge(self, other: Tally) -> None:
        """Take in ``other``'s configs (scored by another process of the same sweep)."""
        other._flush()
        self._flush()
        self.counts.merge(other.counts)
        for _, _, item in other._sample:
            p = priority(self.seed, item.index)
            if len(self._sample) < self.sample_size:
                heapq.heappush(self._sample, (-p, -item.index, item))
            elif -p > self._sample[0][0]:
                heapq.heapreplace(self._sample, (-p, -item.index, item))
        for j, heap in enumerate(other._best):
            mine = self._best[j]
            for entry in heap:
                if len(mine) < self.n_best:
                    heapq.heappush(mine, entry)
                elif entry[:2] > mine[0][:2]:
                    heapq.heapreplace(mine, entry)
        if len(self.metrics) > 1:
            self._merge_front(other._front_y, list(other._front))

    # -- what is stored ------------------------------------------------------------------
    def front(self, limit: int | None = None) -> list[Scored]:
        """The non-dominated feasible configs (one per objective vector), in enumeration
        order; above ``limit`` an even spread along the first objective."""
        if len(self.metrics) == 1:
            return self.best(0)[:1]
        self._flush()
        items = list(self._front)
        if limit is not None and len(items) > limit:
            order = np.argsort(self._front_y[:, 0], kind="stable")
            picks = np.unique(np.round(np.linspace(0, len(order) - 1, limit)).astype(int))
            items = sorted((items[int(order[i])] for i in picks), key=lambda s: s.index)
        return items

    def front_size(self) -> int:
        if len(self.metrics) == 1:
            return 1 if self.counts.feasible else 0
        self._flush()
        return len(self._front)

    def best(self, j: int) -> list[Scored]:
        """The best feasible configs for objective ``j``, best first."""
        return [e[3] for e in sorted(self._best[j], key=lambda e: (-e[0], -e[1]))]

    def sample(self) -> list[Scored]:
        """The uniform sample, in enumeration order."""
        return sorted((e[2] for e in self._sample), key=lambda s: s.index)

    def optimum(self) -> list[dict[str, Any] | None]:
        """Per objective: the best feasible value and its config's searched values."""
        out: list[dict[str, Any] | None] = []
        for j, (m, d) in enumerate(self.objectives):
            best = self.best(j)
            out.append(None if not best else {
                "metric": m, "direction": d, "value": float(best[0].result.metrics[m]),
                "params": best[0].values, "index": best[0].index})
        return out

    def best_values(self) -> list[float | None]:
        """The best feasible value per objective so far (for progress displays)."""
        return [None if not h else self.sign[j] * -max(h)[0]
                for j, h in enumerate(self._best)]

    # -- across processes ----------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """Plain picklable data (results as JSON) for ``load``."""
        self._flush()
        return {"counts": self.counts.as_dict(),
                "sample": [e[2].export() for e in self._sample],
                "best": [[e[3].export() for e in h] for h in self._best],
                "front": [s.export() for s in self._front]}

    def load(self, data: Mapping[str, Any]) -> Tally:
        """A tally of this one's settings holding ``data`` (from ``export``)."""
        t = Tally(self.objectives, self.constraints, self.n_best, self.sample_size, self.seed)
        c = data["counts"]
        t.counts = Counts(c["scored"], c["ok"], c["feasible"], c["infeasible"], c["failed"])
        for s in map(Scored.load, data["sample"]):
            t._sample.append((-priority(self.seed, s.index), -s.index, s))
        heapq.heapify(t._sample)
        for j, rows in enumerate(data["best"]):
            for s in map(Scored.load, rows):
                v = t.sign[j] * float(s.result.metrics[t.metrics[j]])
                t._best[j].append((-v, -s.index, s.index, s))
            heapq.heapify(t._best[j])
        front = [Scored.load(r) for r in data["front"]]
        if front:
            t._front = front
            t._front_y = np.array([[sg * float(s.result.metrics[m])
                                    for m, sg in zip(t.metrics, t.sign)] for s in front])
        return t


__all__ = ["Counts", "Scored", "Tally", "nondominated", "priority"]
