"""Building a study once: space, evaluator, fingerprint, sampler choice, study attributes."""

from __future__ import annotations

import pytest
from conftest import toy_study

from tuner import BadInput, _setup
from tuner.runner import Runner
from tuner.spec import parse_spec
from tuner.storage import open_rdb


def test_setup_settles_names_and_fingerprint_once():
    spec = parse_spec(toy_study(sampler={"name": "tpe", "options": {"n_startup_trials": 3}}))
    setup = _setup.StudySetup.build(spec)
    assert setup.evaluator_name == "tuner.testing.toys:ToyEvaluator"
    assert setup.sampler_name == "tpe" and setup.sampler_options == {"n_startup_trials": 3}
    assert setup.fingerprint == setup.evaluator_cls().fingerprint()
    other = _setup.StudySetup.build(spec, sampler="random")
    assert other.sampler_name == "random" and other.sampler_options == {}, \
        "the file's options belong to the file's sampler"
    attrs = setup.study_attrs(12)
    assert attrs["tuner.trials_target"] == 12 and attrs["tuner.sampler"] == "tpe"
    assert [o["metric"] for o in attrs["tuner.objectives"]] == ["score", "cost"]


def test_setup_fills_default_objectives_and_checks_compatibility(tmp_path):
    spec = parse_spec({k: v for k, v in toy_study().items() if k != "objectives"})
    setup = _setup.StudySetup.build(spec)
    assert spec.directions == ["maximize"], "the space's default objective"
    rdb = open_rdb(f"sqlite:///{tmp_path / 's.db'}")
    sid = rdb.create_new_study([__import__("optuna").study.StudyDirection.MINIMIZE], "toy")
    with pytest.raises(BadInput, match="objectives"):
        setup.check_compatible(rdb, sid)


class _Done:
    def exhausted(self, study) -> bool:
        return True


def test_the_exhausted_protocol():
    assert isinstance(_Done(), _setup.Exhaustible) and _setup.exhausted(_Done(), None)
    assert not _setup.exhausted(object(), None)


def test_runner_warm_start_points_come_first():
    points = [{"x": 14, "y": 6, "mode": "b"}, {"x": 3, "y": 3, "mode": "a"}]
    summary = Runner(parse_spec(toy_study(trials=5)), progress=False, warm_start=points).run()
    first = sorted(summary.results.trials, key=lambda t: t.number)[:2]
    assert [t.params for t in first] == points
