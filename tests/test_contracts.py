"""Every registered space, evaluator and sampler runs through the same conformance suite."""

import pytest

from tuner import BadInput, registry
from tuner.testing import (
    check_evaluator,
    check_input_checks,
    check_sampler,
    check_space,
    evaluator_cases,
)
from tuner.testing.toys import ToySpace


def _spaces():
    for name in registry.SPACES:
        cls = registry.space_class(name)
        assert cls.example_contexts, f"{name}: set example_contexts"
        for i, ctx in enumerate(cls.example_contexts):
            yield pytest.param(name, ctx, id=f"{name}-{i}")


@pytest.mark.parametrize("name, context", list(_spaces()))
def test_space_contract(name, context):
    space = registry.space_class(name)(context)
    assert space.name == name
    assert space.default_objectives
    assert space.default_evaluator in registry.EVALUATORS
    check_space(space)


@pytest.mark.parametrize("name", list(registry.EVALUATORS))
def test_evaluator_contract(name):
    cls = registry.evaluator_class(name)
    assert cls.name == name
    # an evaluator of no particular domain (its metrics depend on its options) shows how it
    # is built in ``example_options`` and is checked on the toy space
    assert (cls.metrics and cls.domains) or cls.example_options, \
        f"{name}: declare metrics and domains, or example_options"
    spaces = [registry.space_class(d)(ctx) for d in cls.domains
              for ctx in registry.space_class(d).example_contexts]
    # an unknown option, or an unknown key in a config of its domain, is refused by name
    check_input_checks(cls, dict(cls.example_options),
                       next(iter(evaluator_cases(spaces[0], n=1))) if spaces else None)
    evaluator = cls(**cls.example_options)
    evaluator.setup()
    try:
        for space in spaces or [ToySpace({"max_sum": 30})]:
            check_evaluator(evaluator, evaluator_cases(space, n=6))
    finally:
        evaluator.teardown()


@pytest.mark.parametrize("name", list(registry.SAMPLERS))
@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]])
def test_sampler_contract(name, directions):
    factory = registry.sampler_factory(name)
    space = ToySpace({"max_sum": 30})
    try:
        factory(space, directions, 0)
    except BadInput as exc:
        if name == "cmaes" and len(directions) > 1 or name == "llm":
            pytest.skip(f"{name}: {exc}")
        raise
    check_sampler(factory, space, directions)
