"""The trust region: a Hamming ball around the incumbent whose radius follows success."""

from tuner.samplers._cost_model._trust import TrustRegion, hamming


def test_hamming_counts_differing_and_one_sided_parameters():
    assert hamming({"a": 1, "b": 2}, {"a": 1, "b": 3}) == 1
    assert hamming({"a": 1, "b": 2}, {"a": 1}) == 1  # b inactive in one of them
    assert hamming({"a": 1}, {"a": 1}) == 0


def test_radius_grows_on_success_shrinks_on_failure_and_restarts():
    tr = TrustRegion(n_params=6, succ_tol=2, fail_tol=3)
    assert tr.radius == tr.initial == 3
    tr.observe(True, 1)
    tr.observe(True, 1)
    assert tr.radius == 4
    for _ in range(3):
        tr.observe(False, 1)
    assert tr.radius == 3
    tr.observe(False, 9)  # nine failures at once count as nine
    assert tr.radius == 2
    for _ in range(6):
        tr.observe(False, 1)
    assert tr.radius == tr.initial  # shrank below one: start over
    tr.observe(False, 0)  # nothing new: nothing counted
    assert tr.history[-1] == tr.initial


def test_mask_keeps_the_ball_without_the_incumbent():
    tr = TrustRegion(n_params=4)
    tr.radius = 1
    inc = {"a": 1, "b": 1, "c": 1}
    cands = [inc, {"a": 2, "b": 1, "c": 1}, {"a": 2, "b": 2, "c": 1}, {"a": 1, "b": 1}]
    assert tr.mask(cands, inc).tolist() == [False, True, False, True]
