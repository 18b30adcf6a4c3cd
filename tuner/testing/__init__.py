"""Conformance suites every registered space, evaluator and sampler must pass.

Tests import these and parametrize them over the registries (see tests/test_contracts.py);
a third-party plugin can run the same suites on its own classes.
"""

from tuner.testing._contracts import (
    check_evaluator,
    check_input_checks,
    check_sampler,
    check_space,
    evaluator_cases,
)

__all__ = ["check_evaluator", "check_input_checks", "check_sampler", "check_space",
           "evaluator_cases"]
