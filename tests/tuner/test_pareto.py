import itertools
import random

import pytest

from tuner._pareto import hypervolume, pareto_mask, reference_point


def _brute_front(values, directions):
    sign = [1 if d == "minimize" else -1 for d in directions]
    pts = [[s * v for s, v in zip(sign, p)] for p in values]
    return [not any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
                    for q in pts) for p in pts]


@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_matches_brute_force(seed):
    rng = random.Random(seed)
    values = [[rng.randint(0, 9), rng.randint(0, 9), rng.random()] for _ in range(40)]
    dirs = ["maximize", "minimize", "minimize"]
    assert pareto_mask(values, dirs) == _brute_front(values, dirs)


def test_hypervolume_2d_by_hand():
    # maximize x, minimize y; reference (0, 6): boxes 4x5 from (4,1) covers everything else
    assert hypervolume([[1, 5], [2, 3], [4, 1]], ["maximize", "minimize"], [0, 6]) == 20.0
    # staircase: (1,1) and (2,2) minimize both, ref (3,3): 2*2 + 1*1 - overlap = 4
    assert hypervolume([[1, 2], [2, 1]], ["minimize", "minimize"], [3, 3]) == 3.0


def test_hypervolume_3d_matches_grid_count():
    pts = [[1, 3, 2], [2, 1, 3], [3, 2, 1]]
    ref = [4, 4, 4]
    # count unit cells dominated by at least one point
    cells = sum(1 for c in itertools.product(range(4), repeat=3)
                if any(all(p[i] <= c[i] for i in range(3)) for p in pts))
    assert hypervolume(pts, ["minimize"] * 3, ref) == pytest.approx(cells)


def test_points_beyond_reference_do_not_count():
    assert hypervolume([[5, 5]], ["minimize", "minimize"], [3, 3]) == 0.0


def test_reference_point_is_worse_than_all_points():
    vals = [[1, 5], [3, 2]]
    ref = reference_point(vals, ["maximize", "minimize"])
    assert ref[0] < 1 and ref[1] > 5
