"""The decoding requests of one engine, held as an aggregate so a step costs O(1) in them.

Requests that are decoding advance together, one token per step: the engine keeps their count,
the sum of their KV tokens (``s_base + n_dec * g`` after ``g`` decode steps), how many sit at
each position of a KV block (new blocks are needed when a request crosses a block boundary)
and a heap of finish steps; a request's own counters are materialised only when it leaves.
Stretches of steps where nothing but decoding can happen are advanced in closed form: step
latency is affine in the step index (the KV read grows by one token per sequence per step), and
the stretch ends at the next finish or block shortage, or early (at a step boundary) when a
request arrives.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

WAITING, PREFILL, DECODE, SWAPPED, GONE = range(5)  # Seq.state


class Seq:
    """One request's state. While decoding on an engine its counters live in the engine's
    aggregate (``join_g``/``c_join``/``gen_join``) and are materialised when it leaves."""

    __slots__ = ("rid", "arrival", "prompt", "out", "prio", "target", "computed", "gen",
                 "blocks", "extra", "state", "join_g", "c_join", "gen_join", "fin_g",
                 "swapped_decoding", "kept", "mark")

    def __init__(self, rid: int, arrival: float, prompt: int, out: int, prio: int) -> None:
        self.rid, self.arrival, self.prompt, self.out, self.prio = rid, arrival, prompt, out, prio
        self.target = prompt  # tokens to (re)compute before the next token is sampled
        self.computed = 0  # tokens whose KV is in the cache
        self.gen = 0  # tokens generated
        self.blocks = 0
        self.extra = 0  # sliding-window blocks
        self.state = WAITING
        self.join_g = self.c_join = self.gen_join = self.fin_g = 0
        self.swapped_decoding = False
        self.kept = self.mark = 0  # blocks left in the prefix cache at a preemption



class DecodeBatch:
    """Mixin of ``Engine``: the decode aggregate and closed-form decode stretches (the
    attributes live on the engine)."""

    # set by Engine.__init__
    g: int
    n_dec: int
    s_base: int
    fin_sum: int
    bs: int
    phase: list[int]
    fin: list[tuple[int, int, Seq]]
    free: int
    uniq: int
    sim: Any
    m: Any
    version: int
    busy: bool
    pending: tuple | None
    window: tuple[float, int, float, float] | None
    ms_left: int

    def _join_decode(self, s: Seq) -> None:
        s.state = DECODE
        s.join_g, s.c_join, s.gen_join = self.g, s.computed, s.gen
        s.fin_g = self.g + (s.out - s.gen)
        self.fin_sum += s.fin_g
        self.n_dec += 1
        self.s_base += s.computed - self.g
        self.phase[(s.computed - self.g) % self.bs] += 1
        self.uniq += 1
        heapq.heappush(self.fin, (s.fin_g, self.uniq, s))

    def _leave_decode(self, s: Seq) -> None:
        """Materialise a decoding request's counters and drop it from the aggregate."""
        steps = self.g - s.join_g
        s.computed = s.c_join + steps
        s.gen = s.gen_join + steps
        s.blocks = -(-s.computed // self.bs)
        self.n_dec -= 1
        self.fin_sum -= s.fin_g
        self.s_base -= s.c_join - s.join_g
        self.phase[(s.c_join - s.join_g) % self.bs] -= 1
        s.state = GONE  # the finish heap entry becomes stale

    def _blocks_needed(self, k: int) -> int:
        """New blocks the decoders need over the next ``k`` steps."""
        if k <= 0 or self.n_dec == 0:
            return 0
        bs, g, ph = self.bs, self.g, self.phase
        cycles, rem = divmod(k, bs)
        need = cycles * self.n_dec
        for s in range(rem):
            need += ph[(-(g + s)) % bs]
        return need

    def _max_steps_for_blocks(self, limit: int) -> int:
        if self.n_dec == 0:
            return limit
        if self.free >= self.n_dec * (limit // self.bs + 1):
            return limit
        cycles = min(self.free // self.n_dec, limit // self.bs)
        k, left = cycles * self.bs, self.free - cycles * self.n_dec
        g, bs, ph = self.g, self.bs, self.phase
        while k < limit:
            need = ph[(-(g + k)) % bs]
            if need > left:
                break
            left -= need
            k += 1
        return k

    def window_steps(self, cap: int = 0) -> int:
        """Decode steps until the next request finishes, the KV blocks run out or a waiting
        request becomes admissible (at most ``cap``)."""
        self.fin_clean()
        n = self.fin[0][0] - self.g if self.fin else 1
        if cap:
            n = min(n, cap)
        return self.admissible_after(self._max_steps_for_blocks(n))

    def admissible_after(self, limit: int) -> int:
        """Decode steps (at most ``limit``) after which the waiting queue's head may start
        (``Engine`` overrides it)."""
        return limit

    def kv_at(self, j: int) -> int:
        """KV tokens the decoders read in the ``j``-th step from now (1 = the next)."""
        return self.s_base + self.n_dec * (self.g + j)

    def _start_window(self, t: float, cap: int = 0) -> bool:
        n = self.window_steps(cap)
        if n <= 0:
            return False
        b = self.n_dec
        self.busy = True
        self.pending = None
        open_window(self, t, n, lambda j: self.m.decode_step(b, self.kv_at(j)))
        return True

    def fin_clean(self) -> None:
        fin = self.fin
        while fin and (fin[0][2].state != DECODE or fin[0][2].fin_g != fin[0][0]):
            heapq.heappop(fin)

    def interrupt(self, t: float) -> None:
        """A request arrived at ``t`` during a decode stretch: end it at the next boundary."""
        if self.window is not None and self.ms_left <= 0:  # a multi-step run is not cut short
            cut_window(self, t)

    def _finish_decoders(self, t: float) -> None:
        fin = self.fin
        while fin and fin[0][0] <= self.g:
            g_fin, _, s = heapq.heappop(fin)
            if s.state != DECODE or s.fin_g != g_fin:
                continue
            self._leave_decode(s)
            self._release(s)
            self.sim.done(s, t)


def open_window(owner: Any, t: float, n: int, latency: Callable[[int], float]) -> None:
    """Start ``owner``'s stretch of ``n`` decode steps at ``t``; ``latency(j)`` is the j-th
    step's, taken affine between the first and the last."""
    l0 = latency(1)
    slope = (latency(n) - l0) / (n - 1) if n > 1 else 0.0
    owner.window = (t, n, l0, slope)
    owner.sim.push(t + cum(n, l0, slope), owner)


def cut_window(owner: Any, t: float) -> None:
    """End ``owner``'s decode stretch at the first step boundary at or after ``t``."""
    t0, n, a, b = owner.window
    k = steps_until(t - t0, a, b)
    if k < n:
        owner.window = (t0, k, a, b)
        owner.version += 1
        owner.sim.push(t0 + cum(k, a, b), owner)


def cum(k: int, a: float, b: float) -> float:
    """Duration of ``k`` steps whose latencies are ``a, a+b, a+2b, ...``."""
    return k * a + b * k * (k - 1) / 2


def steps_until(x: float, a: float, b: float) -> int:
    """Smallest k >= 1 whose cumulative duration reaches ``x``."""
    if x <= 0:
        return 1
    if abs(b) < 1e-15:
        k = math.ceil(x / a)
    else:
        c = a - b / 2
        disc = c * c + 2 * b * x
        k = math.ceil((-c + math.sqrt(max(disc, 0.0))) / b) if disc > 0 else 1
    k = max(k, 1)
    while k > 1 and cum(k - 1, a, b) >= x:
        k -= 1
    while cum(k, a, b) < x:
        k += 1
    return k



__all__ = ["DECODE", "DecodeBatch", "GONE", "PREFILL", "SWAPPED", "Seq", "WAITING",
           "cut_window", "open_window"]
