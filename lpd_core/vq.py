"""VQ tokenizer in the LlamaGen VQ-16 layout: conv encoder → L2-normalised codebook → conv decoder.

Module names follow the published `vq_ds16_c2i.pt`, so it loads as it is. Pixels are in [-1, 1]
inside the network; `images_to_pixels` / `pixels_to_images` convert from and to ComfyUI-style
images (B, H, W, 3) in [0, 1].

`encode_images` and `decode_images` are the doors: they check what they are given (`check_images`,
`check_codes`: SettingError saying what to give), build no autograd graph, and work on as many
images at once as fit in the device's memory (`lpd_core.memory`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import SettingError
from .memory import chunk_starts, plan_chunks
from .settings import check_integer

_RANGE_TOLERANCE = 1e-3  # resampling may overshoot [0, 1] by a rounding error
_IMAGES = "images are (batch, height, width, 3) floats in [0, 1], as ComfyUI's IMAGE"


@dataclass(frozen=True)
class VQConfig:
    codebook_size: int = 16384
    codebook_dim: int = 8
    ch: int = 128
    ch_mult: tuple[int, ...] = field(default=(1, 1, 2, 2, 4))
    z_channels: int = 256
    num_res_blocks: int = 2

    @property
    def stride(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def width(self) -> int:
        """Channels of the widest layers (what `weights.auto_dtype` weighs)."""
        return self.ch * max(self.ch_mult)

    @classmethod
    def from_state_dict(cls, state_dict: dict) -> "VQConfig":
        ch = state_dict["encoder.conv_in.weight"].shape[0]
        levels = 1 + max(int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.conv_blocks."))
        ch_mult = tuple(state_dict[f"encoder.conv_blocks.{i}.res.0.conv1.weight"].shape[0] // ch
                        for i in range(levels))
        num_res_blocks = 1 + max(int(k.split(".")[4]) for k in state_dict
                                 if k.startswith("encoder.conv_blocks.0.res."))
        codebook_size, codebook_dim = state_dict["quantize.embedding.weight"].shape
        return cls(codebook_size=codebook_size, codebook_dim=codebook_dim, ch=ch, ch_mult=ch_mult,
                   z_channels=state_dict["encoder.conv_out.weight"].shape[0], num_res_blocks=num_res_blocks)

    def to_dict(self) -> dict:
        return {**asdict(self), "ch_mult": list(self.ch_mult)}


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels of the feature map."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        normed = self.norm(x)
        q, k, v = (conv(normed).reshape(b, 1, c, h * w).transpose(-1, -2) for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # pad right/bottom only, as the published weights expect


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level(res_blocks: list[nn.Module], attn_blocks: list[nn.Module], resample: nn.Module | None) -> nn.Module:
    level = nn.Module()
    level.res = nn.ModuleList(res_blocks)
    level.attn = nn.ModuleList(attn_blocks)
    if resample is not None:
        setattr(level, "downsample" if isinstance(resample, Downsample) else "upsample", resample)
    return level


def _middle(channels: int) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(channels, channels), AttnBlock(channels), ResnetBlock(channels, channels)])


def _run_level(level: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for i, res in enumerate(level.res):
        x = res(x)
        if len(level.attn):  # only the lowest-resolution level has attention
            x = level.attn[i](x)
    return x


class Encoder(nn.Module):
    def __init__(self, config: VQConfig):
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        levels, channels = [], ch
        for i, m in enumerate(mult):
            last = i == len(mult) - 1
            res = []
            for _ in range(config.num_res_blocks):
                res.append(ResnetBlock(channels, ch * m))
                channels = ch * m
            attn = [AttnBlock(channels) for _ in range(config.num_res_blocks)] if last else []
            levels.append(_level(res, attn, None if last else Downsample(channels)))
        self.conv_blocks = nn.ModuleList(levels)
        self.mid = _middle(channels)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, config.z_channels, 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for level in self.conv_blocks:
            x = _run_level(level, x)
            if hasattr(level, "downsample"):
                x = level.downsample(x)
        for block in self.mid:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, config: VQConfig):
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        channels = ch * mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, channels, 3, padding=1)
        self.mid = _middle(channels)
        levels = []
        for i in reversed(range(len(mult))):
            res = []
            for _ in range(config.num_res_blocks + 1):
                res.append(ResnetBlock(channels, ch * mult[i]))
                channels = ch * mult[i]
            attn = [AttnBlock(channels) for _ in range(config.num_res_blocks + 1)] if i == len(mult) - 1 else []
            levels.append(_level(res, attn, Upsample(channels) if i != 0 else None))
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, z):
        x = self.conv_in(z)
        for block in self.mid:
            x = block(x)
        for level in self.conv_blocks:
            x = _run_level(level, x)
            if hasattr(level, "upsample"):
                x = level.upsample(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Quantizer(nn.Module):
    def __init__(self, config: VQConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.codebook_size, config.codebook_dim)
        # Training-time usage statistics kept by the published checkpoint; unused at inference.
        self.register_buffer("codebook_used", torch.zeros(65536))

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight, p=2, dim=-1)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Codes of the nearest L2-normalised codebook entries; z is (B, C, h, w) → (B, h, w)."""
        flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), p=2, dim=-1)
        codebook = self.codebook()
        distances = (flat ** 2).sum(1, keepdim=True) + (codebook ** 2).sum(1) - 2 * flat @ codebook.T
        return distances.argmin(dim=1).reshape(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) codes → (B, C, h, w) normalised codebook vectors."""
        return self.codebook()[codes].permute(0, 3, 1, 2)


class VQModel(nn.Module):
    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = Quantizer(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.codebook_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.codebook_dim, config.z_channels, 1)

    @property
    def stride(self) -> int:
        return self.config.stride

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    def memory_per_image(self, height: int, width: int) -> int:
        """Working memory of one image of height × width pixels through the decoder (or encoder), in
        bytes: a few activations of its widest level live at once (a residual block's input,
        normalised copy and convolution output), plus the float32 image."""
        config = self.config
        itemsize = self.quant_conv.weight.element_size()
        widest = max(config.ch * mult * (height >> level) * (width >> level)
                     for level, mult in enumerate(config.ch_mult))
        return 5 * widest * itemsize + 3 * height * width * 4

    def images_at_once(self, count: int, height: int, width: int, copies: int = 1) -> int:
        """How many of `count` images of height × width pixels to encode or decode at once: all that
        fit in the tokenizer's device memory. NotEnoughMemoryError when `copies` of their float32
        images (on the CPU) or the work of one of them cannot fit."""
        plan_chunks("holding", count, copies * count * height * width * 3 * 4, lambda n: 0, "cpu")
        return plan_chunks("decoding", count, 0, lambda n: n * self.memory_per_image(height, width),
                           self.quant_conv.weight.device)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [-1, 1], each side a multiple of the stride → codes (B, h·w) in
        raster order."""
        if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or pixels.shape[1] != 3:
            raise SettingError(f"pixels are a tensor (batch, 3, height, width) in [-1, 1]; got "
                               f"{tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__}"
                               f" (for ComfyUI-style images use encode_images)")
        self._check_size(pixels.shape[-1], pixels.shape[-2])
        return self._encode(pixels)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Codes (B, h·w) in raster order (`check_codes`) → pixels (B, 3, H, W), roughly in [-1, 1],
        on the tokenizer's device. `grid` (h, w): None for a square grid."""
        codes, grid = self.check_codes(codes, grid)
        return self._decode(codes.to(self.quant_conv.weight.device), grid)

    @torch.no_grad()
    def decode_images(self, codes: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Codes (B, h·w) in raster order (`check_codes`) → ComfyUI-style images (B, H, W, 3) float32
        in [0, 1] on the CPU. `grid` (h, w): None for a square grid."""
        codes, grid = self.check_codes(codes, grid)
        device = self.quant_conv.weight.device
        chunk = self.images_at_once(len(codes), grid[0] * self.stride, grid[1] * self.stride)
        return torch.cat([pixels_to_images(self._decode(codes[start:end].to(device), grid))
                          for start, end in chunk_starts(len(codes), chunk)])

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """ComfyUI-style images (B, H, W, 3) in [0, 1] (`check_images`), each side a multiple of the
        stride → codes (B, h·w) in raster order, on the tokenizer's device."""
        images = check_images(images)
        batch, height, width, _ = images.shape
        self._check_size(width, height)
        weight = self.quant_conv.weight
        chunk = plan_chunks("encoding", batch, 0, lambda n: n * self.memory_per_image(height, width),
                            weight.device)
        return torch.cat([self._encode(images_to_pixels(images[start:end]).to(device=weight.device, dtype=weight.dtype))
                          for start, end in chunk_starts(batch, chunk)])

    def _check_size(self, width: int, height: int) -> None:
        if height % self.stride or width % self.stride:
            raise SettingError(f"the images are {width}×{height} px, not a multiple of the tokenizer's stride "
                               f"({self.stride} px) on each side; resize or crop them first (e.g. "
                               f"lpd_core.editing.fit_to_resolution)")

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        codes = self.quantize.nearest(self.quant_conv(self.encoder(pixels)))
        return codes.reshape(codes.shape[0], -1)

    def _decode(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        quant = self.quantize.lookup(codes.reshape(codes.shape[0], *grid)).to(self.post_quant_conv.weight.dtype)
        # channels-last: the layout oneDNN convolves in, so the layers do not convert to it and back
        # (1-6 % of a bf16 decode on an AVX512-BF16 CPU, 2026-12-02)
        return self.decoder(self.post_quant_conv(quant.contiguous(memory_format=torch.channels_last)))

    def check_codes(self, codes, grid: tuple[int, int] | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Codes as decoding takes them: an integer tensor (B, h·w), each code in 0..vocab−1, with
        `grid` = (h, w) (None: a square grid). SettingError, saying what to give, for anything else."""
        what = f"codes are an integer tensor (batch, tokens) of values 0..{self.vocab_size - 1}"
        if not isinstance(codes, torch.Tensor):
            raise SettingError(f"{what}; got {type(codes).__name__}")
        if codes.dtype == torch.bool or codes.is_floating_point() or codes.is_complex():
            raise SettingError(f"{what}; got {codes.dtype}")
        if codes.ndim == 1:
            raise SettingError(f"{what}; got shape {tuple(codes.shape)}, one dimension short: add the batch "
                               f"dimension (codes[None])")
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise SettingError(f"{what}; got shape {tuple(codes.shape)}")
        count = codes.shape[1]
        if grid is None:
            side = int(round(count ** 0.5))
            if side * side != count:
                raise SettingError(f"{count} codes per image are not a square grid; pass grid=(height, width) in "
                                   f"tokens")
            grid = (side, side)
        try:
            grid = tuple(check_integer("a grid side", side, 1) for side in grid)
        except TypeError:
            grid = ()
        if len(grid) != 2 or grid[0] * grid[1] != count:
            raise SettingError(f"grid must be (height, width) in tokens with height × width = {count} (the codes "
                               f"per image), got {grid}")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.vocab_size:
            raise SettingError(f"{what}; got codes from {low} to {high}: they are not this tokenizer's (use the "
                               f"tokenizer the model was trained with)")
        return codes.long(), grid


def check_images(images) -> torch.Tensor:
    """Images as the tokenizer (and editing) take them: (B, H, W, 3) floats in [0, 1] (a single
    channel is grey and is repeated to 3). SettingError, saying what to do, for anything else."""
    if not isinstance(images, torch.Tensor):
        raise SettingError(f"the images must be a torch tensor, got {type(images).__name__}; {_IMAGES}")
    if images.ndim == 3:
        raise SettingError(f"the images have shape {tuple(images.shape)}, one dimension short; add the batch "
                           f"dimension (images[None]): {_IMAGES}")
    if images.ndim != 4:
        raise SettingError(f"the images must have 4 dimensions, got shape {tuple(images.shape)}; {_IMAGES}")
    batch, height, width, channels = images.shape
    if channels == 4:
        raise SettingError("the images have 4 channels (RGBA); drop the alpha channel (images[..., :3]) or "
                           "composite it over a background first")
    if channels not in (1, 3):
        raise SettingError(f"the images have {channels} channels (shape {tuple(images.shape)}); {_IMAGES}")
    if batch == 0 or height == 0 or width == 0:
        raise SettingError(f"the images are empty (shape {tuple(images.shape)}): give at least one image of "
                           f"at least 1×1 pixels")
    check_pixels("images", images, _IMAGES)
    return images.expand(-1, -1, -1, 3) if channels == 1 else images


def check_pixels(name: str, values: torch.Tensor, shape_words: str) -> None:
    """Finite floats in [0, 1] (within resampling's rounding); SettingError saying how to get there."""
    if not values.dtype.is_floating_point:
        raise SettingError(f"the {name} must hold floats in [0, 1], got {values.dtype}; for 8-bit pixels divide "
                           f"by 255 ({shape_words})")
    finite = bool(torch.isfinite(values).all())
    low, high = float(values.min()), float(values.max())
    if not (finite and low >= -_RANGE_TOLERANCE and high <= 1 + _RANGE_TOLERANCE):
        raise SettingError(f"the {name} values must be finite and in [0, 1], got {low:g} to {high:g}; for 0..255 "
                           f"pixels divide by 255, for [-1, 1] pixels use (x + 1) / 2")


def pixels_to_images(pixels: torch.Tensor) -> torch.Tensor:
    return ((pixels.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()


def images_to_pixels(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2) * 2 - 1
