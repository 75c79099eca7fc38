"""VQ tokenizer in the LlamaGen VQ-16 layout: conv encoder → L2-normalised codebook → conv decoder.

Module names follow the published `vq_ds16_c2i.pt`, so it loads as it is. Pixels are in [-1, 1]
inside the network; `images_to_pixels` / `pixels_to_images` convert from and to ComfyUI-style
images (B, H, W, 3) in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


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

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [-1, 1] → codes (B, h·w) in raster order."""
        stride = self.stride
        if pixels.shape[-1] % stride or pixels.shape[-2] % stride:
            raise ValueError(f"image size {tuple(pixels.shape[-2:])} is not a multiple of the tokenizer's "
                             f"stride {stride}; resize or crop it first")
        codes = self.quantize.nearest(self.quant_conv(self.encoder(pixels)))
        return codes.reshape(codes.shape[0], -1)

    def decode(self, codes: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Codes (B, h·w) raster → pixels (B, 3, H, W), roughly in [-1, 1]."""
        if grid is None:
            side = int(round(codes.shape[1] ** 0.5))
            if side * side != codes.shape[1]:
                raise ValueError(f"{codes.shape[1]} codes are not a square grid; pass grid=(h, w)")
            grid = (side, side)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.vocab_size):
            raise ValueError(f"codes must be in 0..{self.vocab_size - 1} for this tokenizer")
        quant = self.quantize.lookup(codes.reshape(codes.shape[0], *grid)).to(self.post_quant_conv.weight.dtype)
        # channels-last: the layout oneDNN convolves in, so the layers do not convert to it and back
        # (1-6 % of a bf16 decode on an AVX512-BF16 CPU, 2026-12-02)
        return self.decoder(self.post_quant_conv(quant.contiguous(memory_format=torch.channels_last)))

    def decode_images(self, codes: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Codes → ComfyUI-style images (B, H, W, 3) float32 in [0, 1]."""
        return pixels_to_images(self.decode(codes, grid))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """ComfyUI-style images (B, H, W, 3) in [0, 1] → codes (B, h·w)."""
        weight = self.quant_conv.weight
        return self.encode(images_to_pixels(images).to(device=weight.device, dtype=weight.dtype))


def pixels_to_images(pixels: torch.Tensor) -> torch.Tensor:
    return ((pixels.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()


def images_to_pixels(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2) * 2 - 1
