"""Generation settings and their rules: every value a user gives, checked once, before any work.

Every door (the CLI, the Python API, the nodes, sample-many, editing, benchmarks) checks what it is
given through the functions here, so the valid ranges, the choices and the seed rule are written
once. Every check raises `SettingError` with the setting's name, its valid range, the value given
and what to use. A model's own defaults are filled in by `checkpoints.resolve_settings`.

This module imports nothing but the standard library and `errors`, so a command line can check its
arguments before torch is imported.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, replace

from .errors import SettingError

CFG_SCHEDULES = ("linear", "constant")
ORDER_KINDS = ("locality", "random", "raster")
EASINGS = ("linear", "ease-in-out", "ease-in", "ease-out")  # class-morph weight curves (lpd_core.morph)
MAX_SEED = 2**64 - 1  # seeds are unsigned 64-bit: image i of a run uses (seed + i) mod 2^64
# Guidance multiplies logit differences by up to cfg; far beyond what anyone uses (the published
# models use 4 to 7.3), and far below where float32/bf16 logits would overflow to infinity.
MAX_CFG = 1000.0
# Logits are divided by the temperature in float32: below this they overflow to infinity (NaN
# probabilities), and a temperature this small already samples the most likely token.
MIN_TEMPERATURE = 1e-4
# Far above where sampling is as good as uniform over the codes; the fast path keeps the temperature
# in a float32 tensor, which cannot hold numbers beyond about 3.4e38.
MAX_TEMPERATURE = 1000.0

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
    "strength": "0 gives the image itself, 1 a fresh sample",
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


def _is_bool(value) -> bool:
    # Python's, numpy's and torch's booleans: True is not the number 1 here
    return isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool")


def _as_float(name: str, value) -> float:
    if _is_bool(value) or isinstance(value, (str, bytes)):
        raise SettingError(f"{name} must be a number, got {value!r}{_fix(name)}")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError, OverflowError):  # RuntimeError: a tensor of several values
        raise SettingError(f"{name} must be a number, got {value!r}{_fix(name)}") from None


def check_number(name: str, value, low: float, high: float | None = None, low_open: bool = False) -> float:
    """`value` as a finite float in [low, high] (or (low, high] with `low_open`), else SettingError."""
    number = _as_float(name, value)
    upper = "" if high is None else f" and at most {high:g}"
    lower = f"more than {low:g}" if low_open else f"at least {low:g}"
    if not math.isfinite(number) or number < low or (low_open and number == low) or (high is not None and number > high):
        raise SettingError(f"{name} must be a finite number {lower}{upper}, got {value}; give one in that range"
                           f"{_fix(name)}")
    return number


def whole_number(name: str, value) -> int:
    """`value` as an int, else SettingError. Integers of any kind (Python, numpy, a one-element
    integer tensor) and whole floats (3.0) count; 2.5, NaN, text and booleans do not."""
    if _is_bool(value) or isinstance(value, (str, bytes)):
        raise SettingError(f"{name} must be a whole number, got {value!r}{_fix(name)}")
    try:
        return operator.index(value)
    except TypeError:
        real = _as_float(name, value)
        if not real.is_integer():
            raise SettingError(f"{name} must be a whole number, got {value!r}{_fix(name)}") from None
        return int(real)


def check_integer(name: str, value, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high] (`whole_number`), else SettingError."""
    number = whole_number(name, value)
    if number < low or (high is not None and number > high):
        valid = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SettingError(f"{name} must be {valid}, got {number}{_fix(name)}")
    return number


def check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise SettingError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


def check_flag(name: str, value) -> bool:
    """An on/off option: True or False (numpy's too), not a word or a number that looks like one."""
    if not _is_bool(value):
        raise SettingError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_temperature(temperature) -> float:
    """0 (greedy) or a finite number from `MIN_TEMPERATURE` to `MAX_TEMPERATURE`."""
    temperature = check_number("temperature", temperature, 0.0, MAX_TEMPERATURE)
    if 0 < temperature < MIN_TEMPERATURE:
        raise SettingError(f"temperature {temperature:g} is too small to sample with (the least is "
                           f"{MIN_TEMPERATURE:g}); use 0 for greedy decoding, which is what it comes to")
    return temperature


def _setting_rules(num_tokens: int | None) -> dict:
    """The check of each GenerationSettings field; `num_tokens`, the model's token count, bounds the steps."""
    return dict(
        steps=lambda value: check_integer("steps", value, 1, num_tokens),
        cfg=lambda value: check_number("cfg", value, 0.0, MAX_CFG),
        cfg_schedule=lambda value: check_choice("cfg schedule", value, CFG_SCHEDULES),
        temperature=check_temperature,
        top_k=lambda value: check_integer("top_k", value, 0),
        top_p=lambda value: check_number("top_p", value, 0.0, 1.0, low_open=True),
        repulsion=lambda value: check_integer("repulsion", value, 0),
    )


def check_values(num_tokens: int | None = None, **values) -> dict:
    """The generation settings given (by their GenerationSettings names; None = not given), each checked
    against its valid range. The command line checks the settings it was given so before it loads a
    model (num_tokens None), and the steps, whose range is the model's, once it has one."""
    rules = _setting_rules(num_tokens)
    return {name: rules[name](value) for name, value in values.items() if value is not None}


def check_settings(settings: GenerationSettings, num_tokens: int) -> GenerationSettings:
    """The same settings with every value checked against its valid range (SettingError if not)."""
    rules = _setting_rules(num_tokens)
    return replace(settings, **{name: rules[name](value) for name, value in asdict(settings).items()
                                if not (name == "repulsion" and value is None)})  # None: the grid's default


def check_proximity(proximity) -> float:
    """The locality order's proximity threshold: a finite number > 0."""
    return check_number("proximity", proximity, 0.0, low_open=True)


def check_order(order) -> str:
    """One of the order kinds (locality, random, raster)."""
    return check_choice("order", order, ORDER_KINDS)


def check_seed(seed) -> int:
    """A seed in the documented range 0..2^64−1."""
    return check_integer("seed", seed, 0, MAX_SEED)


def check_strength(strength) -> float:
    """A variation's strength: the share of its tokens regenerated, 0 (the image itself) to 1 (a fresh sample)."""
    return check_number("strength", strength, 0.0, 1.0)


def check_negative(negative, cfg: float) -> None:
    """A negative class (anything but None) needs guidance: at cfg 1 nothing reads it."""
    if negative is not None and cfg == 1.0:
        raise SettingError("a negative class works through guidance, which is off at cfg 1: set cfg above 1 "
                           "(e.g. the model's default), or leave the negative class out")


def check_switch_step(switch_step, steps: int | None = None) -> int:
    """The decode step (0-based) at which a class switch takes over: 0 or more, and before the last
    of the `steps` generated steps when they are known."""
    return check_integer("switch_step", switch_step, 0, None if steps is None else steps - 1)


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


def check_group_sizes(group_sizes, total: int, what: str = "the grid") -> tuple[int, ...]:
    """Tokens per step: whole numbers ≥ 1 that add up to the `total` tokens of `what`."""
    if isinstance(group_sizes, (str, bytes)) or not hasattr(group_sizes, "__iter__"):
        raise SettingError(f"group sizes must be a list of whole numbers ≥ 1 (tokens per step), got {group_sizes!r}")
    sizes = tuple(check_integer("every group size", size, 1) for size in group_sizes)
    if not sizes:
        raise SettingError("group sizes are empty: give at least one step's number of tokens")
    if sum(sizes) != total:
        raise SettingError(f"group sizes sum to {sum(sizes)}, but {what} has {total} tokens to decode; they must "
                           f"sum to exactly {total}")
    return sizes


def check_pixels(name: str, pixels, stride: int, least: int | None = None) -> int:
    """A size in pixels: a whole number ≥ `least` (one token by default) that is a multiple of the
    tokenizer's `stride`, since a token covers stride × stride pixels. Returns it in tokens."""
    pixels = check_integer(name, pixels, stride if least is None else least)
    if pixels % stride:
        below, above = pixels // stride * stride, (pixels // stride + 1) * stride
        nearest = f"{below} or {above}" if below >= (least or stride) else f"{above}"
        raise SettingError(f"{name} {pixels} px is not a multiple of the tokenizer's stride ({stride} px): a token "
                           f"covers {stride}×{stride} px; use {nearest}")
    return pixels // stride


def seed_of(seed: int, index: int) -> int:
    """The seed of image `index` of a run that starts at `seed`: seed + index, wrapped at 2^64."""
    return (seed + index) % (MAX_SEED + 1)


def seeds_for(seed: int, count: int) -> list[int]:
    """Seeds of images 0..count−1 of a run that starts at `seed`."""
    seed = check_seed(seed)
    count = check_count("batch size", count)
    return [seed_of(seed, i) for i in range(count)]
