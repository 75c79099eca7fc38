"""Variations of an image: keep a spread-out share of its tokens, regenerate the rest.

The image is encoded with the tokenizer; a share 1 − strength of its tokens is kept as known
context, picked by seeded farthest-point sampling so the kept tokens cover the whole grid (each
regenerated token has kept ones nearby, unlike a kept block, which would be outpainting); the
others are generated in a locality-aware order grown from the kept ones, through `generate`'s
known tokens (the plan is `lpd_core.editing.plan_edit`'s, as for inpainting). Strength 0 returns
the image's own tokens; strength 1 keeps nothing and is plain generation with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .blend import check_labels
from .checkpoints import resolve_settings
from .editing import fit_to_resolution, image_count, plan_edit
from .errors import SettingError
from .generate import DecodeStep, check_callback, check_negative_classes, generate
from .model import LPD
from .settings import (check_flag, check_integer, check_negative, check_order, check_proximity, check_strength,
                       seeds_for)
from .vq import VQModel, check_images
from .weights import check_pair


def spread_positions(grid_h: int, grid_w: int, count: int, seed: int) -> np.ndarray:
    """`count` raster positions spread over the grid: farthest-point sampling from a seeded random
    start (each pick is a position farthest from those picked so far, ties broken at random)."""
    num_positions = check_integer("grid height", grid_h, 1) * check_integer("grid width", grid_w, 1)
    if not 0 <= check_integer("the tokens to keep", count, 0) <= num_positions:
        raise SettingError(f"can keep 0..{num_positions} tokens of a {grid_h}×{grid_w} grid, not {count}")
    rng = np.random.Generator(np.random.PCG64(seed))
    rows, cols = np.divmod(np.arange(num_positions), grid_w)
    tie_break = rng.uniform(0.0, 0.5, num_positions)  # squared distances are integers: this only breaks ties
    nearest = np.full(num_positions, np.inf)
    picked = []
    for _ in range(count):
        pick = int(rng.integers(num_positions)) if not picked else int(np.argmax(nearest + tie_break))
        picked.append(pick)
        np.minimum(nearest, (rows - rows[pick]) ** 2 + (cols - cols[pick]) ** 2, out=nearest)
        nearest[pick] = -np.inf
    return np.asarray(picked, dtype=np.int64)


def kept_count(num_tokens: int, strength: float) -> int:
    """How many tokens a variation of this strength keeps: round((1 − strength) · N)."""
    return round((1 - check_strength(strength)) * num_tokens)


@dataclass
class VariationResult:
    images: torch.Tensor  # (B, H, W, 3) in [0, 1] at the model's resolution, decoded from `tokens`
    tokens: torch.Tensor  # (B, N) raster
    source: torch.Tensor  # (B, N) the input's own tokens
    kept: torch.Tensor  # (B, N) bool: the tokens taken from the input


@torch.no_grad()
def vary(model: LPD, tokenizer: VQModel, images: torch.Tensor, labels, strength: float, *, steps: int | None = None,
         order: str = "locality", seed: int = 0, cfg: float | None = None, cfg_schedule: str | None = None,
         temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
         proximity: float = 1.0, repulsion: int | None = None, negative=None,
         callback: Callable[[DecodeStep], None] | None = None, fast: bool = False) -> VariationResult:
    """One variation of each image (B, H, W, 3) in [0, 1] under `labels` (as for `generate`: an
    index, a `ClassMix`, or one per image; `negative` too). Images are fitted to the model's
    resolution first.
    Image b uses seed + b for the kept tokens, the order and the sampling, so it does not depend on
    the batch. steps, cfg, cfg_schedule, temperature, top_k, top_p, repulsion: None = the model's
    defaults (`checkpoints.resolve_settings`); `steps` count the generated groups (never more than
    the tokens to regenerate). Every input is checked before any work."""
    check_pair(model, tokenizer)
    grid = model.config.grid_size
    # the input fitted and the decoded images fit in memory: checked before the pixels are read
    tokenizer.images_at_once(image_count(images), grid * tokenizer.stride, grid * tokenizer.stride, copies=2)
    images = check_images(images)
    num_tokens = grid * grid
    keep = kept_count(num_tokens, strength)
    batch = images.shape[0]
    settings = resolve_settings(model, steps=steps, cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature,
                                top_k=top_k, top_p=top_p, repulsion=repulsion, steps_up_to_tokens=True)
    order, proximity, fast = check_order(order), check_proximity(proximity), check_flag("fast", fast)
    seeds = seeds_for(seed, batch)
    check_callback(callback)
    labels = check_labels(labels, model.config.num_classes, batch)
    check_negative(negative, settings.cfg)
    check_negative_classes(negative, model.config.num_classes, batch)
    fitted = fit_to_resolution(images, grid * tokenizer.stride)
    source = tokenizer.encode_images(fitted).to(model.pos_embed.device)
    kept = torch.zeros(batch, num_tokens, dtype=torch.bool)
    for b, sample_seed in enumerate(seeds):
        kept[b, spread_positions(grid, grid, keep, sample_seed)] = True
    if keep == num_tokens:
        tokens = source
    else:
        plans = [plan_edit(~kept[b].reshape(grid, grid), settings.steps, order, sample_seed, proximity,
                           settings.repulsion) for b, sample_seed in enumerate(seeds)]
        # the group sizes depend only on how many tokens are kept, so one call serves the batch
        tokens = generate(model, labels=labels, batch=batch,
                          orders=torch.from_numpy(np.stack([plan.order for plan in plans])),
                          group_sizes=plans[0].group_sizes, known_steps=plans[0].known_steps, known_tokens=source,
                          cfg=settings.cfg, cfg_schedule=settings.cfg_schedule, temperature=settings.temperature,
                          top_k=settings.top_k, top_p=settings.top_p, seeds=seeds, negative=negative,
                          callback=callback, fast=fast)
    decoded = tokenizer.decode_images(tokens)
    return VariationResult(decoded, tokens.cpu(), source.cpu(), kept)
