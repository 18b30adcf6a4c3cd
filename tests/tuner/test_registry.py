"""A study file is data: a ``module:Name`` plug-in resolves only to a subclass of the matching
base class (or a declared sampler factory); anything else is refused before it is called."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from conftest import toy_study, write_toml

from tuner import BadInput, registry
from tuner.samplers import make_sampler, sampler_plugin
from tuner.testing.toys import ToySpace


@pytest.fixture
def no_system(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    yield calls
    assert not calls, "a study file's name ran os.system"


@pytest.mark.parametrize("lookup, field", [
    (registry.evaluator_class, "evaluator.name"), (registry.space_class, "space.domain"),
    (registry.sampler_factory, "sampler.name")])
@pytest.mark.parametrize("name", ["os:system", "subprocess:Popen", "builtins:eval"])
def test_an_arbitrary_callable_is_refused_not_called(no_system, lookup, field, name):
    with pytest.raises(BadInput) as exc:
        lookup(name)
    assert str(exc.value).startswith(f"{field}: '{name}' is the ")
    assert "not " in str(exc.value) and "subclass" in str(exc.value)


@pytest.mark.parametrize("name", ["os", "os:", ":system", "os:system()", "a b:c"])
def test_malformed_import_paths_are_refused(name):
    with pytest.raises(BadInput):
        registry.evaluator_class(name)


def test_plugins_of_the_right_kind_still_work():
    assert registry.space_class("tuner.testing.toys:ToySpace") is ToySpace
    assert registry.evaluator_class("tuner.testing.toys:ToyEvaluator").name == "toy"
    sampler = make_sampler("optuna.samplers:RandomSampler", ToySpace(), ["maximize"], 3)
    assert isinstance(sampler, optuna.samplers.RandomSampler)
    assert make_sampler("tuner.samplers._optuna:random", ToySpace(), ["maximize"], 3)


@sampler_plugin
def declared_factory(space, directions, seed=None, **options):
    return optuna.samplers.RandomSampler(seed=seed)


def undeclared_factory(space, directions, seed=None, **options):
    return optuna.samplers.RandomSampler(seed=seed)


def test_a_sampler_factory_must_be_declared():
    assert isinstance(make_sampler("test_registry:declared_factory", ToySpace(), ["maximize"]),
                      optuna.samplers.RandomSampler)
    with pytest.raises(BadInput, match="sampler_plugin"):
        make_sampler("test_registry:undeclared_factory", ToySpace(), ["maximize"])


def test_validate_takes_registered_domains_only(no_system, capsys):
    from tuner.cli import main

    assert main(["validate", "os:system"]) == 2
    assert "domain: unknown 'os:system'" in capsys.readouterr().err


def test_a_study_file_naming_os_system_exits_2(tmp_path):
    marker = tmp_path / "pwned"
    spec = toy_study(evaluator={"name": "os:system"})
    study = write_toml(tmp_path / "s.toml", spec)
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", study, "--storage",
                           f"sqlite:///{tmp_path / 'x.db'}"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "MARK": str(marker)})
    assert proc.returncode == 2 and "evaluator.name: 'os:system' is the " in proc.stderr
    assert not (tmp_path / "x.db").exists()
