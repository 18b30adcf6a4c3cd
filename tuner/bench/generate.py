"""Procedurally generated benchmark problems: random model x GPU x shape x objective, seeded.

The hand-written problems of ``problems.toml`` are few, and a sampler tuned on them may only
have learned them. ``generate(seed)`` draws a new finite problem from the catalogs instead:
the domain cycles with the seed (training, GEMM tiles, quantization, serving; attention tile
spaces hold about a hundred valid configs, too few for a 100-trial budget), everything else is
random: the model and GPU from the catalogs, the cluster, shape or
deployment, which knobs are open, the objectives and their constraints. A draw is kept only
when its ground truth is worth searching (``accept``): at least four times the 100-trial
budget in valid configs and 50 feasible ones, not too many (the table is scored exhaustively),
and a single optimum that random sampling does not
stumble on (at most 1% of the valid configs within 1% of it) or a front of at least three
points. A rejected draw is followed by the next one of the same seed, so ``generate(seed)``
always returns the same problem.

Seed sets: ``DEV_SEEDS`` for developing samplers, ``HELD_OUT_SEEDS`` for checking them once at
the end (a sampler improved on the dev seeds and then measured on held-out ones).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from tuner._errors import BadInput, TunerError
from tuner.bench.problems import Problem, Table, build_table, problem_from_dict

DEV_SEEDS = tuple(range(0, 15))
HELD_OUT_SEEDS = tuple(range(1000, 1015))
DOMAINS = ("training", "kernel-gemm", "quantization", "serving")
#: at most this many valid configs per problem (every one is scored for the ground truth)
MAX_VALID = {"training": 60_000, "kernel-gemm": 40_000, "quantization": 40_000,
             "serving": 1500}
#: at least this many valid configs: four times the benchmark's 100-trial budget
MIN_VALID = 400
MIN_FEASIBLE = 50
#: share of valid configs within 1% of the optimum above which a problem is too easy
MAX_EASY_SHARE = 0.01
MAX_ATTEMPTS = 40

GPUS = ("a100_sxm_40gb", "a100_sxm_80gb", "h100_sxm", "h200_sxm", "b200")
HBM = {"a100_sxm_40gb": 40, "a100_sxm_80gb": 80, "h100_sxm": 80, "h200_sxm": 141, "b200": 180}
FP8 = ("h100_sxm", "h200_sxm", "b200")
#: training models with their parameter count (billions), for sizing the cluster
TRAIN_MODELS = {"llama3.1-8b": 8, "llama3.1-70b": 70, "llama3.1-405b": 405, "qwen3-32b": 32,
                "mixtral-8x7b": 47, "mixtral-8x22b": 141, "qwen3-235b-a22b": 235,
                "gpt3-175b": 175, "megatron-gpt-1_7b": 1.7, "megatron-gpt-7_5b": 7.5,
                "megatron-gpt-18_4b": 18.4, "megatron-gpt-39_1b": 39, "megatron-22b": 22,
                "gpt-oss-120b": 117}
MOE_MODELS = {"mixtral-8x7b", "mixtral-8x22b", "qwen3-235b-a22b", "gpt-oss-120b"}
QUANT_MODELS = {"llama3.1-8b": 8, "llama3.1-70b": 70, "qwen3-32b": 32, "mixtral-8x7b": 47,
                "llama3.1-405b": 405, "mixtral-8x22b": 141}
SERVE_MODELS = {"llama3.1-8b": 8, "qwen3-32b": 32, "llama3.1-70b": 70, "mixtral-8x7b": 47}
WORKLOADS = ("bursty-chat-10rps", "sharegpt-like", "long-prompt-rag")


def _subset(rng: random.Random, values: Sequence[Any], k: int) -> list[Any]:
    """``k`` of ``values`` in their order."""
    picks = sorted(rng.sample(range(len(values)), min(k, len(values))))
    return [values[i] for i in picks]


# -- one draw per domain ----------------------------------------------------------------------
def _training(rng: random.Random) -> dict[str, Any]:
    # half MoE: expert parallelism makes the lone optima that are hardest to find
    model = rng.choice(sorted(MOE_MODELS) if rng.random() < 0.5 else
                       sorted(set(TRAIN_MODELS) - MOE_MODELS))
    gpu = rng.choice(GPUS)
    # enough GPUs that the model state (16 bytes/parameter) takes 5-40% of the cluster's memory
    need = TRAIN_MODELS[model] * 16 / HBM[gpu]
    choices = [n for n in (8, 16, 32, 64, 128, 256, 512, 1024) if 2.5 * need <= n <= 20 * need
               or (n == 8 and 20 * need < 8)]
    num_gpus = rng.choice(choices or [8])
    seq = rng.choice((2048, 4096, 8192, 16384, 32768))
    tokens = rng.choice((1, 2, 4)) * 2**20  # tokens per step
    global_batch = max(num_gpus // 8, tokens // seq)
    params: dict[str, Any] = {"offload_activations": {"fixed": False}}
    if rng.random() < 0.7:
        params["offload_optimizer"] = {"fixed": False}
    dtypes = ["bf16", "fp8"] if gpu in FP8 else ["bf16"]
    params["dtype"] = {"choices": dtypes} if len(dtypes) > 1 else {"fixed": "bf16"}
    hbm = HBM[gpu]
    objective = rng.choice(("throughput", "throughput-headroom", "cost", "mfu", "pareto"))
    objectives: list[dict[str, Any]] = [{"metric": "tokens_per_s", "direction": "maximize"}]
    constraints: list[dict[str, Any]] = []
    if objective == "throughput-headroom":
        limit = round(hbm * rng.choice((0.5, 0.6, 0.75)))
        constraints = [{"metric": "peak_memory_gib", "op": "<=", "value": limit}]
    elif objective == "cost":
        objectives = [{"metric": "cost_usd_per_mtok", "direction": "minimize"}]
    elif objective == "mfu":
        objectives = [{"metric": "mfu", "direction": "maximize"}]
    elif objective == "pareto":
        objectives.append({"metric": "peak_memory_gib", "direction": "minimize"})
    return {"domain": "training", "evaluator": "training-sim",
            "context": {"model": model, "gpu": gpu, "num_gpus": num_gpus, "seq_len": seq,
                        "global_batch": global_batch},
            "params": params, "objectives": objectives, "constraints": constraints,
            "description": f"{model} on {num_gpus} {gpu}, seq {seq}, batch {global_batch}: "
                           f"{objective}"}


def _gemm(rng: random.Random) -> dict[str, Any]:
    gpu = rng.choice(GPUS)
    m = rng.choice((1, 16, 64, 128, 512, 1024, 2048, 4096, 8192, 16384))
    n = rng.choice((1024, 2048, 4096, 5120, 8192, 14336, 28672))
    k = rng.choice((1024, 2048, 4096, 5120, 8192, 14336, 28672))
    dtypes = ["bf16", "fp16", "tf32", "fp32"] + (["fp8"] if gpu in FP8 else [])
    dtype = rng.choice(dtypes)
    return {"domain": "kernel-gemm", "evaluator": "kernel-sim",
            "context": {"m": m, "n": n, "k": k, "dtype": dtype, "gpu": gpu},
            "objectives": [{"metric": "time_us", "direction": "minimize"}],
            "description": f"{m}x{n}x{k} {dtype} GEMM tiles on {gpu}"}


def _quantization(rng: random.Random) -> dict[str, Any]:
    model = rng.choice(sorted(QUANT_MODELS))
    gpu = rng.choice(GPUS)
    # tensor parallelism so that 8-bit weights fit: a problem where bf16 alone fits is easy
    gpus = next((g for g in (1, 2, 4, 8) if QUANT_MODELS[model] * 1.1 / g < 0.8 * HBM[gpu]), 8)
    ctx = {"model": model, "gpu": gpu, "gpus": gpus,
           "batch_size": rng.choice((1, 4, 8, 16, 32, 64)),
           "prompt_len": rng.choice((512, 1024, 2048, 4096)),
           "output_len": rng.choice((128, 256, 512))}
    params: dict[str, Any] = {}
    for role in ("qkv", "attn_out", "mlp_up", "mlp_down"):
        params[f"{role}_group"] = {"choices": _subset(rng, (32, 64, 128, -1), 2)}
    if rng.random() < 0.5:
        params["protect_frac"] = {"fixed": 0.0}
    q = rng.choice((0.005, 0.01, 0.02, 0.04))
    kind = rng.choice(("latency-at-quality", "size-at-quality", "quality-at-size",
                       "quality-latency", "quality-size-latency"))
    objectives: list[dict[str, Any]]
    constraints: list[dict[str, Any]] = []
    if kind == "latency-at-quality":
        objectives = [{"metric": "latency_ms", "direction": "minimize"}]
        constraints = [{"metric": "quality_drop", "op": "<=", "value": q}]
    elif kind == "size-at-quality":
        objectives = [{"metric": "model_size_gib", "direction": "minimize"}]
        constraints = [{"metric": "quality_drop", "op": "<=", "value": q}]
    elif kind == "quality-at-size":
        objectives = [{"metric": "quality_drop", "direction": "minimize"}]
        bf16_gib = QUANT_MODELS[model] * 2 * 1e9 / 2**30
        constraints = [{"metric": "model_size_gib", "op": "<=",
                        "value": round(bf16_gib * rng.choice((0.3, 0.35, 0.45)), 1)}]
    elif kind == "quality-latency":
        objectives = [{"metric": "quality_drop", "direction": "minimize"},
                      {"metric": "latency_ms", "direction": "minimize"}]
    else:
        objectives = [{"metric": m, "direction": "minimize"}
                      for m in ("quality_drop", "model_size_gib", "latency_ms")]
    return {"domain": "quantization", "evaluator": "quant-sim", "context": ctx, "params": params,
            "objectives": objectives, "constraints": constraints,
            "description": f"{model} on {gpus} {gpu}, batch {ctx['batch_size']}: {kind}"
                           + (f" (quality drop <= {q})" if "at-quality" in kind else "")}


def _serving(rng: random.Random) -> dict[str, Any]:
    model = rng.choice(sorted(SERVE_MODELS))
    gpu = rng.choice(GPUS[1:])
    num_gpus = rng.choice((2, 4, 8)) if SERVE_MODELS[model] < 60 else rng.choice((4, 8))
    workload = rng.choice(WORKLOADS)
    ctx = {"model": model, "gpu": gpu, "num_gpus": num_gpus,
           "workload": {"name": workload, "num_requests": rng.choice((120, 160, 200))},
           "slo_ttft_ms": float(rng.choice((500, 1000, 2000, 4000))),
           "slo_tpot_ms": float(rng.choice((30, 50, 80, 120)))}
    params: dict[str, Any] = {
        "kv_block_size": {"fixed": 16}, "gpu_memory_utilization": {"fixed": 0.9},
        "pp": {"fixed": 1}, "chunked_prefill": {"fixed": True},
        "preemption_mode": {"fixed": "recompute"},
        "max_num_seqs": {"choices": _subset(rng, (64, 128, 256, 512, 1024), 3)},
        "max_num_batched_tokens": {"choices": _subset(rng, (2048, 4096, 8192, 16384), 2)},
        "prefill_chunk_size": {"choices": _subset(rng, (512, 2048, 8192), 2)},
        "weight_dtype": {"choices": _subset(rng, ("bf16", "fp8", "int4"), 2)},
        "kv_dtype": {"choices": ["bf16", "fp8"]},
        "scheduling_policy": {"choices": ["fcfs", "shortest_prompt_first"]},
    }
    if rng.random() < 0.5:
        params["disaggregated"] = {"fixed": False}
    else:
        params.update({"prefill_workers": {"choices": [1, 2]}, "decode_workers": {"choices":
                                                                                  [1, 2]},
                       "prefill_tp": {"choices": [1, 2, 4]}, "decode_tp": {"choices": [1, 2, 4]}})
    if model.startswith("mixtral"):
        params["ep"] = {"choices": [1, 2]}
    kind = rng.choice(("goodput", "cost-under-slo", "throughput", "cost-latency"))
    objectives: list[dict[str, Any]]
    constraints: list[dict[str, Any]] = []
    if kind == "goodput":
        objectives = [{"metric": "goodput_req_s_per_gpu", "direction": "maximize"}]
    elif kind == "cost-under-slo":
        objectives = [{"metric": "cost_usd_per_mtok", "direction": "minimize"}]
        constraints = [{"metric": "slo_attainment", "op": ">=", "value": 0.9}]
    elif kind == "throughput":
        objectives = [{"metric": "throughput_tok_s_per_gpu", "direction": "maximize"}]
        constraints = [{"metric": "tpot_ms_p99", "op": "<=", "value": ctx["slo_tpot_ms"] * 2}]
    else:
        objectives = [{"metric": "cost_usd_per_mtok", "direction": "minimize"},
                      {"metric": "tpot_ms_p50", "direction": "minimize"}]
        constraints = [{"metric": "slo_attainment", "op": ">=", "value": 0.8}]
    return {"domain": "serving", "evaluator": "serving-sim", "context": ctx, "params": params,
            "objectives": objectives, "constraints": constraints,
            "description": f"{model} on <= {num_gpus} {gpu}, {workload}: {kind}"}


DRAWS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "training": _training, "kernel-gemm": _gemm, "quantization": _quantization,
    "serving": _serving}


# -- acceptance -------------------------------------------------------------------------------
def count_valid(problem: Problem, cap: int) -> int:
    """Valid configs of the problem's space, counted up to ``cap + 1``."""
    n = 0
    for _ in problem.space().enumerate(valid_only=True):
        n += 1
        if n > cap:
            break
    return n


def accept(table: Table) -> str:
    """Why the scored problem is not worth benchmarking ("" when it is)."""
    p = table.problem
    if table.n_feasible < MIN_FEASIBLE:
        return f"only {table.n_feasible} feasible configs"
    if len(p.objectives) > 1:
        return "" if len(table.front) >= 3 else f"a front of {len(table.front)} points"
    share = table.within(0.01) / max(table.n_valid, 1)
    if share > MAX_EASY_SHARE:
        return f"{share:.1%} of the valid configs are within 1% of the optimum"
    return ""


def draw(seed: int, attempt: int) -> Problem:
    """The ``attempt``-th candidate problem of ``seed`` (not yet checked)."""
    rng = random.Random(f"tuner-bench:{seed}:{attempt}")
    domain = DOMAINS[seed % len(DOMAINS)]
    d = DRAWS[domain](rng)
    d["name"] = f"gen-{seed}-{domain}"
    d["kind"] = "analytical"
    d["description"] = f"generated (seed {seed}): " + d["description"]
    return problem_from_dict(d)


def generate(seed: int, use_cache: bool = True,
             log: Callable[[str], None] | None = None) -> tuple[Problem, Table]:
    """The problem of ``seed`` and its scored table (the first accepted draw)."""
    for attempt in range(MAX_ATTEMPTS):
        p = draw(seed, attempt)
        try:
            n = count_valid(p, MAX_VALID[p.domain])
        except (BadInput, TunerError) as exc:
            why = f"invalid context ({exc})"
        else:
            if n > MAX_VALID[p.domain]:
                why = f"more than {MAX_VALID[p.domain]:,} valid configs"
            elif n < MIN_VALID:
                why = f"only {n} valid configs"
            else:
                try:
                    table = build_table(p, use_cache=use_cache)
                except BadInput as exc:
                    why = str(exc)
                else:
                    why = accept(table)
                    if not why:
                        return p, table
        if log:
            log(f"  gen seed {seed} draw {attempt} rejected: {why}")
    raise TunerError(f"generated problem {seed}: no acceptable draw in {MAX_ATTEMPTS}")


def parse_seeds(text: str) -> list[int]:
    """``"dev"``, ``"held-out"``, ``"0-14"``, ``"3,5,9"`` or a mix, as generator seeds."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "dev":
            out += DEV_SEEDS
        elif part in ("held-out", "heldout"):
            out += HELD_OUT_SEEDS
        elif "-" in part[1:]:
            lo, hi = part.split("-", 1)
            try:
                out += range(int(lo), int(hi) + 1)
            except ValueError:
                raise BadInput("--generated", f"{part!r} is not a seed range like 0-14") from None
        else:
            try:
                out.append(int(part))
            except ValueError:
                raise BadInput("--generated", f"{part!r}: give dev, held-out, a seed range "
                               "(0-14) or seeds (3,5,9)") from None
    if not out:
        raise BadInput("--generated", "no seeds given")
    return list(dict.fromkeys(out))


__all__ = ["DEV_SEEDS", "DOMAINS", "HELD_OUT_SEEDS", "MAX_EASY_SHARE", "accept", "count_valid",
           "draw", "generate", "parse_seeds"]
