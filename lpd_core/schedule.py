"""What each decode step generates: group sizes per step and the generation order.

A `Schedule` is one order (a permutation of the grid's raster positions) plus group sizes; the
decode loop takes group k from the order's next `group_sizes[k]` entries. `build_orders` makes the
orders of many seeds at once (one per image of a batch), the same ones `build_schedule` makes one
seed at a time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from .errors import SettingError
from .locality import (DEFAULT_PROXIMITY, check_positions, default_repulsion, locality_order, locality_orders,
                       order_map)
from .memory import check_fits
from .settings import check_group_sizes, check_integer, check_order, check_proximity, check_seed

# From this many seeds on, locality orders are built together (below it, one at a time is faster).
BATCHED_FROM = 8
# Working memory of building orders, in bytes per token: each order's int64 positions, and for
# locality orders the proximity field, ranking and distance tables (several float64/int64 arrays
# per token, per seed when built together). An upper bound, to refuse grids that cannot fit.
ORDER_BYTES_PER_TOKEN = 128
# Token count -> the table key of the published step tables (keyed by image resolution).
TABLE_RESOLUTION = {256: "256", 1024: "512"}


@lru_cache(maxsize=1)
def published_tables() -> dict[int, dict[int, tuple[int, ...]]]:
    """Published group-size tables, keyed by token count, then step count."""
    raw = json.loads(resources.files("lpd_core").joinpath("data/group_sizes.json").read_text())
    return {
        num_tokens: {int(steps): tuple(sizes) for steps, sizes in raw["tables"][key].items()}
        for num_tokens, key in TABLE_RESOLUTION.items()
    }


def cosine_group_sizes(num_tokens: int, steps: int) -> tuple[int, ...]:
    """Round a cosine curve per step, then correct the sum on the last steps.

    Step 0 decodes one token; step t (1-based) decodes about N·(cos(π(t−1)/2T) − cos(πt/2T)).
    Rounding leaves the sum a little off N: the surplus (or deficit) is taken from (or given to)
    the latest steps where that keeps the sizes non-decreasing.
    """
    sizes = [max(1, round(num_tokens * (math.cos(math.pi * (t - 1) / (2 * steps))
                                        - math.cos(math.pi * t / (2 * steps)))))
             for t in range(1, steps + 1)]
    sizes[0] = 1
    surplus = sum(sizes) - num_tokens
    while surplus > 0:
        # the last step that is larger than its predecessor can shrink by one and stay monotone
        i = max(i for i in range(1, steps) if sizes[i] > sizes[i - 1])
        sizes[i] -= 1
        surplus -= 1
    while surplus < 0:
        # the last step that is smaller than its successor (or the last step) can grow by one
        i = max(i for i in range(steps) if i == steps - 1 or sizes[i] < sizes[i + 1])
        sizes[i] += 1
        surplus += 1
    return tuple(sizes)


def group_sizes_for(num_tokens: int, steps: int) -> tuple[int, ...]:
    """Tokens per step: the published table when there is one, else the cosine rule."""
    num_tokens = check_integer("number of tokens", num_tokens, 1)
    steps = check_integer("steps", steps, 1, num_tokens)
    if steps == 1:
        return (num_tokens,)
    table = published_tables().get(num_tokens, {})
    return table[steps] if steps in table else cosine_group_sizes(num_tokens, steps)


def random_order(num_tokens: int, seed: int) -> np.ndarray:
    return np.random.Generator(np.random.PCG64(seed)).permutation(num_tokens)


@dataclass(frozen=True)
class Schedule:
    grid_h: int
    grid_w: int
    group_sizes: tuple[int, ...]
    order: np.ndarray  # (N,) raster positions in decode order
    kind: str = "custom"
    seed: int | None = None
    repulsion: int | None = None  # locality orders: the repulsion they were built with (default filled in)
    proximity: float | None = None  # locality orders: the proximity threshold they were built with

    @property
    def num_tokens(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def steps(self) -> int:
        return len(self.group_sizes)

    def order_map(self) -> np.ndarray:
        """(H, W) array: the step at which each position is decoded."""
        return order_map(self.order, self.group_sizes, self.grid_h, self.grid_w)

    def __repr__(self) -> str:
        return (f"Schedule({self.kind}, grid {self.grid_h}x{self.grid_w}, {self.steps} steps, "
                f"seed {self.seed}, group sizes {list(self.group_sizes)})")


def _locality_settings(grid_h: int, grid_w: int, proximity: float, repulsion: int | None) -> tuple[float, int]:
    """The one place the repulsion default is filled in: the grid's (`default_repulsion`)."""
    return proximity, default_repulsion(grid_h, grid_w) if repulsion is None else repulsion


def _group_sizes(num_tokens: int, steps, group_sizes) -> tuple[int, ...]:
    if group_sizes is None:
        if steps is None:
            raise SettingError("a schedule needs its steps or its group sizes: give either")
        return group_sizes_for(num_tokens, steps)
    sizes = check_group_sizes(group_sizes, num_tokens)
    if steps is not None and check_integer("steps", steps, 1) != len(sizes):
        raise SettingError(f"steps={steps} but {len(sizes)} group sizes were given; give one of them, or both "
                           f"agreeing")
    return sizes


def build_schedule(grid_h: int, grid_w: int | None = None, steps: int | None = None,
                   order="locality", seed: int = 0, group_sizes=None, proximity: float = DEFAULT_PROXIMITY,
                   repulsion: int | None = None) -> Schedule:
    """Group sizes (from `steps`, or given) and an order: "locality", "random", "raster", or a
    sequence of raster positions (checked to be a permutation). A locality schedule records the
    repulsion (None: the grid's default) and proximity it was built with. Every argument is checked
    (SettingError) before the order is built."""
    grid_h = check_integer("grid height", grid_h, 1)
    grid_w = grid_h if grid_w is None else check_integer("grid width", grid_w, 1)
    num_tokens = grid_h * grid_w
    sizes = _group_sizes(num_tokens, steps, group_sizes)
    seed, proximity = check_seed(seed), check_proximity(proximity)
    repulsion = None if repulsion is None else check_integer("repulsion", repulsion, 0)
    if isinstance(order, str):
        kind = check_order(order)
        positions = build_orders(grid_h, grid_w, sizes, kind, [seed], proximity, repulsion)[0]
    else:
        positions, kind = check_positions(order, num_tokens), "custom"
        if positions.ndim != 1:
            raise SettingError(f"a schedule has one order, of shape ({num_tokens},); got shape {positions.shape}")
    proximity, repulsion = _locality_settings(grid_h, grid_w, proximity, repulsion) if kind == "locality" \
        else (None, None)
    return Schedule(grid_h, grid_w, sizes, positions, kind, seed if kind in ("locality", "random") else None,
                    repulsion, proximity)


def build_orders(grid_h: int, grid_w: int, group_sizes, kind: str, seeds, proximity: float = DEFAULT_PROXIMITY,
                 repulsion: int | None = None) -> np.ndarray:
    """(len(seeds), H * W) int64: one order of `kind` ("locality", "random", "raster") per seed,
    row i equal to `build_schedule(grid_h, grid_w, group_sizes=group_sizes, order=kind,
    seed=seeds[i], ...).order`. From `BATCHED_FROM` seeds on, locality orders are built for all
    seeds together (`locality.locality_orders`, the same orders as `locality.locality_order` one
    at a time, which tests/test_locality.py checks), which keeps one order per image cheap at
    large batches."""
    num_tokens = grid_h * grid_w
    sizes = check_group_sizes(group_sizes, num_tokens)
    seeds = [check_seed(seed) for seed in seeds]
    kind = check_order(kind)
    check_fits(f"building {len(seeds)} order(s) of {grid_h}×{grid_w} tokens",
               len(seeds) * num_tokens * ORDER_BYTES_PER_TOKEN, "cpu", "use a smaller grid or fewer seeds")
    if kind == "locality":
        proximity, repulsion = _locality_settings(grid_h, grid_w, proximity, repulsion)
        if len(seeds) >= BATCHED_FROM:
            return locality_orders(grid_h, grid_w, sizes, seeds, proximity=proximity, repulsion=repulsion)
        return np.stack([locality_order(grid_h, grid_w, sizes, seed, proximity=proximity, repulsion=repulsion)
                         for seed in seeds]) if seeds else np.empty((0, num_tokens), dtype=np.int64)
    if kind == "random":
        return np.stack([random_order(num_tokens, seed) for seed in seeds]).astype(np.int64) if seeds \
            else np.empty((0, num_tokens), dtype=np.int64)
    return np.tile(np.arange(num_tokens, dtype=np.int64), (len(seeds), 1))  # raster
