"""Generation settings: a model's defaults plus what the user overrode, checked once.

Every caller (nodes, CLI, sample-many, editing, benchmarks) resolves its settings here, so "not
given means the model's value", the valid ranges and the seed rule are written once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .errors import SettingError

CFG_SCHEDULES = ("linear", "constant")
MAX_SEED = 2**64 - 1  # seeds are unsigned 64-bit: image i of a run uses (seed + i) mod 2^64


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


def _finite(name: str, value, low: float, high: float | None = None, low_open: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a number, got {value!r}") from None
    upper = "" if high is None else f" and at most {high:g}"
    lower = f"more than {low:g}" if low_open else f"at least {low:g}"
    if not math.isfinite(value) or value < low or (low_open and value == low) or (high is not None and value > high):
        raise SettingError(f"{name} must be a finite number {lower}{upper}, got {value}")
    return value


def _integer(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, float) and not value.is_integer() or isinstance(value, bool):
        raise SettingError(f"{name} must be a whole number, got {value!r}")
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a whole number, got {value!r}") from None
    if value < low or (high is not None and value > high):
        valid = f"{low}..{high}" if high is not None else f"at least {low}"
        raise SettingError(f"{name} must be {valid}, got {value}")
    return value


def check_settings(settings: GenerationSettings, num_tokens: int) -> GenerationSettings:
    """The same settings with every value checked against its valid range (SettingError if not)."""
    if settings.cfg_schedule not in CFG_SCHEDULES:
        raise SettingError(f"unknown cfg schedule {settings.cfg_schedule!r}; choose one of {', '.join(CFG_SCHEDULES)}")
    return replace(
        settings,
        steps=_integer("steps", settings.steps, 1, num_tokens),
        cfg=_finite("cfg", settings.cfg, 0.0),
        temperature=_finite("temperature", settings.temperature, 0.0),
        top_k=_integer("top_k", settings.top_k, 0),
        top_p=_finite("top_p", settings.top_p, 0.0, 1.0, low_open=True),
        repulsion=None if settings.repulsion is None else _integer("repulsion", settings.repulsion, 0),
    )


def resolve_settings(model, *, steps: int | None = None, cfg: float | None = None, cfg_schedule: str | None = None,
                     temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                     repulsion: int | None = None) -> GenerationSettings:
    """The settings to generate with: each one given, or else the model's default for that step
    count (`checkpoints.generation_defaults`: stored in the file, published, or plain). None means
    "not given"; every value is checked before any work starts."""
    from .checkpoints import generation_defaults

    if steps is not None:
        steps = _integer("steps", steps, 1, model.config.num_tokens)
    defaults = generation_defaults(model, steps)
    given = dict(cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                 repulsion=repulsion)
    return check_settings(replace(defaults, **{k: v for k, v in given.items() if v is not None}),
                          model.config.num_tokens)


def check_seed(seed) -> int:
    """A seed in the documented range 0..2^64−1."""
    return _integer("seed", seed, 0, MAX_SEED)


def seeds_for(seed: int, count: int) -> list[int]:
    """Seeds of images 0..count−1 of a run that starts at `seed`: seed + i, wrapped at 2^64."""
    seed = check_seed(seed)
    count = _integer("batch size", count, 1)
    return [(seed + i) % (MAX_SEED + 1) for i in range(count)]
