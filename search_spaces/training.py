"""The ``training`` domain: parallel plans for LLM training on a GPU cluster.

Context (fixed, not searched): ``model`` (catalog name, or inline ``hidden_size``,
``num_layers``, ``num_heads``, ``num_kv_heads``, ``ffn_hidden_size``, ``vocab_size`` and
``gated_mlp``, ``tied_embeddings``, ``attention`` ...), ``gpu``, ``num_gpus``,
``gpus_per_node`` (default: the GPU's usual node), ``seq_len``, ``global_batch`` (sequences
per optimizer step), optional ``inter_node_gbps`` and ``allow_cross_node_tp``, the stack
(``framework``, ``compile``) and any other config key of ``training-sim`` that is not searched
(``attention_impl``, ``tp_comm_overlap``, ``etp``, ``moe_dispatcher``, ``grad_dtype`` ...).

Parameters (choices derived from the context, all finite so ``enumerate()`` works):

=====================  ======================================================================
``tp``                 tensor parallel: divisors of num_gpus that divide the query and KV
                       heads, within a node unless ``allow_cross_node_tp``
``pp``                 pipeline stages: divisors of num_gpus that admit a stage layout: they
                       divide num_layers, or num_layers + 1 or + 2 (embedding and/or loss
                       counted as pipeline layers), or any count the stack splits unevenly
                       (``pipeline_split = "balanced"``: DeepSpeed, torchtitan)
``pp_interleave``      virtual stages per GPU (interleaved 1F1B), only when ``pp > 1``
``pp_embedding_as_layer`` / ``pp_loss_as_layer``  count the embedding / the loss as a
                       pipeline layer (Megatron's uneven stages), only for the ``pp`` values
                       where that makes a layout
``cp``                 context parallel: divisors of num_gpus, >= 1024 tokens per rank
``ep``                 expert parallel (MoE models only): divisors of num_experts and num_gpus
``micro_batch``        sequences per micro-batch: powers of two up to 16 (and global_batch)
``zero_stage``         0-3 (3 = FSDP full shard)
``recompute``          none | selective | full
``sequence_parallel``  only when ``tp > 1``
``dtype``              bf16 | fp16 | fp8 (those the GPU supports)
``offload_optimizer``  ZeRO-Offload of the optimizer state to the host
``offload_activations``  activation offload to the host
=====================  ======================================================================

Data parallelism is derived (``num_gpus / (tp*pp*cp)``), as is gradient accumulation
(``global_batch / (dp*micro_batch)`` micro-batches per step). The constraints are exactly the
simulator's validity rules (``evaluators/training/_plan.py``), so a config the space accepts is
one the simulator can run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tuner import BadInput, BaseSpace, Categorical, Param, is_active
from tuner.evaluators.training._memory import GIB, in_flight, stage_memory
from tuner.evaluators.training._plan import (
    ALLOWED_KEYS,
    DTYPES,
    PLAN_DEFAULTS,
    parse_plan,
    plan_errors,
    resolve_hardware,
    resolve_model,
)
from tuner.evaluators.training._profile import framework_profile
from tuner.evaluators.training._shapes import layer_shapes
from tuner.evaluators.training._stages import layout

#: the searched parameters, in suggestion order
PARAM_NAMES = ("tp", "pp", "pp_interleave", "pp_embedding_as_layer", "pp_loss_as_layer", "cp",
               "ep", "micro_batch", "zero_stage", "recompute", "sequence_parallel", "dtype",
               "offload_optimizer", "offload_activations")
_CONTEXT_REQUIRED = ("gpu", "num_gpus", "seq_len", "global_batch")
_INTERLEAVE = (1, 2, 3, 4, 5, 6, 8)
_MICRO_BATCHES = (1, 2, 4, 8, 16)
_MIN_TOKENS_PER_CP_RANK = 1024
_RECOMPUTE_LEVEL = {"none": 0.0, "selective": 1.0, "full": 2.0}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class TrainingSpace(BaseSpace):
    """Parallel plans (TP/PP/CP/EP, ZeRO, micro-batch, recomputation, dtype, offload)."""

    name = "training"
    default_evaluator = "training-sim"
    default_objectives = (("tokens_per_s", "maximize"), ("peak_memory_gib", "minimize"))
    example_contexts = (
        {"model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 8, "seq_len": 4096,
         "global_batch": 32},
        {"model": "mixtral-8x7b", "gpu": "a100_sxm_80gb", "num_gpus": 16, "seq_len": 4096,
         "global_batch": 32},
    )

    # -- context ----------------------------------------------------------------------
    def validate_context(self, context: dict[str, Any]) -> dict[str, Any]:
        for k in context:
            if k in PARAM_NAMES:
                raise BadInput(f"space.context.{k}", f"{k} is a searched parameter; pin it with "
                               f"[space.params.{k}] fixed = {context[k]!r}")
            if k not in ALLOWED_KEYS:
                raise BadInput(f"space.context.{k}", "unknown key; allowed: model (or inline "
                               "model dimensions), gpu, num_gpus, gpus_per_node, seq_len, "
                               "global_batch and the other training-sim config keys: "
                               + ", ".join(sorted(k for k in PLAN_DEFAULTS
                                                  if k not in PARAM_NAMES)))
        for k in _CONTEXT_REQUIRED:
            if k not in context:
                raise BadInput(f"space.context.{k}", "missing (required)")
        try:
            model, _ = resolve_model(context)
            hw = resolve_hardware(context["gpu"])
        except BadInput as exc:
            raise BadInput(f"space.context.{exc.field}", str(exc).split(": ", 1)[-1]) from None
        for k in ("num_gpus", "seq_len", "global_batch"):
            v = context[k]
            if type(v) is not int or v <= 0:
                raise BadInput(f"space.context.{k}", f"{v!r} must be a positive integer")
        gpn = context.get("gpus_per_node", hw.gpus_per_node)
        if type(gpn) is not int or gpn <= 0:
            raise BadInput("space.context.gpus_per_node", f"{gpn!r} must be a positive integer")
        n = context["num_gpus"]
        if n > gpn and n % gpn:
            raise BadInput("space.context.num_gpus", f"{n} is not a whole number of "
                           f"{gpn}-GPU nodes")
        out = dict(context)
        out["gpus_per_node"] = gpn
        # type-check the implementation switches through the simulator's own parser
        probe = {**out, "micro_batch": 1}
        try:
            parse_plan(probe)
        except BadInput as exc:
            raise BadInput(f"space.context.{exc.field}", str(exc).split(": ", 1)[-1]) from None
        self._model, self._hw = model, hw
        self._balanced = framework_profile(out.get("framework", "megatron")).constants[
            "pipeline_split"] == "balanced"
        return out

    def _layout_ok(self, pp: int, v: int, emb: bool, loss: bool) -> bool:
        m, ctx = self._model, self.context
        dense = m.first_dense_layers if m.num_experts else m.num_layers
        return not layout(m.num_layers, dense, pp, v, ctx.get("pp_first_stage_layers", 0),
                          ctx.get("pp_last_stage_layers", 0), emb, loss,
                          self._balanced).error

    # -- parameters -------------------------------------------------------------------
    def parameters(self) -> Mapping[str, Param]:
        ctx, m, hw = self.context, self._model, self._hw
        n, gpn, seq = ctx["num_gpus"], ctx["gpus_per_node"], ctx["seq_len"]
        divs = _divisors(n)
        tp_max = n if ctx.get("allow_cross_node_tp") else gpn
        tp = [d for d in divs if d <= tp_max and m.num_heads % d == 0
              and m.num_kv_heads % d == 0]
        emb_loss = [(False, False), (True, False), (False, True), (True, True)]
        pp = [d for d in divs if d <= m.num_layers
              and any(self._layout_ok(d, 1, e, lo) for e, lo in emb_loss)]
        cp = [d for d in divs if seq % (2 * d) == 0 and seq // d >= _MIN_TOKENS_PER_CP_RANK
              ] or [1]
        if 1 not in cp:
            cp.insert(0, 1)
        mbs = [b for b in _MICRO_BATCHES if b <= ctx["global_batch"]]
        params: dict[str, Param] = {"tp": Categorical(tuple(tp)), "pp": Categorical(tuple(pp))}
        multi_stage = tuple(d for d in pp if d > 1)
        inter = tuple(v for v in _INTERLEAVE
                      if any(self._layout_ok(d, v, e, lo) for d in multi_stage
                             for e, lo in emb_loss))
        if multi_stage:
            params["pp_interleave"] = Categorical(inter, when={"pp": multi_stage})
            # uneven stages: worth searching where counting the embedding/loss makes a layout
            uneven = tuple(d for d in multi_stage if any(
                self._layout_ok(d, v, e, lo) for v in inter for e, lo in emb_loss[1:]))
            if uneven:
                params["pp_embedding_as_layer"] = Categorical((False, True),
                                                              when={"pp": uneven})
                params["pp_loss_as_layer"] = Categorical((False, True), when={"pp": uneven})
        params["cp"] = Categorical(tuple(cp))
        if m.num_experts:
            ep = [d for d in divs if m.num_experts % d == 0]
            params["ep"] = Categorical(tuple(ep))
        params["micro_batch"] = Categorical(tuple(mbs))
        params["zero_stage"] = Categorical((0, 1, 2, 3))
        params["recompute"] = Categorical(("none", "selective", "full"))
        multi_tp = tuple(d for d in tp if d > 1)
        if multi_tp:
            params["sequence_parallel"] = Categorical((False, True), when={"tp": multi_tp})
        params["dtype"] = Categorical(tuple(d for d in DTYPES if d in hw.peak_tflops))
        params["offload_optimizer"] = Categorical((False, True))
        params["offload_activations"] = Categorical((False, True))
        return params

    # -- constraints ------------------------------------------------------------------
    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        try:
            return plan_errors(parse_plan(config))
        except BadInput as exc:  # a user override outside the simulator's types
            return [str(exc)]

    def features(self, config: Mapping[str, Any]) -> dict[str, float]:
        """Derived numbers for learned cost models (per-GPU shards, pipeline shape, ...)."""
        p = parse_plan(config)
        m = p.model
        feats: dict[str, float] = {
            "dp": float(p.dp), "micro_batches": float(p.num_micro),
            "bubble_fraction": ((p.pp - 1) / (p.pp_interleave * p.num_micro)
                                if p.pp > 1 and p.num_micro else 0.0),
            "tokens_per_micro_batch": float(p.micro_batch * p.seq_len / p.cp),
            "layers_per_stage": float(max((sum(x) for x in p.layout.ranks), default=0)),
            "model_parallel": float(p.tp * p.pp * p.cp),
            "recompute_level": _RECOMPUTE_LEVEL[p.recompute],
            "dtype_bytes": 1.0 if p.dtype == "fp8" else 2.0,
            "tp_cross_node": float(p.tp > p.gpus_per_node),
            "cp_cross_node": float(p.tp * p.cp > p.gpus_per_node),
            "ep_cross_node": float(p.tp * p.cp * p.ep > p.gpus_per_node),
            "pp_cross_node": float(p.pp > 1 and p.tp * p.cp * max(p.dp, 1) >= p.gpus_per_node),
        }
        if plan_errors(p):
            return feats
        dense = layer_shapes(m, p.tp, p.ep, False, p.etp)
        moe = layer_shapes(m, p.tp, p.ep, True, p.etp) if m.num_experts else None
        n_dense, n_moe = p.layout.ranks[0]
        mem = stage_memory(p, 0, n_dense, n_moe, dense, moe)
        feats.update({
            "params_per_gpu_billion": mem.params / 1e9,
            "model_state_gib": mem.model_state / GIB,
            "activation_gib": mem.activations / GIB,
            "in_flight_micro_batches": in_flight(p, 0),
            "memory_fraction": mem.total(p.stack.frag) / GIB / float(p.hw.hbm_gib),
        })
        return feats

    # -- fast exhaustive enumeration --------------------------------------------------
    def enumerate(self, valid_only: bool = True) -> Iterator[dict[str, Any]]:
        """Every config, as the generic enumeration yields them (same order).

        With ``valid_only`` branches are cut as soon as the parameters assigned so far break
        a rule, so only the valid part of the grid is visited.
        """
        if not valid_only:
            yield from super().enumerate(valid_only=False)
            return
        names = list(self.params)
        base = {**{k: v for k, v in PLAN_DEFAULTS.items() if k in PARAM_NAMES},
                **self.context, **self.fixed}

        def rec(i: int, values: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(names):
                cfg = self.config(values)
                if not self.constraints(cfg):
                    yield cfg
                return
            name = names[i]
            p = self.params[name]
            if not is_active(p, {**self.fixed, **values}):
                yield from rec(i + 1, values)
                return
            for v in p.values():
                values[name] = v
                if _partial_ok(self, base, values, names[i + 1:]):
                    yield from rec(i + 1, values)
                del values[name]

        yield from rec(0, {})


def _partial_ok(space: TrainingSpace, base: Mapping[str, Any], values: Mapping[str, Any],
                pending: list[str]) -> bool:
    """False only when the values assigned so far already break a rule of ``plan_errors``.

    A rule is checked once all its inputs are known; a parameter still pending is unknown
    (an inactive conditional parameter takes its default when the config is built).
    """
    unknown = set(pending)

    def get(k: str) -> Any:
        if k in values:
            return values[k]
        if k in unknown:
            raise KeyError(k)
        return base.get(k, PLAN_DEFAULTS.get(k))

    m, hw = space._model, space._hw
    ctx = space.context
    n, gpn = ctx["num_gpus"], ctx["gpus_per_node"]
    try:
        tp = get("tp")
        if m.num_heads % tp or m.num_kv_heads % tp:
            return False
        if tp > gpn and not ctx.get("allow_cross_node_tp"):
            return False
    except KeyError:
        return True
    try:
        pp = get("pp")
    except KeyError:
        return True
    if pp == 1:  # pp_interleave is inactive: its fixed value or the default applies
        v = values.get("pp_interleave", base.get("pp_interleave", 1))
        if v > 1:
            return False
    else:
        try:
            v = get("pp_interleave")
            emb = get("pp_embedding_as_layer")
            loss = get("pp_loss_as_layer")
        except KeyError:
            return True
        if not space._layout_ok(pp, v, bool(emb), bool(loss)):
            return False
    try:
        cp = get("cp")
        if n % (tp * pp * cp):
            return False
        seq = ctx["seq_len"]
        if cp > 1 and (seq % (2 * cp) or ctx.get("attention_impl", "flash") != "flash"):
            return False
        dp = n // (tp * pp * cp)
    except KeyError:
        return True
    try:
        ep = get("ep")
        etp = base.get("etp") or tp
        if ep > 1 and not m.num_experts:
            return False
        if m.num_experts and (m.num_experts % ep or (tp * cp * dp) % (etp * ep)):
            return False
    except KeyError:
        pass
    try:
        mb = get("micro_batch")
        gb = ctx["global_batch"]
        if gb % (dp * mb):
            return False
        micro = gb // (dp * mb)
        if pp > 1 and (micro < pp or (v > 1 and micro % pp)):
            return False
    except KeyError:
        return True
    try:
        dtype = get("dtype")
        if dtype not in hw.peak_tflops:
            return False
    except KeyError:
        pass
    try:
        if get("offload_optimizer") and get("zero_stage") == 0:
            return False
    except KeyError:
        pass
    return True


__all__ = ["PARAM_NAMES", "TrainingSpace"]
