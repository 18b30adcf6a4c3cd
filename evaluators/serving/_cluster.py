"""A serving deployment as a discrete-event simulation: engines, router, arrivals, transfers.

Engines (``_engine.Engine``) are built per engine kind of the plan: ``replicas x pp`` mixed
engines (each pipeline stage group of a replica runs ``pp`` virtual engines with 1/pp of the KV
blocks, as vLLM's virtual engines do; a replica's attention-DP ranks are engines that step
together, ``_dp_group``), or prefill and decode workers when disaggregated. Every replica is
simulated, behind a router that sends each request to the engine with the fewest outstanding
requests (ties round-robin; attention-DP ranks: the replica first, then its rank); requests
that reach an idle engine at the same instant share its first step. Disaggregated prefill
workers hand a request to the decode router when its first token is out, after the KV transfer
(per-GPU KV shard bytes over NVLink inside a node, the GPU's network across nodes, or
``kv_link_gbit_s``). Open-loop arrivals come from the workload; a closed-loop client sends the
next request when one finishes.

The API server stands between the client and the engines: one per replica (or prefill
worker), each a single process that does a request's parsing, input processing and
tokenization in series (``frontend_ms_per_request`` + ``frontend_us_per_token`` per prompt
token of the engine's profile), so requests sent together reach the engine one after another;
on top of that every request's TTFT carries the front end's latency (``api_overhead_ms``:
HTTP, IPC, streaming the first token back). This is what breaks the lock-step of a closed
loop: requests that finish in the same step send their successors together, the front end
spaces them out, and the engine starts a step with whatever has arrived, so they spread over
steps and stay spread; a closed loop measured after a warm-up then starts from random phases.
Where nothing spaces requests out (llama-server's threads parse them in parallel), users that
finish together send together again, and the run is simulated from the client's start.
Offline runs (``offline = true``) have no API server.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from typing import Any

from tuner.evaluators._perf import eff, p2p_time
from tuner.evaluators.serving._cpu_latency import CpuStepModel
from tuner.evaluators.serving._dp_group import RankGroup
from tuner.evaluators.serving._engine import GONE, WAITING, Engine, Seq
from tuner.evaluators.serving._latency import StepModel
from tuner.evaluators.serving._plan import GIB, engine_memory


class Simulator:
    """Event loop over engines, arrivals, KV transfers and the closed-loop client."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, int, Any, int]] = []
        self.seq = 0
        self.first: list[float] = []
        self.finish: list[float] = []
        self.on_done: Callable[[Seq, float], None] | None = None
        self.on_handoff: Callable[[Seq, float], None] | None = None

    def push(self, t: float, engine: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, 1, self.seq, engine, engine.version))

    def push_arrival(self, t: float, s: Seq) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, 0, self.seq, s, 0))

    def first_token(self, s: Seq, t: float) -> None:
        if self.first[s.rid] < 0:
            self.first[s.rid] = t

    def done(self, s: Seq, t: float) -> None:
        self.finish[s.rid] = t
        if self.on_done:
            self.on_done(s, t)

    def handoff(self, s: Seq, t: float) -> None:
        assert self.on_handoff is not None
        self.on_handoff(s, t)




# -- a whole deployment --------------------------------------------------------------------
class SimResult:
    """Per-request times (seconds) and engine counters of one simulation."""

    def __init__(self, arrival: list[float], first: list[float], finish: list[float],
                 out: list[int], engines: list[Engine], unfinished: int) -> None:
        self.arrival, self.first, self.finish, self.out = arrival, first, finish, out
        self.engines = engines
        self.unfinished = unfinished

    @property
    def preemptions(self) -> int:
        return sum(e.preemptions for e in self.engines)

    @property
    def steps(self) -> int:
        return sum(e.steps for e in self.engines)

    def kv_overflow(self) -> tuple[int, int] | None:
        """(peak cells, capacity) of the first engine whose unbounded cache (llama.cpp's
        slots) outgrew its capacity, else None."""
        for e in self.engines:
            if e.admission == "slots" and e.peak_used > e.capacity:
                return e.peak_used * e.bs, e.capacity * e.bs
        return None


def build_engines(plan: Any, sim: Simulator) -> dict[str, list[Engine]]:
    pools: dict[str, list[Engine]] = {}
    bs = plan.kv_block_size
    if plan.engine == "llama.cpp":
        pool = pools.setdefault("mixed", [])
        model = CpuStepModel(plan)
        for _ in range(plan.replicas):
            pool.append(Engine(len(pool), "mixed", model, plan.kv_cache_tokens, 0, plan, 0,
                               0.0, sim))
        return pools
    for role, count, tp, pp, ep in plan.engine_kinds():
        model = StepModel(plan, tp, pp, ep)
        mem = engine_memory(plan, tp, pp, ep)
        block_bytes = mem.kv_bytes_per_token * bs
        blocks = int(mem.kv // block_bytes) // pp  # vLLM splits the pool across pp engines
        extra = math.ceil(mem.swa_bytes_per_seq / block_bytes) if mem.swa_bytes_per_seq else 0
        swap_blocks = int(plan.swap_space_gib * GIB // block_bytes) // pp
        link = eff(plan.hw, "host_link_gb_s") * 1e9  # achieved PCIe bandwidth per GPU
        pool = pools.setdefault(role, [])
        for _ in range(count * pp):
            pool.append(Engine(len(pool), role, model, blocks, extra, plan, swap_blocks,
                               block_bytes / link, sim))
        if plan.dp_attention:
            for r in range(0, len(pool), tp):  # a replica's ranks step together
                RankGroup(pool[r:r + tp], sim)
    return pools


def kv_transfer_time(plan: Any, prompt_tokens: int) -> float:
    """Seconds to send one prompt's KV cache from a prefill to a decode worker: every GPU of
    the prefill worker sends its shard over its own link."""
    mem = engine_memory(plan, plan.prefill_tp, 1, min(plan.ep, plan.prefill_tp))
    nbytes = prompt_tokens * mem.kv_bytes_per_token + mem.swa_bytes_per_seq
    if plan.kv_link_gbit_s:
        return p2p_time(plan.hw, nbytes, True, plan.kv_link_gbit_s)
    inter = plan.gpus_used > plan.hw.gpus_per_node
    return p2p_time(plan.hw, nbytes, inter)


class FrontEnd:
    """The API servers: FIFO, ``servers`` in parallel, each request's work done in series."""

    def __init__(self, plan: Any) -> None:
        self.on = not plan.offline
        self.free = [0.0] * max(1, plan.frontends)
        self.per_req = plan.c("frontend_ms_per_request") / 1e3 if self.on else 0.0
        self.per_tok = plan.c("frontend_us_per_token") / 1e6 if self.on else 0.0
        self.latency = plan.api_overhead_ms / 1e3

    @property
    def spaces_requests(self) -> bool:
        """Whether requests sent together reach the engine one after another."""
        return self.per_req > 0 or self.per_tok > 0

    def enter(self, t: float, prompt: int) -> float:
        """When a request sent at ``t`` reaches the engines."""
        if not self.on:
            return t
        start = heapq.heappop(self.free)
        done = (start if start > t else t) + self.per_req + self.per_tok * prompt
        heapq.heappush(self.free, done)
        return done + self.latency


def _least_loaded(items: list[Any], rr: list[int]) -> Any:
    """The item with the fewest outstanding requests; ties go round-robin from ``rr[0]``."""
    n = len(items)
    start = rr[0]
    best, best_i, best_load = items[start], start, items[start].load
    for i in range(1, n):
        j = (start + i) % n
        if items[j].load < best_load:
            best, best_i, best_load = items[j], j, items[j].load
    rr[0] = (best_i + 1) % n
    return best


def _route(sim: Simulator, pool: list[Engine], rr: list[int], s: Seq, t: float,
           groups: list[RankGroup] | None = None) -> None:
    """Least outstanding requests; ties go round-robin. Attention-DP ranks: the replica
    first, then its rank (each replica's own controller balances its ranks)."""
    if groups:
        group = _least_loaded(groups, rr)
        best = _least_loaded(group.ranks, group.rr)
    else:
        best = _least_loaded(pool, rr)
    best.enqueue(s)
    if not best.busy:
        if not best.kicked:  # it starts once every request of this instant is queued
            best.kicked = True
            sim.push(t, _Kick(best))
    else:  # a decode stretch ends at the next step
        (best.group or best).interrupt(t)


class _Kick:
    """Starts an idle engine at the instant a request reached it, after the event loop has
    queued every request of that instant (they share the first step, as an engine's
    scheduler takes whatever has arrived when it runs)."""

    __slots__ = ("engine",)
    version = 0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def complete(self, t: float) -> None:
        self.engine.kicked = False
        if not self.engine.busy:
            self.engine.start(t)


def simulate(plan: Any, workload: Any, max_events: int = 50_000_000,
             fast_forward: bool = True) -> SimResult:
    """Run ``workload`` through the deployment of ``plan``."""
    sim = Simulator()
    pools = build_engines(plan, sim)
    for pool in pools.values():
        for e in pool:
            e.fast_forward = fast_forward
    entry = pools.get("mixed") or pools["prefill"]
    groups = list(dict.fromkeys(e.group for e in entry if e.group is not None))
    decode_pool = pools.get("decode")
    n = len(workload)
    arrival = list(workload.arrival_s)
    sim.first = [-1.0] * n
    sim.finish = [-1.0] * n
    seqs = [Seq(i, arrival[i], workload.input_len[i], workload.output_len[i],
                workload.priority[i]) for i in range(n)]
    rr_in, rr_dec = [0], [0]
    closed = workload.is_closed
    released = [0]
    done = [0]

    def on_done(s: Seq, t: float) -> None:
        done[0] += 1
        if closed and released[0] < n:
            nxt = seqs[released[0]]
            released[0] += 1
            nxt.arrival = arrival[nxt.rid] = t
            sim.push_arrival(fe.enter(t, nxt.prompt), nxt)

    def on_handoff(s: Seq, t: float) -> None:
        s.target = s.computed = s.prompt
        s.blocks = s.extra = 0
        sim.push_arrival(t + kv_transfer_time(plan, s.prompt), s)

    sim.on_done, sim.on_handoff = on_done, on_handoff
    fe = FrontEnd(plan)
    if closed:
        static: list[Seq] = []
        first_batch = min(workload.concurrency, n)
        released[0] = first_batch
        # the loop has desynchronized by the end of the warm-up where the front end spaces
        # requests out (and offline, where GPU engines' own jitter does it); behind a front
        # end that does not (llama-server) it stays in lock-step, so the run is simulated
        # from the client's real start, every user sending at once
        steady = workload.warmup >= first_batch > 1 and (fe.spaces_requests or not fe.on)
        rng = random.Random(first_batch * 7919 + n)  # deterministic phases
        for i, s in enumerate(seqs[:first_batch]):
            s.arrival = arrival[s.rid] = 0.0
            done_tokens = int(s.out * rng.random()) if steady and i else 0
            if done_tokens:
                # the loop has been running: this client's request is a random way through
                # its output, its KV already in the cache (a warm-up request, not measured)
                s.gen = done_tokens
                s.target = s.computed = s.prompt + done_tokens
                sim.first[s.rid] = 0.0  # its first token is out (before the run's start)
                if decode_pool is not None:
                    s.state = GONE  # handed off already: it arrives at the decode workers
                sim.push_arrival(0.0, s)
            else:
                sim.push_arrival(fe.enter(0.0, s.prompt), s)
        reach: list[float] = []
    else:
        static = sorted(seqs, key=lambda s: (s.arrival, s.rid))
        # several API servers may finish requests out of arrival order
        timed = sorted(((fe.enter(s.arrival, s.prompt), s) for s in static),
                       key=lambda p: (p[0], p[1].rid))
        reach = [p[0] for p in timed]
        static = [p[1] for p in timed]
    i_static = 0
    heap = sim.heap
    events = 0
    inf = math.inf
    while True:
        t_static = reach[i_static] if i_static < len(static) else inf
        if heap and heap[0][0] <= t_static and (heap[0][0] < t_static or heap[0][1] == 0):
            t, kind, _, obj, version = heapq.heappop(heap)
            if kind == 1:
                if version == obj.version:
                    obj.complete(t)
            elif obj.state == GONE and decode_pool is not None and obj.gen >= 1:
                obj.state = WAITING
                _route(sim, decode_pool, rr_dec, obj, t)
            else:
                _route(sim, entry, rr_in, obj, t, groups)
        elif i_static < len(static):
            s = static[i_static]
            i_static += 1
            _route(sim, entry, rr_in, s, t_static, groups)
        else:
            break
        events += 1
        if events > max_events:
            break
    engines = [e for pool in pools.values() for e in pool]
    return SimResult(arrival, sim.first, sim.finish, list(workload.output_len), engines,
                     n - done[0])


__all__ = ["SimResult", "Simulator", "build_engines", "kv_transfer_time", "simulate"]
