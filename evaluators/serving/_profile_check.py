"""Ranges of serving-profile constants, so a profile file's mistake is named, not simulated.

Every numeric constant is a size, a time, a count or a share: never negative, a whole number
where the shipped profile's is one; some must be positive (efficiencies, budgets, memory
shares) and some are shares of at most 1. String constants are policies with fixed choices.
"""

from __future__ import annotations

import weakref

from tuner import BadInput, UnknownName
from tuner.evaluators._profiles import Profile, load_profile
from tuner.evaluators.serving._geometry import MEMORY_RULES

#: divisors and budgets: zero would divide by zero or admit nothing
POSITIVE = frozenset({
    "prefill_attention_efficiency", "expert_efficiency", "gemm_efficiency", "visible_fraction",
    "default_memory_fraction", "default_token_budget", "default_token_budget_small_gpu",
    "default_max_num_seqs", "default_max_num_seqs_small_gpu", "default_kv_block_size",
    "small_gpu_below_gib", "mxfp4_expert_hidden_multiple", "mxfp4_expert_ffn_multiple",
    "matmul_efficiency", "attention_efficiency", "weight_bandwidth_efficiency"})
#: shares of a whole
AT_MOST_ONE = frozenset({
    "visible_fraction", "default_memory_fraction", "reserve_output_fraction",
    "dp_attention_reserve_scale", "expert_efficiency", "gemm_efficiency",
    "prefill_attention_efficiency"})
#: admission policies (serving/_engine.py)
ADMISSIONS = ("preempt", "reserve", "guaranteed_no_evict", "slots")
#: policies
CHOICES = {"memory_fraction_of": MEMORY_RULES, "admission": ADMISSIONS}

#: profiles already checked, by id; weak, so calibration's one-off profiles do not pile up
_CHECKED: weakref.WeakValueDictionary[int, Profile] = weakref.WeakValueDictionary()


def checked(prof: Profile, prefix: str | None = None) -> Profile:
    """``prof`` after its constants' range check (once per profile object); an error's field
    is ``prefix`` (default ``"profile <name>: "``) + the constant."""
    if _CHECKED.get(id(prof)) is prof:
        return prof
    shipped = load_profile("serving", prof.name, "engine").constants
    prefix = f"profile {prof.name}: " if prefix is None else prefix
    for key, v in prof.constants.items():
        where, base = prefix + key, shipped.get(key)
        if isinstance(base, bool) or isinstance(v, bool):
            continue
        if isinstance(base, str):
            if key in CHOICES and v not in CHOICES[key]:
                raise UnknownName(where, v, list(CHOICES[key]))
            continue
        if isinstance(base, int) and not isinstance(v, int):
            raise BadInput(where, f"{v!r} must be a whole number")
        if v < 0 or (key in POSITIVE and v <= 0):
            raise BadInput(where, f"{v!r} must be {'> 0' if key in POSITIVE else '>= 0'}")
        if key in AT_MOST_ONE and v > 1:
            raise BadInput(where, f"{v!r} must be <= 1 (a share)")
    pad, most = (prof.constants.get(k) for k in ("cuda_graph_pad", "cuda_graph_max_batch"))
    if isinstance(pad, int) and isinstance(most, int) and pad > most:
        # a batch pads up to a captured size, and none is above the largest
        raise BadInput(prefix + "cuda_graph_pad",
                       f"{pad} must be <= cuda_graph_max_batch ({most})")
    _CHECKED[id(prof)] = prof
    return prof


__all__ = ["checked"]
