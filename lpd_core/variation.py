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

from .editing import fit_to_resolution, plan_edit
from .errors import SettingError
from .generate import DecodeStep, generate
from .model import LPD
from .settings import seeds_for
from .vq import VQModel
from .weights import check_pair


def spread_positions(grid_h: int, grid_w: int, count: int, seed: int) -> np.ndarray:
    """`count` raster positions spread over the grid: farthest-point sampling from a seeded random
    start (each pick is a position farthest from those picked so far, ties broken at random)."""
    num_positions = grid_h * grid_w
    if not 0 <= count <= num_positions:
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
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
        raise SettingError(f"strength must be a number from 0 (the image itself) to 1 (a fresh sample), "
                           f"got {strength!r}")
    return round((1 - float(strength)) * num_tokens)


@dataclass
class VariationResult:
    images: torch.Tensor  # (B, H, W, 3) in [0, 1] at the model's resolution, decoded from `tokens`
    tokens: torch.Tensor  # (B, N) raster
    source: torch.Tensor  # (B, N) the input's own tokens
    kept: torch.Tensor  # (B, N) bool: the tokens taken from the input


def vary(model: LPD, tokenizer: VQModel, images: torch.Tensor, labels, strength: float, *, steps: int,
         order: str = "locality", seed: int = 0, cfg: float = 1.0, cfg_schedule: str = "linear",
         temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, proximity: float = 1.0,
         repulsion: int | None = None, negative=None, callback: Callable[[DecodeStep], None] | None = None,
         fast: bool = False) -> VariationResult:
    """One variation of each image (B, H, W, 3) in [0, 1] under `labels` (as for `generate`: an
    index, a `ClassMix`, or one per image; `negative` too). Images are fitted to the model's
    resolution first.
    Image b uses seed + b for the kept tokens, the order and the sampling, so it does not depend on
    the batch; `steps` count the generated groups (never more than the tokens to regenerate)."""
    check_pair(model, tokenizer)
    grid = model.config.grid_size
    num_tokens = grid * grid
    keep = kept_count(num_tokens, strength)
    fitted = fit_to_resolution(images, grid * tokenizer.stride)
    with torch.no_grad():
        source = tokenizer.encode_images(fitted).to(model.pos_embed.device)
    batch = source.shape[0]
    seeds = seeds_for(seed, batch)
    kept = torch.zeros(batch, num_tokens, dtype=torch.bool)
    for b, sample_seed in enumerate(seeds):
        kept[b, spread_positions(grid, grid, keep, sample_seed)] = True
    if keep == num_tokens:
        tokens = source
    else:
        plans = [plan_edit(~kept[b].reshape(grid, grid), steps, order, sample_seed, proximity, repulsion)
                 for b, sample_seed in enumerate(seeds)]
        # the group sizes depend only on how many tokens are kept, so one call serves the batch
        tokens = generate(model, labels=labels, batch=batch,
                          orders=torch.from_numpy(np.stack([plan.order for plan in plans])),
                          group_sizes=plans[0].group_sizes, known_steps=plans[0].known_steps, known_tokens=source,
                          cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                          seeds=seeds, negative=negative, callback=callback, fast=fast)
    with torch.no_grad():
        decoded = tokenizer.decode_images(tokens)
    return VariationResult(decoded, tokens.cpu(), source.cpu(), kept)
