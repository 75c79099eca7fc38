"""Generation settings: a model's defaults plus what the user overrode, checked once.

Every caller (nodes, CLI, sample-many, editing, benchmarks) resolves its settings here, so "not
given means the model's value", the valid ranges and the seed rule are written once. Every check
raises `SettingError` with the setting's name, its valid range, the value given and what to use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .errors import SettingError

CFG_SCHEDULES = ("linear", "constant")
EASINGS = ("linear", "ease-in-out", "ease-in", "ease-out")  # class-morph weight curves (lpd_core.morph)
MAX_SEED = 2**64 - 1  # seeds are unsigned 64-bit: image i of a run uses (seed + i) mod 2^64

# What to do about each setting, appended to its range error.
_HINTS = {
    "cfg": "1 turns guidance off; the published models use about 4 to 7",
    "temperature": "1 samples the model's distribution, 0 is greedy",
    "top_p": "1 turns nucleus filtering off",
    "top_k": "0 turns top-k filtering off",
    "steps": "fewer steps are faster, one token per step is the most",
    "repulsion": "leave it out for the grid's default",
    "proximity": "the default is 1.0",
    "seed": "any whole number from 0 to 2^64-1 works",
    "batch size": "ask for at least one image",
    "frames": "a morph needs the start and the end frame at least",
    "layout steps": "0 blends every step",
    "fps": "8 to 15 frames per second play a morph smoothly",
}


@dataclass(frozen=True)
class GenerationSettings:
    """The settings one generation runs with; stored in a model's file as its defaults."""
    steps: int
    cfg: float
    cfg_schedule: str = "linear"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repulsion: int | None = None  # locality order; None: the grid's default


def _fix(name: str) -> str:
    return f" ({_HINTS[name]})" if name in _HINTS else ""


def check_number(name: str, value, low: float, high: float | None = None, low_open: bool = False) -> float:
    """`value` as a finite float in [low, high] (or (low, high] with `low_open`), else SettingError."""
    if isinstance(value, bool):
        raise SettingError(f"{name} must be a number, got {value!r}{_fix(name)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a number, got {value!r}{_fix(name)}") from None
    upper = "" if high is None else f" and at most {high:g}"
    lower = f"more than {low:g}" if low_open else f"at least {low:g}"
    if not math.isfinite(number) or number < low or (low_open and number == low) or (high is not None and number > high):
        raise SettingError(f"{name} must be a finite number {lower}{upper}, got {value}; give one in that range"
                           f"{_fix(name)}")
    return number


def check_integer(name: str, value, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high], else SettingError."""
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise SettingError(f"{name} must be a whole number, got {value!r}{_fix(name)}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise SettingError(f"{name} must be a whole number, got {value!r}{_fix(name)}") from None
    if number < low or (high is not None and number > high):
        valid = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SettingError(f"{name} must be {valid}, got {value}{_fix(name)}")
    return number


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise SettingError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


def check_settings(settings: GenerationSettings, num_tokens: int) -> GenerationSettings:
    """The same settings with every value checked against its valid range (SettingError if not)."""
    return replace(
        settings,
        steps=check_integer("steps", settings.steps, 1, num_tokens),
        cfg=check_number("cfg", settings.cfg, 0.0),
        cfg_schedule=check_choice("cfg schedule", settings.cfg_schedule, CFG_SCHEDULES),
        temperature=check_number("temperature", settings.temperature, 0.0),
        top_k=check_integer("top_k", settings.top_k, 0),
        top_p=check_number("top_p", settings.top_p, 0.0, 1.0, low_open=True),
        repulsion=None if settings.repulsion is None else check_integer("repulsion", settings.repulsion, 0),
    )


def resolve_settings(model, *, steps: int | None = None, cfg: float | None = None, cfg_schedule: str | None = None,
                     temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                     repulsion: int | None = None) -> GenerationSettings:
    """The settings to generate with: each one given, or else the model's default for that step
    count (`checkpoints.generation_defaults`: stored in the file, published, or plain). None means
    "not given"; every value is checked before any work starts."""
    from .checkpoints import generation_defaults

    if steps is not None:
        steps = check_integer("steps", steps, 1, model.config.num_tokens)
    defaults = generation_defaults(model, steps)
    given = dict(cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                 repulsion=repulsion)
    return check_settings(replace(defaults, **{k: v for k, v in given.items() if v is not None}),
                          model.config.num_tokens)


def check_proximity(proximity) -> float:
    """The locality order's proximity threshold: a finite number > 0."""
    return check_number("proximity", proximity, 0.0, low_open=True)


def check_order(order) -> str:
    """One of the order kinds (locality, random, raster)."""
    from .schedule import ORDER_KINDS
    return check_choice("order", order, ORDER_KINDS)


def check_seed(seed) -> int:
    """A seed in the documented range 0..2^64−1."""
    return check_integer("seed", seed, 0, MAX_SEED)


def check_negative(negative, cfg: float) -> None:
    """A negative class (anything but None) needs guidance: at cfg 1 nothing reads it."""
    if negative is not None and cfg == 1.0:
        raise SettingError("a negative class works through guidance, which is off at cfg 1: set cfg above 1 "
                           "(e.g. the model's default), or leave the negative class out")


def check_frames(frames) -> int:
    """The frames of a class morph: at least 2 (the start class and the end class)."""
    return check_integer("frames", frames, 2)


def check_easing(easing) -> str:
    """One of the class morph's weight curves (EASINGS)."""
    return check_choice("easing", easing, EASINGS)


def check_layout_steps(layout_steps, steps: int | None = None) -> int:
    """A class morph's layout steps: 0 or more, and fewer than the `steps` of the schedule when known
    (at least one step must blend)."""
    return check_integer("layout steps", layout_steps, 0, None if steps is None else steps - 1)


def check_fps(fps) -> float:
    """Frames per second of an animation file: more than 0, at most 100 (GIF's finest step is 10 ms)."""
    return check_number("fps", fps, 0.0, 100.0, low_open=True)


def check_count(name: str, count) -> int:
    """A number of images: a whole number ≥ 1."""
    return check_integer(name, count, 1)


def seed_of(seed: int, index: int) -> int:
    """The seed of image `index` of a run that starts at `seed`: seed + index, wrapped at 2^64."""
    return (seed + index) % (MAX_SEED + 1)


def seeds_for(seed: int, count: int) -> list[int]:
    """Seeds of images 0..count−1 of a run that starts at `seed`."""
    seed = check_seed(seed)
    count = check_count("batch size", count)
    return [seed_of(seed, i) for i in range(count)]
