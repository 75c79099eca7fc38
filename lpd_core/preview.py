"""Cheap live previews of a decode in progress: known tokens as coloured cells, the rest grey.

Running the VQ decoder after every step would cost more than the step itself. Instead, once per
tokenizer, `build_palette` decodes a few token grids of random codes (one small decoder call),
takes the mean colour each code's patch comes out with and fits (least squares) a linear map from a
code's codebook vector to that colour.
Applying the map to the whole codebook gives one RGB colour per code. A preview frame is then a
table look-up on the (h, w) token grid, enlarged with nearest-neighbour scaling: microseconds to a
millisecond, whatever the model size.

    from lpd_core.preview import LivePreview
    preview = LivePreview(tokenizer)
    tokens = generate(model, schedule, labels, callback=lambda s: show(preview.frame(s.tokens, s.known)))

Works with any tokenizer that has `decode_images(codes)`, `quantize.codebook()`, `stride` and
`vocab_size` (lpd_core's `VQModel`). Never imports ComfyUI.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch
from PIL import Image

UNKNOWN_GREY = 0.5  # colour of positions not decoded yet
_RIDGE = 1e-3  # keeps the fit well posed when few patches are decoded


@torch.no_grad()
def build_palette(tokenizer, grids: int = 4, grid_size: int = 8, block: int = 2, seed: int = 0) -> torch.Tensor:
    """(vocab_size, 3) float32 CPU tensor in [0, 1]: the approximate colour of each code's patch.

    Decodes `grids` token grids of `grid_size`×`grid_size` once (the only decoder call), each made
    of `block`×`block` squares of one random code, and takes the mean colour of the centre of every
    square. Blocks rather than single random codes: real images are locally coherent, and a code
    decoded among random neighbours comes out washed-out (measured on a trained 1024-code tokenizer:
    correlation with real patch colours 0.86 with 2×2 blocks vs 0.77 without, saturation 0.8 vs
    0.4 of the real one). Then fits colour ≈ [codebook vector, 1] @ W by ridge-regularised least
    squares and applies W to the whole codebook.
    """
    codebook = tokenizer.quantize.codebook().detach().float().cpu()  # (V, D)
    vocab = codebook.shape[0]
    side = grid_size // block
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, vocab, (grids, side, side), generator=generator)
    grid = codes.repeat_interleave(block, 1).repeat_interleave(block, 2).reshape(grids, -1)
    images = tokenizer.decode_images(grid.to(codebook_device(tokenizer))).float().cpu()  # (B, H, W, 3)
    square = images.shape[1] // side  # pixels per block
    margin = square // 4 if block > 1 else 0  # keep the centre: edges mix with the neighbours
    blocks = images.reshape(grids, side, square, side, square, 3)
    means = blocks[:, :, margin:square - margin, :, margin:square - margin].mean(dim=(2, 4)).reshape(-1, 3)
    features = torch.cat([codebook[codes.reshape(-1)], torch.ones(codes.numel(), 1)], dim=1).double()
    gram = features.T @ features + _RIDGE * torch.eye(features.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, features.T @ means.double())  # (D + 1, 3)
    palette = torch.cat([codebook.double(), torch.ones(vocab, 1, dtype=torch.float64)], dim=1) @ weights
    return palette.clamp(0, 1).float()


def codebook_device(tokenizer) -> torch.device:
    try:
        return next(tokenizer.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


_PALETTES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cached_palette(tokenizer) -> torch.Tensor | None:
    """The palette already built for this tokenizer object, or None (building one decodes images)."""
    try:
        return _PALETTES.get(tokenizer)
    except TypeError:
        return None


def palette_for(tokenizer) -> torch.Tensor:
    """`build_palette(tokenizer)`, computed once per tokenizer object and kept while it lives."""
    try:
        return _PALETTES[tokenizer]
    except (KeyError, TypeError):
        pass
    palette = build_palette(tokenizer)
    try:
        _PALETTES[tokenizer] = palette
    except TypeError:  # not weak-referenceable: just don't cache
        pass
    return palette


def paint(palette: torch.Tensor, tokens: torch.Tensor, known: torch.Tensor | None, grid: tuple[int, int],
          max_images: int = 4) -> np.ndarray:
    """Token grids (B, N) raster → (k, h, w, 3) float32 colours of the first k ≤ max_images samples;
    positions where `known` is False are grey."""
    h, w = grid
    tokens = tokens[:max_images].detach().cpu().long()
    colours = palette[tokens.clamp(0, palette.shape[0] - 1)]  # (k, N, 3)
    if known is not None:
        mask = known[:max_images].detach().cpu().bool()
        colours = torch.where(mask[..., None], colours, torch.full_like(colours, UNKNOWN_GREY))
    return colours.reshape(-1, h, w, 3).numpy()


def mosaic(cells: np.ndarray, size: int = 256, gap: int = 4) -> Image.Image:
    """(k, h, w, 3) colour grids → one PIL image, samples side by side (near square), each
    enlarged (nearest neighbour) so its longer side is about `size` pixels."""
    count, h, w, _ = cells.shape
    scale = max(1, size // max(h, w))
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    tile_h, tile_w = h * scale, w * scale
    sheet = np.ones((rows * (tile_h + gap) - gap, columns * (tile_w + gap) - gap, 3), dtype=np.uint8) * 255
    pixels = np.clip(np.rint(cells * 255), 0, 255).astype(np.uint8)
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    for i in range(count):
        top, left = (i // columns) * (tile_h + gap), (i % columns) * (tile_w + gap)
        sheet[top:top + tile_h, left:left + tile_w] = pixels[i]
    return Image.fromarray(sheet)


class LivePreview:
    """Per-step preview frames for one tokenizer: `frame(tokens, known)` → PIL image."""

    def __init__(self, tokenizer, grid: tuple[int, int] | int | None = None, size: int = 256,
                 max_images: int = 4):
        self.palette = palette_for(tokenizer)
        self.grid = (grid, grid) if isinstance(grid, int) else grid
        self.size = size
        self.max_images = max_images

    def frame(self, tokens: torch.Tensor, known: torch.Tensor | None = None) -> Image.Image:
        grid = self.grid
        if grid is None:
            side = math.isqrt(tokens.shape[1])
            grid = (side, tokens.shape[1] // side)
        return mosaic(paint(self.palette, tokens, known, grid, self.max_images), self.size)
