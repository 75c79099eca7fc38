"""Procedural class-labelled images of coloured shapes and patterns: the demo model's data set.

Everything here is drawn by our own code from a seed (numpy's PCG64 through `default_rng`, and
PIL's rasteriser), so the data set is the same on every machine and needs no download::

    from training.shapes import SHAPE_CLASSES, draw, dataset
    image = draw(SHAPE_CLASSES.index("star"), seed=3)     # (32, 32, 3) float32 in [0, 1]
    images, labels = dataset(1000, seed=0)                # (1000, 32, 32, 3), (1000,)

Each image is one shape (or a patterned square) in a bright colour on a dark background, with
random position, size, colour and background. Shapes are drawn at 4× and box-filtered down, so
edges are anti-aliased.

The demo model shipped in `lpd_core/data/demo/` was trained on this data set (see MODEL_CARD.md
there and `python -m training --help`). Its class names are stored in the model file, so
inference (`lpd_core`) never needs this module.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES = (
    "circle", "square", "triangle", "cross", "ring",
    "horizontal stripes", "vertical stripes", "checkerboard", "diamond", "star",
)
NUM_CLASSES = len(SHAPE_CLASSES)
DEFAULT_SIZE = 32

# Bright foregrounds and dark backgrounds, so every shape stands out from its background.
FOREGROUNDS = np.array([
    (230, 40, 40), (40, 200, 60), (50, 110, 240), (245, 215, 40),
    (40, 215, 225), (225, 60, 210), (250, 140, 30), (240, 240, 240),
], dtype=np.uint8)
BACKGROUNDS = np.array([
    (15, 15, 20), (70, 70, 75), (20, 30, 80), (25, 70, 35), (85, 25, 30),
], dtype=np.uint8)

_SUPERSAMPLE = 4


def class_index(name_or_index) -> int:
    """A class index from its index or its name (case-insensitive, '_' or ' ')."""
    if isinstance(name_or_index, (int, np.integer)):
        index = int(name_or_index)
        if not 0 <= index < NUM_CLASSES:
            raise ValueError(f"shape class index {index} is out of range 0..{NUM_CLASSES - 1}")
        return index
    key = str(name_or_index).strip().lower().replace("_", " ")
    if key not in SHAPE_CLASSES:
        raise ValueError(f"unknown shape class {name_or_index!r}; known: {', '.join(SHAPE_CLASSES)}")
    return SHAPE_CLASSES.index(key)


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise ValueError("give a seed or a numpy Generator")
    return np.random.default_rng(rng)


def _polygon(cx, cy, radius, angles):
    return [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]


def _star(cx, cy, outer, inner, points=5):
    start = -math.pi / 2
    vertices = []
    for i in range(2 * points):
        r = outer if i % 2 == 0 else inner
        a = start + i * math.pi / points
        vertices.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return vertices


def _draw_uint8(index: int, rng: np.random.Generator, size: int) -> np.ndarray:
    k = _SUPERSAMPLE
    big = size * k
    bg = tuple(int(c) for c in BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    fg = tuple(int(c) for c in FOREGROUNDS[rng.integers(len(FOREGROUNDS))])
    canvas = Image.new("RGB", (big, big), bg)
    pen = ImageDraw.Draw(canvas)
    name = SHAPE_CLASSES[index]
    if name in ("horizontal stripes", "vertical stripes", "checkerboard"):
        side = rng.uniform(0.55, 0.9) * size
        x0 = rng.uniform(0, size - side)
        y0 = rng.uniform(0, size - side)
        if name == "checkerboard":
            cell = rng.uniform(3.0, 5.0)
        else:
            cell = rng.uniform(3.0, 5.0)  # stripe width; period is twice that
        phase = rng.uniform(0, 2 * cell)
        mask = np.zeros((big, big), dtype=bool)
        coords = (np.arange(big) + 0.5) / k  # pixel centres in output units
        band = np.floor((coords + phase) / cell).astype(int) % 2 == 0
        inside = (coords >= x0) & (coords < x0 + side)
        inside_y = (coords >= y0) & (coords < y0 + side)
        if name == "horizontal stripes":
            mask = inside_y[:, None] & band[:, None] & inside[None, :]
        elif name == "vertical stripes":
            mask = inside_y[:, None] & band[None, :] & inside[None, :]
        else:
            mask = inside_y[:, None] & inside[None, :] & (band[:, None] ^ band[None, :])
        pixels = np.asarray(canvas).copy()
        pixels[mask] = fg
        canvas = Image.fromarray(pixels)
    else:
        radius = rng.uniform(0.22, 0.40) * size
        cx = rng.uniform(radius, size - radius) * k
        cy = rng.uniform(radius, size - radius) * k
        r = radius * k
        if name == "circle":
            pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        elif name == "ring":
            pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
            inner = r * rng.uniform(0.5, 0.62)
            pen.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=bg)
        elif name == "square":
            h = r * 0.85
            pen.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fg)
        elif name == "diamond":
            pen.polygon(_polygon(cx, cy, r, [i * math.pi / 2 for i in range(4)]), fill=fg)
        elif name == "triangle":
            # pointing up; the centroid sits a little below the centre so it stays in frame
            pen.polygon(_polygon(cx, cy + 0.15 * r, 1.1 * r, [-math.pi / 2 + i * 2 * math.pi / 3 for i in range(3)]),
                        fill=fg)
        elif name == "cross":
            t = r * rng.uniform(0.28, 0.38)
            pen.rectangle([cx - r, cy - t, cx + r, cy + t], fill=fg)
            pen.rectangle([cx - t, cy - r, cx + t, cy + r], fill=fg)
        elif name == "star":
            pen.polygon(_star(cx, cy, r * 1.05, r * 0.45), fill=fg)
        else:  # pragma: no cover - every class is handled above
            raise AssertionError(name)
    return np.asarray(canvas.resize((size, size), Image.BOX))


def draw(class_index_or_name, rng=None, size: int = DEFAULT_SIZE, *, seed=None) -> np.ndarray:
    """One image of the class, (size, size, 3) float32 in [0, 1].

    `rng` is a numpy Generator (advanced by the call) or an int seed; `seed=` is the same as
    passing an int. The same seed always gives the same image.
    """
    if seed is not None:
        rng = seed
    index = class_index(class_index_or_name)
    return _draw_uint8(index, _rng(rng), size).astype(np.float32) / 255.0


def dataset_uint8(n: int, seed: int = 0, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """`dataset` as uint8 (n, size, size, 3) — a quarter of the memory for large sets."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    labels = np.arange(n, dtype=np.int64) % NUM_CLASSES
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        # each image has its own stream, so dataset(m, s)[:n] == dataset(n, s) for m >= n
        images[i] = _draw_uint8(int(labels[i]), np.random.default_rng([int(seed), i]), size)
    return images, labels


def shape_box(image_uint8: np.ndarray, threshold: int = 30) -> np.ndarray:
    """(H, W) float32 mask, 1 on the bounding box of the shape in one of these images: the pixels
    whose colour differs (summed |RGB| > threshold) from the background, the most common colour.
    Used as the region to regenerate when editing the demo's images."""
    colours, counts = np.unique(image_uint8.reshape(-1, 3), axis=0, return_counts=True)
    background = colours[counts.argmax()].astype(int)
    shape = np.abs(image_uint8.astype(int) - background).sum(-1) > threshold
    rows, cols = np.flatnonzero(shape.any(1)), np.flatnonzero(shape.any(0))
    mask = np.zeros(image_uint8.shape[:2], dtype=np.float32)
    if rows.size:
        mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = 1
    return mask


def dataset(n: int, seed: int = 0, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, size, size, 3) float32 in [0, 1] and their labels (n,) int64.

    Labels cycle through the classes (0, 1, ..., 9, 0, 1, ...), so every class has n // 10 or
    n // 10 + 1 images. Image i depends only on (seed, i).
    """
    images, labels = dataset_uint8(n, seed, size)
    return images.astype(np.float32) / 255.0, labels
