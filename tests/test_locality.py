"""Locality-aware generation order: validity, determinism, semantics, metrics and the locality bar."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lpd_core.errors import SettingError
from lpd_core.locality import default_repulsion, locality_order, order_map, order_metrics

FIXTURES = Path(__file__).parent / "fixtures"
TABLES = json.loads((FIXTURES / "group_sizes_reference.json").read_text())["tables"]
REFERENCE = json.loads((FIXTURES / "order_metrics_reference.json").read_text())["values"]

# Fixture config -> (grid side, group sizes, repulsion, seeds used here).
CONFIGS = {
    "g16_s20_rep2": (16, TABLES["256"]["20"], 2, 100),
    "g16_s32_rep2": (16, TABLES["256"]["32"], 2, 100),
    "g16_s20_rep3": (16, TABLES["256"]["20"], 3, 100),
    "g16_s256_rep1": (16, TABLES["256"]["256"], 1, 5),
    "g32_s48_rep4": (32, TABLES["512"]["48"], 4, 12),
}


def is_permutation(order, n):
    return order.dtype == np.int64 and order.shape == (n,) and np.array_equal(np.sort(order), np.arange(n))


@pytest.mark.parametrize(
    "grid_h, grid_w, group_sizes, repulsion, proximity",
    [
        (16, 16, TABLES["256"]["20"], None, 1.0),
        (16, 16, TABLES["256"]["8"], 2, 1.0),
        (32, 32, TABLES["512"]["48"], None, 1.0),
        (5, 7, [1, 3, 5, 8, 18], 1, 1.0),
        (7, 5, [2, 3, 5, 8, 17], 2, 1.0),
        (3, 11, [1] * 33, 1, 1.0),
        (1, 9, [1] * 9, 1, 1.0),
        (9, 1, [1, 2, 6], 1, 1.0),
        (1, 1, [1], None, 1.0),
        (4, 6, [24], 2, 1.0),
        (6, 6, [4, 8, 24], 0, 1.0),
        (6, 6, [1, 5, 30], 9, 1.0),
        (8, 8, [1, 7, 20, 36], 2, 0.5),
        (8, 8, [1, 7, 20, 36], 2, 50.0),  # nothing is ever near: farthest-point sampling only
    ],
)
def test_orders_are_permutations(grid_h, grid_w, group_sizes, repulsion, proximity):
    for seed in range(5):
        order = locality_order(grid_h, grid_w, group_sizes, seed, proximity=proximity, repulsion=repulsion)
        assert is_permutation(order, grid_h * grid_w), (seed, order)


def test_group_sizes_may_be_a_numpy_array():
    sizes = np.array(TABLES["256"]["20"])
    assert np.array_equal(locality_order(16, 16, sizes, 3), locality_order(16, 16, TABLES["256"]["20"], 3))


def test_same_seed_same_order_and_seeds_differ():
    sizes = TABLES["256"]["20"]
    orders = [locality_order(16, 16, sizes, seed) for seed in range(10)]
    for seed, order in enumerate(orders):
        assert np.array_equal(order, locality_order(16, 16, sizes, seed))
    assert len({order.tobytes() for order in orders}) == len(orders)
    # The first position is uniform: ten seeds should not all start in the same place.
    assert len({int(order[0]) for order in orders}) > 1


def test_default_repulsion_is_the_published_value():
    sizes = TABLES["256"]["20"]
    assert np.array_equal(locality_order(16, 16, sizes, 7), locality_order(16, 16, sizes, 7, repulsion=2))
    assert not np.array_equal(locality_order(16, 16, sizes, 7), locality_order(16, 16, sizes, 7, repulsion=3))


@pytest.mark.parametrize(
    "grid_h, grid_w, expected",
    [(16, 16, 2), (32, 32, 4), (8, 8, 1), (1, 1, 1), (24, 24, 3), (20, 20, 3), (16, 64, 4), (64, 16, 4)],
)
def test_default_repulsion(grid_h, grid_w, expected):
    assert default_repulsion(grid_h, grid_w) == expected


def test_step_zero_is_one_position_when_the_first_group_is_one():
    sizes = TABLES["256"]["20"]
    for seed in range(5):
        steps = order_map(locality_order(16, 16, sizes, seed), sizes, 16, 16)
        assert np.count_nonzero(steps == 0) == 1


def test_a_larger_first_group_is_spread_out():
    # Farthest-point sampling from one random cell: 4 picks on an 8x8 grid end up at least
    # half the best possible spread (7, the corners) apart.
    for seed in range(10):
        first = locality_order(8, 8, [4, 60], seed)[:4]
        rows, cols = np.divmod(first, 8)
        gaps = np.hypot(rows[:, None] - rows, cols[:, None] - cols)[np.triu_indices(4, 1)]
        assert gaps.min() >= 3.5, (seed, first)


def test_single_token_steps_always_touch_the_context():
    sizes = [1] * 30
    for seed in range(5):
        order = locality_order(5, 6, sizes, seed)
        rows, cols = np.divmod(order, 6)
        for k in range(1, 30):
            chebyshev = np.maximum(np.abs(rows[:k] - rows[k]), np.abs(cols[:k] - cols[k]))
            assert chebyshev.min() == 1, (seed, k)


def test_corner_neighbours_weigh_one_over_sqrt2():
    # 3x3, groups [2, 1, 6]: when the first group is two opposite corners, the centre touches both
    # diagonally (score 2 / sqrt(2) = 1.41) and outranks every cell with one edge neighbour (1.0).
    hits = 0
    for seed in range(40):
        order = locality_order(3, 3, [2, 1, 6], seed)
        if set(order[:2].tolist()) in ({0, 8}, {2, 6}):
            assert order[2] == 4, (seed, order)
            hits += 1
    assert hits >= 5


def test_thresholds_change_the_order():
    sizes = TABLES["256"]["20"]
    default = locality_order(16, 16, sizes, 5)
    assert not np.array_equal(default, locality_order(16, 16, sizes, 5, proximity=0.5))
    assert not np.array_equal(default, locality_order(16, 16, sizes, 5, proximity=2.0))


def test_repulsion_keeps_near_picks_of_one_step_apart():
    # A 1x7 row, groups [1, 2, 4]: after the first cell p, its two neighbours are the near candidates
    # (score 1). Repulsion 1 takes both (they are 2 apart); repulsion 2 passes one over, and the
    # farthest-point fill then takes the cell farthest from the neighbour that was taken.
    for seed in range(20):
        order = locality_order(1, 7, [1, 2, 4], seed, repulsion=1)
        p = int(order[0])
        if 0 < p < 6:
            assert set(order[1:3].tolist()) == {p - 1, p + 1}, (seed, order)
        order = locality_order(1, 7, [1, 2, 4], seed, repulsion=2)
        p, group = int(order[0]), order[1:3].tolist()
        taken_near = [q for q in group if abs(q - p) == 1]
        assert len(taken_near) == 1, (seed, order)
        other = next(q for q in group if q != taken_near[0])
        remaining = set(range(7)) - {p, taken_near[0]}
        assert abs(other - taken_near[0]) == max(abs(q - taken_near[0]) for q in remaining), (seed, order)


def test_decoded_positions_are_context_and_left_out():
    # Left half of an 8x8 grid known: the order covers the right half, and the first group
    # (2 near picks, more than 2 apart) lies in the column next to the known half.
    known = np.zeros((8, 8), dtype=bool)
    known[:, :4] = True
    for seed in range(10):
        order = locality_order(8, 8, [2, 6, 24], seed, repulsion=2, decoded=known)
        assert np.array_equal(np.sort(order), np.flatnonzero(~known.ravel())), (seed, order)
        rows, cols = np.divmod(order[:2], 8)
        assert (cols == 4).all() and abs(rows[0] - rows[1]) > 2, (seed, order)
    assert np.array_equal(locality_order(8, 8, [2, 6, 24], 3, decoded=known),
                          locality_order(8, 8, [2, 6, 24], 3, decoded=known.ravel()))


def test_order_map_matches_order_and_group_sizes():
    sizes = [1, 2, 4, 8, 20]
    order = locality_order(5, 7, sizes, 11)
    steps = order_map(order, sizes, 5, 7)
    assert steps.shape == (5, 7)
    assert np.array_equal(np.bincount(steps.ravel()), sizes)
    assert np.array_equal(steps.ravel()[order], np.repeat(np.arange(len(sizes)), sizes))
    assert np.array_equal(order_map(np.arange(6), [1, 2, 3], 2, 3), [[0, 1, 1], [2, 2, 2]])


def test_metrics_of_raster_order_by_hand():
    # 0 1 2     groups {0}, {1, 2}, {3, 4, 5}
    # 3 4 5
    metrics = order_metrics(np.arange(6), [1, 2, 3], 2, 3)
    expected = {
        "valid": 1.0,
        "adjacency": (1 / 2 + 3 / 3) / 2,  # cell 2 does not touch cell 0
        "adjacency_pos": 4 / 5,
        "nn_dist_cheb": (1 + 2 + 1 + 1 + 1) / 5,
        "sep_min_cheb": 1.0,
        "sep_touch_frac": 1.0,
        "ctx_nbrs8": (0 + 1 + 0 + 2 + 3 + 2) / 6,
        "low_prox_frac": 1 / 5,  # cell 2 (score 0); cells 3 and 5 score 1 + 1/sqrt(2)
    }
    assert metrics == pytest.approx(expected)


def test_metrics_of_centre_first_order_by_hand():
    # 0 1 2     groups {4}, {0, 8}, {1, 2, 3, 5, 6, 7}
    # 3 4 5
    # 6 7 8
    metrics = order_metrics([4, 0, 8, 1, 2, 3, 5, 6, 7], [1, 2, 6], 3, 3)
    expected = {
        "valid": 1.0,
        "adjacency": 1.0,
        "adjacency_pos": 1.0,
        "nn_dist_cheb": 1.0,
        "sep_min_cheb": (2 + 1) / 2,
        "sep_touch_frac": 1 / 2,
        "ctx_nbrs8": (0 + 1 + 1 + 2 + 1 + 2 + 2 + 1 + 2) / 9,
        "low_prox_frac": 4 / 8,  # cells 0 and 8, then 2 and 6: one corner neighbour each
    }
    assert metrics == pytest.approx(expected)


def test_metrics_of_an_invalid_order():
    metrics = order_metrics([0, 0, 1, 2], [1, 3], 2, 2)
    assert metrics["valid"] == 0.0
    assert all(math.isnan(value) for name, value in metrics.items() if name != "valid")


def test_separation_metrics_are_nan_without_groups_of_two():
    metrics = order_metrics(np.arange(4), [1, 1, 1, 1], 2, 2)
    assert math.isnan(metrics["sep_min_cheb"]) and math.isnan(metrics["sep_touch_frac"])
    assert metrics["adjacency"] == 1.0


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_raster_metrics_match_the_reference(config):
    side, sizes, _, _ = CONFIGS[config]
    metrics = order_metrics(np.arange(side * side), sizes, side, side)
    for name, reference in REFERENCE[config]["raster"].items():
        assert metrics[name] == pytest.approx(reference["mean"], abs=1e-3), name


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_locality_at_least_as_good_as_the_reference(config):
    side, sizes, repulsion, num_seeds = CONFIGS[config]
    runs = [order_metrics(locality_order(side, side, sizes, seed, repulsion=repulsion), sizes, side, side)
            for seed in range(num_seeds)]
    mean = {name: float(np.mean([run[name] for run in runs])) for name in runs[0]}
    reference = {name: value["mean"] for name, value in REFERENCE[config]["lpd"].items()}
    assert mean["valid"] == 1.0
    assert mean["adjacency"] >= reference["adjacency"] - 0.01
    assert mean["nn_dist_cheb"] <= reference["nn_dist_cheb"] + 0.02
    if "sep_touch_frac" in reference:
        assert mean["sep_touch_frac"] <= reference["sep_touch_frac"] + 0.02


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(grid_h=0), r"grid height must be at least 1, got 0"),
        (dict(grid_w=2.5), r"grid width must be a whole number, got 2\.5"),
        (dict(group_sizes=[1, 2]), r"group sizes sum to 3, but the grid has 16 tokens to decode"),
        (dict(group_sizes=[1, 0, 15]), r"every group size must be at least 1, got 0"),
        (dict(group_sizes=[1.5, 14.5]), r"every group size must be a whole number, got 1\.5"),
        (dict(group_sizes=[]), r"group sizes are empty"),
        (dict(proximity=0), r"proximity must be a finite number more than 0"),
        (dict(proximity=float("nan")), r"proximity must be a finite number more than 0, got nan"),
        (dict(repulsion=-1), r"repulsion must be at least 0, got -1"),
        (dict(repulsion=1.5), r"repulsion must be a whole number, got 1\.5"),
        (dict(seed=-3), r"seed must be between 0 and 18446744073709551615, got -3"),
        (dict(decoded=np.ones(15, dtype=bool)), r"decoded must be a boolean mask of shape \(16,\) or \(4, 4\)"),
        (dict(decoded=np.zeros((4, 4), dtype=int)), r"decoded must be a boolean mask .*got dtype int"),
        (dict(decoded=np.ones((4, 4), dtype=bool)), r"decoded marks every position: nothing is left to order"),
        (dict(decoded=np.eye(4, dtype=bool)), r"group sizes sum to 16, but the part of the grid not decoded yet "
                                               r"\(4 of its 16 positions are\) has 12 tokens"),
    ],
)
def test_locality_order_errors(kwargs, message):
    args = dict(grid_h=4, grid_w=4, group_sizes=[1, 3, 12], seed=0) | kwargs
    with pytest.raises(SettingError, match=message):
        locality_order(**args)


def test_order_map_rejects_a_non_permutation():
    with pytest.raises(SettingError, match=r"an order must be a permutation of 0\.\.3 \(each grid position exactly once\)"):
        order_map([0, 1, 1, 3], [1, 3], 2, 2)
    with pytest.raises(SettingError, match=r"group sizes sum to 3, but the grid has 4 tokens"):
        order_map([0, 1, 2, 3], [1, 2], 2, 2)


@pytest.mark.parametrize(
    "grid_h, grid_w, group_sizes, repulsion, proximity",
    [
        (16, 16, TABLES["256"]["20"], None, 1.0),
        (16, 16, TABLES["256"]["32"], 3, 1.0),
        (32, 32, TABLES["512"]["48"], None, 1.0),
        (5, 7, [1, 3, 5, 8, 18], 1, 1.0),
        (3, 11, [1] * 33, 1, 1.0),
        (1, 1, [1], None, 1.0),
        (4, 6, [24], 2, 1.0),
        (6, 6, [4, 8, 24], 0, 1.0),
        (6, 6, [1, 5, 30], 9, 1.0),
        (8, 8, [1, 7, 20, 36], 2, 0.5),
        (8, 8, [1, 7, 20, 36], 2, 50.0),  # farthest-point sampling only
    ],
)
def test_orders_built_together_equal_orders_built_one_at_a_time(grid_h, grid_w, group_sizes, repulsion, proximity):
    from lpd_core.locality import locality_orders
    seeds = [0, 1, 2, 3, 5, 8, 13, 2**63 + 7] if grid_h * grid_w <= 256 else [0, 9]
    together = locality_orders(grid_h, grid_w, group_sizes, seeds, proximity=proximity, repulsion=repulsion)
    assert together.shape == (len(seeds), grid_h * grid_w) and together.dtype == np.int64
    for seed, order in zip(seeds, together):
        assert np.array_equal(order, locality_order(grid_h, grid_w, group_sizes, seed, proximity=proximity,
                                                    repulsion=repulsion)), seed
