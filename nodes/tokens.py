"""Token grids in and out of images: LPDDecode, LPDEncode, and LPDImageGrid for batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import runtime
from .schema import CATEGORY, Model, Tokenizer, Tokens, io

if TYPE_CHECKING:
    import torch


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


def _load_for(tokenizer, count: int, height: int, width: int) -> int:
    """Loads the tokenizer onto its device with room for `count` images of height×width (ComfyUI
    unloads other models to make it); returns how many images to run at once in the memory left."""
    per_image = tokenizer.module.memory_per_image(height, width)
    tokenizer.ready(memory_required=per_image * count)
    return runtime.batch_that_fits(count, per_image, tokenizer.device)


def check_vocabulary(tokens: TokenGrid, vq) -> None:
    if tokens.vocab_size != vq.vocab_size:
        from lpd_core.errors import CheckpointError
        raise CheckpointError(f"tokenizer/model mismatch: these tokens index {tokens.vocab_size} codes but the "
                              f"tokenizer has {vq.vocab_size}; load the tokenizer the model was trained with")


class LPDDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDDecode", display_name="LPD Decode", category=CATEGORY,
            description=("Turns token grids into images with the VQ tokenizer's decoder, as many at once as fit "
                         "in the device's free memory."),
            inputs=[
                Tokens.Input("tokens", tooltip="Token grids from LPD Sampler or LPD Encode."),
                Tokenizer.Input("tokenizer", tooltip=("The tokenizer the model was trained with (VQ-16 for the "
                                                      "published models, the demo's for the demo).")),
            ],
            outputs=[io.Image.Output("image", tooltip=(
                "Images (batch, height, width, 3) in [0, 1]: 16 px per token for VQ-16."))],
        )

    @classmethod
    def execute(cls, tokens, tokenizer):
        import torch
        check_vocabulary(tokens, tokenizer.module)
        stride = tokenizer.module.stride
        chunk = _load_for(tokenizer, tokens.batch, tokens.grid[0] * stride, tokens.grid[1] * stride)
        vq, device = tokenizer.module, tokenizer.device
        bar = runtime.progress_bar(tokens.batch)
        images = []
        for start, end in _chunks(tokens.batch, chunk):
            runtime.throw_if_interrupted()
            images.append(vq.decode_images(tokens.tokens[start:end].to(device), tokens.grid))
            bar.update_absolute(end, tokens.batch)
        return io.NodeOutput(torch.cat(images).to(runtime.intermediate_device()))


class LPDEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDEncode", display_name="LPD Encode", category=CATEGORY,
            description=("Turns images into token grids with the VQ tokenizer's encoder (for editing, or to look "
                         "at what the tokenizer keeps: decode the result)."),
            inputs=[
                io.Image.Input("image", tooltip=(
                    "Images to encode. Each is resized so its shorter side is the target size, then centre-cropped "
                    "to a square of that size (target = the model's resolution = grid × tokenizer stride, e.g. "
                    "16 × 16 = 256 px, else `size`), exactly as LPD Edit Sampler fits its image.")),
                Tokenizer.Input("tokenizer", tooltip="The tokenizer to encode with."),
                io.Int.Input("size", default=256, min=16, max=2048, step=16, tooltip=(
                    "Target square size in pixels when no model is connected; rounded down to a multiple of the "
                    "tokenizer's stride (16 for VQ-16).")),
                Model.Input("model", optional=True, tooltip=(
                    "Optional: encode at this model's resolution (its grid × the stride) so its sampler and "
                    "editing nodes can use the tokens; also checks the vocabulary matches.")),
            ],
            outputs=[Tokens.Output("tokens", tooltip="Token grids, one per image, at the model's resolution (or `size`).")],
        )

    @classmethod
    def execute(cls, image, tokenizer, size=256, model=None):
        import torch
        from lpd_core.editing import fit_to_resolution, square_side
        vq_module = tokenizer.module
        stride = vq_module.stride
        side = square_side(vq_module, None if model is None else model.module, size)
        square = fit_to_resolution(image[..., :3], side)
        chunk = _load_for(tokenizer, square.shape[0], side, side)
        codes = []
        for start, end in _chunks(square.shape[0], chunk):
            runtime.throw_if_interrupted()
            codes.append(vq_module.encode_images(square[start:end]).cpu())
        grid = side // stride
        return io.NodeOutput(TokenGrid(torch.cat(codes), (grid, grid), vq_module.vocab_size))


class LPDImageGrid(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDImageGrid", display_name="LPD Image Grid", category=CATEGORY,
            description="Lays out a batch of images as one picture (a contact sheet), e.g. one image per class.",
            inputs=[
                io.Image.Input("images", tooltip="A batch of images of the same size."),
                io.Int.Input("columns", default=0, min=0, max=64, tooltip="Images per row. 0 = about square."),
                io.Int.Input("padding", default=4, min=0, max=64, tooltip="White pixels between images."),
            ],
            outputs=[io.Image.Output("image", tooltip="One image holding the batch in rows and columns, on a white "
                                                      "background.")],
        )

    @classmethod
    def execute(cls, images, columns=0, padding=4):
        import numpy as np
        import torch
        from lpd_core.imaging import image_grid
        sheet = image_grid(images.cpu(), columns=columns or None, padding=padding)
        array = np.asarray(sheet, dtype=np.float32) / 255.0
        return io.NodeOutput(torch.from_numpy(array)[None].to(runtime.intermediate_device()))


NODES = [LPDDecode, LPDEncode, LPDImageGrid]
