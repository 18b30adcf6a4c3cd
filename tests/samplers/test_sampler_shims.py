"""The old public module paths of the cost model and the LLM proposer: re-exports that warn."""

from __future__ import annotations

import importlib
import sys

import pytest

from tuner.registry import SAMPLERS, sampler_factory


@pytest.mark.parametrize("old, new", [("tuner.samplers.cost_model", "tuner.samplers._cost_model"),
                                      ("tuner.samplers.llm", "tuner.samplers._llm")])
def test_old_module_path_warns_and_reexports_the_same_objects(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(FutureWarning, match=r"removed in 0\.3\.0.*" + new.replace(".", r"\.")):
        shim = importlib.import_module(old)
    face = importlib.import_module(new)
    assert shim.__all__ == face.__all__
    for name in face.__all__:
        assert getattr(shim, name) is getattr(face, name)


def test_registry_points_at_the_packages_and_plugin_paths_still_resolve():
    assert SAMPLERS["cost-model"] == "tuner.samplers._cost_model:cost_model"
    assert SAMPLERS["llm"] == "tuner.samplers._llm:llm"
    with pytest.warns(FutureWarning):
        sys.modules.pop("tuner.samplers.cost_model", None)
        old = sampler_factory("tuner.samplers.cost_model:cost_model")
    assert old is sampler_factory("cost-model")
