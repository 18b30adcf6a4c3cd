"""``BaseSpace.contains`` and ``params_key``: membership and identity of a point."""

from __future__ import annotations

from tuner._space import BaseSpace, Categorical, Float, Int, params_key
from tuner.testing.toys import ToySpace


class _Steps(BaseSpace):
    def parameters(self):
        return {"n": Int(2, 10, step=2), "f": Float(0.0, 1.0, step=0.25),
                "c": Float(1.0, 2.0), "k": Categorical(("a", True, 3))}

    def constraints(self, config):
        return ["n and f too large"] if config.get("n", 0) == 10 and config.get("f") == 1 else []


def test_contains_checks_each_parameter_domain():
    s = _Steps()
    assert s.contains({"n": 4, "f": 0.5, "c": 1.5, "k": True})
    assert s.contains({})  # conditional spaces store only the active parameters
    for bad in ({"n": 3}, {"n": 12}, {"n": 4.5}, {"n": True}, {"f": 0.3}, {"c": 2.5},
                {"c": "1.5"}, {"k": "b"}, {"zzz": 1}):
        assert not s.contains(bad), bad
    assert not s.contains({"n": 10, "f": 1.0}), "constraints count"
    assert s.contains({"n": 10, "f": 1.0}, check_constraints=False)
    assert not s.contains(["n"])  # type: ignore[arg-type]


def test_contains_treats_a_failing_constraint_check_as_outside():
    space = ToySpace({"max_sum": 30})
    assert space.contains({"x": 14, "y": 6, "mode": "b"})
    assert not space.contains({"x": 14}), "the toy's constraint needs y: not a usable point"


def test_params_key_is_order_free():
    assert params_key({"a": 1, "b": 2}) == params_key({"b": 2, "a": 1})
    assert params_key({"a": 1}) != params_key({"a": 2})
    assert hash(params_key({"a": 1, "b": "x"}))
