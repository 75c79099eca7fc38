"""Locality-aware generation order (LPD, arXiv 2507.01957) and metrics that score any order.

An order is a permutation of the raster indices ``r * W + c`` of an H x W token grid; the group
sizes ``g0..gT-1`` cut it into the groups decoded together, one group per step.

How a step picks its group
--------------------------
1. Every undecoded position gets a *proximity* score: the sum of ``1 / d`` over the decoded
   positions in its 8-neighbourhood (``d`` = 1 for edge neighbours, sqrt(2) for corners).
2. Positions scoring at least the proximity threshold are *near* candidates. They are taken
   best-first (equal scores in a seeded random order); a candidate within Chebyshev distance
   <= repulsion of a position already chosen in this step is passed over, so that tokens predicted
   together (which cannot see each other's values) do not sit side by side.
3. If the group is still short, farthest-point sampling fills it from the rest: first the
   low-proximity positions (best score first), then the near ones that were passed over.

Step 0 has nothing decoded, so rule 3 alone applies: one uniformly random position, then (only
when g0 > 1) farthest-point picks around it. For editing, positions can be marked decoded
before step 0; the order then grows from them and covers only the others.

Farthest-point sampling variant
-------------------------------
A fill pick maximises the minimum Euclidean distance to the positions chosen *in this step*
(a random pool member when none is chosen yet), ties going to the earlier pool member, as the
published scheduler does. The other reading, "farthest from everything decoded or chosen so
far", was measured too and dropped: once decoded positions are spread over the grid, the
distance to them dominates the minimum, in-step spacing stops counting, and fill picks of one
step land side by side in the same hole. Means over 200 seeds (16x16) and 30 (32x32), with the
published scheduler's means in brackets:

    variant            config          adjacency        nn_dist_cheb     sep_touch_frac
    this step only     g16_s20_rep2    0.9083 (0.9076)  1.2133 (1.2155)  0.1150 (0.1158)
    decoded + chosen   g16_s20_rep2    0.9035 (0.9076)  1.2246 (1.2155)  0.2626 (0.1158)
    this step only     g16_s32_rep2    0.9646 (0.9646)  1.1255 (1.1266)  0.0693 (0.0702)
    decoded + chosen   g16_s32_rep2    0.9622 (0.9646)  1.1299 (1.1266)  0.1497 (0.0702)
    this step only     g32_s48_rep4    0.9364 (0.9366)  1.1784 (1.1797)  0.0426 (0.0421)
    decoded + chosen   g32_s48_rep4    0.9190 (0.9366)  1.2129 (1.1797)  0.2270 (0.0421)

"Decoded + chosen" misses the sep_touch_frac bar (+0.02) everywhere and, on 32x32, the
adjacency (-0.01) and nn_dist_cheb (+0.02) bars as well.

Randomness comes only from ``numpy.random.Generator(PCG64(seed))``, so an order depends on the
seed alone, on every platform.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import SettingError
from .settings import check_group_sizes, check_integer, check_proximity, check_seed

DEFAULT_PROXIMITY = 1.0
# Proximity weight of a corner neighbour: 1 / Euclidean distance sqrt(2).
_CORNER_WEIGHT = 1.0 / math.sqrt(2.0)
# Grid side per unit of default repulsion: 16 -> 2 and 32 -> 4, the published settings.
_GRID_SIDE_PER_REPULSION = 8
# Width of the random offset that orders equal proximity scores (see locality_order).
_TIE_BREAK_SPAN = 0.1

_METRIC_NAMES = (
    "valid",
    "adjacency",
    "adjacency_pos",
    "nn_dist_cheb",
    "sep_min_cheb",
    "sep_touch_frac",
    "ctx_nbrs8",
    "low_prox_frac",
)


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------

def _check_grid(grid_h, grid_w) -> tuple[int, int]:
    return check_integer("grid height", grid_h, 1), check_integer("grid width", grid_w, 1)


def _check_group_sizes(group_sizes, num_positions: int, num_decoded: int = 0) -> list[int]:
    what = ("the grid" if num_decoded == 0
            else f"the part of the grid not decoded yet ({num_decoded} of its {num_positions} positions are)")
    return list(check_group_sizes(group_sizes, num_positions - num_decoded, what))


def _decoded_positions(decoded, grid_h: int, grid_w: int) -> np.ndarray:
    """Flat indices of the positions marked in `decoded` (None: none)."""
    if decoded is None:
        return np.empty(0, dtype=np.int64)
    mask = np.asarray(decoded)
    if mask.dtype != np.bool_ or mask.shape not in ((grid_h * grid_w,), (grid_h, grid_w)):
        raise SettingError(
            f"decoded must be a boolean mask of shape ({grid_h * grid_w},) or ({grid_h}, {grid_w}), True where "
            f"the token is already known; got dtype {mask.dtype} and shape {mask.shape}"
        )
    positions = np.flatnonzero(mask)
    if len(positions) == grid_h * grid_w:
        raise SettingError("decoded marks every position: nothing is left to order")
    return positions


def _check_thresholds(proximity, repulsion) -> tuple[float, int]:
    return check_proximity(proximity), check_integer("repulsion", repulsion, 0)


def check_positions(orders, num_positions: int) -> np.ndarray:
    """Orders as int64 numpy: one (N,) or several (B, N), each a permutation of the raster positions
    0..N−1 (every grid position exactly once); SettingError otherwise. The one order rule
    (schedules, `generate`'s orders, order maps)."""
    array = np.asarray(orders.cpu() if hasattr(orders, "cpu") else orders)
    rows = array.reshape(-1, array.shape[-1]) if array.ndim in (1, 2) else None
    if rows is None or array.dtype.kind not in "iu" or array.shape[-1] != num_positions:
        kind = "integers" if array.dtype.kind in "iu" else f"{array.dtype} values"
        raise SettingError(f"an order must be a permutation of 0..{num_positions - 1} (each grid position exactly "
                           f"once), one per row; got shape {array.shape} of {kind}")
    wrong = ~(np.sort(rows, axis=1) == np.arange(num_positions)).all(axis=1)
    if wrong.any():
        row = rows[int(np.argmax(wrong))]
        raise SettingError(f"an order must be a permutation of 0..{num_positions - 1} (each grid position exactly "
                           f"once); got one with {len(np.unique(row))} distinct values from {row.min()} to "
                           f"{row.max()}")
    return array.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Order construction
# ---------------------------------------------------------------------------------------------

def default_repulsion(grid_h: int, grid_w: int) -> int:
    """Repulsion threshold for a grid: round(sqrt(H * W) / 8), at least 1.

    Gives the published 2 for 16x16 and 4 for 32x32. The geometric mean of the sides scales the
    threshold with the token count (as group sizes do) and treats H x W and W x H alike.
    """
    grid_h, grid_w = _check_grid(grid_h, grid_w)
    side = math.sqrt(grid_h * grid_w)
    # floor(x + 0.5): round half up, so 2.5 gives 3 (Python's round() would give 2).
    return max(1, math.floor(side / _GRID_SIDE_PER_REPULSION + 0.5))


def _margin_index(grid_h: int, grid_w: int, margin: int) -> np.ndarray:
    """Flat index of each grid position inside the same grid framed by `margin` cells per side."""
    rows, cols = np.divmod(np.arange(grid_h * grid_w), grid_w)
    return (rows + margin) * (grid_w + 2 * margin) + cols + margin


class _ProximityField:
    """The decoded positions and the proximity score they give every position of the grid.

    The decoded mask is framed by one empty ring, so shifted views of it line each position up
    with one of its neighbours, and the frame stands in for "no neighbour" at the borders. The
    views and buffers are made once; scoring a step is then a few in-place ufunc calls.
    """

    def __init__(self, grid_h: int, grid_w: int):
        decoded = np.zeros((grid_h + 2, grid_w + 2))
        self._decoded_flat = decoded.reshape(-1)
        self._framed_index = _margin_index(grid_h, grid_w, 1)
        self._above, self._below = decoded[:-2], decoded[2:]  # full framed width
        self._left, self._right = decoded[1:-1, :-2], decoded[1:-1, 2:]
        self._vertical = np.empty((grid_h, grid_w + 2))  # above + below, still framed left and right
        self._corners = np.empty((grid_h, grid_w))
        self._scores = np.empty((grid_h, grid_w))
        self._scores_flat = self._scores.reshape(-1)
        self._decoded_bias = np.zeros(grid_h * grid_w)  # -inf once decoded: never a candidate again

    def mark_decoded(self, positions: np.ndarray) -> None:
        self._decoded_flat[self._framed_index[positions]] = 1.0
        self._decoded_bias[positions] = -np.inf

    def scores(self) -> np.ndarray:
        """Flat scores, -inf at decoded positions. The next call overwrites the same buffer."""
        vertical, corners, scores = self._vertical, self._corners, self._scores
        np.add(self._above, self._below, out=vertical)
        np.add(vertical[:, 1:-1], self._left, out=scores)
        np.add(scores, self._right, out=scores)
        np.add(vertical[:, :-2], vertical[:, 2:], out=corners)
        np.multiply(corners, _CORNER_WEIGHT, out=corners)
        np.add(scores, corners, out=scores)
        np.add(self._scores_flat, self._decoded_bias, out=self._scores_flat)
        return self._scores_flat


class _GroupPicker:
    """Rules 2 and 3 of the module docstring: one step's group from the ranked candidates."""

    def __init__(self, grid_h: int, grid_w: int, repulsion: int, rng: np.random.Generator):
        self._grid_h, self._grid_w, self._rng = grid_h, grid_w, rng
        # No two cells are further apart than max(H, W) - 1, so a larger repulsion acts the same.
        repulsion = min(repulsion, max(grid_h, grid_w) - 1)
        # Repulsion works on a mask framed by `repulsion` cells per side, so that every taken
        # candidate closes a full window around itself without clipping at the border.
        self._window = 2 * repulsion + 1
        self._framed_w = grid_w + 2 * repulsion
        self._framed_size = (grid_h + 2 * repulsion) * self._framed_w
        self._framed_index = _margin_index(grid_h, grid_w, repulsion)
        self._window_reach = repulsion * (self._framed_w + 1)  # candidate -> its window's top left
        # Squared length of every row/column offset, zero at the centre: the (H, W) window at
        # (H - 1 - r, W - 1 - c) holds every position's squared distance to (r, c).
        row_offsets, col_offsets = np.arange(1 - grid_h, grid_h), np.arange(1 - grid_w, grid_w)
        self._squared_offsets = row_offsets[:, None] ** 2 + col_offsets[None, :] ** 2

    def pick(self, ranked: np.ndarray, num_near: int, group_size: int) -> np.ndarray:
        """The group, from the undecoded positions ranked best first, of which `num_near` are near."""
        near = ranked[:num_near]
        taken = self._take_near(near, group_size)
        group = near[taken]
        if len(group) == group_size:
            return group
        passed_over = np.ones(num_near, dtype=bool)
        passed_over[taken] = False
        pool = np.concatenate([ranked[num_near:], near[passed_over]])
        return np.concatenate([group, self._farthest_point_fill(group, pool, group_size - len(group))])

    def _take_near(self, near: np.ndarray, group_size: int) -> list[int]:
        """Indices into `near` of the candidates taken, in rank order.

        A candidate is passed over when it lies within the repulsion distance (Chebyshev) of one
        already taken.
        """
        # 1 where a candidate may still be taken, 0 near a taken one. Held in a bytearray because
        # checking one cell of it from Python is far cheaper than indexing a numpy array; its
        # numpy views do the gathers and close the windows.
        allowed = bytearray(b"\x01") * self._framed_size
        allowed_view = np.frombuffer(allowed, dtype=np.bool_)
        allowed_grid = allowed_view.reshape(-1, self._framed_w)
        near_framed = self._framed_index[near]
        near_framed_list = near_framed.tolist()
        taken: list[int] = []
        start = 0  # candidates ranked before `start` were taken or passed over already
        while len(taken) < group_size and start < len(near_framed_list):
            # Often the next candidate is still open; look further only when it is not.
            if not allowed[near_framed_list[start]]:
                start += int(allowed_view[near_framed[start:]].argmax())
                if not allowed[near_framed_list[start]]:
                    break
            taken.append(start)
            top, left = divmod(near_framed_list[start] - self._window_reach, self._framed_w)
            allowed_grid[top:top + self._window, left:left + self._window] = False
            start += 1
        return taken

    def _farthest_point_fill(self, taken: np.ndarray, pool: np.ndarray, count: int) -> np.ndarray:
        """Pick `count` pool members, each farthest (Euclidean) from the picks of this step.

        With no pick yet in this step, the first one is a random pool member. Ties go to the
        earlier pool member, so the pool order is the tie-break priority. Squared distances are
        integers, so equal distances compare equal exactly.
        """
        if len(pool) <= count:
            return pool
        picks: list[int] = []
        if len(taken) == 0:
            picks.append(int(self._rng.integers(len(pool))))
            if count == 1:
                return pool[picks]
            taken = pool[picks]
        grid_h, grid_w = self._grid_h, self._grid_w
        pool_r, pool_c = np.divmod(pool, grid_w)
        taken_r, taken_c = np.divmod(taken, grid_w)
        row_gap = pool_r - taken_r[:, None]
        col_gap = pool_c - taken_c[:, None]
        nearest_sq = (row_gap * row_gap + col_gap * col_gap).min(axis=0)
        nearest_sq[picks] = -1  # already picked; every real distance is >= 0
        while True:
            best = int(nearest_sq.argmax())
            picks.append(best)
            if len(picks) == count:
                return pool[picks]
            r, c = divmod(int(pool[best]), grid_w)
            to_best = self._squared_offsets[grid_h - 1 - r:2 * grid_h - 1 - r, grid_w - 1 - c:2 * grid_w - 1 - c]
            np.minimum(nearest_sq, to_best[pool_r, pool_c], out=nearest_sq)
            nearest_sq[best] = -1


def locality_order(
    grid_h: int,
    grid_w: int,
    group_sizes,
    seed: int,
    proximity: float = DEFAULT_PROXIMITY,
    repulsion: int | None = None,
    decoded=None,
) -> np.ndarray:
    """Locality-aware decode order: int64 raster positions, group by group, that is a
    permutation of range(H * W) (of the undecoded positions when `decoded` is given).

    `proximity` is the score a position needs to count as near the decoded context; `repulsion`
    is the Chebyshev distance within which near picks of one step exclude each other
    (None: `default_repulsion(grid_h, grid_w)`). `decoded` (for editing) is a boolean mask,
    flat or (H, W), of positions known before the first step: they count as context from the
    start, `group_sizes` then sum to the number of the others, and only those are ordered.
    """
    grid_h, grid_w = _check_grid(grid_h, grid_w)
    known = _decoded_positions(decoded, grid_h, grid_w)
    sizes = _check_group_sizes(group_sizes, grid_h * grid_w, len(known))
    if repulsion is None:
        repulsion = default_repulsion(grid_h, grid_w)
    proximity, repulsion = _check_thresholds(proximity, repulsion)
    seed = check_seed(seed)

    rng = np.random.Generator(np.random.PCG64(seed))
    field = _ProximityField(grid_h, grid_w)
    field.mark_decoded(known)
    picker = _GroupPicker(grid_h, grid_w, repulsion, rng)
    num_positions = grid_h * grid_w
    num_left = num_positions - len(known)
    groups: list[np.ndarray] = []
    for group_size in sizes:
        scores = field.scores()
        # Scores are e + k / sqrt(2) with e, k in 0..4 (edge and corner neighbours), so two
        # different scores differ by at least 2.1213 - 2 = 0.1213. A random offset in [0, 0.1)
        # orders equal scores at random and never swaps different ones, so one sort does both.
        # Decoded positions (score -inf) sort last and are cut off.
        sort_keys = rng.uniform(0.0, _TIE_BREAK_SPAN, num_positions) - scores
        ranked = sort_keys.argsort(kind="stable")[:num_left]
        num_near = int(np.count_nonzero(scores >= proximity))
        group = picker.pick(ranked, num_near, group_size)
        field.mark_decoded(group)
        num_left -= group_size
        groups.append(group)
    return np.concatenate(groups).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Inspection
# ---------------------------------------------------------------------------------------------

def _is_permutation(order: np.ndarray, num_positions: int) -> bool:
    if order.ndim != 1 or order.size != num_positions or not np.issubdtype(order.dtype, np.integer):
        return False
    return bool(np.array_equal(np.sort(order), np.arange(num_positions)))


def order_map(order, group_sizes, grid_h: int, grid_w: int) -> np.ndarray:
    """(H, W) int64 array: the step at which each position is decoded."""
    grid_h, grid_w = _check_grid(grid_h, grid_w)
    num_positions = grid_h * grid_w
    sizes = _check_group_sizes(group_sizes, num_positions)
    order = check_positions(order, num_positions)
    if order.ndim != 1:
        raise SettingError(f"an order map shows one order, of shape ({num_positions},); got shape {order.shape}")
    step_of = np.empty(num_positions, dtype=np.int64)
    step_of[order] = np.repeat(np.arange(len(sizes)), sizes)
    return step_of.reshape(grid_h, grid_w)


def order_metrics(order, group_sizes, grid_h: int, grid_w: int) -> dict:
    """Locality figures of one order (definitions: tests/fixtures/order_metrics_reference.json).

    An order that is not a permutation gets valid 0.0 and NaN elsewhere; so do metrics with
    nothing to average (e.g. the separation metrics when no group has two members).
    """
    grid_h, grid_w = _check_grid(grid_h, grid_w)
    num_positions = grid_h * grid_w
    sizes = np.asarray(_check_group_sizes(group_sizes, num_positions))
    if not _is_permutation(np.asarray(order), num_positions):
        return {name: (0.0 if name == "valid" else math.nan) for name in _METRIC_NAMES}
    step_of = order_map(order, sizes, grid_h, grid_w).ravel()

    # All position pairs at once: [p, q] relates position p to position q.
    rows, cols = np.divmod(np.arange(num_positions), grid_w)
    row_gap = np.abs(rows[:, None] - rows[None, :])
    col_gap = np.abs(cols[:, None] - cols[None, :])
    chebyshev = np.maximum(row_gap, col_gap)
    decoded_before = step_of[None, :] < step_of[:, None]
    context_neighbour = (chebyshev == 1) & decoded_before
    context_count = context_neighbour.sum(axis=1)
    proximity = np.where(context_neighbour, np.where(row_gap + col_gap == 1, 1.0, _CORNER_WEIGHT), 0.0).sum(axis=1)
    nearest_context = np.where(decoded_before, chebyshev, num_positions).min(axis=1)

    touches = context_count > 0
    later = step_of > 0
    touch_frac_per_group = np.bincount(step_of, weights=touches, minlength=len(sizes)) / sizes

    metrics = {
        "valid": 1.0,
        "adjacency": _mean(touch_frac_per_group[1:]),
        "adjacency_pos": _mean(touches[later]),
        "nn_dist_cheb": _mean(nearest_context[later]),
        "ctx_nbrs8": _mean(context_count),
        "low_prox_frac": _mean(proximity[later] < 1.0),
    }
    metrics.update(_group_separation(chebyshev, step_of, sizes))
    return metrics


def _group_separation(chebyshev: np.ndarray, step_of: np.ndarray, sizes: np.ndarray) -> dict:
    """Minimum pairwise Chebyshev distance inside each group of two or more."""
    same_group = (step_of[:, None] == step_of[None, :]) & ~np.eye(len(step_of), dtype=bool)
    nearest_groupmate = np.where(same_group, chebyshev, np.iinfo(chebyshev.dtype).max).min(axis=1)
    group_min = np.full(len(sizes), np.iinfo(chebyshev.dtype).max)
    np.minimum.at(group_min, step_of, nearest_groupmate)
    group_min = group_min[sizes >= 2]
    return {"sep_min_cheb": _mean(group_min), "sep_touch_frac": _mean(group_min <= 1)}


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


# ---------------------------------------------------------------------------------------------
# Many orders at once
# ---------------------------------------------------------------------------------------------

def locality_orders(
    grid_h: int,
    grid_w: int,
    group_sizes,
    seeds,
    proximity: float = DEFAULT_PROXIMITY,
    repulsion: int | None = None,
) -> np.ndarray:
    """`locality_order` for many seeds at once: (len(seeds), H * W) int64, row i equal to
    `locality_order(grid_h, grid_w, group_sizes, seeds[i], proximity, repulsion)`.

    Every step runs for all seeds together: the proximity field, the ranking and the two picking
    rules are array operations over the batch, one round per token taken (each seed takes its next
    candidate in the same round), instead of a Python loop over candidates for each seed. Each seed
    keeps its own generator and draws from it exactly what `locality_order` draws, in the same
    order, so the orders are the same (tests/test_locality.py compares them). For a few seeds
    `locality_order` one at a time is faster; `schedule.build_orders` picks.
    """
    grid_h, grid_w = _check_grid(grid_h, grid_w)
    sizes = _check_group_sizes(group_sizes, grid_h * grid_w)
    if repulsion is None:
        repulsion = default_repulsion(grid_h, grid_w)
    proximity, repulsion = _check_thresholds(proximity, repulsion)
    seeds = [check_seed(seed) for seed in seeds]
    batch, num_positions = len(seeds), grid_h * grid_w
    draws = _SeedDraws(seeds, len(sizes), num_positions)
    every = np.arange(batch)[:, None]

    # The proximity field of `_ProximityField`, one framed int8 grid per seed. A score there is
    # fl(e + fl(k / sqrt(2))) for e edge and k corner neighbours decoded, each sum exact, so a
    # table of those 25 values (and -inf for decoded positions) gives the very same floats.
    decoded = np.zeros((batch, grid_h + 2, grid_w + 2), dtype=np.int8)
    decoded_flat = decoded.reshape(batch, -1)
    field_index = _margin_index(grid_h, grid_w, 1)
    edges, corners = np.divmod(np.arange(25.0), 5)
    score_of = np.append(edges + corners * _CORNER_WEIGHT, -np.inf)  # index 5 e + k; 25: decoded
    inner = decoded[:, 1:-1, 1:-1]

    # The repulsion windows of `_GroupPicker`, on one flat array of every seed's framed mask, each
    # followed by one cell that stays closed: it stands for "not a near candidate" in the gathers.
    reach = min(repulsion, max(grid_h, grid_w) - 1)
    framed_w = grid_w + 2 * reach
    mask_size = (grid_h + 2 * reach) * framed_w + 1
    framed_index = _margin_index(grid_h, grid_w, reach)
    window = (np.arange(-reach, reach + 1)[:, None] * framed_w + np.arange(-reach, reach + 1)[None, :]).ravel()
    rows_of, cols_of = np.divmod(np.arange(num_positions), grid_w)
    columns = np.arange(num_positions)[None, :]

    groups, num_left = [], num_positions
    for step, group_size in enumerate(sizes):
        edge = decoded[:, :-2, 1:-1] + decoded[:, 2:, 1:-1]
        edge += decoded[:, 1:-1, :-2]
        edge += decoded[:, 1:-1, 2:]
        corner = decoded[:, :-2, :-2] + decoded[:, :-2, 2:]
        corner += decoded[:, 2:, :-2]
        corner += decoded[:, 2:, 2:]
        edge *= 5
        edge += corner
        scores = score_of[np.where(inner, 25, edge).reshape(batch, -1)]
        ranked = (draws.offsets(step) - scores).argsort(axis=1, kind="stable")[:, :num_left]
        num_near = np.count_nonzero(scores >= proximity, axis=1)

        # Rule 2: near candidates best first, each closing its window (`_GroupPicker._take_near`).
        # A candidate ranked before the last one taken was taken (its own window closed it) or
        # passed over (closed before), so the first open candidate is the next one to take.
        widest = int(num_near.max())
        is_near = columns[:, :widest] < num_near[:, None]
        near_cells = np.where(is_near, framed_index[ranked[:, :widest]], mask_size - 1) + every * mask_size
        allowed = np.ones(batch * mask_size, dtype=bool)
        allowed[mask_size - 1::mask_size] = False
        taken = np.zeros((batch, num_left), dtype=bool)
        count = np.zeros(batch, dtype=np.int64)
        open_rows = np.flatnonzero(num_near > 0)
        while len(open_rows):
            candidates = allowed[near_cells[open_rows]]
            first = candidates.argmax(axis=1)
            found = candidates[np.arange(len(open_rows)), first]
            open_rows, first = open_rows[found], first[found]
            taken[open_rows, first] = True
            count[open_rows] += 1
            allowed[near_cells[open_rows, first][:, None] + window] = False
            open_rows = open_rows[count[open_rows] < group_size]
        # the near picks in rank order, then room for the fill
        group = np.zeros((batch, group_size), dtype=np.int64)
        taken_rows, taken_columns = np.nonzero(taken)
        group[taken_rows, np.arange(len(taken_rows)) - (np.cumsum(count) - count)[taken_rows]] = \
            ranked[taken_rows, taken_columns]

        # Rule 3: farthest-point fill from the pool (`_GroupPicker._farthest_point_fill`).
        short = np.flatnonzero(count < group_size)
        if len(short):
            # pool: low-proximity positions best first, then the near ones passed over; taken last
            kind = np.where(taken[short], 2, np.where(columns[:, :num_left] < num_near[short, None], 1, 0))
            pools = ranked[short[:, None], kind.astype(np.int8).argsort(axis=1, kind="stable")]
            group[short] = _farthest_point_fill(pools, group[short], count[short], group_size, num_left,
                                                lambda row: draws.integer(short[row], step, num_left),
                                                rows_of, cols_of)
        decoded_flat[every, field_index[group]] = 1
        num_left -= group_size
        groups.append(group)
    return np.concatenate(groups, axis=1)


class _SeedDraws:
    """Each seed's generator, drawing exactly what `locality_order` draws from it, in the same
    order: every step the tie-break offsets (uniform, one per position), and one integer when
    the step's fill starts with a random pick (always at step 0, rarely later).

    Step 0's offsets are drawn alone (its integer follows at once), then the offsets of all the
    steps after it in one call per seed: each double takes one 64-bit output, so they are the
    values one call per step gives. A seed that needs an integer later goes back to its state
    before that call, draws again the offsets used so far, then the integer, and draws ahead again.
    """

    def __init__(self, seeds, num_steps: int, num_positions: int):
        self._generators = [np.random.Generator(np.random.PCG64(seed)) for seed in seeds]
        self._offsets = np.empty((len(seeds), num_steps, num_positions))
        self._states: list[dict] = [{}] * len(seeds)  # each generator's state before its offsets drawn ahead
        self._drawn = [(0, 0)] * len(seeds)  # steps [first, end) whose offsets are drawn ahead

    def _draw(self, row: int, first: int, end: int) -> None:
        generator = self._generators[row]
        self._states[row] = generator.bit_generator.state
        self._drawn[row] = (first, end)
        self._offsets[row, first:end] = generator.uniform(0.0, _TIE_BREAK_SPAN, self._offsets[row, first:end].shape)

    def offsets(self, step: int) -> np.ndarray:
        """(seeds, positions): the offsets each seed draws at `step`."""
        for row, (_, end) in enumerate(self._drawn):
            if end <= step:  # step 0 alone first: its integer follows at once
                self._draw(row, step, step + 1 if step == 0 else len(self._offsets[row]))
        return self._offsets[:, step]

    def integer(self, row: int, step: int, high: int) -> int:
        """The integer in [0, high) that seed `row` draws after the offsets of `step`."""
        generator = self._generators[row]
        first, end = self._drawn[row]
        if end > step + 1:  # offsets of later steps were drawn: go back to before them
            generator.bit_generator.state = self._states[row]
            generator.uniform(0.0, _TIE_BREAK_SPAN, self._offsets[row, first:step + 1].shape)
            self._drawn[row] = (first, step + 1)
        return int(generator.integers(high))


def _farthest_point_fill(pools, groups, counts, group_size, num_left, first_pick, rows_of, cols_of) -> np.ndarray:
    """Complete each row of `groups` (its first counts[i] entries are the near picks) from its
    pool (ranked; entries past num_left − counts[i] are the near picks again) as
    `_GroupPicker._farthest_point_fill` does for one seed; `first_pick(i)` draws row i's random
    first pick when it has no near pick.

    Every row takes as many picks as the row that needs most; the picks past a row's need are
    dropped. Squared distances are int32 (exact for grids up to 32,000 a side).
    """
    needs = group_size - counts
    columns = np.arange(group_size)[None, :]
    rows, width = len(pools), pools.shape[1]
    every = np.arange(rows)[:, None]
    if num_left == group_size:  # the last step: the whole pool
        return np.where(columns < counts[:, None], groups, pools[every, np.maximum(columns - counts[:, None], 0)])
    pool_r, pool_c = rows_of[pools].astype(np.int32), cols_of[pools].astype(np.int32)
    references = groups.copy()
    reference_counts = counts.copy()
    picks = np.zeros((rows, group_size + 1), dtype=np.int64)
    first_rows = np.flatnonzero(counts == 0)
    for row in first_rows:  # nothing picked in this step: a random first pick
        picks[row, 0] = first_pick(row)
        references[row, 0] = pools[row, picks[row, 0]]
        reference_counts[row] = 1
    # squared distance of each pool member to the nearest reference (all references at once)
    used = int(reference_counts.max())
    gap_r = pool_r[:, None, :] - rows_of[references[:, :used]].astype(np.int32)[:, :, None]
    gap_c = pool_c[:, None, :] - cols_of[references[:, :used]].astype(np.int32)[:, :, None]
    gap_r *= gap_r
    gap_c *= gap_c
    gap_r += gap_c
    gap_r[np.arange(used)[None, :] >= reference_counts[:, None]] = np.iinfo(np.int32).max
    nearest = gap_r.min(axis=1)
    nearest[np.arange(width)[None, :] >= (num_left - counts)[:, None]] = -2  # not in the pool
    nearest[first_rows, picks[first_rows, 0]] = -1  # already picked; every real distance is >= 0
    next_pick = (counts == 0).astype(np.int64)
    row_gap, col_gap = np.empty_like(pool_r), np.empty_like(pool_c)
    every = every[:, 0]
    for _ in range(int((needs - next_pick).max())):
        best = nearest.argmax(axis=1)
        picks[every, next_pick] = best
        next_pick += 1
        np.subtract(pool_r, pool_r[every, best][:, None], out=row_gap)
        np.subtract(pool_c, pool_c[every, best][:, None], out=col_gap)
        np.multiply(row_gap, row_gap, out=row_gap)
        np.multiply(col_gap, col_gap, out=col_gap)
        np.add(row_gap, col_gap, out=row_gap)
        np.minimum(nearest, row_gap, out=nearest)
        nearest[every, best] = -1
    filled = pools[every[:, None], picks[:, :group_size]]  # in pick order
    return np.where(columns < counts[:, None], groups,
                    filled[every[:, None], np.maximum(columns - counts[:, None], 0)])
