"""Cheap live previews of a decode in progress: known tokens as coloured cells, the rest grey.

Running the VQ decoder after every step would cost more than the step itself. Instead, once per
tokenizer, `build_palette` gives every code the colour the tokenizer decodes it to in pictures:
it draws pictures of flat-coloured shapes, encodes them and decodes their codes (one encoder and
one decoder pass over 2^16 pixels), and takes the mean decoded colour of each code's patches.
Codes those pictures never produce get colours inferred from the codes they did.
A preview frame is then a table look-up on the (h, w) token grid, enlarged with
nearest-neighbour scaling: microseconds to a millisecond, whatever the model size.

    from lpd_core.preview import LivePreview
    preview = LivePreview(tokenizer)
    tokens = generate(model, schedule, labels, callback=lambda s: show(preview.frame(s.tokens, s.known)))

Works with any tokenizer that has `encode_images(images)`, `decode_images(codes, grid)`,
`quantize.codebook()`, `stride` and `vocab_size` (lpd_core's `VQModel`). Never imports ComfyUI.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

UNKNOWN_GREY = 0.5  # colour of positions not decoded yet
PALETTE_PIXELS = 2 ** 16  # pixels encoded and decoded once per tokenizer (4 pictures of 128 px for VQ-16)
PICTURE_TOKENS = 8  # tokens per side of each picture
_RIDGE = 1e-2  # keeps the linear map of `inferred_colours` well posed when few codes are seen
_NEIGHBOURS = 8  # seen codes whose misses correct it
_SHARPNESS = 10.0  # inverse temperature of the softmax over their cosine similarities


@torch.no_grad()
def build_palette(tokenizer, pictures: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """(vocab_size, 3) float32 CPU tensor in [0, 1]: the colour each code decodes to in pictures.

    Encodes `pictures` ((B, H, W, 3) in [0, 1], sides multiples of the stride; by default
    `shape_pictures` of PICTURE_TOKENS × PICTURE_TOKENS tokens, as many as PALETTE_PIXELS holds),
    decodes their codes, and averages each code's decoded patches over every place it occurs.
    Colours through a round trip rather than from codes laid out by hand: a code's colour depends
    on its neighbours, and the encoder puts codes beside the neighbours they have in images
    (docs/benchmarks.md: on the demo tokenizer, each code decoded in 2×2 blocks of itself paints
    its samples hardly better than the linear map used before). Pictures like the model's own
    images give closer colours still. Codes the pictures never produce get `inferred_colours`.
    """
    stride, vocab = tokenizer.stride, tokenizer.vocab_size
    if pictures is None:
        side = PICTURE_TOKENS * stride
        pictures = shape_pictures(max(1, PALETTE_PIXELS // side ** 2), side, seed)
    count, height, width, _ = pictures.shape
    grid = (height // stride, width // stride)
    codes = tokenizer.encode_images(pictures)
    decoded = tokenizer.decode_images(codes, grid).float().cpu()
    codes = codes.cpu().reshape(-1)
    patches = decoded.reshape(count, grid[0], stride, grid[1], stride, 3).mean(dim=(2, 4)).reshape(-1, 3)
    counts = torch.zeros(vocab).index_add_(0, codes, torch.ones(len(codes)))
    palette = torch.zeros(vocab, 3).index_add_(0, codes, patches) / counts.clamp(min=1)[:, None]
    seen = counts > 0
    if not seen.all():
        palette[~seen] = inferred_colours(tokenizer.quantize.codebook(), seen, palette[seen])
    return palette.clamp(0, 1)


def inferred_colours(codebook: torch.Tensor, seen: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Colours of the codes not `seen` from the `colours` of those seen: a linear map from codebook
    vectors to colours fitted on the seen codes (ridge-regularised), plus what that map misses on
    the seen codes nearest in the codebook, weighted by a softmax over cosine similarity."""
    codebook = F.normalize(codebook.detach().float().cpu(), dim=-1)
    features = torch.cat([codebook, torch.ones(len(codebook), 1)], dim=1).double()
    known = features[seen]
    gram = known.T @ known + _RIDGE * torch.eye(features.shape[1], dtype=torch.float64)
    fitted = (features @ torch.linalg.solve(gram, known.T @ colours.double())).float()
    nearest = (codebook[~seen] @ codebook[seen].T).topk(min(_NEIGHBOURS, len(colours)), dim=1)
    misses = (colours - fitted[seen])[nearest.indices]
    return fitted[~seen] + (torch.softmax(_SHARPNESS * nearest.values, dim=1)[..., None] * misses).sum(dim=1)


def shape_pictures(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """(count, size, size, 3) float32 pictures in [0, 1]: two ellipses or rectangles over a flat or
    graded background, each in a random colour (any hue, saturation 0.4 to 1, value 0.15 to 1),
    edges anti-aliased over about a pixel. Saturated colours, dark to bright, rather than uniform
    RGB: colours of drawn things, and closer to the demo model's samples when this was chosen."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, *shape, generator=generator)

    def colours() -> torch.Tensor:  # HSV → RGB, (count, 1, 1, 3)
        hue, saturation, value = uniform(0, 1, 1, 1, 1), uniform(0.4, 1, 1, 1, 1), uniform(0.15, 1, 1, 1, 1)
        k = (torch.tensor([5.0, 3.0, 1.0]) + 6 * hue) % 6
        return value - value * saturation * torch.minimum(k, 4 - k).clamp(0, 1)

    centres = (torch.arange(size) + 0.5) / size
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    angle = uniform(0, 2 * math.pi, 1, 1)
    ramp = ((x - 0.5) * torch.cos(angle) + (y - 0.5) * torch.sin(angle) + 0.5).clamp(0, 1)
    graded = (uniform(0, 1, 1, 1) < 0.5).float()
    start, end = colours(), colours()
    pictures = start + (graded * ramp)[..., None] * (end - start)
    for _ in range(2):
        cx, cy, rx, ry = uniform(0, 1, 1, 1), uniform(0, 1, 1, 1), uniform(0.08, 0.38, 1, 1), uniform(0.08, 0.38, 1, 1)
        dx, dy = (x - cx) / rx, (y - cy) / ry
        ellipse = uniform(0, 1, 1, 1) < 0.5
        distance = torch.where(ellipse, torch.sqrt(dx ** 2 + dy ** 2), torch.maximum(dx.abs(), dy.abs()))
        cover = ((1 - distance) * torch.minimum(rx, ry) * size + 0.5).clamp(0, 1)  # 1 inside, 0 outside
        pictures = pictures + cover[..., None] * (colours() - pictures)
    return pictures.clamp(0, 1)


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
