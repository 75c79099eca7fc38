"""Zero-shot editing: inpaint, outpaint and class-swap.

LPD's order is free, so the tokens to keep can simply come first: they are encoded from the
input image and fed as already-decoded context (in one forward pass, grouped as the model saw
context during training), and the positions to regenerate follow in a locality-aware order
seeded from the kept region, so generation grows inward from its border.

Mask rule: a ComfyUI MASK is 1 where to regenerate. It is resized and cropped exactly like the
image (shorter side to the model's resolution, then centre crop), and a token is regenerated when
any pixel of its patch has mask ≥ 0.5; `grow` then widens the regenerated region by that many
tokens in every direction (8-neighbour dilation).

Inputs are checked before any work (`vq.check_images`, `check_mask`: SettingError with what to
do): images (B, H, W, 1 or 3) floats in [0, 1], a mask (H, W) or (B, H, W) in [0, 1] with the
image's aspect ratio (another size with the same ratio is fine; another ratio is refused, never
cropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .blend import check_labels
from .checkpoints import resolve_settings
from .errors import SettingError
from .generate import DecodeStep, check_callback, check_negative_classes, generate
from .locality import default_repulsion, locality_order
from .model import LPD
from .schedule import build_schedule, group_sizes_for, random_order
from .settings import (check_flag, check_integer, check_negative, check_number, check_order, check_proximity,
                       check_seed, seeds_for)
from .vq import VQModel, check_images, check_pixels
from .weights import check_pair


def square_side(tokenizer: VQModel, model: LPD | None = None, size: int = 256) -> int:
    """Side in pixels of the square images are fitted to: the model's (its grid × the tokenizer's
    stride, after checking the pair), else `size` rounded down to the stride (at least one token)."""
    stride = tokenizer.stride
    if model is not None:
        check_pair(model, tokenizer)
        return model.config.grid_size * stride
    return max(stride, size // stride * stride)


def fit_to_resolution(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) → (B, size, size, C): the shorter side scaled to `size`, then the centre
    cropped. The one image-fitting rule (editing, LPD Encode, masks): antialiased resampling
    (bicubic for 3-channel images, bilinear for masks) both when shrinking and when enlarging,
    values clamped to [0, 1]."""
    pixels = images.permute(0, 3, 1, 2).float()
    height, width = pixels.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        mode = "bicubic" if pixels.shape[1] == 3 else "bilinear"
        pixels = F.interpolate(pixels, size=(new_h, new_w), mode=mode, align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return pixels[:, :, top:top + size, left:left + size].clamp(0, 1).permute(0, 2, 3, 1)


def mask_to_grid(mask: torch.Tensor, grid: int, grow: int = 0) -> torch.Tensor:
    """(H, W) mask in [0, 1] at the model's resolution → (grid, grid) bool, True = regenerate."""
    patch = mask.shape[-1] // grid
    regenerate = F.max_pool2d(mask[None, None].float(), patch)[0, 0] >= 0.5
    if grow > 0:
        regenerate = F.max_pool2d(regenerate[None, None].float(), 2 * grow + 1, stride=1, padding=grow)[0, 0] > 0
    return regenerate


def pad_for_outpaint(images: torch.Tensor, size: int, stride: int, left: int = 0, top: int = 0,
                     right: int = 0, bottom: int = 0, fill: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Place images inside a size×size canvas, leaving bands of `left`/`top`/`right`/`bottom`
    tokens (× the tokenizer's stride in pixels) to generate. The image is scaled to fit the
    inner rectangle with its aspect ratio kept and centred there; everything it does not cover
    is masked. Returns (canvas (B, size, size, 3), mask (B, size, size), 1 = generate)."""
    images = check_images(images)
    size, stride = check_integer("the canvas size", size, 1), check_integer("the stride", stride, 1)
    bands = {name: check_integer(f"the {name} band", band, 0)
             for name, band in dict(left=left, top=top, right=right, bottom=bottom).items()}
    left, top, right, bottom = bands.values()
    fill = check_number("the fill", fill, 0.0, 1.0)
    inner_w, inner_h = size - (left + right) * stride, size - (top + bottom) * stride
    if inner_w < stride or inner_h < stride:
        raise SettingError(f"outpaint bands {bands} (in tokens of {stride} px) must be ≥ 0 and leave room for "
                         f"the image inside the {size}px canvas: at most {size // stride - 1} tokens in each "
                         f"direction together")
    batch, height, width, _ = images.shape
    scale = min(inner_w / width, inner_h / height)
    fit_w, fit_h = max(1, round(width * scale)), max(1, round(height * scale))
    fitted = F.interpolate(images.permute(0, 3, 1, 2).float(), size=(fit_h, fit_w), mode="bicubic",
                           align_corners=False, antialias=scale < 1).clamp(0, 1).permute(0, 2, 3, 1)
    x0 = left * stride + (inner_w - fit_w) // 2
    y0 = top * stride + (inner_h - fit_h) // 2
    canvas = torch.full((batch, size, size, 3), fill)
    canvas[:, y0:y0 + fit_h, x0:x0 + fit_w] = fitted
    mask = torch.ones(batch, size, size)
    mask[:, y0:y0 + fit_h, x0:x0 + fit_w] = 0
    return canvas, mask


@dataclass
class EditPlan:
    """Which positions are kept, and the order and grouping that feeds and generates them."""
    order: np.ndarray  # kept positions first, then the ones to generate
    group_sizes: tuple[int, ...]
    known_steps: int  # the first groups hold the kept tokens

    @property
    def generated(self) -> np.ndarray:
        return self.order[sum(self.group_sizes[:self.known_steps]):]


def plan_edit(regenerate: torch.Tensor, steps: int, order: str = "locality", seed: int = 0,
              proximity: float = 1.0, repulsion: int | None = None) -> EditPlan:
    """Order and group sizes for regenerating the True positions of a (grid, grid) mask.

    Kept tokens are grouped like the early groups of a full schedule with the same step count
    (the context the model saw in training), in a seeded random order. The regenerated positions
    get `steps` groups (at most one per position) in the chosen order; "locality" grows them from
    the kept region's border.
    """
    order, seed, steps = check_order(order), check_seed(seed), check_integer("steps", steps, 1)
    if not isinstance(regenerate, torch.Tensor) or regenerate.dtype != torch.bool or regenerate.ndim != 2 \
            or regenerate.shape[0] != regenerate.shape[1]:
        raise SettingError(f"the positions to regenerate are a square (grid, grid) boolean tensor, True = regenerate; "
                           f"got {getattr(regenerate, 'dtype', type(regenerate).__name__)} of shape "
                           f"{tuple(getattr(regenerate, 'shape', ()))}")
    grid = regenerate.shape[0]
    num_tokens = grid * grid
    target = regenerate.reshape(-1).cpu().numpy()
    unknown = int(target.sum())
    if unknown == 0:
        raise SettingError("the mask covers no token: nothing to regenerate; paint the area to regenerate with "
                           "mask value ≥ 0.5")
    steps = min(steps, unknown)  # at least one token per step
    if unknown == num_tokens:  # plain generation, exactly as generate() would do it
        schedule = build_schedule(grid, steps=steps, order=order, seed=seed, proximity=proximity, repulsion=repulsion)
        return EditPlan(schedule.order, schedule.group_sizes, 0)
    new_sizes = group_sizes_for(unknown, steps)
    kept = np.flatnonzero(~target)
    rng_order = random_order(len(kept), seed)
    kept_sizes = _context_groups(len(kept), num_tokens, steps)
    if order == "locality":
        rep = default_repulsion(grid, grid) if repulsion is None else repulsion
        generated = locality_order(grid, grid, new_sizes, seed, proximity=proximity, repulsion=rep, decoded=~target)
    elif order == "random":
        positions = np.flatnonzero(target)
        generated = positions[random_order(len(positions), seed)]
    else:  # raster
        generated = np.flatnonzero(target)
    return EditPlan(np.concatenate([kept[rng_order], generated]), (*kept_sizes, *new_sizes), len(kept_sizes))


def _context_groups(kept: int, num_tokens: int, steps: int) -> list[int]:
    """The first groups of a full `steps`-step schedule, cut to hold exactly `kept` tokens."""
    sizes, total = [], 0
    for size in group_sizes_for(num_tokens, max(steps, 2)):
        sizes.append(min(size, kept - total))
        total += sizes[-1]
        if total == kept:
            return sizes
    raise AssertionError("a full schedule holds every token")


@dataclass
class EditResult:
    images: torch.Tensor  # (B, H, W, 3) in [0, 1] at the model's resolution
    tokens: torch.Tensor  # (B, N) raster
    regenerated: torch.Tensor  # (grid, grid) bool
    message: str = ""


@torch.no_grad()
def edit(model: LPD, tokenizer: VQModel, images: torch.Tensor, mask: torch.Tensor, labels, *,
         steps: int | None = None, order: str = "locality", seed: int = 0, cfg: float | None = None,
         cfg_schedule: str | None = None, temperature: float | None = None, top_k: int | None = None,
         top_p: float | None = None, grow: int = 0, feather: int = 0, composite: bool = True,
         proximity: float = 1.0, repulsion: int | None = None, negative=None,
         callback: Callable[[DecodeStep], None] | None = None, fast: bool = False) -> EditResult:
    """Regenerate the masked part of images (B, H, W, 3) in [0, 1] under class `labels` (one for
    all, or one per image), guided away from `negative` when given (as for `generate`).

    One mask (H, W) or its first row (B, H, W) serves the whole batch; it must have the images'
    aspect ratio (`check_mask`). Images are fitted to the model's resolution first
    (`fit_to_resolution`). steps, cfg, cfg_schedule, temperature, top_k, top_p, repulsion: None =
    the model's defaults (`checkpoints.resolve_settings`; steps count the groups of the regenerated
    tokens, at most one per token). With `composite`, pixels outside the
    regenerated tokens are the input's own; `feather` (in tokens) blends across the border. Image b
    uses seed + b. `fast`: `generate`'s fast path. Every input is checked before any work.
    """
    check_pair(model, tokenizer)
    side = model.config.grid_size * tokenizer.stride
    # the input fitted, the decoded and the composited images fit in memory: checked before the pixels are read
    tokenizer.images_at_once(image_count(images), side, side, copies=3)
    images = check_images(images)
    check_mask(images, mask)
    batch = images.shape[0]
    settings = resolve_settings(model, steps=steps, cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature,
                                top_k=top_k, top_p=top_p, repulsion=repulsion, steps_up_to_tokens=True)
    order, proximity = check_order(order), check_proximity(proximity)
    seeds = seeds_for(seed, batch)
    grow, feather = check_integer("grow", grow, 0), check_integer("feather", feather, 0)
    composite, fast = check_flag("composite", composite), check_flag("fast", fast)
    check_callback(callback)
    labels = check_labels(labels, model.config.num_classes, batch)
    check_negative(negative, settings.cfg)
    check_negative_classes(negative, model.config.num_classes, batch)
    grid, stride = model.config.grid_size, tokenizer.stride
    size = grid * stride
    fitted = fit_to_resolution(images, size)
    mask = mask if mask.ndim == 2 else mask[0]
    fitted_mask = fit_to_resolution(mask[None, :, :, None].float(), size)[0, :, :, 0]
    regenerate = mask_to_grid(fitted_mask, grid, grow)
    if not regenerate.any():
        return EditResult(fitted, tokenizer.encode_images(fitted), regenerate,
                          "the mask covers no token, so the image is returned unchanged; paint the area to "
                          "regenerate with mask value ≥ 0.5")
    plan = plan_edit(regenerate, settings.steps, order, seeds[0], proximity, settings.repulsion)
    codes = tokenizer.encode_images(fitted).to(model.pos_embed.device)
    tokens = generate(model, labels=labels, batch=batch, orders=torch.from_numpy(plan.order),
                      group_sizes=plan.group_sizes, cfg=settings.cfg, cfg_schedule=settings.cfg_schedule,
                      temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p, seeds=seeds,
                      negative=negative, callback=callback, known_tokens=codes, known_steps=plan.known_steps,
                      fast=fast)
    decoded = tokenizer.decode_images(tokens)
    if composite:
        alpha = _composite_alpha(regenerate, stride, feather)
        decoded = alpha[None, :, :, None] * decoded + (1 - alpha[None, :, :, None]) * fitted
    return EditResult(decoded, tokens.cpu(), regenerate)


def image_count(images) -> int:
    """How many images a batch holds, as far as its shape tells before it is checked."""
    return images.shape[0] if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[0] else 1


def _composite_alpha(regenerate: torch.Tensor, stride: int, feather: int) -> torch.Tensor:
    """Pixel weight of the generated image: 1 on regenerated tokens, 0 elsewhere, blended over
    `feather` tokens outside the border when asked."""
    alpha = regenerate.float().cpu().repeat_interleave(stride, 0).repeat_interleave(stride, 1)
    if feather > 0:
        width = feather * stride
        grown = F.max_pool2d(alpha[None, None], 2 * width + 1, stride=1, padding=width)
        blurred = F.avg_pool2d(grown, 2 * width + 1, stride=1, padding=width, count_include_pad=False)[0, 0]
        alpha = torch.maximum(alpha, blurred)
    return alpha


def check_mask(image, mask) -> None:
    """The one mask rule (editing and the edit node): a (height, width) or (batch, height, width)
    tensor of finite values in [0, 1] (or booleans), with the image's aspect ratio, because the mask is fitted
    to the model like the image (another size with the same ratio is fine). SettingError if not."""
    if not isinstance(mask, torch.Tensor):
        raise SettingError(f"the mask must be a torch tensor (height, width) in [0, 1], got {type(mask).__name__}")
    if mask.ndim not in (2, 3):
        raise SettingError(f"the mask must be (height, width) or (batch, height, width), got shape "
                           f"{tuple(mask.shape)}; squeeze the extra dimensions (e.g. mask[..., 0] for a "
                           f"channel axis)")
    if mask.numel() == 0:
        raise SettingError(f"the mask is empty (shape {tuple(mask.shape)}); give one with the image's frame")
    if mask.dtype != torch.bool:  # True/False masks are fine as they are
        check_pixels("mask", mask, "a mask is (height, width) or (batch, height, width), 1 = regenerate")
    image_h, image_w = image.shape[1:3]
    mask_h, mask_w = mask.shape[-2:]
    if (mask_h, mask_w) == (image_h, image_w) or float(mask.max()) < 0.5:
        return
    if abs(mask_w / mask_h - image_w / image_h) > 0.01 * image_w / image_h:
        raise SettingError(f"the mask is {mask_w}×{mask_h} px but the image {image_w}×{image_h} px: their aspect "
                           f"ratios differ, so the mask would not line up with the image; use a mask made for "
                           f"this image (e.g. from the same Load Image node, or resized with it)")
