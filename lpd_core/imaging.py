"""Pictures for people: image grids and order maps, as PIL images, and saving them safely."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import SettingError
from .files import ANIMATION_FORMATS, IMAGE_FORMATS, atomic_write, check_animation_path, check_image_path
from .settings import check_integer


def save_image(picture: Image.Image, path) -> Path:
    """Write a PIL image atomically, in the format its suffix names (see `check_image_path`)."""
    path = check_image_path(path)
    return atomic_write(path, lambda temp: picture.save(temp, format=IMAGE_FORMATS[path.suffix.lower()]))


def save_animation(frames, path, fps: float) -> Path:
    """Write (frames, H, W, 3) images in [0, 1] as one looping animation at `fps` frames per
    second, atomically, in the format its suffix names (see `check_animation_path`)."""
    path = check_animation_path(path)
    pictures = [to_pil(frame) for frame in frames]
    format_name = ANIMATION_FORMATS[path.suffix.lower()]
    options = dict(save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0)
    if format_name == "WEBP":
        options["lossless"] = True
    return atomic_write(path, lambda temp: pictures[0].save(temp, format=format_name, **options))


def to_pil(image: torch.Tensor | np.ndarray) -> Image.Image:
    """One (H, W, 3) image in [0, 1] → PIL."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    return Image.fromarray(np.clip(np.rint(array * 255), 0, 255).astype(np.uint8))


def image_grid(images, columns: int | None = None, padding: int = 2) -> Image.Image:
    """(B, H, W, 3) images in [0, 1] → one PIL image, `columns` per row (default, or 0: near
    square), `padding` white pixels between them."""
    count = len(images)
    if count == 0:
        raise SettingError("no images to lay out in a grid: give at least one image")
    columns = check_integer("columns", columns, 0) if columns is not None else 0
    padding = check_integer("padding", padding, 0)
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    height, width = images[0].shape[:2]
    sheet = Image.new("RGB", (columns * (width + padding) - padding, rows * (height + padding) - padding),
                      "white")
    for i, image in enumerate(images):
        sheet.paste(to_pil(image), ((i % columns) * (width + padding), (i // columns) * (height + padding)))
    return sheet


def _step_colours(steps: int) -> np.ndarray:
    """A dark-to-bright ramp (blue → yellow) with one colour per step."""
    t = np.linspace(0.0, 1.0, max(steps, 1))[:, None]
    start, middle, end = np.array([0.15, 0.1, 0.45]), np.array([0.1, 0.6, 0.55]), np.array([0.98, 0.9, 0.15])
    return np.where(t < 0.5, start + (middle - start) * t * 2, middle + (end - middle) * (t - 0.5) * 2)


def order_map_image(step_map: np.ndarray, steps: int | None = None, cell: int = 16) -> np.ndarray:
    """Order map (H, W) of step indices → (H·cell, W·cell, 3) float image in [0, 1]: early steps
    dark blue, late steps yellow, with a thin grid so each token is visible."""
    step_map = np.asarray(step_map)
    steps = int(step_map.max()) + 1 if steps is None else steps
    colours = _step_colours(steps)[step_map]
    picture = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    if cell >= 4:
        picture[::cell, :, :] *= 0.75
        picture[:, ::cell, :] *= 0.75
    return picture.astype(np.float32)
