"""LLM proposer (ADRS / LLMTune style): an OpenAI-compatible chat model proposes configs.

When its queue is empty the sampler asks the model for ``batch`` configs, giving it the space's
schema, the objectives and constraints, the best trials (or Pareto set), recent failures with
their reasons, the proposals it got wrong last time, and the budget left. The reply is JSON
constrained to a schema, parsed and checked as data (``_prompt.parse_reply``), never
executed. Invalid and duplicate proposals are counted by kind; any trial without a valid
proposal is filled in by a fallback sampler (``fallback``, default ``tpe``).

Every call is bounded by ``timeout_s``; token use and cost are kept in a ledger (the study's
``tuner.llm_ledger`` user attr, and a snapshot in each trial's ``llm:ledger`` system attr so a
stored study keeps it) and capped by ``max_calls`` / ``max_total_tokens`` / ``max_cost_usd``.
After a failed call the sampler backs off (1, 2, 4, ... trials, at most 32) before asking again.
The API key is read from the environment variable ``api_key_env`` and never stored.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import BadInput
from tuner.samplers._features import point_value, values_key
from tuner.samplers._llm._client import DEFAULT_KEY_ENV, ChatClient, LLMCallError
from tuner.samplers._llm._prompt import (
    PromptContext,
    build_messages,
    history_context,
    parse_reply,
    reply_schema,
)

LEDGER_ATTR = "tuner.llm_ledger"
POINT_ATTR = "llm:point"
SOURCE_ATTR = "llm:source"
TRIAL_LEDGER_ATTR = "llm:ledger"
BASE_URL_ENV = "TUNER_LLM_BASE_URL"
MODEL_ENV = "TUNER_LLM_MODEL"


def new_ledger(model: str) -> dict[str, Any]:
    return {"model": model, "calls": 0, "failed_calls": 0, "timeouts": 0,
            "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0.0,
            "call_seconds": 0.0, "proposed": 0, "accepted": 0, "invalid": 0, "duplicates": 0,
            "llm_trials": 0, "fallback_trials": 0, "rejections": {}, "errors": {},
            "last_error": None, "budget_stop": None}


class LLMSampler(BaseSampler):
    """Configs proposed by a chat model, checked as data, backed by a fallback sampler.

    Args:
        space: the study's ``BaseSpace``.
        directions: "minimize"/"maximize" per objective.
        client: a ``ChatClient`` (endpoint, model, key variable, timeout).
        fallback: the sampler that fills every trial the model does not.
        seed: sent to the endpoint as the request seed.
        batch: configs asked for per call.
        max_tokens: completion tokens per call.
        temperature: sampling temperature per call.
        max_calls, max_total_tokens, max_cost_usd: the budget (None: unlimited).
        price_in_per_mtok, price_out_per_mtok: USD per million prompt/completion tokens.
        objectives: metric names of the objectives (for the prompt).
        constraints: metric constraints as text, e.g. ["peak_memory_gib <= 80"].
        budget_trials: the study's trial budget (for "budget left" in the prompt).
    """

    def __init__(self, space: Any, directions: Sequence[str], client: ChatClient,
                 fallback: BaseSampler, seed: int | None = None, *, batch: int = 4,
                 max_tokens: int = 512, temperature: float = 0.7,
                 max_calls: int | None = None, max_total_tokens: int | None = None,
                 max_cost_usd: float | None = None, price_in_per_mtok: float = 0.0,
                 price_out_per_mtok: float = 0.0, objectives: Sequence[str] | None = None,
                 constraints: Sequence[str] | None = None,
                 budget_trials: int | None = None) -> None:
        self.space = space
        self.directions = list(directions)
        self.client = client
        self.fallback = fallback
        self.seed = seed
        self.batch = batch
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_calls = max_calls
        self.max_total_tokens = max_total_tokens
        self.max_cost_usd = max_cost_usd
        self.price_in = price_in_per_mtok
        self.price_out = price_out_per_mtok
        defaults = [m for m, _ in getattr(space, "default_objectives", ())]
        self.objectives = list(objectives) if objectives else (
            defaults if len(defaults) == len(directions) else
            [f"objective_{i}" for i in range(len(directions))])
        self.constraints = list(constraints or [])
        self.budget_trials = budget_trials
        self.ledger = new_ledger(client.model)
        self._ledger_loaded = False
        self._queue: list[dict[str, Any]] = []
        self._points: dict[int, dict[str, Any]] = {}
        self._rejected: list[str] = []
        self._backoff = 0
        self._consecutive_failures = 0

    # -- Optuna's sampler interface -------------------------------------------------------
    def reseed_rng(self) -> None:
        self.fallback.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        if trial._trial_id in self._points:
            return {}
        return self.fallback.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial._trial_id in self._points:
            return {}
        return self.fallback.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        ok, value = point_value(self._points.get(trial._trial_id), param_name,
                                param_distribution)
        if ok:
            return value
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._load_ledger(study)
        point = None
        if not trial.system_attrs.get("fixed_params"):
            tried = self._tried(study)
            point = self._next(study, tried)
        storage = study._storage
        if point is not None:
            self._points[trial._trial_id] = point
            self.ledger["llm_trials"] += 1
            storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, point)
            storage.set_trial_system_attr(trial._trial_id, SOURCE_ATTR, "llm")
        else:
            self.ledger["fallback_trials"] += 1
            storage.set_trial_system_attr(trial._trial_id, SOURCE_ATTR, "fallback")
            self.fallback.before_trial(study, trial)
        storage.set_trial_system_attr(trial._trial_id, TRIAL_LEDGER_ATTR, self._snapshot())
        try:
            study.set_user_attr(LEDGER_ATTR, self._snapshot())
        except Exception:  # a read-only study view: the trial attrs still hold the ledger
            pass

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        if self._points.pop(trial._trial_id, None) is None:
            self.fallback.after_trial(study, trial, state, values)

    # -- proposals ------------------------------------------------------------------------
    def _tried(self, study: Study) -> set[Hashable]:
        params = set(self.space.params)
        out: set[Hashable] = set()
        for t in study.get_trials(deepcopy=False):
            values = self._points.get(t._trial_id) or {
                k: v for k, v in t.params.items() if k in params}
            if values:
                out.add(values_key(values))
        return out

    def _next(self, study: Study, tried: set[Hashable]) -> dict[str, Any] | None:
        while self._queue:
            values = self._queue.pop(0)
            if values_key(values) not in tried:
                return values
            self.ledger["duplicates"] += 1  # taken meanwhile (another worker, the fallback)
        if self._backoff > 0:
            self._backoff -= 1
            return None
        if not self._may_call():
            return None
        self._call(study, tried)
        return self._queue.pop(0) if self._queue else None

    def _may_call(self) -> bool:
        led = self.ledger
        for name, used, cap in (("max_calls", led["calls"], self.max_calls),
                                ("max_total_tokens", led["total_tokens"],
                                 self.max_total_tokens),
                                ("max_cost_usd", led["cost_usd"], self.max_cost_usd)):
            if cap is not None and used >= cap:
                led["budget_stop"] = f"{name} reached ({used:g} of {cap:g})"
                return False
        return True

    def _context(self, study: Study) -> PromptContext:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                          TrialState.FAIL))
        best, fails, recent = history_context(trials, self.space, self.directions,
                                              self.objectives)
        n = len(trials)
        # the runner's study attributes, when the study is the stored one
        attrs = study.user_attrs
        budget = self.budget_trials or attrs.get("tuner.trials_target")
        objectives = list(zip(self.objectives, self.directions))
        constraints = self.constraints
        stored = attrs.get("tuner.constraints")
        if not constraints and isinstance(stored, list):
            constraints = [f"{c['metric']} {c['op']} {c['value']:g}" for c in stored
                           if isinstance(c, dict) and {"metric", "op", "value"} <= set(c)]
        return PromptContext(
            domain=getattr(self.space, "name", "") or type(self.space).__name__,
            objectives=objectives, constraints=list(constraints), best=best, failures=fails,
            rejected=list(self._rejected), n_trials=n,
            budget_left=max(0, int(budget) - n) if budget else None, batch=self.batch,
            recent=recent)

    def _call(self, study: Study, tried: set[Hashable]) -> None:
        led = self.ledger
        messages = build_messages(self.space, self._context(study))
        led["calls"] += 1
        try:
            reply = self.client.chat(messages, reply_schema(self.space, self.batch),
                                     self.max_tokens, self.temperature,
                                     None if self.seed is None else self.seed + led["calls"])
        except LLMCallError as exc:
            led["failed_calls"] += 1
            led["timeouts"] += exc.kind == "timeout"
            led["errors"][exc.kind] = led["errors"].get(exc.kind, 0) + 1
            led["last_error"] = str(exc)[:300]
            self._consecutive_failures += 1
            self._backoff = min(32, 2 ** (self._consecutive_failures - 1))
            return
        self._consecutive_failures = 0
        led["prompt_tokens"] += reply.prompt_tokens
        led["completion_tokens"] += reply.completion_tokens
        led["total_tokens"] += reply.prompt_tokens + reply.completion_tokens
        led["cost_usd"] = round(led["cost_usd"] + (reply.prompt_tokens * self.price_in
                                                   + reply.completion_tokens
                                                   * self.price_out) / 1e6, 8)
        led["call_seconds"] = round(led["call_seconds"] + reply.seconds, 3)
        parsed = parse_reply(reply.text, self.space, self.batch, tried)
        led["proposed"] += parsed.n_items
        led["accepted"] += len(parsed.valid)
        for kind, _ in parsed.rejected:
            led["rejections"][kind] = led["rejections"].get(kind, 0) + 1
            if kind == "duplicate":
                led["duplicates"] += 1
            else:
                led["invalid"] += 1
        self._rejected = [f"{k}: {d}" for k, d in parsed.rejected]
        self._queue.extend(parsed.valid)

    # -- the ledger -----------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.ledger.items()}

    def _load_ledger(self, study: Study) -> None:
        """A resumed study continues its ledger (so the budget spans runs)."""
        if self._ledger_loaded:
            return
        self._ledger_loaded = True
        last = None
        for t in study.get_trials(deepcopy=False):
            snap = t.system_attrs.get(TRIAL_LEDGER_ATTR)
            if isinstance(snap, dict):
                last = snap
        if last is None:
            try:
                last = study.user_attrs.get(LEDGER_ATTR)
            except Exception:
                last = None
        if isinstance(last, dict):
            for k, v in last.items():
                if k in self.ledger and type(v) is type(self.ledger[k]):
                    self.ledger[k] = v


_OPTIONS = {"base_url", "model", "api_key_env", "timeout_s", "max_tokens", "batch",
            "temperature", "fallback", "fallback_options", "max_calls", "max_total_tokens",
            "max_cost_usd", "price_in_per_mtok", "price_out_per_mtok", "objectives",
            "constraints", "budget_trials", "response_format", "max_reply_bytes"}


def _positive(options: dict[str, Any], key: str, kind: type = int) -> None:
    v = options.get(key)
    if v is None:
        return
    ok = not isinstance(v, bool) and (isinstance(v, int) if kind is int else
                                      isinstance(v, (int, float))) and v > 0
    if not ok:
        raise BadInput(f"sampler.options.{key}", f"{v!r} must be a positive "
                       + ("integer" if kind is int else "number"))


def llm(space: Any, directions: Sequence[str], seed: int | None = None,
        **options: Any) -> LLMSampler:
    """Registry factory. Options: base_url (or $TUNER_LLM_BASE_URL), model (or
    $TUNER_LLM_MODEL), api_key_env (default TUNER_LLM_API_KEY), timeout_s, max_tokens, batch,
    temperature, fallback (sampler name, default tpe), fallback_options, max_calls,
    max_total_tokens, max_cost_usd, price_in_per_mtok, price_out_per_mtok, objectives,
    constraints, budget_trials, response_format (auto|json_schema|json_object|none)."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise BadInput(f"sampler.options.{min(unknown)}", "unknown option for llm; "
                       "allowed: " + ", ".join(sorted(_OPTIONS)))
    if "api_key" in options:  # never accept the key itself in a study file
        raise BadInput("sampler.options.api_key", "give api_key_env (the variable's name)")
    base_url = options.pop("base_url", None) or os.environ.get(BASE_URL_ENV)
    if not base_url:
        raise BadInput("sampler.options.base_url", "the llm sampler needs an OpenAI-compatible "
                       f"endpoint: set base_url or ${BASE_URL_ENV}, e.g. http://127.0.0.1:8080/v1")
    for k in ("max_tokens", "batch", "max_calls", "max_total_tokens", "max_reply_bytes",
              "budget_trials"):
        _positive(options, k, int)
    for k in ("timeout_s", "max_cost_usd"):
        _positive(options, k, float)
    key_env = options.pop("api_key_env", DEFAULT_KEY_ENV)
    if not isinstance(key_env, str) or not key_env.replace("_", "").isalnum():
        raise BadInput("sampler.options.api_key_env", f"{key_env!r} must be an environment "
                       "variable name")
    client = ChatClient(base_url, model=options.pop("model", None) or os.environ.get(
        MODEL_ENV, "default"), api_key_env=key_env,
        timeout_s=options.pop("timeout_s", 60.0),
        max_reply_bytes=options.pop("max_reply_bytes", 1_000_000),
        response_format=options.pop("response_format", "auto"))
    fallback_name = options.pop("fallback", "tpe")
    if fallback_name == "llm":
        raise BadInput("sampler.options.fallback", "must be another sampler than llm")
    from tuner.samplers import make_sampler

    fallback = make_sampler(fallback_name, space, directions, seed,
                            options.pop("fallback_options", None))
    return LLMSampler(space, directions, client, fallback, seed, **options)


__all__ = ["LEDGER_ATTR", "LLMSampler", "llm", "new_ledger"]
