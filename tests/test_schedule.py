"""Group sizes and the schedule builder."""

import json
from pathlib import Path

import numpy as np
import pytest

from lpd_core.errors import SettingError
from lpd_core import build_schedule, group_sizes_for
from lpd_core.schedule import cosine_group_sizes

TABLES = json.loads((Path(__file__).parent / "fixtures" / "group_sizes_reference.json").read_text())["tables"]
TOKENS = {"256": 256, "512": 1024}


@pytest.mark.parametrize("resolution, steps", [(r, s) for r in TABLES for s in TABLES[r]])
def test_published_tables_reproduced_exactly(resolution, steps):
    assert list(group_sizes_for(TOKENS[resolution], int(steps))) == TABLES[resolution][steps]


def test_cosine_rule_matches_published_20_and_48_step_tables():
    # where the published table needed no correction, the rule alone gives it
    assert list(cosine_group_sizes(256, 20)) == TABLES["256"]["20"]
    assert list(cosine_group_sizes(1024, 48)) == TABLES["512"]["48"]


@pytest.mark.parametrize("num_tokens", [64, 256, 1024, 100])
def test_every_step_count_gives_valid_monotone_sizes(num_tokens):
    for steps in range(1, num_tokens + 1):
        sizes = group_sizes_for(num_tokens, steps)
        assert len(sizes) == steps and sum(sizes) == num_tokens
        assert sizes[0] == (num_tokens if steps == 1 else 1)
        assert all(b >= a for a, b in zip(sizes[1:], sizes[2:])), (steps, sizes)
        assert min(sizes) >= 1


@pytest.mark.parametrize("steps", [0, 257, -3])
def test_steps_out_of_range(steps):
    with pytest.raises(ValueError, match=r"steps must be between 1 and 256"):
        group_sizes_for(256, steps)


def test_raster_random_and_custom_orders():
    raster = build_schedule(4, steps=3, order="raster")
    assert raster.order.tolist() == list(range(16))
    a = build_schedule(4, steps=3, order="random", seed=1)
    b = build_schedule(4, steps=3, order="random", seed=1)
    c = build_schedule(4, steps=3, order="random", seed=2)
    assert np.array_equal(a.order, b.order) and not np.array_equal(a.order, c.order)
    assert sorted(a.order.tolist()) == list(range(16))
    custom = build_schedule(2, group_sizes=[1, 3], order=[3, 1, 0, 2])
    assert custom.kind == "custom" and custom.order.tolist() == [3, 1, 0, 2]
    assert custom.order_map().tolist() == [[1, 1], [1, 0]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(order=[0, 1, 2, 2]), r"permutation of 0..3"),
    (dict(order=[0, 1, 2]), r"permutation of 0..3"),
    (dict(order="spiral"), r"unknown order 'spiral'; choose one of locality, random, raster"),
    (dict(group_sizes=[1, 1, 1]), r"sum to 3, but the grid has 4 tokens"),
    (dict(group_sizes=[0, 4]), r"every group size must be at least 1, got 0"),
])
def test_schedule_errors(kwargs, message):
    kwargs = {"group_sizes": [1, 3], **kwargs}
    with pytest.raises(SettingError, match=message):
        build_schedule(2, **kwargs)


@pytest.mark.parametrize("kind", ["locality", "random", "raster"])
@pytest.mark.parametrize("count", [3, 9])  # one at a time and built together
def test_build_orders_gives_each_seed_its_build_schedule_order(kind, count):
    from lpd_core.schedule import build_orders
    seeds = [11 * i + 2 for i in range(count)]
    sizes = group_sizes_for(64, 6)
    orders = build_orders(8, 8, sizes, kind, seeds, proximity=1.0, repulsion=None)
    assert orders.shape == (count, 64) and orders.dtype == np.int64
    for seed, order in zip(seeds, orders):
        assert np.array_equal(order, build_schedule(8, group_sizes=sizes, order=kind, seed=seed).order)


def test_schedule_carries_its_repulsion_and_proximity():
    default = build_schedule(16, steps=20, order="locality", seed=1)
    assert (default.repulsion, default.proximity) == (2, 1.0)  # the grid's default, filled in once
    given = build_schedule(16, steps=20, order="locality", seed=1, repulsion=3, proximity=1.5)
    assert (given.repulsion, given.proximity) == (3, 1.5)
    assert build_schedule(16, steps=20, order="random", seed=1).repulsion is None
    with pytest.raises(ValueError, match="unknown order 'spiral'"):
        from lpd_core.schedule import build_orders
        build_orders(4, 4, [16], "spiral", [0])
