import pytest
from conftest import toy_study

from tuner import BadInput
from tuner.spec import load_spec, parse_spec


def test_valid_spec_round_trip():
    spec = parse_spec(toy_study())
    assert spec.directions == ["maximize", "minimize"]
    assert spec.budget.trials == 30


def test_constraint_strings_are_parsed():
    spec = parse_spec(toy_study(constraints=["cost <= 12", "score > 1"]))
    assert [str(c) for c in spec.constraints] == ["cost <= 12", "score > 1"]
    c = spec.constraints[0]
    assert c.violation({"cost": 15}) == 3 and c.violation({"cost": 10}) < 0
    assert spec.constraints[1].violation({"score": 1}) > 0  # strict inequality


@pytest.mark.parametrize("patch, field, words", [
    ({"budget": {"trials": -5}}, "budget.trials", "greater than 0"),
    ({"budget": {"trials": "many"}}, "budget.trials", "'many'"),
    ({"budget": {"wall_time_s": 0}}, "budget.wall_time_s", "greater than 0"),
    ({"workers": 0}, "workers", "greater than or equal to 1"),
    ({"objectives": [{"metric": "score", "direction": "up"}]}, "objectives.0.direction",
     "'maximize' or 'minimize'"),
    ({"sampler": {"name": "annealing"}}, "sampler.name", "valid: cmaes"),
    ({"evaluator": {"name": "nope"}}, "evaluator.name", "valid:"),
    ({"space": {"domain": "chemistry"}}, "space.domain", "valid: deployment, kernel-attention"),
    ({"colour": "blue"}, "colour", "allowed: name, description"),
    ({"budget": {"trials": 3, "n": 1}}, "budget.n", "allowed: trials"),
    ({"name": "bad name!"}, "name", "letters, digits"),
    ({"constraints": ["cost <== 3"]}, "constraints", "metric OP number"),
])
def test_bad_specs_name_the_field(patch, field, words):
    data = toy_study()
    data.update(patch)
    with pytest.raises(BadInput) as exc:
        parse_spec(data)
    msg = str(exc.value)
    assert msg.startswith(field + ":"), msg
    assert words in msg, msg
    assert "\n" not in msg


def test_missing_required_key():
    data = toy_study()
    del data["space"]
    with pytest.raises(BadInput, match=r"^space: required key is missing"):
        parse_spec(data)


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[space\n")
    with pytest.raises(BadInput, match="malformed TOML"):
        load_spec(bad)
    with pytest.raises(BadInput, match="file not found"):
        load_spec(tmp_path / "nope.toml")
