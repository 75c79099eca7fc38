"""Wide (or tall) canvases: pictures larger than the model's square, as a chain of outpainted tiles.

The canvas is covered by model-sized tiles that overlap by `overlap` tokens. The first tile is a
plain generation; every later one is an outpaint: the tokens it shares with tiles already made are
fed to `generate` as known context (so they are exactly those tiles' tokens) and the rest grow
from them in a locality-aware order (`lpd_core.editing.plan_edit`, as for outpainting). The whole
token canvas is then decoded in one tokenizer pass (the VQ decoder is convolutional with global
attention, so it takes any grid shape), which leaves no seam in pixel space: neighbouring pixels
across a tile border come out of one decoder, as inside a tile.

Tiles go left to right, then top to bottom; where the canvas is not a whole number of tile steps
the last tile of a row (or column) is moved back to the canvas edge and overlaps more.

Each tile has its own class, so a canvas can travel between classes (`tile_classes`): one class (or
mix) for all tiles; a start and an end class with the mix moving from one to the other along the
canvas; or a list of classes spread over the tiles. A tile's new tokens then grow from the previous
tiles' under its own class, and the one decoder pass blends the borders as everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .blend import check_labels, mix_weights
from .checkpoints import resolve_settings
from .editing import plan_edit
from .errors import SettingError
from .generate import DecodeStep, check_callback, check_negative_classes, generate
from .memory import check_fits
from .model import LPD
from .settings import (MAX_SEED, check_count, check_flag, check_integer, check_negative, check_order, check_proximity,
                       seeds_for)
from .vq import VQModel
from .weights import check_pair


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start of each tile along one side of `length` tokens: every tile − overlap tokens, the last
    one flush with the end."""
    starts = list(range(0, length - tile, tile - overlap)) + [length - tile]
    return sorted(set(starts))


def plan_canvas(grid: int, width: int, height: int, overlap: int | None, stride: int) -> tuple[int, list[tuple[int, int]]]:
    """The overlap (None: half a tile, the default) and the (row, column) of each tile's top-left
    token, in generation order, of a canvas of width × height tokens made of grid × grid tiles.
    SettingError, in pixels and tokens (a token is stride × stride pixels), for a canvas smaller
    than one tile or an overlap that does not leave each tile something to add."""
    width, height = check_integer("the canvas width", width, 1), check_integer("the canvas height", height, 1)
    check_fits(f"a canvas of {width * stride}×{height * stride} px", width * height * (8 + stride * stride * 3 * 4),
               "cpu", "make it smaller")  # its tokens and its float32 image, before the tiles are listed
    if width < grid or height < grid:
        raise SettingError(f"the canvas must be at least the model's {grid * stride}×{grid * stride} px ({grid}×{grid} "
                           f"tokens) on each side, got {width * stride}×{height * stride} px ({width}×{height} "
                           f"tokens)")
    overlap = grid // 2 if overlap is None else check_integer("the tile overlap", overlap, 1, grid - 1)
    if not 1 <= overlap <= grid - 1:  # a one-token grid has no overlap that works
        raise SettingError(f"the tile overlap must be 1..{grid - 1} tokens (the model's grid is {grid} tokens; the "
                           f"tiles must share at least one column and add at least one), got {overlap}")
    tiles = [(row, col) for row in tile_starts(height, grid, overlap) for col in tile_starts(width, grid, overlap)]
    return overlap, tiles


def tile_seed(seed: int, tile: int) -> int:
    """Sampling and order seed of one tile: the canvas seed for the first tile (so it is exactly
    plain generation with that seed), an independent seed derived from (seed, tile) for the others."""
    if tile == 0:
        return seed
    return int(np.random.SeedSequence([seed, tile]).generate_state(1, dtype=np.uint64)[0]) % (MAX_SEED + 1)


def tile_position(row: int, col: int, grid: int, width: int, height: int) -> float:
    """Where a tile lies along the canvas, 0 (first) to 1 (last): along the width, or along the
    height for a canvas taller than wide."""
    start, end = (row, height) if height > width else (col, width)
    return start / (end - grid) if end > grid else 0.0


def tile_classes(tiles: list[tuple[int, int]], grid: int, width: int, height: int, num_classes: int, batch: int,
                 labels=None, to_labels=None, tile_labels=None) -> list:
    """Each tile's labels for `generate`, checked (`blend.check_labels`). `labels` alone: the same
    for every tile. With `to_labels`: the mix (1 − t)·labels + t·to_labels, t the tile's
    `tile_position` (so the first tile is exactly `labels` and the last `to_labels`). `tile_labels`
    (instead of both): a list of classes or mixes spread evenly over the tiles in their order (tile
    i of n takes entry i·k // n of k), each for every canvas: as many as tiles gives each its own,
    one gives all the same."""
    if tile_labels is not None:
        if labels is not None or to_labels is not None:
            raise SettingError("give the canvas's classes either per tile, or as a class (and an end class), "
                               "not both")
        if isinstance(tile_labels, (str, bytes)) or not hasattr(tile_labels, "__len__"):
            raise SettingError(f"tile_labels must be a list of classes or mixes, one per tile; got {tile_labels!r} "
                               f"(text is read by lpd_core.blend.parse_class_mixes)")
        if not 1 <= len(tile_labels) <= len(tiles):
            raise SettingError(f"got {len(tile_labels)} tile classes for a canvas of {len(tiles)} tiles: give 1 to "
                               f"{len(tiles)} (spread evenly over the tiles, left to right then top to bottom)")
        checked = [check_labels(label, num_classes, batch, "tile classes") for label in tile_labels]
        return [checked[index * len(checked) // len(tiles)] for index in range(len(tiles))]
    if labels is None:
        raise SettingError("the canvas needs a class: give labels (one class or mix, or one per canvas), or a "
                           "class per tile")
    if to_labels is None:
        return [check_labels(labels, num_classes, batch)] * len(tiles)
    first = mix_weights(labels, num_classes, batch)
    last = mix_weights(to_labels, num_classes, batch, "end classes")
    return [(1 - t) * first + t * last for t in (tile_position(row, col, grid, width, height) for row, col in tiles)]


@dataclass
class CanvasResult:
    images: torch.Tensor  # (B, height·stride, width·stride, 3) in [0, 1]
    tokens: torch.Tensor  # (B, height·width) raster over the canvas
    grid: tuple[int, int]  # (height, width) in tokens
    tiles: list[tuple[int, int]]  # (row, column) of each tile's top-left token, in generation order


@torch.no_grad()
def wide_canvas(model: LPD, tokenizer: VQModel, labels=None, *, width: int, height: int | None = None,
                overlap: int | None = None, batch: int | None = None, steps: int | None = None,
                order: str = "locality", seed: int = 0, cfg: float | None = None, cfg_schedule: str | None = None,
                temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                proximity: float = 1.0, repulsion: int | None = None, to_labels=None, tile_labels=None,
                negative=None, callback: Callable[[int, DecodeStep], None] | None = None,
                fast: bool = False) -> CanvasResult:
    """Canvases of `width` × `height` tokens (height: the model's grid) under `labels` (as for
    `generate`; one canvas per label, or `batch` canvases of one). `to_labels`: the class (or mix)
    the canvas travels to, the mix moving along it tile by tile; `tile_labels` instead of both: a
    class or mix per tile (see `tile_classes`). `negative`: as for `generate`, for every tile.
    Tiles overlap by `overlap` tokens
    (default: half the grid; `plan_canvas`). Canvas b uses seed + b (tile t of it
    `tile_seed(seed + b, t)`), so it does not depend on the batch. steps, cfg, cfg_schedule,
    temperature, top_k, top_p, repulsion: None = the model's defaults (`checkpoints.resolve_settings`);
    `steps` count the generated groups of each tile (fewer where a tile adds fewer tokens).
    `callback(tile index, step)` runs after every step of every tile. Every input is checked before
    any work."""
    check_pair(model, tokenizer)
    grid, stride = model.config.grid_size, tokenizer.stride
    height = grid if height is None else height
    overlap, tiles = plan_canvas(grid, width, height, overlap, stride)
    settings = resolve_settings(model, steps=steps, cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature,
                                top_k=top_k, top_p=top_p, repulsion=repulsion, steps_up_to_tokens=True)
    order, proximity, fast = check_order(order), check_proximity(proximity), check_flag("fast", fast)
    check_callback(callback)
    num_classes = model.config.num_classes
    given = check_labels(labels, num_classes)
    batch = (1 if given is None else len(given)) if batch is None else check_count("batch size", batch)
    # the canvases fit in memory: before any work, and before anything is made per canvas (labels, seeds)
    tokenizer.images_at_once(batch, height * stride, width * stride)
    classes = tile_classes(tiles, grid, width, height, num_classes, batch, labels, to_labels, tile_labels)
    check_negative(negative, settings.cfg)
    check_negative_classes(negative, num_classes, batch)
    seeds = seeds_for(seed, batch)
    device = model.pos_embed.device
    canvas = torch.zeros(batch, height, width, dtype=torch.long, device=device)
    made = torch.zeros(height, width, dtype=torch.bool)
    for index, (row, col) in enumerate(tiles):
        window = (slice(row, row + grid), slice(col, col + grid))
        regenerate = ~made[window]
        sample_seeds = [tile_seed(s, index) for s in seeds]
        plans = [plan_edit(regenerate, settings.steps, order, s, proximity, settings.repulsion) for s in sample_seeds]
        step_callback = None if callback is None else (lambda step, index=index: callback(index, step))
        tokens = generate(model, labels=classes[index], batch=batch,
                          orders=torch.from_numpy(np.stack([plan.order for plan in plans])),
                          group_sizes=plans[0].group_sizes, known_steps=plans[0].known_steps,
                          known_tokens=canvas[(slice(None), *window)].reshape(batch, -1), cfg=settings.cfg,
                          cfg_schedule=settings.cfg_schedule, temperature=settings.temperature, top_k=settings.top_k,
                          top_p=settings.top_p, seeds=sample_seeds, negative=negative, callback=step_callback,
                          fast=fast)
        canvas[(slice(None), *window)] = tokens.reshape(batch, grid, grid)
        made[window] = True
    tokens = canvas.reshape(batch, -1)
    images = tokenizer.decode_images(tokens, grid=(height, width))
    return CanvasResult(images, tokens.cpu(), (height, width), tiles)
