"""The evaluator module paths before the domain wings still import (one release), with a
warning."""

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
    sys.modules.pop(f"evaluators.{module}", None)
    with pytest.warns(FutureWarning, match=r"removed in 0\.3\.0"):
        mod = importlib.import_module(f"evaluators.{module}")
    cls = registry.evaluator_class(name)
    assert getattr(mod, cls.__name__) is cls
    assert all(hasattr(mod, n) for n in mod.__all__)


def test_old_path_as_a_study_plugin_resolves_to_the_same_evaluator():
    sys.modules.pop("evaluators.kernel_sim", None)
    with pytest.warns(FutureWarning, match="evaluators.kernels"):
        cls = registry.evaluator_class("evaluators.kernel_sim:KernelSimEvaluator")
    assert cls is registry.evaluator_class("kernel-sim")


def test_faces_do_not_warn():
    code = ("import warnings; warnings.simplefilter('error'); import evaluators.training, "
            "evaluators.serving, evaluators.kernels, evaluators.quant, tuner.registry")
    subprocess.run([sys.executable, "-c", code], check=True)
