"""Write studies with the runner's storage conventions, fast, for dashboard tests and benchmarks.

The configs come from a small serving-scheduler-like toy model (closed-form metrics with seeded
noise), chosen to exercise every view: two or three objectives, a conditional parameter,
space-constraint infeasibility with numbers in the reason, metric-constraint violations,
failed evaluations, and an optional "measured" variant of the same configs (a systematic,
config-dependent deviation) for predicted-vs-measured pages.

Trials are written as the runner writes them (``tuner._trial_writer.TrialWriter``: one
finished trial per transaction), with the same user and system attributes.
It is not a search: later trials mutate good earlier ones so that convergence plots show
progress.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tuner._record import CONSTRAINTS_KEY
from tuner._trial_writer import TrialWriter
from tuner.storage import open_rdb

CONTEXT = {"model": "llama3.1-8b", "gpu": "h100-sxm", "arrival_rate_req_s": 20.0,
           "prompt_tokens": 1024, "output_tokens": 256}
DISTRIBUTIONS: dict[str, Any] = {
    "max_num_seqs": CategoricalDistribution([16, 32, 64, 128, 256, 512]),
    "max_batched_tokens": IntDistribution(1024, 16384, step=1024),
    "block_size": CategoricalDistribution([8, 16, 32]),
    "chunked_prefill": CategoricalDistribution([True, False]),
    "prefill_chunk": IntDistribution(256, 4096, step=256),  # only when chunked_prefill
    "policy": CategoricalDistribution(["fcfs", "priority"]),
    "tp": CategoricalDistribution([1, 2, 4, 8]),
}
HBM_GIB = 80.0
WEIGHTS_GIB = 15.0
TTFT_LIMIT_MS = 2500.0
OBJECTIVES_2 = (("throughput_tok_s", "maximize"), ("ttft_ms_p99", "minimize"))
OBJECTIVES_3 = (*OBJECTIVES_2, ("cost_usd_per_mtok", "minimize"))


def sample_params(rng: np.random.Generator) -> dict[str, Any]:
    p: dict[str, Any] = {}
    for name, dist in DISTRIBUTIONS.items():
        if name == "prefill_chunk" and not p.get("chunked_prefill"):
            continue
        if isinstance(dist, CategoricalDistribution):
            p[name] = dist.choices[int(rng.integers(len(dist.choices)))]
        else:
            p[name] = int(dist.low + dist.step * rng.integers((dist.high - dist.low)
                                                               // dist.step + 1))
    return p


def mutate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Change one or two parameters of ``params`` (keeps the conditional one consistent)."""
    fresh = sample_params(rng)
    out = dict(params)
    for name in rng.choice([n for n in DISTRIBUTIONS if n != "prefill_chunk"],
                           size=int(rng.integers(1, 3)), replace=False):
        out[name] = fresh[name]
    if out.get("chunked_prefill"):
        out.setdefault("prefill_chunk", fresh.get("prefill_chunk", 512))
    else:
        out.pop("prefill_chunk", None)
    return out


def _jitter(params: dict[str, Any], salt: str) -> float:
    """A deterministic number in [-1, 1] per config (the 'hardware' effect of a config)."""
    raw = json.dumps(params, sort_keys=True) + salt
    return int(hashlib.sha256(raw.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF * 2 - 1


def evaluate(params: dict[str, Any], rng: np.random.Generator,
             measured: bool = False) -> tuple[str, dict[str, float], str | None]:
    """(status, metrics, reason) of one config under the toy serving model."""
    tp, seqs = params["tp"], params["max_num_seqs"]
    tokens = params["max_batched_tokens"]
    ctx = CONTEXT["prompt_tokens"] + CONTEXT["output_tokens"]
    if params.get("chunked_prefill") and params["prefill_chunk"] > tokens:
        return ("infeasible", {}, f"prefill_chunk {params['prefill_chunk']} exceeds "
                f"max_batched_tokens {tokens}")
    kv_gib = seqs * ctx * 128 * 1024 / 2**30 / tp * (1 + 0.02 * params["block_size"] / 8)
    mem = WEIGHTS_GIB / tp + kv_gib
    if mem > HBM_GIB:
        return ("infeasible", {"peak_memory_gib": mem},
                f"KV cache needs {kv_gib:.1f} GiB + weights {WEIGHTS_GIB / tp:.1f} GiB, "
                f"has {HBM_GIB:.0f} GiB")
    batch = min(seqs, tokens / 64)
    throughput = 2400.0 * tp ** 0.8 * batch / (batch + 48) * (
        1.06 if params["policy"] == "fcfs" else 1.0)
    prefill_ms = CONTEXT["prompt_tokens"] / (9000.0 * tp ** 0.7) * 1000
    queue = 1.0 / max(0.05, 1 - CONTEXT["arrival_rate_req_s"] * 160 / throughput)
    chunk_wait = (tokens / 4096) * (0.5 if params.get("chunked_prefill") else 1.6)
    ttft = prefill_ms * queue * (1 + chunk_wait) * (0.85 if params["policy"] == "priority"
                                                    else 1.0)
    if measured:  # the real system: slower than modelled, by a config-dependent amount
        throughput *= 0.9 * (1 + 0.06 * _jitter(params, "thr"))
        ttft *= 1.12 * (1 + 0.08 * _jitter(params, "ttft"))
    throughput *= 1 + 0.01 * rng.standard_normal()
    ttft *= 1 + 0.02 * rng.standard_normal()
    price = 3.0 * tp  # USD per hour for the GPUs of one replica
    metrics = {"throughput_tok_s": throughput, "ttft_ms_p99": ttft,
               "tpot_ms_p50": 1000.0 * batch / throughput,
               "cost_usd_per_mtok": price / (throughput * 3600) * 1e6,
               "peak_memory_gib": mem}
    return "ok", metrics, None


def write_study(url: str, name: str, n_trials: int = 200, seed: int = 0,
                objectives: Sequence[tuple[str, str]] = OBJECTIVES_2, sampler: str = "random",
                evaluator: str = "serving-sim", measured: bool = False,
                state: str = "finished", fail_share: float = 0.02,
                params_list: Iterable[dict[str, Any]] | None = None,
                exploit_share: float = 0.6) -> int:
    """Create (or extend) study ``name`` at ``url``; returns its study id.

    Args:
        url: SQLAlchemy URL of the storage (created if needed).
        name: study name.
        n_trials: trials to add (ignored when ``params_list`` is given).
        seed: seeds the configs and the noise.
        objectives: ``(metric, direction)`` pairs.
        sampler, evaluator: labels stored in the study attributes.
        measured: score with the "measured" variant of the model.
        state: value of ``tuner.state`` after writing.
        fail_share: share of evaluations that fail (timeout).
        params_list: evaluate exactly these parameter sets, in order.
        exploit_share: share of trials (after the first 20) mutating a good earlier config.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    rdb = open_rdb(url)
    directions = [d for _, d in objectives]
    try:
        sid = rdb.get_study_id_from_name(name)
    except KeyError:
        sid = rdb.create_new_study([optuna.study.StudyDirection[d.upper()] for d in directions],
                                   name)
    spec = {"name": name, "seed": seed, "space": {"domain": "serving", "context": CONTEXT,
                                                  "params": {}},
            "evaluator": {"name": evaluator, "options": {}},
            "objectives": [{"metric": m, "direction": d, "reference": None}
                           for m, d in objectives],
            "constraints": [{"metric": "ttft_ms_p99", "op": "<=", "value": TTFT_LIMIT_MS}],
            "sampler": {"name": sampler, "options": {}}, "budget": {"trials": n_trials}}
    writer = TrialWriter(rdb.engine, sid)
    given = list(params_list) if params_list is not None else None
    count = len(given) if given is not None else n_trials
    spec["budget"] = {"trials": writer.next_number + count}
    attrs = {"tuner.spec": spec, "tuner.domain": "serving", "tuner.evaluator": evaluator,
             "tuner.sampler": sampler, "tuner.fingerprint": f"{evaluator}-{seed:04d}",
             "tuner.objectives": spec["objectives"], "tuner.constraints": spec["constraints"],
             "tuner.state": "running", "tuner.updated_at": time.time(),
             "tuner.trials_target": writer.next_number + count}
    for k, v in attrs.items():
        rdb.set_study_user_attr(sid, k, v)
    penalty = [-1e12 if d == "maximize" else 1e12 for d in directions]
    good: list[tuple[float, dict[str, Any]]] = []
    for i in range(count):
        if given is not None:
            params = dict(given[i])
        elif i >= 20 and good and rng.random() < exploit_share:
            params = mutate(good[int(rng.integers(min(len(good), 8)))][1], rng)
        else:
            params = sample_params(rng)
        status, metrics, reason = evaluate(params, rng, measured)
        if status == "ok" and rng.random() < fail_share:
            status, metrics, reason = "failed", {}, "evaluation timed out after 600 s (killed)"
        feasible = status == "ok" and metrics["ttft_ms_p99"] <= TTFT_LIMIT_MS
        if status == "ok" and not feasible:
            reason = (f"violates ttft_ms_p99 <= {TTFT_LIMIT_MS:g} "
                      f"(got {metrics['ttft_ms_p99']:.4g})")
        config = {**CONTEXT, **params}
        user = {"config": config, "metrics": metrics, "status": status, "reason": reason,
                "feasible": feasible, "cached": False,
                "eval_s": round(float(rng.uniform(0.001, 0.05)), 6),
                "artifacts": {"trace": f"traces/{name}/{i}.json"} if status == "ok" else {}}
        dists = {k: DISTRIBUTIONS[k] for k in params}
        if status == "failed":
            frozen = create_trial(state=TrialState.FAIL, params=params, distributions=dists,
                                  user_attrs=user)
        else:
            if feasible:
                values = [metrics[m] for m, _ in objectives]
                score = sum((v if d == "maximize" else -v) / abs(v or 1.0) for v, (_, d)
                            in zip(values, objectives))
                good.append((score, params))
                good.sort(key=lambda t: -t[0])
                del good[32:]
            else:
                values = penalty
            violation = [1.0] if status == "infeasible" else [
                metrics["ttft_ms_p99"] - TTFT_LIMIT_MS]
            frozen = create_trial(state=TrialState.COMPLETE, values=values, params=params,
                                  distributions=dists, user_attrs=user,
                                  system_attrs={CONSTRAINTS_KEY: violation})
        writer.write(frozen)
    rdb.set_study_user_attr(sid, "tuner.state", state)
    rdb.set_study_user_attr(sid, "tuner.updated_at", time.time())
    rdb.engine.dispose()
    return sid


def study_params(url: str, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Parameter sets of a stored study's ok trials in trial order (to re-measure them)."""
    study = optuna.load_study(study_name=name, storage=url)
    out = [dict(t.params) for t in study.get_trials(deepcopy=False, states=(
        TrialState.COMPLETE,)) if t.user_attrs.get("status") == "ok"]
    return out[:limit] if limit else out


def bench_json(problem: str = "serving toy", samplers: Sequence[str] = ("random", "tpe"),
               seeds: int = 3, trials: int = 50) -> dict[str, Any]:
    """A ``tuner bench``-shaped result from seeded toy curves (for page tests only)."""
    rng = np.random.default_rng(0)
    runs = []
    for k, s in enumerate(samplers):
        for seed in range(seeds):
            rate = 0.05 * (1 + k) * (1 + 0.2 * rng.standard_normal())
            curve = [float(math.exp(-rate * t) * (1 + 0.05 * rng.random()))
                     for t in range(1, trials + 1)]
            curve = list(np.minimum.accumulate(curve))
            runs.append({"sampler": s, "seed": seed, "curve": curve,
                         "final": {"found_best_at": int(np.argmin(curve)) + 1}})
    return {"problem": problem, "metric": "regret", "direction": "minimize",
            "ground_truth": {"n_configs": 2304}, "runs": runs}
