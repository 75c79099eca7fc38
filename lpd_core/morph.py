"""Class-morph animations: frames that go from one class (or mix) to another.

Frame i is conditioned on the mix (1 − wᵢ)·start + wᵢ·end, with wᵢ running from 0 to 1 along an
easing curve, and every frame shares everything else: the seed (so the same random number decides
the token of each cache slot in every frame), the order and the settings. The first frame is
exactly plain generation of the start class with that seed and the last exactly that of the end
class (a one-hot mix is the class's own embedding, `lpd_core.blend`).

Shared random numbers alone do not keep neighbouring frames close: a token is drawn by inverse CDF
over the codebook, so a slightly moved distribution often lands the same number on another code,
and every later token, decoded in the context of the changed one, then changes too. The earliest
tokens, which set composition and colours, drift like that over and over as the weight grows. So
the first `layout_steps` steps of every frame (by default a quarter of the steps) are decoded under
one end class, the start class in the frames with w < 0.5 and the end class in the others, and the
class slot switches to the frame's mix after them (`generate`'s class switch): the layout changes
once, in the middle, and the blend works on what is decoded after it. More layout steps keep
neighbouring frames closer but leave less for the blend to change (with half the steps, each half
of a morph on the demo model is nearly one still picture). `benchmarks.bench_creative` measures
them (0 layout steps: a plain blend) against the change between two seeds of one class.

All frames are one batch of `generate` (decoded in chunks where they do not fit in memory), so a
morph costs what a batch of that many images costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .blend import mix_weights
from .checkpoints import resolve_settings
from .errors import SettingError
from .generate import DecodeStep, generate
from .model import LPD
from .schedule import Schedule
from .settings import check_easing, check_frames, check_layout_steps, check_seed
from .vq import VQModel
from .weights import check_pair

_EASE = {
    "linear": lambda t: t,
    "ease-in-out": lambda t: (1 - math.cos(math.pi * t)) / 2,  # slow at both ends
    "ease-in": lambda t: 1 - math.cos(math.pi * t / 2),  # slow start
    "ease-out": lambda t: math.sin(math.pi * t / 2),  # slow end
}


def morph_weights(frames: int, easing: str = "linear") -> list[float]:
    """The end class's weight in each of `frames` frames: 0 in the first, 1 in the last, the
    frames between spaced evenly in time and shaped by `easing` (one of `settings.EASINGS`)."""
    frames = check_frames(frames)
    curve = _EASE[check_easing(easing)]
    weights = [curve(i / (frames - 1)) for i in range(frames)]
    weights[0], weights[-1] = 0.0, 1.0  # exactly the two classes, whatever the curve's rounding
    return weights


def morph_mixes(start, end, weights, num_classes: int) -> torch.Tensor:
    """(frames, num_classes) class weights: row i is (1 − weights[i])·start + weights[i]·end, where
    start and end are a class index or a mix (`lpd_core.blend`). Rows with weight 0 or 1 are
    exactly the start's or end's weights."""
    first = mix_weights(start, num_classes, 1, "start classes")[0]
    last = mix_weights(end, num_classes, 1, "end classes")[0]
    w = torch.tensor(weights, dtype=torch.float32)[:, None]
    return (1 - w) * first + w * last


def frame_classes(start, end, weights, num_classes: int, layout_steps: int) -> dict:
    """`generate`'s class arguments for frames with these end-class weights: the mixes in the class
    slot, after `layout_steps` steps under the nearer end class (the start class where w < 0.5)."""
    mixes = morph_mixes(start, end, weights, num_classes)
    if not layout_steps:
        return dict(labels=mixes)
    return dict(labels=[start if w < 0.5 else end for w in weights], switch_labels=mixes, switch_step=layout_steps)


@dataclass
class MorphResult:
    images: torch.Tensor  # (frames, H, W, 3) in [0, 1]
    tokens: torch.Tensor  # (frames, N) raster
    weights: list[float]  # the end class's weight in each frame


@torch.no_grad()
def class_morph(model: LPD, tokenizer: VQModel, start, end, *, schedule: Schedule, frames: int,
                easing: str = "linear", layout_steps: int | None = None, seed: int = 0, cfg: float | None = None,
                cfg_schedule: str | None = None, temperature: float | None = None, top_k: int | None = None,
                top_p: float | None = None, negative=None, callback: Callable[[DecodeStep], None] | None = None,
                fast: bool = False) -> MorphResult:
    """`frames` images from class (or mix) `start` to `end`, all with `seed` and `schedule`'s
    order; see the module docstring for `layout_steps` (0: every step blends; fewer than the
    schedule's steps; None: a quarter of them). cfg, cfg_schedule, temperature, top_k, top_p:
    None = the model's defaults (`checkpoints.resolve_settings`). `negative`: as for `generate`
    (one for every frame). `callback` runs after every step of the one batch that makes all
    frames. Every input is checked before any work."""
    check_pair(model, tokenizer)
    if not isinstance(schedule, Schedule):
        raise SettingError(f"schedule must be an lpd_core Schedule (lpd_core.build_schedule), got "
                           f"{type(schedule).__name__}")
    seed = check_seed(seed)
    side = model.config.grid_size * tokenizer.stride
    # the frames fit in memory: before any work, and before anything is made per frame (weights, mixes)
    tokenizer.images_at_once(check_frames(frames), side, side)
    weights = morph_weights(frames, easing)
    layout_steps = default_layout_steps(schedule.steps) if layout_steps is None \
        else check_layout_steps(layout_steps, schedule.steps)
    settings = resolve_settings(model, steps=schedule.steps, cfg=cfg, cfg_schedule=cfg_schedule,
                                temperature=temperature, top_k=top_k, top_p=top_p)
    classes = frame_classes(start, end, weights, model.config.num_classes, layout_steps)
    tokens = generate(model, schedule, **classes, seeds=[seed] * len(weights), cfg=settings.cfg,
                      cfg_schedule=settings.cfg_schedule, temperature=settings.temperature, top_k=settings.top_k,
                      top_p=settings.top_p, negative=negative, callback=callback, fast=fast)
    return MorphResult(tokenizer.decode_images(tokens), tokens.cpu(), weights)


def default_layout_steps(steps: int) -> int:
    """The layout steps a morph takes when none are given: a quarter of the schedule's steps."""
    return steps // 4
