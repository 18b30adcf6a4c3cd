"""quant-sim: memory, latency and a quality proxy of a quantization mix, in microseconds.

Memory: stored weights (scales included, ``_plan.bits_per_weight``) plus the KV cache of
``batch_size`` sequences of ``prompt_len + output_len`` tokens, per GPU under ``gpus``-way
tensor parallelism; a mix that needs more than ``memory_fraction`` of HBM is infeasible.

Time (``evaluators/_perf.py`` roofline, so all simulators share the physics): every linear
is a GEMM whose compute runs at the peak of its *compute* dtype (bf16 when activations are 16
bits, int8 for W8A8 / W4A8 int, fp8 for W8A8 fp8) and whose traffic counts activations at
their width and weights at their stored width; attention reads the KV cache at its stored
width; tensor parallelism adds two all-reduces per layer. ``latency_ms`` is the decode step
(time per output token) at the mean context ``prompt_len + output_len / 2``; ``prefill_ms``
is the prompt pass. For MiniLM (an encoder) both are one forward pass over ``batch_size``
sequences of ``prompt_len`` tokens.

Quality (``quality_drop``, a proxy): the sum over units of the single-unit quality drops
measured on MiniLM by quant-real (``data/minilm_sensitivity.csv``), first-order additive
as in HAWQ's sum of per-layer perturbations. 8-bit activations add the measured difference
between the unit's W8A8 and W8A16 drops. For a catalog LLM, where nothing was measured, the
documented heuristic transfers MiniLM's per-role sensitivity and its relative-depth profile:
unit (i, role) gets ``mean_j S(j, role, fmt) * profile(i) * 6 / L``, so a uniform mix scores
what it scores on MiniLM and sensitive depths weigh more. The LLM proxy ranks mixes; it does
not predict perplexity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner import BadInput, BaseEvaluator, EvalResult
from tuner.evaluators.quant._plan import (
    CONTEXT_KEYS,
    MINILM,
    ROLES,
    Plan,
    Target,
    avg_bits,
    bits_per_weight,
    budget_violations,
    build_plan,
    check_keys,
    depth_profile,
    kv_bits_per_value,
    minilm_sensitivity,
    resolve_target,
    size_gib,
)

_DEFAULTS = {"gpu": "h100_sxm", "gpus": 1, "batch_size": 1, "prompt_len": 1024,
             "output_len": 256, "memory_fraction": 0.9}
_MINILM_DEFAULTS = {**_DEFAULTS, "batch_size": 8, "prompt_len": 64}
_GIB = 2**30


def _act_penalty_variant(fmt: str) -> tuple[str, str]:
    """(W8A8-style variant, its W8A16 twin) whose measured difference is the cost of 8-bit
    activations for a unit in ``fmt``."""
    if fmt == "fp8":
        return "fp8+a8", "fp8"
    if fmt == "int8":
        return "int8+a8", "int8"
    return "int4-g128+a8", "int4-g128"


def unit_drop(layer: int, role: str, fmt: str, act: int) -> float:
    """Measured quality drop of one MiniLM unit in ``fmt`` (0 for bf16)."""
    if fmt == "bf16":
        return 0.0
    s = minilm_sensitivity()
    d = s[(layer, role, fmt)]
    if act == 8:
        a8, a16 = _act_penalty_variant(fmt)
        d += s[(layer, role, a8)] - s[(layer, role, a16)]
    return d


def quality_proxy(plan: Plan) -> float:
    """Sum of per-unit sensitivities (see the module docstring)."""
    t = plan.target
    s = minilm_sensitivity()
    total = s[(-2, "base", "bf16")]
    emb = plan.embed
    total += s[(-1, "embed", emb)] if emb != "bf16" else 0.0
    if t.kind == "real":
        for i in range(t.num_layers):
            for r in ROLES:
                total += unit_drop(i, r, *plan.unit(i, r))
            if plan.kv[i] != 16:
                total += s[(i, "kv", f"kv{plan.kv[i]}")]
        return max(total, 0.0)
    # per-layer weights of the transferred profile, summed over the layers of each group
    prof = depth_profile(t.num_layers)
    scale = 6.0 / t.num_layers
    for i, row in enumerate(plan.grid):
        w = prof[i] * scale
        for r, (fmt, act) in row.items():
            if fmt != "bf16":
                total += w * role_mean(r, fmt, act)
        if plan.kv[i] != 16:
            total += w * role_mean("kv", f"kv{plan.kv[i]}", 16)
    return max(total, 0.0)


_ROLE_MEAN: dict[tuple[str, str, int], float] = {}


def role_mean(role: str, fmt: str, act: int) -> float:
    """Mean measured drop of one MiniLM layer group in ``fmt`` over its six layers (the
    per-role sensitivity that the catalog-LLM proxy transfers)."""
    key = (role, fmt, act)
    if key not in _ROLE_MEAN:
        if role == "kv":
            s = minilm_sensitivity()
            _ROLE_MEAN[key] = sum(s[(j, "kv", fmt)] for j in range(6)) / 6
        else:
            _ROLE_MEAN[key] = sum(unit_drop(j, role, fmt, act) for j in range(6)) / 6
    return _ROLE_MEAN[key]


def compute_dtype(fmt: str, act: int, hw: Any) -> str:
    if act == 16 or fmt == "bf16":
        return "bf16"
    dt = "fp8" if fmt == "fp8" else "int8"
    return dt if dt in hw.peak_tflops else "bf16"


class QuantSimEvaluator(BaseEvaluator):
    """Analytical quantization model: memory, roofline latency, sensitivity proxy."""

    name = "quant-sim"
    version = "1"
    domains = ("quantization",)
    analytical = True
    metrics = ("quality_drop", "model_size_gib", "latency_ms", "avg_bits", "prefill_ms",
               "kv_cache_gib", "memory_gib", "decode_tok_s")
    options_table: dict = {}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if options:
            raise BadInput("evaluator.options", f"unknown option {sorted(options)[0]!r}; "
                           "quant-sim takes none")
        self._gemm: dict[tuple, float] = {}

    def environment(self) -> dict[str, str]:
        import hashlib

        from tuner.evaluators.quant._plan import DATA_DIR

        env = super().environment()
        raw = (DATA_DIR / "minilm_sensitivity.csv").read_bytes()
        env["sensitivity"] = hashlib.sha256(raw).hexdigest()[:12]
        return env

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        from tuner.evaluators._catalog import get_hardware

        target = resolve_target(config.get("model", MINILM))
        check_keys(config, target, CONTEXT_KEYS)
        ctx = {**(_MINILM_DEFAULTS if target.kind == "real" else _DEFAULTS),
               **{k: v for k, v in config.items() if v is not None}}
        for key in ("gpus", "batch_size", "prompt_len", "output_len"):
            v = ctx[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BadInput(key, f"{v!r} must be an integer >= 1")
        mf = ctx["memory_fraction"]
        if isinstance(mf, bool) or not isinstance(mf, (int, float)) or not 0 < mf <= 1:
            raise BadInput("memory_fraction", f"{mf!r} must be in (0, 1]")
        hw = get_hardware(ctx["gpu"])
        plan = build_plan(config, target)
        tp = ctx["gpus"]
        weights = size_gib(plan)
        kv = self._kv_bytes(plan, ctx["batch_size"], ctx["prompt_len"] + ctx["output_len"]) \
            / _GIB
        kv_shards = min(tp, max(target.kv_heads, 1))
        per_gpu = weights / tp + kv / kv_shards
        metrics = {"quality_drop": quality_proxy(plan), "model_size_gib": weights,
                   "avg_bits": avg_bits(plan), "kv_cache_gib": kv, "memory_gib": per_gpu}
        over = budget_violations(plan, config)
        cap = ctx["memory_fraction"] * hw.hbm_gib
        if per_gpu > cap:
            over.append(f"needs {per_gpu:.1f} GiB per GPU ({weights / tp:.1f} weights + "
                        f"{kv / kv_shards:.1f} KV), has {cap:.1f} GiB "
                        f"({ctx['memory_fraction']:.0%} of {hw.hbm_gib:g} GiB {hw.name})")
        if over:
            return EvalResult.infeasible("; ".join(over), metrics)
        try:
            b, p, o = ctx["batch_size"], ctx["prompt_len"], ctx["output_len"]
            if target.kind == "real":
                prefill = self._forward(plan, hw, tp, b, p, p, causal=False)
                decode = prefill
            else:
                prefill = self._forward(plan, hw, tp, b, p, p, causal=True)
                decode = self._forward(plan, hw, tp, b, 1, p + o // 2, causal=True)
        except BadInput:
            raise
        except Exception as exc:
            return EvalResult.failed(f"{type(exc).__name__}: {exc}")
        metrics.update(latency_ms=decode * 1e3, prefill_ms=prefill * 1e3,
                       decode_tok_s=b / decode)
        return EvalResult.ok(metrics, {"protected_layers": list(plan.protected)})

    # -- physics ---------------------------------------------------------------------------
    @staticmethod
    def _kv_bytes(plan: Plan, batch: int, tokens: int) -> float:
        t = plan.target
        if not t.has_kv_cache:
            return 0.0
        hd = t.head_dim if t.model is None or t.model.attention != "mla" else 128
        total = 0.0
        for i in range(t.num_layers):
            full = _is_full_layer(t, i)
            n = tokens if full or not t.sliding_window else min(tokens, t.sliding_window)
            total += n * t.kv_values_per_token_layer * kv_bits_per_value(plan.kv[i], hd) / 8
        return total * batch

    def _gemm_time(self, hw: Any, m: float, n: float, k: float, dtype: str, count: float,
                   a_bytes: float, w_bytes: float) -> float:
        from tuner.evaluators._perf import consts, gemm_seconds

        key = (hw.name, m, n, k, dtype, count, a_bytes, w_bytes)
        t = self._gemm.get(key)
        if t is None:
            # gemm_seconds charges one byte width to both operands: pass the width that gives
            # the same total traffic, (m k a + k n w) / (m k + k n)
            in_bytes = (m * k * a_bytes + k * n * w_bytes) / (m * k + k * n)
            t = self._gemm[key] = gemm_seconds(consts(hw), m, n, k, dtype, count, in_bytes)
        return t

    def _forward(self, plan: Plan, hw: Any, tp: int, batch: int, q_len: int, kv_len: int,
                 causal: bool) -> float:
        """Seconds of one forward pass of ``batch`` sequences of ``q_len`` new tokens."""
        from tuner.evaluators._perf import attention_time, collective_time

        t = plan.target
        tokens = batch * q_len
        total = 0.0
        for (layer, r, fmt, act), n_layers in plan.groups.items():
            mats = t.layers[max(layer, 0)][r]
            dtype = compute_dtype(fmt, act, hw)
            a_bytes = 1.0 if dtype != "bf16" else 2.0
            for mat in mats:
                w_bytes = bits_per_weight(fmt, mat.cols) / 8
                rows = mat.rows / tp if mat.split == "col" else mat.rows
                cols = mat.cols / tp if mat.split == "row" else mat.cols
                if mat.count > 1:  # MoE: experts the batch's tokens touch
                    touched = mat.count * (1 - (1 - mat.active / mat.count) ** tokens)
                    m = tokens * mat.active / touched
                    total += n_layers * self._gemm_time(hw, m, rows, cols, dtype, touched,
                                                        a_bytes, w_bytes)
                else:
                    total += n_layers * self._gemm_time(hw, tokens, rows, cols, dtype, 1,
                                                        a_bytes, w_bytes)
        heads = max(t.heads / tp, 1)
        kv_heads = max(t.kv_heads / tp, 1)
        hd = t.head_dim
        v_dim = None
        if t.model is not None and t.model.attention == "mla":
            hd = t.model.kv_lora_rank + t.model.qk_rope_head_dim
            v_dim = t.model.kv_lora_rank
        spans: dict[tuple[str, int], int] = {}
        for i in range(t.num_layers):
            kv_dtype = {16: "bf16", 8: "fp8", 4: "int4"}[plan.kv[i]] if t.has_kv_cache \
                else "bf16"
            span = kv_len if _is_full_layer(t, i) or not t.sliding_window else min(
                kv_len, t.sliding_window)
            spans[(kv_dtype, span)] = spans.get((kv_dtype, span), 0) + 1
        for (kv_dtype, span), n_layers in spans.items():
            total += n_layers * attention_time(hw, batch, q_len, span, heads, kv_heads, hd,
                                               kv_dtype, causal=causal, v_head_dim=v_dim)
        if tp > 1:
            total += 2 * t.num_layers * collective_time(hw, "all_reduce", tokens * t.hidden * 2,
                                                        tp, hw.gpus_per_node)
        if t.head_matrix is not None:
            fmt = plan.embed
            head_tokens = batch if q_len > 1 else tokens  # prefill computes the last logits only
            total += self._gemm_time(hw, head_tokens, t.head_matrix.rows / tp,
                                     t.head_matrix.cols, "bf16", 1, 2.0,
                                     bits_per_weight(fmt, t.head_matrix.cols) / 8)
        return total


def _is_full_layer(t: Target, i: int) -> bool:
    m = t.model
    if m is None or not m.sliding_window or not m.sliding_window_every:
        return True
    return (i + 1) % m.sliding_window_every == 0


__all__ = ["QuantSimEvaluator", "quality_proxy", "role_mean", "unit_drop"]
