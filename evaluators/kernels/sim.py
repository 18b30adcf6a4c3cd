"""kernel-sim: an analytical time model of the Triton GEMM and FlashAttention-forward tiles.

Which kernel a config describes: its ``kernel`` key ("gemm" or "attention", set by the
kernel-gemm / kernel-attention spaces); without one, a config with ``head_dim`` is attention and
anything else is a GEMM.

The model, per kernel (every formula is per SM and per main-loop iteration, then scheduled):

1. **Resources -> occupancy.** Shared memory ``stages * (bm*bk + bk*bn) * bytes`` and registers
   (accumulator + operand fragments) give the resident programs per SM ``occ``
   (``_tiles.occupancy``).
2. **One main-loop iteration** of ``c`` co-resident programs takes the longest of
   * tensor-core time ``c * 2*bm*bn*bk / (peak_sm * u)``, where ``u = min(1, busy_warps / 4)``:
     an SM has four sub-partitions, each needs a warp issuing MMAs, and a warp needs at least one
     16x8 MMA tile of the block;
   * shared-memory traffic (operands copied in and read out)
     ``c * 2 * (bm*bk + bk*bn) * bytes / (128 B/clk)``;
   * load latency not hidden by the software pipeline: ``latency / (stages - 1)`` (``stages``
     buffers keep ``stages - 1`` loads in flight, Little's law); with one stage nothing is in
     flight, so ``latency + compute``;
   * per-iteration work between MMAs runs serially with them (no warp specialization): the
     loop's barrier and, for attention, the online softmax (exp2 on the 16/clk/SM
     special-function unit plus ~5 fp32 ALU ops per score), which is what holds
     FlashAttention-2 near 45% of peak on H100.
3. **Scheduling (wave quantization).** The busiest SM runs ``ceil(programs / SMs)`` programs,
   ``occ`` at a time; each program adds a prologue (pipeline fill) and epilogue (store) of one
   memory latency each.
4. **Memory roofline.** HBM bytes (compulsory traffic, plus re-reads of A and B panels that the
   programs running at the same time do not share: the GROUP_M swizzle makes a wave cover
   ``group_m`` rows of tiles instead of one) and L2->SM bytes (every program reads its panels)
   bound the kernel from below; the time is ``max(SM time, HBM time, L2 time)``. HBM traffic
   also loads the memory latency (queueing, :func:`_loaded`), so a latency-bound kernel pays
   latency and transfer time one after the other.
5. **Split-K** writes fp32 partials (``split_k * M * N * 4`` bytes) and adds a reduction kernel
   (one launch, partials read from L2 when they fit).
6. One kernel launch overhead (``kernel_launch_us`` shared with ``evaluators/_perf.py``).

Calibration constants are data: :data:`DEFAULTS` below, each with its source, overridable per GPU
by ``kernel_*`` keys of the hardware catalog's ``[efficiency]`` table. Nothing is fitted per shape.

Metrics: ``time_us``, ``tflops`` (useful FLOPs: ``2*M*N*K`` for a GEMM, ``4*B*H*D*pairs`` for
attention, pairs = S^2 or S(S+1)/2 causal) and ``pct_of_peak`` (percent of the catalog's dense
peak for the dtype).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tuner import BadInput, BaseEvaluator, EvalResult, Status
from tuner.evaluators._catalog import Hardware, get_hardware
from tuner.evaluators._perf import eff
from tuner.evaluators.kernels._tiles import (
    BLOCKS,
    CONFIG_KEYS,
    DEFAULT_GPU,
    DTYPE_BYTES,
    MAX_BLOCKS_PER_SM,
    MAX_REGS_PER_THREAD,
    MAX_THREADS_PER_SM,
    NUM_STAGES,
    NUM_WARPS,
    OUT_BYTES,
    REG_OVERHEAD,
    SPLIT_K,
    attention_choices,
    attention_context,
    attention_reasons,
    gemm_choices,
    gemm_context,
    gemm_reasons,
    problem_block_limit,
)

#: model constants (override per GPU with ``kernel_<name>`` in the catalog's [efficiency] table)
DEFAULTS: dict[str, float] = {
    # bytes per clock per SM of shared-memory reads: 32 banks x 4 B (CUDA C++ Programming Guide,
    # "Shared Memory", compute capability 5.x and later)
    "smem_bytes_per_clk": 128.0,
    # L2 -> SM read bytes per clock, whole chip (NVIDIA A100 whitepaper, 2020: "5120 Bytes/clk";
    # Hopper's whitepaper gives no figure and the same per-clock width is assumed)
    "l2_bytes_per_clk": 5120.0,
    # DRAM load latency in core clocks (~600 cycles: order of magnitude reported by public
    # microbenchmarks of A100/H100, e.g. Chips and Cheese, "Nvidia's H100: Funny L2, and Tons
    # of Bandwidth", 2023)
    "dram_latency_clk": 600.0,
    # special-function (exp2) results per clock per SM, compute capability 8.x/9.0 (CUDA C++
    # Programming Guide, "Arithmetic Instructions" throughput table)
    "sfu_per_clk": 16.0,
    # fp32 ALU instructions per score element of the online softmax besides exp2: max, subtract,
    # sum, convert (FlashAttention-2 paper, Sec. 3.1 counts these non-matmul FLOPs)
    "softmax_alu_ops": 5.0,
    # fraction of L2 usable to keep A and B resident across waves (the rest holds C tiles,
    # other streams; a round 50%)
    "l2_resident_fraction": 0.5,
    # fixed cost of one main-loop iteration in core clocks: the barrier that hands a pipeline
    # stage from the copy to the MMAs plus loop bookkeeping (assumed: a few shared-memory
    # round trips of ~30 clocks; not fitted)
    "iteration_overhead_clk": 60.0,
}


def kconst(hw: Hardware, key: str) -> float:
    return float(hw.efficiency.get(f"kernel_{key}", DEFAULTS[key]))


class _Hw:
    """Per (GPU, dtype) constants, computed once (the evaluator's hot path only reads them)."""

    __slots__ = ("hw", "sms", "peak", "peak_sm", "smem_bw", "l2_bw", "hbm_bw", "l2_bytes", "lat",
                 "launch", "smem_sm", "smem_block", "regs_sm", "sfu", "alu", "soft_ops", "t_iter",
                 "reg_cap")

    def __init__(self, hw: Hardware, dtype: str) -> None:
        clock = hw.clock_mhz * 1e6
        self.hw = hw
        self.sms = hw.sm_count
        self.peak = hw.peak(dtype)
        # the best sustained fraction of peak for a fully fed tensor core: the shared GEMM
        # efficiency constant of evaluators/_perf.py (clock throttling under load, issue slots)
        self.peak_sm = self.peak * eff(hw, "gemm_max") / hw.sm_count
        self.smem_bw = kconst(hw, "smem_bytes_per_clk") * clock
        self.l2_bw = kconst(hw, "l2_bytes_per_clk") * clock
        self.hbm_bw = hw.hbm_tb_s * 1e12 * eff(hw, "hbm")
        self.l2_bytes = hw.l2_mib * 2**20 * kconst(hw, "l2_resident_fraction")
        self.lat = kconst(hw, "dram_latency_clk") / clock
        self.launch = eff(hw, "kernel_launch_us") * 1e-6
        self.smem_sm = int(hw.smem_per_sm_kib * 1024)
        self.smem_block = int(hw.smem_per_block_kib * 1024)
        self.regs_sm = hw.regs_per_sm
        self.sfu = kconst(hw, "sfu_per_clk") * clock
        # fp32 instructions per second per SM (an FMA counts 2 FLOPs in the catalog peak)
        self.alu = hw.peak("fp32") / (2 * hw.sm_count)
        self.soft_ops = kconst(hw, "softmax_alu_ops")
        self.t_iter = kconst(hw, "iteration_overhead_clk") / clock
        self.reg_cap = {w: min(MAX_REGS_PER_THREAD, hw.regs_per_sm // (32 * w))
                        for w in NUM_WARPS}


_HW: dict[tuple[str, str], _Hw] = {}
_BLOCKS = frozenset(BLOCKS)
_WARPS = frozenset(NUM_WARPS)
_STAGES = frozenset(NUM_STAGES)
_SPLITS = frozenset(SPLIT_K)


def _hwc(gpu: str, dtype: str) -> _Hw:
    key = (gpu, dtype)
    c = _HW.get(key)
    if c is None:
        c = _HW[key] = _Hw(get_hardware(gpu), dtype)
    return c


def _occupancy(h: _Hw, smem: int, regs: int, threads: int) -> int:
    occ = h.smem_sm // smem
    by_regs = h.regs_sm // (regs * threads)
    if by_regs < occ:
        occ = by_regs
    by_threads = MAX_THREADS_PER_SM // threads
    if by_threads < occ:
        occ = by_threads
    return occ if occ < MAX_BLOCKS_PER_SM else MAX_BLOCKS_PER_SM


_EMPTY: Mapping[str, Any] = MappingProxyType({})
_setattr = object.__setattr__


def _ok(t: float, flops: float, peak: float) -> EvalResult:
    """``EvalResult.ok`` without its generic conversions (this is the hot path: ~2 us saved).

    Builds exactly what ``EvalResult.ok({...})`` builds; a test checks the two stay equal.
    """
    r = object.__new__(EvalResult)
    _setattr(r, "status", Status.OK)
    _setattr(r, "metrics", MappingProxyType({"time_us": t * 1e6, "tflops": flops / t * 1e-12,
                                             "pct_of_peak": 100.0 * flops / t / peak}))
    _setattr(r, "reason", None)
    _setattr(r, "artifacts", _EMPTY)
    return r


def _round(c: int, flops_it: float, peak_sm: float, busy: int, t_aux1: float, t_smem1: float,
           t_lat: float) -> float:
    """Time for ``c`` co-resident programs to each finish one main-loop iteration.

    ``busy`` warps of each program issue MMAs; the SM's four tensor-core sub-partitions are
    kept busy by ``c * busy`` warps (at most four count). Auxiliary per-iteration work
    (the softmax, the loop's barrier) runs *between* MMAs: without warp specialization the
    kernel alternates GEMM and softmax phases (FlashAttention-3 paper, Shah et al. 2024, Sec. 3.1:
    this serialization is what limits FlashAttention-2 on H100), so it adds to the MMA time.
    """
    uc = c * busy / 4.0
    uc = uc if uc < 1.0 else 1.0
    return max(c * (flops_it / (peak_sm * uc) + t_aux1), c * t_smem1, t_lat)


def _sm_time(programs: int, occ: int, sms: int, iters: float, flops_it: float, peak_sm: float,
             busy: int, t_aux1: float, t_smem1: float, t_lat: float, t_prog: float) -> float:
    """Busiest SM: ``ceil(programs/SMs)`` programs, ``occ`` at a time (wave quantization)."""
    per_sm = -(-programs // sms)
    full, rem = divmod(per_sm, occ)
    t = 0.0
    if full:
        t += full * (iters * _round(occ, flops_it, peak_sm, busy, t_aux1, t_smem1, t_lat)
                     + t_prog)
    if rem:
        t += iters * _round(rem, flops_it, peak_sm, busy, t_aux1, t_smem1, t_lat) + t_prog
    return t


def _loaded(t0: float, t_hbm: float, lat0: float, slope: float) -> float:
    """SM time with the memory latency loaded by HBM traffic (queueing).

    At HBM utilization ``rho = t_hbm / T`` a request waits ``lat0 / (1 - rho)`` (M/M/1). With
    the SM time linear in the latency, ``T = t0 + slope * (lat - lat0)`` (``slope`` from one
    more evaluation at ``2 * lat0``), the self-consistent kernel time solves
    ``(T - t0) (T - t_hbm) = slope * lat0 * t_hbm``. A purely latency-bound kernel then takes
    ``t0 + t_hbm``: latency and transfer time add up instead of overlapping. Callers skip this
    below 10% utilization, where it changes little.
    """
    return 0.5 * (t0 + t_hbm + math.sqrt((t0 - t_hbm) ** 2 + 4.0 * slope * lat0 * t_hbm))


class KernelSimEvaluator(BaseEvaluator):
    """Analytical tile model for kernel-gemm and kernel-attention configs (pure arithmetic).

    Example:
        >>> ev = KernelSimEvaluator()
        >>> r = ev.evaluate({"kernel": "gemm", "m": 4096, "n": 4096, "k": 4096, "dtype": "bf16",
        ...                  "gpu": "h100_sxm", "block_m": 128, "block_n": 128, "block_k": 64,
        ...                  "group_m": 8, "num_warps": 8, "num_stages": 3, "split_k": 1})
        >>> r.status.value, r.metrics["time_us"] > 0
        ('ok', True)
    """

    name = "kernel-sim"
    version = "1"
    domains = ("kernel-gemm", "kernel-attention")
    analytical = True
    metrics = ("time_us", "tflops", "pct_of_peak")
    options_table: dict = {}
    config_keys = CONFIG_KEYS

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._shapes: dict[tuple, tuple] = {}

    def environment(self) -> dict[str, str]:
        return {"model": "kernel-sim/1", **{k: repr(v) for k, v in sorted(DEFAULTS.items())}}

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        kernel = config.get("kernel")
        if kernel is None:
            kernel = "attention" if "head_dim" in config else "gemm"
        if kernel == "gemm":
            return self._gemm(config)
        if kernel == "attention":
            return self._attention(config)
        raise BadInput("kernel", f"{kernel!r} is not a kernel; allowed: attention, gemm")

    # -- GEMM -------------------------------------------------------------------------------
    def _gemm_shape(self, config: Mapping[str, Any]) -> tuple:
        key = ("g", config.get("m"), config.get("n"), config.get("k"), config.get("dtype", "bf16"),
               config.get("gpu", DEFAULT_GPU))
        try:
            shape = self._shapes.get(key)
        except TypeError:  # unhashable value: let the checks below name it
            shape = None
        if shape is None or type(key[1]) is not int or type(key[2]) is not int or \
                type(key[3]) is not int:  # True == 1 shares a hash with 1: re-check types
            ctx = gemm_context({k: config[k] for k in ("m", "n", "k", "dtype", "gpu")
                                if k in config})
            h = _hwc(ctx["gpu"], ctx["dtype"])
            m, n, k = ctx["m"], ctx["n"], ctx["k"]
            shape = (m, n, k, ctx["dtype"], h, problem_block_limit(m), problem_block_limit(n),
                     problem_block_limit(k), DTYPE_BYTES[ctx["dtype"]], OUT_BYTES[ctx["dtype"]])
            self._shapes[key] = shape
        return shape

    def _gemm(self, config: Mapping[str, Any]) -> EvalResult:
        m, n, k, dtype, h, lim_m, lim_n, lim_k, b, ob = self._gemm_shape(config)
        try:
            bm, bn, bk = config["block_m"], config["block_n"], config["block_k"]
            g, warps = config["group_m"], config["num_warps"]
            stages, sk = config["num_stages"], config["split_k"]
        except KeyError as exc:
            return EvalResult.infeasible(f"missing tile parameter {exc.args[0]!r}")
        try:  # a list or dict where a number belongs is a bad config, not a crash
            threads = 32 * warps if warps in _WARPS else 0
            ok = bool(bm in _BLOCKS and bn in _BLOCKS and bk in _BLOCKS and sk in _SPLITS
                      and stages in _STAGES)
        except TypeError:
            return EvalResult.infeasible("tile parameters must be integers")
        # hard rules first (fast integer checks; messages built only on failure)
        ok = (ok and threads and isinstance(g, int) and g >= 1 and bm <= lim_m and bn <= lim_n
              and bk <= lim_k and not (dtype == "fp8" and bk < 32) and sk <= -(-k // bk))
        if ok:
            smem = (stages if stages > 1 else 1) * (bm * bk + bk * bn) * b
            regs = (bm * bn + (bm * bk + bk * bn) * b // 4) // threads + REG_OVERHEAD
            ok = smem <= h.smem_block and regs <= h.reg_cap[warps]
        if not ok:
            if not (isinstance(g, int) and g >= 1):
                return EvalResult.infeasible(f"group_m {g!r} must be a positive integer")
            reasons = gemm_reasons(h.hw, m, n, k, dtype, bm, bn, bk, warps, stages, sk)
            return EvalResult.infeasible("; ".join(reasons) or "invalid tile")

        occ = _occupancy(h, smem, regs, threads)
        tiles_m = -(-m // bm)
        tiles_n = -(-n // bn)
        k_split = -(-k // sk)
        iters = -(-k_split // bk)
        programs = tiles_m * tiles_n * sk
        sms = h.sms

        # memory: L2->SM traffic (every program reads its panels) and HBM traffic
        c_bytes = m * n * ob if sk == 1 else sk * m * n * 4
        l2_traffic = programs * (bm + bn) * k_split * b + c_bytes
        ab = (m * k + k * n) * b
        if ab <= h.l2_bytes:
            hbm = ab
        else:
            # panels shared by the programs running at once (one wave of `live` programs of
            # one K split); GROUP_M rows of tiles share B panels, each row shares A panels
            live = tiles_m * tiles_n
            if live > sms * occ:
                live = sms * occ
            gm = g if g < tiles_m else tiles_m
            if live <= gm * tiles_n:
                rows = gm if gm < live else live
                cols = -(-live // gm)
            else:
                rows = gm * -(-live // (gm * tiles_n))
                rows = rows if rows < tiles_m else tiles_m
                cols = tiles_n
            a_rows = rows * bm
            b_cols = cols * bn
            wave_bytes = ((a_rows if a_rows < m else m) + (b_cols if b_cols < n else n)) \
                * k_split * b
            hbm = programs / live * wave_bytes
            hbm = hbm if hbm < l2_traffic else l2_traffic
            hbm = hbm if hbm > ab else ab
        hbm += c_bytes
        t_hbm = hbm / h.hbm_bw
        t_l2 = l2_traffic / h.l2_bw
        t_mem = t_hbm if t_hbm > t_l2 else t_l2

        # per program, per main-loop iteration; a warp needs one 16x8 MMA tile to be busy
        flops_it = 2.0 * bm * bn * bk
        busy = (bm >> 4) * (bn >> 3)
        busy = warps if warps < busy else busy
        u1 = busy / 4.0 if busy < 4 else 1.0
        # copies into and reads out of shared memory both use its bandwidth
        t_smem1 = 2 * (bm * bk + bk * bn) * b / h.smem_bw
        lat = h.lat
        t_lat = lat / (stages - 1) if stages > 1 else lat + flops_it / (h.peak_sm * u1)
        t_sm = _sm_time(programs, occ, sms, iters, flops_it, h.peak_sm, busy, h.t_iter, t_smem1,
                        t_lat, 2.0 * lat)
        rho = t_hbm / (t_sm if t_sm > t_mem else t_mem)
        if rho > 0.1:  # latency loaded by HBM queueing (see _loaded)
            lat2 = 2.0 * lat
            t_sm2 = _sm_time(programs, occ, sms, iters, flops_it, h.peak_sm, busy, h.t_iter,
                             t_smem1, lat2 / (stages - 1) if stages > 1
                             else lat2 + flops_it / (h.peak_sm * u1), 2.0 * lat2)
            t_sm = _loaded(t_sm, t_hbm, lat, (t_sm2 - t_sm) / lat)

        t = (t_sm if t_sm > t_mem else t_mem) + h.launch
        if sk > 1:  # reduction kernel: read the fp32 partials, write C
            partials = sk * m * n * 4
            bw = h.l2_bw if partials <= h.l2_bytes else h.hbm_bw
            t += (partials + m * n * ob) / bw + h.launch + h.lat
        return _ok(t, 2.0 * m * n * k, h.peak)

    # -- attention --------------------------------------------------------------------------
    def _attention_shape(self, config: Mapping[str, Any]) -> tuple:
        key = ("a", config.get("batch"), config.get("heads"), config.get("seq_len"),
               config.get("head_dim"), config.get("dtype", "bf16"), config.get("causal", True),
               config.get("gpu", DEFAULT_GPU))
        try:
            shape = self._shapes.get(key)
        except TypeError:
            shape = None
        if shape is None or not all(type(v) is int for v in key[1:5]) or \
                type(key[6]) is not bool:
            ctx = attention_context({k: config[k] for k in ("batch", "heads", "seq_len",
                                                             "head_dim", "dtype", "causal",
                                                             "gpu") if k in config})
            h = _hwc(ctx["gpu"], ctx["dtype"])
            shape = (ctx["batch"], ctx["heads"], ctx["seq_len"], ctx["head_dim"], ctx["dtype"],
                     ctx["causal"], h)
            self._shapes[key] = shape
        return shape

    def _attention(self, config: Mapping[str, Any]) -> EvalResult:
        batch, heads, s, d, dtype, causal, h = self._attention_shape(config)
        try:
            bm, bn = config["block_m"], config["block_n"]
            warps, stages = config["num_warps"], config["num_stages"]
        except KeyError as exc:
            return EvalResult.infeasible(f"missing tile parameter {exc.args[0]!r}")
        b = DTYPE_BYTES[dtype]
        try:
            threads = 32 * warps if warps in _WARPS else 0
            ok = bool(bm in _BLOCKS and bn in _BLOCKS and stages in _STAGES)
        except TypeError:
            return EvalResult.infeasible("tile parameters must be integers")
        lim = problem_block_limit(s)
        ok = ok and threads and bm <= lim and bn <= lim and not (causal and bm % bn)
        if ok:
            smem = (bm * d + (stages if stages > 1 else 1) * 2 * bn * d) * b
            regs = (bm * d + bm * bn + bm * d * b // 4) // threads + REG_OVERHEAD
            ok = smem <= h.smem_block and regs <= h.reg_cap[warps]
        if not ok:
            reasons = attention_reasons(h.hw, s, d, dtype, causal, bm, bn, warps, stages)
            return EvalResult.infeasible("; ".join(reasons) or "invalid tile")

        occ = _occupancy(h, smem, regs, threads)
        tiles_m = -(-s // bm)
        bh = batch * heads
        programs = tiles_m * bh
        kv_blocks = -(-s // bn)
        if causal:  # program i visits keys [0, min(S, (i+1)*bm)): bm/bn blocks per step of i
            iters_sum = (bm // bn) * (tiles_m - 1) * tiles_m / 2 + kv_blocks
            pairs = s * (s + 1) / 2
        else:
            iters_sum = kv_blocks * tiles_m
            pairs = float(s) * s
        iters_avg = iters_sum / tiles_m

        # HBM: Q, K, V read and O written once (programs of one head run together and share
        # K/V in L2); L2: every program streams its K/V blocks
        hbm = 4.0 * bh * s * d * b
        l2_traffic = bh * (tiles_m * bm * d + iters_sum * 2 * bn * d) * b + bh * s * d * b
        t_hbm = hbm / h.hbm_bw
        t_mem = max(t_hbm, l2_traffic / h.l2_bw)

        flops_it = 4.0 * bm * bn * d
        busy = min(warps, (bm >> 4) * (bn >> 3))
        u1 = busy / 4.0 if busy < 4 else 1.0
        # online softmax on the bm x bn scores, plus rescaling the bm x d accumulator
        t_aux1 = (bm * bn / h.sfu + (bm * bn * h.soft_ops + bm * d) / h.alu) + h.t_iter
        # K and V are copied in and read out; Q is re-read by every iteration's first GEMM
        t_smem1 = (4 * bn * d + bm * d) * b / h.smem_bw
        def sm_time(lat: float) -> float:
            t_lat = (lat / (stages - 1) if stages > 1
                     else lat + flops_it / (h.peak_sm * u1) + t_aux1)
            t = _sm_time(programs, occ, h.sms, iters_avg, flops_it, h.peak_sm, busy, t_aux1,
                         t_smem1, t_lat, 2.0 * lat)
            # the longest program (the last query block when causal) bounds the kernel too
            t_long = kv_blocks * _round(1, flops_it, h.peak_sm, busy, t_aux1, t_smem1,
                                        t_lat) + 2.0 * lat
            return t if t > t_long else t_long

        t_sm = sm_time(h.lat)
        if t_hbm > 0.1 * (t_sm if t_sm > t_mem else t_mem):
            t_sm = _loaded(t_sm, t_hbm, h.lat, (sm_time(2.0 * h.lat) - t_sm) / h.lat)

        t = max(t_sm, t_mem) + h.launch
        return _ok(t, 4.0 * bh * d * pairs, h.peak)


def best_config(context: Mapping[str, Any], evaluator: KernelSimEvaluator | None = None,
                metric: str = "time_us") -> tuple[dict[str, Any], EvalResult]:
    """The tile with the lowest predicted ``metric`` for one kernel-gemm or kernel-attention
    context (``kernel`` says which; else one with ``head_dim`` is attention).

    Walks the full grid of the tile choices (``_tiles``, the kernel spaces' parameters) and lets
    the evaluator's own (fast) rule checks reject the invalid points, which is several times
    quicker than enumerating a space's valid configs.

    Example:
        >>> cfg, res = best_config({"m": 512, "n": 512, "k": 512, "dtype": "bf16"})
        >>> res.metrics["time_us"] > 0 and cfg["kernel"] == "gemm"
        True
    """
    ev = evaluator or KernelSimEvaluator()
    kernel = context.get("kernel") or ("attention" if "head_dim" in context else "gemm")
    if kernel == "attention":
        base = attention_context(context)
        choices = attention_choices(base)
    else:
        base = gemm_context(context)
        choices = gemm_choices(base)
    names = list(choices)
    grid = (dict(zip(names, combo)) for combo in itertools.product(*choices.values()))
    best: tuple[dict[str, Any], EvalResult] | None = None
    best_value = float("inf")
    for values in grid:
        cfg = {**base, **values}
        r = ev.evaluate(cfg)
        if r.status is Status.OK and r.metrics[metric] < best_value:
            best, best_value = (cfg, r), r.metrics[metric]
    if best is None:
        raise BadInput("space", "no valid tile for this problem")
    return best


__all__ = ["DEFAULTS", "KernelSimEvaluator", "best_config"]
