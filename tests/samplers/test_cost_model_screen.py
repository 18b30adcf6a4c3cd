"""``[sampler] screen``: the cost model starts from an analytical sibling's full ranking."""

from __future__ import annotations

import pytest

from tuner import BadInput, UnknownName
from tuner._setup import StudySetup
from tuner.runner import Runner
from tuner.spec import parse_spec
from tuner.storage import load_study

REPLAY = {
    "name": "screened", "seed": 0,
    "space": {"domain": "kernel-gemm",
              "context": {"m": 64, "n": 64, "k": 64, "dtype": "fp16", "gpu": "h100_sxm"},
              "params": {"num_warps": {"fixed": 4}, "num_stages": {"fixed": 2},
                         "group_m": {"choices": [1, 4]}, "split_k": {"choices": [1, 2]}}},
    "evaluator": {"name": "kernel-replay", "options": {"table": "cpu_interpreter"}},
    "objectives": [{"metric": "time_us", "direction": "minimize"}],
    "sampler": {"screen": "kernel-sim"},
    "budget": {"trials": 12},
}


def _spec(**sampler):
    d = {**REPLAY, "sampler": {**REPLAY["sampler"], **sampler}}
    return parse_spec(d)


def test_the_first_trials_follow_the_siblings_ranking():
    from tuner.evaluators.kernels import KernelSimEvaluator

    setup = StudySetup.build(_spec())
    assert setup.sampler_name == "cost-model"
    assert setup.sampler_options["screen"]["metrics"] == ["time_us"]
    Runner(setup.spec, progress=False, setup=setup).run()
    trials = sorted(load_study("screened").get_trials(), key=lambda t: t.number)
    sources = [t.system_attrs.get("cost_model:source") for t in trials]
    assert sources[:8] == ["prior"] * 8 and "model" in sources[8:]
    # the first trial is kernel-sim's best config of the whole space
    space, sim = setup.space, KernelSimEvaluator()
    ranked = sorted(((sim.evaluate(c).metrics["time_us"], space.param_values(c))
                     for c in space.enumerate() if sim.evaluate(c).status.value == "ok"),
                    key=lambda x: x[0])  # ties in enumeration order, as the ranking keeps them
    assert trials[0].params == ranked[0][1]
    firsts = [t.params for t in trials[:8]]
    assert firsts == [v for _, v in ranked[:8]]


def test_a_screen_takes_an_analytical_evaluator_and_the_cost_model():
    with pytest.raises(BadInput, match="sampler.screen.evaluator.*not analytical"):
        StudySetup.build(_spec(screen="kernel-replay")).make_sampler(0)
    with pytest.raises(UnknownName, match="sampler.screen.evaluator"):
        StudySetup.build(_spec(screen="kernel-simm")).make_sampler(0)
    with pytest.raises(BadInput, match="sampler.screen: only the cost-model"):
        StudySetup.build(_spec(name="tpe"))
    with pytest.raises(BadInput, match="sampler.screen.bogus"):
        _spec(screen={"evaluator": "kernel-sim", "bogus": 1})
    # the command line may pick another sampler: the screen then does not apply
    assert StudySetup.build(_spec(), "random").sampler_options == {}


def test_screen_context_overrides_reach_the_sibling_only():
    setup = StudySetup.build(_spec(screen={"evaluator": "kernel-sim",
                                           "context": {"gpu": "a100_sxm_80gb"}}))
    sampler = setup.make_sampler(0)
    prior = sampler._prior_source(setup.space, [])
    assert len(prior.values) == sum(1 for _ in setup.space.enumerate())
    assert prior.label.startswith("screen kernel-sim")
    from tuner.evaluators.kernels import KernelSimEvaluator

    cfg = {**setup.space.config(prior.values[0]), "gpu": "a100_sxm_80gb"}
    assert prior.y[0, 0] == KernelSimEvaluator().evaluate(cfg).metrics["time_us"]
