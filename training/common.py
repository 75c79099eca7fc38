"""What the tokenizer, LPD and judge training share: seeding, the learning-rate schedule, image
conversion and timed progress lines."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from lpd_core.vq import images_to_pixels


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int, threads: int | None = None) -> None:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.05) -> float:
    """Linear warm-up to `peak`, then cosine decay to `floor · peak`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def to_pixels(images_uint8: np.ndarray, device) -> torch.Tensor:
    """uint8 (B, H, W, 3) → pixels (B, 3, H, W) in [-1, 1] on `device`."""
    images = torch.from_numpy(images_uint8).to(device).float() / 255.0
    return images_to_pixels(images)


class Log:
    """Progress lines to stdout (or a callable), each with the elapsed time."""

    def __init__(self, sink=None):
        self.start = time.perf_counter()
        self.sink = sink if sink is not None else (lambda line: print(line, flush=True))

    def __call__(self, message: str) -> None:
        if self.sink:
            self.sink(f"[{time.perf_counter() - self.start:7.1f}s] {message}")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
