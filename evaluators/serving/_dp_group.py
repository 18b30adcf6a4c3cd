"""The attention-data-parallel ranks of one replica, stepping together.

Under attention data parallelism (SGLang ``--enable-dp-attention``, TensorRT-LLM
``enable_attention_dp``) every GPU of a replica is an engine of its own: its requests, its KV
cache, its scheduler and batch. Every MoE layer exchanges all ranks' tokens, so the ranks run
their forward passes together:

* a step lasts as long as the slowest rank's (its attention, dense layers and host work), so
  one rank's prefill chunk holds up every other rank's decodes;
* the experts compute every rank's tokens of the step together (``StepModel.linear``'s
  ``moe_tokens``), however unevenly the ranks are loaded;
* a rank with nothing to run takes part with an empty batch, and a request that reaches a rank
  mid-step waits for the next step.

Stretches where every rank can only decode are advanced in closed form, as one engine's are
(``_decoders``): the group's step latency is the slowest rank's, taken affine in the step
index between the stretch's first and last step.
"""

from __future__ import annotations

from typing import Any

from tuner.evaluators.serving._decoders import cut_window, open_window
from tuner.evaluators.serving._engine import Engine


class RankGroup:
    """The ``Engine`` of every attention-DP rank of a replica, scheduled as one."""

    def __init__(self, ranks: list[Engine], sim: Any) -> None:
        self.ranks, self.sim = ranks, sim
        self.busy = False
        self.version = 0
        self.window: tuple[float, int, float, float] | None = None
        self.rr = [0]  # the router's round-robin position among the ranks
        for e in ranks:
            e.group = self
            e.ms_n = 1  # multi-step scheduling (vLLM V0) has no attention DP

    @property
    def load(self) -> int:
        return sum(e.load for e in self.ranks)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for e in self.ranks:
            e.busy = busy

    def start(self, t: float) -> None:
        """Schedule the group's next step (or decode stretch) at ``t``."""
        self.version += 1
        self.window = None
        if self.ranks[0].fast_forward and self._start_window(t):
            return
        stepping = []
        for e in self.ranks:
            e.pending = e._schedule()
            if e.pending is not None:
                stepping.append(e)
        if not stepping:
            self._set_busy(False)
            return
        moe = sum(e.step_args[0] for e in stepping)
        lat = max(e.m.step(*e.step_args, moe) + e.swap_cost_now for e in stepping)
        self._set_busy(True)
        self.sim.push(t + lat, self)

    def _start_window(self, t: float) -> bool:
        decoding = []
        for e in self.ranks:
            if e.n_dec:
                if not e.decode_only():
                    return False
                decoding.append(e)
            elif e.waiting or e.prefilling or e.swapped:
                return False
        if not decoding:
            return False
        n = min(e.window_steps() for e in decoding)
        if n <= 0:
            return False
        moe = sum(e.n_dec for e in decoding)
        self._set_busy(True)
        open_window(self, t, n, lambda j: max(e.m.decode_step(e.n_dec, e.kv_at(j), moe)
                                              for e in decoding))
        return True

    def interrupt(self, t: float) -> None:
        """A request arrived at ``t`` during a decode stretch: end it at the next step."""
        if self.window is not None:
            cut_window(self, t)

    def complete(self, t: float) -> None:
        """The step (or stretch) scheduled earlier ends at ``t``: apply it on every rank."""
        if self.window is not None:
            k = self.window[1]
            self.window = None
            for e in self.ranks:
                if e.n_dec:
                    e.steps += 1
                    e.advance(t, k)
        else:
            for e in self.ranks:
                if e.pending is not None:
                    e.steps += 1
                    e.apply_step(t)
        self.start(t)


__all__ = ["RankGroup"]
