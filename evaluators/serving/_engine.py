"""Discrete-event simulation of continuous batching with paged KV cache.

Each *engine* is one scheduler over one KV-block pool (a replica, one of a replica's ``pp``
pipeline virtual engines, or a prefill / decode worker). It runs iteration-level scheduling as
vLLM does:

* chunked prefill on (vLLM V1, Sarathi-Serve): every step first gives each running decode one
  token, then continues partially prefilled prompts, then admits waiting requests, all within
  ``max_num_batched_tokens`` and at most ``prefill_chunk_size`` tokens per prompt per step;
* chunked prefill off: prompts are prefilled whole. With ``mixed_prefill`` (TensorRT-LLM's
  in-flight batching, SGLang, vLLM V1) new prompts join the running decodes' step; without it
  (vLLM V0's default scheduler) a step either prefills newly admitted prompts only (decodes
  stall) or decodes every running request;
* chunked prefill without ``mixed_prefill`` (SGLang's default): a step either prefills (chunks
  of waiting and partially prefilled prompts, within the budget) or decodes every running
  request; prefill steps go first whenever a prompt can be admitted or continued;
* KV blocks of ``kv_block_size`` tokens are allocated as tokens are written; when none are
  free, the most recently admitted request (or the lowest-priority one under the ``priority``
  policy) is preempted: *recompute* frees its blocks and re-queues it to prefill prompt +
  generated tokens again; *swap* copies its blocks to host memory over PCIe (the copy time is
  added to the step) and swaps them back in before new requests are admitted;
* admission follows the engine's profile (``admission``): ``preempt`` (vLLM) admits a prompt
  when its chunk's blocks are free; ``reserve`` (SGLang's ``new_token_ratio``) also needs room
  for the new request's whole output and ``reserve_output_fraction`` of every running
  request's remaining output; ``guaranteed_no_evict`` (TensorRT-LLM's default capacity
  scheduler) reserves every running request's whole remaining output, so nothing is ever
  preempted; ``slots`` (llama.cpp) admits into a free slot whatever the cache holds, and the
  peak use of the cache is reported (llama-server fails every request when it overflows);
* waiting requests are ordered FCFS, by shortest prompt, or by priority (lower value first).

How engines form a deployment (replicas, pipeline virtual engines, prefill/decode workers, the
router, arrivals and the closed-loop client) is in ``_cluster``.

Speed: decoding requests are held as an aggregate and decode-only stretches are advanced in
closed form (``_decoders``), so a step costs O(prefill chunks + finishing requests).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import Any

from tuner.evaluators.serving._decoders import (
    DECODE,
    GONE,
    PREFILL,
    SWAPPED,
    WAITING,
    DecodeBatch,
    Seq,
)
from tuner.evaluators.serving._latency import StepModel


class Engine(DecodeBatch):
    """One scheduler + KV pool. ``sim`` receives finished / handed-off requests."""

    def __init__(self, idx: int, role: str, model: StepModel, blocks: int, extra_blocks: int,
                 plan: Any, swap_blocks: int, swap_s_per_block: float, sim: Any) -> None:
        self.idx, self.role, self.m, self.sim = idx, role, model, sim
        self.extra_per_seq = extra_blocks
        self.bs = plan.kv_block_size
        self.max_seqs = plan.max_num_seqs
        self.budget = plan.max_num_batched_tokens
        self.admission = plan.admission
        self.reserve_frac = (1.0 if self.admission == "guaranteed_no_evict" else
                             float(plan.c("reserve_output_fraction"))
                             * (float(plan.c("dp_attention_reserve_scale"))
                                if plan.dp_attention else 1.0)
                             if self.admission == "reserve" else 0.0)
        self.reserving = self.admission in ("reserve", "guaranteed_no_evict")
        #: KV capacity in blocks (llama.cpp's slots: the pool is unbounded, its peak is kept)
        self.capacity = blocks
        if self.admission == "slots":
            blocks = 1 << 60
        self.peak_used = 0
        self.total = self.free = blocks
        self.alloc_total = 0  # blocks handed out so far (prefix-cache eviction clock)
        self.prefix_cache = bool(plan.profile.constants.get("prefix_caching", False))
        self.chunk = plan.prefill_chunk_size if plan.chunked_prefill else 10**12
        self.chunked = plan.chunked_prefill
        self.mixed = plan.mixed_prefill  # whole prompts share steps with decodes
        self.swap_mode = plan.preemption_mode == "swap"
        self.swap_free = swap_blocks
        self.swap_cost = swap_s_per_block
        policy = plan.scheduling_policy
        self.key: Callable[[Seq], tuple] | None = (
            None if policy == "fcfs" else
            (lambda s: (s.target - s.computed, s.arrival, s.rid)) if policy ==
            "shortest_prompt_first" else (lambda s: (s.prio, s.arrival, s.rid)))
        self.by_priority = policy == "priority"
        self.waiting: Any = deque() if self.key is None else []
        self.swapped: deque[Seq] = deque()
        self.prefilling: list[Seq] = []
        self.order: dict[Seq, None] = {}  # running requests in admission order
        self.victims: list[tuple] = []  # priority policy: heap of (-prio, -arrival, rid, seq)
        # decode aggregate
        self.g = 0
        self.n_dec = 0
        self.s_base = 0  # sum of KV tokens of decoding requests = s_base + n_dec * g
        self.fin_sum = 0  # sum of the decoders' finish steps (remaining output: fin_sum - n*g)
        self.phase = [0] * self.bs  # decoders by (c_join - join_g) mod bs
        self.fin: list[tuple[int, int, Seq]] = []  # (finish step, tiebreak, request)
        # event bookkeeping
        self.busy = False
        self.kicked = False  # a start at the current instant is queued (``_cluster``)
        self.version = 0
        self.window: tuple[float, int, float, float] | None = None
        self.pending: tuple | None = None
        self.preemptions = 0
        self.steps = 0
        self.allocated = False
        self.uniq = 0
        #: advance decode-only stretches in closed form (off: one event per step, for tests)
        self.fast_forward = True
        #: multi-step scheduling: decode runs of ``ms_n`` steps, ``ms_left`` of the current one
        self.ms_n = plan.num_scheduler_steps
        self.ms_left = 0
        #: the attention-DP ranks this engine steps with (``_dp_group.RankGroup``), if any
        self.group: Any = None
        #: the last scheduled step's ``StepModel.step`` arguments and its swap time (its
        #: latency is the caller's: a DP rank's depends on its replica's other ranks)
        self.step_args: tuple = ()
        self.swap_cost_now = 0.0

    # -- queues --------------------------------------------------------------------------
    @property
    def load(self) -> int:
        return self.n_dec + len(self.prefilling) + len(self.waiting) + len(self.swapped)

    def _push_waiting(self, s: Seq, front: bool = False) -> None:
        s.state = WAITING
        if self.key is None:
            (self.waiting.appendleft if front else self.waiting.append)(s)
        else:
            heapq.heappush(self.waiting, (self.key(s), s.rid, s))

    def _peek_waiting(self) -> Seq | None:
        if not self.waiting:
            return None
        return self.waiting[0] if self.key is None else self.waiting[0][2]

    def _pop_waiting(self) -> Seq:
        return self.waiting.popleft() if self.key is None else heapq.heappop(self.waiting)[2]

    def enqueue(self, s: Seq) -> None:
        self._push_waiting(s)

    # -- preemption ----------------------------------------------------------------------
    def _victim(self) -> Seq | None:
        if self.by_priority:
            while self.victims:
                s = self.victims[0][4]
                if s.state in (PREFILL, DECODE) and s in self.order:
                    return s
                heapq.heappop(self.victims)
            return None
        return next(reversed(self.order), None) if self.order else None

    def _admit(self, s: Seq) -> None:
        self.order[s] = None
        if self.by_priority:
            self.uniq += 1
            heapq.heappush(self.victims, (-s.prio, -s.arrival, -s.rid, self.uniq, s))

    def _release(self, s: Seq) -> None:
        self.order.pop(s, None)
        self.free += s.blocks + s.extra
        s.blocks = s.extra = 0

    def _preempt(self, s: Seq) -> float:
        """Evict ``s``; returns the swap-out time charged to this step."""
        self.preemptions += 1
        was_decoding = s.state == DECODE
        if was_decoding:
            self._leave_decode(s)
            if self.allocated and s.computed % self.bs == 0:
                self.free += 1  # the block taken for this step's token stays unused
        elif s.state == PREFILL:
            self.prefilling.remove(s)
        if self.swap_mode and s.blocks and s.blocks <= self.swap_free:
            self.order.pop(s, None)
            n = s.blocks
            self.swap_free -= n
            self.free += n + s.extra
            s.extra = 0
            s.state = SWAPPED
            s.swapped_decoding = was_decoding
            self.swapped.append(s)
            return n * self.swap_cost
        if self.prefix_cache:
            # its blocks join the free list's tail: they keep their content (prefix cache)
            # until the blocks free before them have been handed out
            s.kept, s.mark = s.blocks, self.alloc_total + self.free
        self._release(s)
        s.target = s.prompt + s.gen
        s.computed = 0
        self._push_waiting(s, front=True)
        return 0.0

    def _restore(self, s: Seq) -> tuple[int, int, int]:
        """Re-admitting a preempted request: its blocks still cached are hits (taken back
        from the free list, not recomputed). Returns what ``_undo`` needs."""
        saved = (s.kept, s.mark)
        hit = max(0, s.kept - max(0, self.alloc_total - s.mark))
        s.kept = 0
        tokens = min(hit * self.bs, s.target - 1)
        blocks = -(-tokens // self.bs) if tokens > 0 else 0
        s.computed, s.blocks = tokens, blocks
        self.free -= blocks
        return (blocks, *saved)

    def _undo(self, s: Seq, restored: tuple[int, int, int] | None) -> None:
        """``s`` was not admitted after all: the cache is as it was."""
        if restored is None:
            return
        self.free += restored[0]
        s.kept, s.mark = restored[1], restored[2]
        s.computed = s.blocks = 0

    def _swap_in(self) -> float:
        cost = 0.0
        while self.swapped and len(self.order) < self.max_seqs:
            s = self.swapped[0]
            need = s.blocks + self.extra_per_seq + self.n_dec + 1
            if need > self.free:
                break
            self.swapped.popleft()
            self.swap_free += s.blocks
            self.free -= s.blocks + self.extra_per_seq
            self.alloc_total += s.blocks + self.extra_per_seq
            s.extra = self.extra_per_seq
            cost += s.blocks * self.swap_cost
            self._admit(s)
            if s.swapped_decoding:
                self._join_decode(s)
            else:
                s.state = PREFILL
                self.prefilling.append(s)
        return cost

    # -- scheduling ----------------------------------------------------------------------
    def _admission_blocks(self, s: Seq, n: int) -> int:
        return -(-(s.computed + n) // self.bs) - s.blocks + self.extra_per_seq

    def _full_blocks(self, s: Seq) -> int:
        """Blocks ``s`` still needs to finish: the rest of its prompt and all its output."""
        return (-(-(s.target + s.out - s.gen) // self.bs) - s.blocks
                + (0 if s.extra else self.extra_per_seq))

    def running_reserve(self, ahead: int = 0) -> int:
        """Blocks held back for the running requests' future tokens (reserving admission),
        ``ahead`` decode steps from now."""
        if not self.reserving:
            return 0
        rest = self.fin_sum - self.n_dec * (self.g + ahead)  # decoders' remaining output
        prompt = 0
        for s in self.prefilling:
            rest += s.out - s.gen
            prompt += s.target - s.computed
        slack = len(self.order) if self.reserve_frac >= 1.0 else 0  # block rounding
        return -(-int(prompt + self.reserve_frac * rest) // self.bs) + slack

    def _can_admit(self) -> bool:
        margin = self._head_margin()
        return margin is not None and margin >= 0

    def _head_margin(self) -> int | None:
        """Free blocks left if the waiting queue's head were admitted now (negative: it does
        not fit); None when something other than KV blocks keeps it out."""
        s = self._peek_waiting()
        if s is None or len(self.order) >= self.max_seqs:
            return None
        if s.kept and not s.computed:  # judge it with its cached blocks, as admission does
            restored = self._restore(s)
            margin = self._margin(s)
            self._undo(s, restored)
            return margin
        return self._margin(s)

    def _margin(self, s: Seq) -> int | None:
        left = s.target - s.computed
        if left == 0:
            need = -(-s.computed // self.bs) + self.extra_per_seq + self._new_block(s)
        elif not self.chunked:
            need = self._admission_blocks(s, left)
        else:
            n = min(left, self.chunk, self.budget - (self.n_dec if self.mixed else 0))
            if n <= 0:
                return None
            need = self._admission_blocks(s, n)
        if self.reserving:
            need = max(need, self._full_blocks(s)) + self.running_reserve()
        return self.free - need

    def admissible_after(self, limit: int) -> int:
        """Decode steps (at most ``limit``) after which the waiting queue's head fits. A
        reserving admission holds back the running requests' remaining output, which shrinks
        as they decode, so a prompt refused now may fit a few steps on. With the whole output
        reserved, the free blocks and the reserve fall together and only their rounding to
        blocks moves, with the period of a block, so one block's worth of steps is checked
        (with part of it reserved, the margin only shrinks beyond that); over those steps the
        reserve falls by at most ``n_dec`` + 1 blocks, so a head short of more never fits."""
        if not self.reserving or not self.waiting or limit <= 1:
            return limit
        margin = self._head_margin()
        if margin is None or margin < -(self.n_dec + 1):
            return limit
        # only the decoders' new blocks and the reserve move while nothing but decoding runs
        base, bs, need = margin + self.running_reserve(), self.bs, 0
        for k in range(1, min(limit, bs + 1)):
            need += self.phase[(-(self.g + k - 1)) % bs]  # blocks for the k-th step
            if base - self.running_reserve(k) - need >= 0:
                return k
        return limit

    def _swap_ready(self) -> bool:
        if not self.swapped or len(self.order) >= self.max_seqs:
            return False
        s = self.swapped[0]
        return s.blocks + self.extra_per_seq + self.n_dec + 1 <= self.free

    def start(self, t: float) -> None:
        """Schedule the next step (or stretch of decode steps) at time ``t``."""
        if self.group is not None:  # an attention-DP rank steps with its replica's ranks
            if not self.group.busy:
                self.group.start(t)
            return
        self.version += 1
        if self.ms_n > 1 and self._multi_step(t):
            return
        if self.fast_forward and self.decode_only() and self._start_window(t):
            return
        batch = self._schedule()
        if batch is None:
            self.busy = False
            self.pending = None
            return
        self.busy = True
        self.pending = batch
        self.sim.push(t + self.m.step(*self.step_args) + self.swap_cost_now, self)

    def decode_only(self) -> bool:
        """Whether nothing but decoding can happen until a request arrives or finishes."""
        return bool(self.n_dec) and not self.prefilling and not self._can_admit() \
            and not self._swap_ready() and (self.n_dec <= self.budget or not self.mixed)

    def _multi_step(self, t: float) -> bool:
        """Multi-step scheduling: once a decode run starts, its ``ms_n`` steps run back to back
        and waiting requests are admitted only when it ends (vLLM V0's multi-step worker
        schedules once per run). True when a stretch of the run was started."""
        if not self.n_dec or self.prefilling or self.swapped:
            self.ms_left = 0
            return False
        if self.ms_left <= 0:
            if self._can_admit():
                return False  # a scheduler call between runs: admit / prefill as usual
            self.ms_left = self.ms_n
        if self._start_window(t, self.ms_left):
            return True
        self.ms_left = 0  # out of KV blocks: the scheduler preempts
        return False

    def _schedule(self) -> tuple | None:
        """The next step's (prefill chunks, decoders), its ``step_args`` set; None when there
        is nothing to run."""
        self.allocated = False  # decoders' blocks for this step not yet taken
        extra_cost = self._swap_in() if self.swapped else 0.0
        budget = self.budget
        chunks: list[tuple[Seq, int]] = []
        preempted = False
        prefill_only = False
        if not self.mixed and self.role != "decode":
            prefill_only = bool(self.prefilling) or (self._can_admit() and not self.swapped)
        dec_b = 0
        if not prefill_only and self.n_dec:
            cost, preempted = self._take_decode_blocks()
            extra_cost += cost
            dec_b = self.n_dec
            budget -= dec_b
        # continue partially prefilled prompts (chunked mode), in admission order
        for s in list(self.prefilling):
            if budget <= 0:
                break
            if s.state != PREFILL:
                continue
            n = min(s.target - s.computed, self.chunk, budget)
            need = -(-(s.computed + n) // self.bs) - s.blocks
            while need > self.free:
                v = self._victim()
                if v is None or v is s:
                    if v is s:
                        extra_cost += self._preempt(s)
                        preempted = True
                    need = -1
                    break
                extra_cost += self._preempt(v)
                preempted = True
            if need < 0:
                continue
            self.free -= need
            self.alloc_total += need
            s.blocks += need
            chunks.append((s, n))
            budget -= n
        # admit waiting requests (not in a step that had to preempt: vLLM V1 does the same)
        if not preempted and (self.mixed or prefill_only or self.role == "decode"):
            first = True
            reserve = self.running_reserve() if self.reserving else 0
            while self.waiting and len(self.order) < self.max_seqs:
                s = self._peek_waiting()
                hit = self._restore(s) if s.kept and not s.computed else None
                left = s.target - s.computed
                if left == 0:  # KV already here (decode worker): it joins the decoders
                    need = (-(-s.computed // self.bs) + self.extra_per_seq
                            + self._new_block(s))
                    full = self._full_blocks(s) if self.reserving else need
                    if max(need, full) + reserve > self.free or budget < 1:
                        break
                    reserve += max(full - need, 0)
                    self._pop_waiting()
                    self.free -= need
                    self.alloc_total += need
                    s.blocks, s.extra = -(-s.computed // self.bs), self.extra_per_seq
                    self._admit(s)
                    self._join_decode(s)
                    budget -= 1
                    dec_b += 1
                    continue
                if budget <= 0:
                    self._undo(s, hit)
                    break
                n = min(left, self.chunk, budget)
                if not self.chunked and n < left:
                    if not first or (chunks and left > self.budget):
                        self._undo(s, hit)
                        break
                    n = left  # a whole prompt may overrun what the decodes left of the budget
                need = self._admission_blocks(s, n)
                full = self._full_blocks(s) if self.reserving else need
                if max(need, full) + reserve > self.free:
                    self._undo(s, hit)
                    break
                reserve += max(full - need, 0)
                self._pop_waiting()
                self.free -= need
                self.alloc_total += need
                s.extra = self.extra_per_seq
                s.blocks += need - self.extra_per_seq
                s.state = PREFILL
                self.prefilling.append(s)
                self._admit(s)
                chunks.append((s, n))
                budget -= n
                first = False
        if not chunks and not dec_b and self.n_dec:
            # the prompt this prefill-only step was for had to preempt itself: decode instead
            extra_cost += self._take_decode_blocks()[0]
            dec_b = self.n_dec
        if not chunks and not dec_b:
            return None
        used = self.total - self.free
        if used > self.peak_used:
            self.peak_used = used
        tokens = dec_b + sum(n for _, n in chunks)
        logits = dec_b + sum(1 for s, n in chunks if s.computed + n >= s.target)
        seqs = dec_b + len(chunks)
        dec_kv = self.s_base + self.n_dec * (self.g + 1)
        self.step_args = (tokens, logits, seqs, dec_b, dec_kv,
                          [(n, s.computed + n) for s, n in chunks])
        self.swap_cost_now = extra_cost
        return (chunks, dec_b)

    def _take_decode_blocks(self) -> tuple[float, bool]:
        """Blocks for every decoder's next token, preempting while they are short; returns
        the swap-out time and whether anything was preempted."""
        cost, preempted = 0.0, False
        need = self.phase[(-self.g) % self.bs]
        while need > self.free and self.n_dec:
            v = self._victim()
            if v is None:
                break
            cost += self._preempt(v)
            preempted = True
            need = self.phase[(-self.g) % self.bs]
        if need > self.free:
            need = 0  # nothing left to preempt: cannot happen when a request fits
        self.free -= need
        self.alloc_total += need
        self.allocated = True
        return cost, preempted

    def _new_block(self, s: Seq) -> int:
        """Block a decoder holding ``s.computed`` tokens needs for its next token (0 or 1)."""
        return 1 if s.computed % self.bs == 0 else 0

    def complete(self, t: float) -> None:
        """The step (or stretch) scheduled earlier ends at ``t``: apply it, start the next."""
        self.steps += 1
        if self.window is not None:
            _, k, _, _ = self.window
            self.window = None
            if self.ms_left > 0:
                self.ms_left -= k
            self.advance(t, k)
            self.start(t)
            return
        self.apply_step(t)
        self.start(t)

    def advance(self, t: float, k: int) -> None:
        """``k`` decode steps of every decoder, ending at ``t`` (a stretch in closed form)."""
        need = self._blocks_needed(k)
        self.free -= need
        self.alloc_total += need
        if self.total - self.free > self.peak_used:
            self.peak_used = self.total - self.free
        self.g += k
        self._finish_decoders(t)

    def apply_step(self, t: float) -> None:
        """Apply the step scheduled earlier (``pending``), which ended at ``t``."""
        chunks, dec_b = self.pending
        self.pending = None
        if dec_b:  # decoders advance only in steps they took part in
            self.g += 1
            self._finish_decoders(t)
        for s, n in chunks:
            if s.state != PREFILL:
                continue
            s.computed += n
            if s.computed < s.target:
                continue
            self.prefilling.remove(s)
            s.gen += 1
            self.sim.first_token(s, t)
            if s.gen >= s.out:
                self._release(s)
                s.state = GONE
                self.sim.done(s, t)
            elif self.role == "prefill":
                self._release(s)
                s.state = GONE
                self.sim.handoff(s, t)
            else:
                s.target = s.computed
                self._join_decode(s)


__all__ = ["DECODE", "Engine", "GONE", "PREFILL", "SWAPPED", "Seq", "WAITING"]
