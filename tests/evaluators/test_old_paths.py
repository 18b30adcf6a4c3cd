"""The evaluator module paths before the domain wings still import (one release), with a
warning; plug-in paths stored before the folders installed inside ``tuner`` still resolve."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tuner import registry

OLD = {"training_sim": "training-sim", "serving_sim": "serving-sim", "kernel_sim": "kernel-sim",
       "kernel_gpu": "kernel-gpu", "kernel_replay": "kernel-replay", "quant_real": "quant-real",
       "quant_sim": "quant-sim"}


@pytest.mark.parametrize("module, name", sorted(OLD.items()))
def test_old_plugin_path_warns_and_gives_the_registered_class(module, name):
    sys.modules.pop(f"tuner.evaluators.{module}", None)
    with pytest.warns(FutureWarning, match=r"removed in 0\.3\.0"):
        mod = importlib.import_module(f"tuner.evaluators.{module}")
    cls = registry.evaluator_class(name)
    assert getattr(mod, cls.__name__) is cls
    assert all(hasattr(mod, n) for n in mod.__all__)


def test_old_path_as_a_study_plugin_resolves_to_the_same_evaluator():
    sys.modules.pop("tuner.evaluators.kernel_sim", None)
    with pytest.warns(FutureWarning, match="tuner.evaluators.kernels"):
        cls = registry.evaluator_class("evaluators.kernel_sim:KernelSimEvaluator")
    assert cls is registry.evaluator_class("kernel-sim")


@pytest.mark.parametrize("spec, name", [
    ("evaluators.kernels:KernelSimEvaluator", "kernel-sim"),
    ("tuner.evaluators.serving:ServingSimEvaluator", "serving-sim")])
def test_plugin_paths_with_and_without_the_tuner_prefix_resolve(spec, name):
    assert registry.evaluator_class(spec) is registry.evaluator_class(name)
    assert registry.space_class("search_spaces.kernels:GemmTileSpace") \
        is registry.space_class("kernel-gemm")


def test_no_top_level_package_besides_tuner_is_importable_outside_the_checkout(tmp_path):
    # PyPI's `evaluators` and `dashboard` are other projects: the install must not shadow them
    code = ("import importlib.util as u, sys; sys.path = [p for p in sys.path if p not in "
            "('', '.')]; print([n for n in ('evaluators', 'search_spaces', 'dashboard') "
            "if u.find_spec(n)], u.find_spec('tuner.evaluators') is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout
    assert out.strip() == "[] True", out


def test_faces_do_not_warn():
    code = ("import warnings; warnings.simplefilter('error'); import tuner.evaluators.training, "
            "tuner.evaluators.serving, tuner.evaluators.kernels, tuner.evaluators.quant, "
            "tuner.registry")
    subprocess.run([sys.executable, "-c", code], check=True)
