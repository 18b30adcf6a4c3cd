"""The examples in docstrings run and print what they say (every module that has one)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for pkg in ("tuner", "search_spaces", "evaluators")
    for p in (ROOT / pkg).rglob("*.py") if ">>> " in p.read_text())


def test_some_modules_have_examples():
    assert MODULES, "no docstring examples found: the doctest run checks nothing"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name}: '>>> ' in the source but no example was collected"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
