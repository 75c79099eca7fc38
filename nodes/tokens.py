"""Token grids in and out of images: LPDDecode, LPDEncode, and LPDImageGrid for batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import runtime

if TYPE_CHECKING:
    import torch

DECODE_CHUNK = 8  # images per decoder call: bounds activation memory for large batches


@dataclass
class TokenGrid:
    """What travels on an LPD_TOKENS link: codes plus what is needed to turn them into images."""
    tokens: torch.Tensor  # (B, h·w) int64 codes in raster order, on the CPU
    grid: tuple[int, int]  # (h, w) tokens
    vocab_size: int  # codebook size the codes index: must match the tokenizer
    labels: list[int] | None = None  # class of each image, when generated
    seeds: list[int] | None = None
    settings: dict = field(default_factory=dict)  # resolved sampling settings, for reference

    @property
    def batch(self) -> int:
        return self.tokens.shape[0]

    def __repr__(self):
        return f"TokenGrid({self.batch} × {self.grid[0]}×{self.grid[1]} tokens, vocabulary {self.vocab_size})"


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield start, min(total, start + size)


class LPDDecode:
    DESCRIPTION = "Turns token grids into images with the VQ tokenizer's decoder."
    CATEGORY = "LPD"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("Images (batch, height, width, 3) in [0, 1]: 16 px per token for VQ-16.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tokens": ("LPD_TOKENS", {"tooltip": "Token grids from LPD Sampler or LPD Encode."}),
            "tokenizer": ("LPD_VQ", {"tooltip": "The tokenizer the model was trained with (VQ-16 for the "
                                                "published models, the demo's for the demo)."}),
        }}

    def decode(self, tokens, tokenizer):
        import torch
        if tokens.vocab_size != tokenizer.module.vocab_size:
            raise ValueError(f"tokenizer/model mismatch: these tokens index {tokens.vocab_size} codes but the "
                             f"tokenizer has {tokenizer.module.vocab_size}; load the tokenizer the model was "
                             f"trained with")
        vq = tokenizer.ready()
        device = next(vq.parameters()).device
        bar = runtime.progress_bar(tokens.batch)
        images = []
        for start, end in _chunks(tokens.batch, DECODE_CHUNK):
            runtime.throw_if_interrupted()
            with torch.no_grad():
                images.append(vq.decode_images(tokens.tokens[start:end].to(device), tokens.grid))
            bar.update_absolute(end, tokens.batch)
        return (torch.cat(images).to(runtime.intermediate_device()),)


class LPDEncode:
    DESCRIPTION = ("Turns images into token grids with the VQ tokenizer's encoder (for editing, or to look "
                   "at what the tokenizer keeps: decode the result).")
    CATEGORY = "LPD"
    FUNCTION = "encode"
    RETURN_TYPES = ("LPD_TOKENS",)
    RETURN_NAMES = ("tokens",)
    OUTPUT_TOOLTIPS = ("Token grids, one per image, at the model's resolution (or `size`).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": (
                    "Images to encode. Each is resized so its shorter side is the target size, then "
                    "centre-cropped to a square of that size (target = the model's resolution = grid × "
                    "tokenizer stride, e.g. 16 × 16 = 256 px, else `size`).")}),
                "tokenizer": ("LPD_VQ", {"tooltip": "The tokenizer to encode with."}),
                "size": ("INT", {"default": 256, "min": 16, "max": 2048, "step": 16, "tooltip": (
                    "Target square size in pixels when no model is connected; rounded down to a multiple "
                    "of the tokenizer's stride (16 for VQ-16).")}),
            },
            "optional": {
                "model": ("LPD_MODEL", {"tooltip": (
                    "Optional: encode at this model's resolution (its grid × the stride) so its sampler "
                    "and editing nodes can use the tokens; also checks the vocabulary matches.")}),
            },
        }

    def encode(self, image, tokenizer, size=256, model=None):
        import torch
        import torch.nn.functional as F
        vq_module = tokenizer.module
        stride = vq_module.stride
        if model is not None:
            from lpd_core.weights import check_pair
            check_pair(model.module, vq_module)
            side = model.module.config.grid_size * stride
        else:
            side = max(stride, size // stride * stride)
        pixels = image[..., :3].movedim(-1, 1).float()  # (B, 3, H, W)
        height, width = pixels.shape[-2:]
        scale = side / min(height, width)
        resized = (max(side, round(height * scale)), max(side, round(width * scale)))
        if resized != (height, width):
            pixels = F.interpolate(pixels, size=resized, mode="bicubic", antialias=True, align_corners=False)
        top, left = (resized[0] - side) // 2, (resized[1] - side) // 2
        pixels = pixels[..., top:top + side, left:left + side].clamp(0, 1)
        square = pixels.movedim(1, -1)

        vq = tokenizer.ready()
        device = next(vq.parameters()).device
        codes = []
        for start, end in _chunks(square.shape[0], DECODE_CHUNK):
            runtime.throw_if_interrupted()
            with torch.no_grad():
                codes.append(vq.encode_images(square[start:end].to(device)).cpu())
        grid = side // stride
        return (TokenGrid(torch.cat(codes), (grid, grid), vq_module.vocab_size),)


class LPDImageGrid:
    DESCRIPTION = "Lays out a batch of images as one picture (a contact sheet), e.g. one image per class."
    CATEGORY = "LPD"
    FUNCTION = "grid"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("One image holding the batch in rows and columns, on a white background.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "A batch of images of the same size."}),
            "columns": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": (
                "Images per row. 0 = about square.")}),
            "padding": ("INT", {"default": 4, "min": 0, "max": 64, "tooltip": "White pixels between images."}),
        }}

    def grid(self, images, columns=0, padding=4):
        import numpy as np
        import torch
        from lpd_core.imaging import image_grid
        sheet = image_grid(images.cpu(), columns=columns or None, padding=padding)
        array = np.asarray(sheet, dtype=np.float32) / 255.0
        return (torch.from_numpy(array)[None].to(runtime.intermediate_device()),)
