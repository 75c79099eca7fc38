"""Training the VQ tokenizer (`train_vq`): the LlamaGen layout of `lpd_core.vq.VQModel` at a small size.

Losses: L1 + L2 reconstruction, an L1 loss on image gradients (sharper edges, no perceptual
network), codebook loss ‖sg(z) − e‖² and commitment loss β‖z − sg(e)‖² on L2-normalised vectors,
with the straight-through estimator. Codes unused over a window are re-seeded from encoder outputs
of the current batch, so the whole codebook stays alive.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lpd_core.vq import VQConfig, VQModel

from . import shapes
from .common import Log, cosine_lr, default_device, to_pixels


# 32×32 images → 8×8 = 64 tokens. 64 channels at every level: GroupNorm has 32 groups, and with
# 32 channels (one per group) it acts as instance norm and wipes out the colours.
DEMO_VQ_CONFIG = VQConfig(codebook_size=512, codebook_dim=8, ch=64, ch_mult=(1, 1, 1), z_channels=64,
                          num_res_blocks=1)


def vq_losses(model: VQModel, pixels: torch.Tensor, beta: float = 0.25, gradient_weight: float = 0.5):
    """Training forward of the tokenizer. Returns (total loss, parts dict, codes (B, h, w), recon)."""
    z = F.normalize(model.quant_conv(model.encoder(pixels)), p=2, dim=1)
    with torch.no_grad():
        codes = model.quantize.nearest(z)
    quantised = model.quantize.lookup(codes)
    codebook_loss = F.mse_loss(quantised, z.detach())
    commitment = F.mse_loss(z, quantised.detach())
    straight_through = z + (quantised - z).detach()
    recon = model.decoder(model.post_quant_conv(straight_through))
    l1, l2 = F.l1_loss(recon, pixels), F.mse_loss(recon, pixels)
    gradient = (F.l1_loss(recon.diff(dim=-1), pixels.diff(dim=-1))
                + F.l1_loss(recon.diff(dim=-2), pixels.diff(dim=-2)))
    total = l1 + l2 + gradient_weight * gradient + codebook_loss + beta * commitment
    parts = dict(l1=l1.item(), l2=l2.item(), grad=gradient.item(), codebook=codebook_loss.item(),
                 commit=commitment.item())
    return total, parts, codes, recon, z


@torch.no_grad()
def reseed_dead_codes(model: VQModel, usage: torch.Tensor, z: torch.Tensor, generator: torch.Generator) -> int:
    """Point every code with zero usage at a random encoder output of this batch (plus a little
    noise). Returns how many were re-seeded."""
    dead = torch.nonzero(usage == 0).flatten()
    if dead.numel() == 0:
        return 0
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    picks = torch.randint(flat.shape[0], (dead.numel(),), generator=generator).to(flat.device)
    noise = torch.randn(dead.numel(), flat.shape[1], generator=generator).to(flat.device)
    model.quantize.embedding.weight[dead] = F.normalize(flat[picks] + 0.01 * noise, dim=-1)
    return int(dead.numel())


def train_vq(config: VQConfig = DEMO_VQ_CONFIG, *, steps: int = 6000, batch: int = 8, lr: float = 2e-3,
             num_images: int = 30000, image_size: int = 32, seed: int = 0, reseed_every: int = 50,
             stop_reseed_at: float = 0.8, crop: int | None = None, crop_fraction: float = 0.0,
             device=None, log=None, history: list | None = None) -> VQModel:
    """Train the tokenizer on `num_images` procedural images (seed `seed`).

    The first `crop_fraction` of the steps train on random `crop`×`crop` crops (the network is
    convolutional; a 16×16 crop costs about a third of a 32×32 image), the rest on whole images.
    Each step's loss is appended to `history` when one is given."""
    device = torch.device(device) if device is not None else default_device()
    log = log or Log()
    torch.manual_seed(seed)
    images, _ = shapes.dataset_uint8(num_images, seed=seed, size=image_size)
    log(f"vq: drew {num_images} images of {image_size}x{image_size}")
    model = VQModel(config).to(device)
    with torch.no_grad():  # codes start on the unit sphere
        model.quantize.embedding.weight.copy_(F.normalize(torch.randn(config.codebook_size, config.codebook_dim,
                                                                      generator=torch.Generator().manual_seed(seed)), dim=-1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed + 1)
    usage = torch.zeros(config.codebook_size, dtype=torch.long, device=device)
    running: dict[str, float] = {}
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup=max(1, steps // 20))
        index = torch.randint(num_images, (batch,), generator=generator).numpy()
        chosen = images[index]
        if crop and step < crop_fraction * steps:
            top, left = (torch.randint(image_size - crop + 1, (2,), generator=generator) // config.stride
                         * config.stride).tolist()
            chosen = chosen[:, top:top + crop, left:left + crop]
        pixels = to_pixels(np.ascontiguousarray(chosen), device)
        loss, parts, codes, _, z = vq_losses(model, pixels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        usage += torch.bincount(codes.flatten(), minlength=config.codebook_size)
        if history is not None:
            history.append(loss.item())
        for k, v in parts.items():
            running[k] = running.get(k, v) * 0.95 + v * 0.05
        if (step + 1) % reseed_every == 0:
            alive = int((usage > 0).sum())
            reseeded = reseed_dead_codes(model, usage, z, generator) if step < stop_reseed_at * steps else 0
            psnr = 10 * math.log10(4.0 / max(running["l2"], 1e-10))  # pixel range 2
            log(f"vq step {step + 1}/{steps}  l1 {running['l1']:.4f}  psnr {psnr:.1f} dB  "
                f"codebook {running['codebook']:.4f}  codes used {alive}/{config.codebook_size}  "
                f"re-seeded {reseeded}")
            usage.zero_()
    model.eval()
    return model


@torch.no_grad()
def evaluate_vq(model: VQModel, images_uint8: np.ndarray, batch: int = 256) -> dict:
    """PSNR (dB, images in [0, 1]) and codebook use on a set of images."""
    device = model.quant_conv.weight.device
    squared, counts = 0.0, torch.zeros(model.vocab_size, dtype=torch.long)
    for start in range(0, len(images_uint8), batch):
        pixels = to_pixels(images_uint8[start:start + batch], device)
        codes = model.encode(pixels)
        recon = model.decode(codes).clamp(-1, 1)
        squared += ((recon - pixels) / 2).pow(2).mean(dim=(1, 2, 3)).sum().item()
        counts += torch.bincount(codes.flatten().cpu(), minlength=model.vocab_size)
    mse = squared / len(images_uint8)
    probs = counts.float() / counts.sum()
    perplexity = math.exp(-(probs[probs > 0] * probs[probs > 0].log()).sum().item())
    return dict(psnr=10 * math.log10(1 / mse), codes_used=int((counts > 0).sum()), perplexity=perplexity)


@torch.no_grad()
def encode_images(model: VQModel, images_uint8: np.ndarray, batch: int = 512) -> torch.Tensor:
    """uint8 images → codes (n, h·w) int64 on the CPU."""
    device = model.quant_conv.weight.device
    return torch.cat([model.encode(to_pixels(images_uint8[s:s + batch], device)).cpu()
                      for s in range(0, len(images_uint8), batch)])
