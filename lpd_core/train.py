"""Training: the VQ tokenizer and the LPD model of the demo, on the procedural shapes data set.

    python -m lpd_core.train vq  --out vq_shapes.safetensors --seed 0
    python -m lpd_core.train lpd --tokenizer vq_shapes.safetensors --out lpd_shapes.safetensors --seed 0 --bf16

These two commands made the shipped demo files (lpd_core/data/demo/, see MODEL_CARD.md there).
Both print progress, use CUDA when it is there, and give the same weights for the same seed on
the same device (CPU runs use `--threads` threads; 2 by default). They write .safetensors files
with the config in the metadata, as `lpd_core.weights.convert` does, so `load_tokenizer(path)` /
`load_model(path)` need no other argument; the LPD file also stores the class names, the demo's
sampling settings and the tokenizer to pair it with (`--tokenizer-name`, default "demo").

VQ tokenizer (`train_vq`): the LlamaGen layout of `lpd_core.vq.VQModel` at a small size. Losses:
L1 + L2 reconstruction, an L1 loss on image gradients (sharper edges, no perceptual network),
codebook loss ‖sg(z) − e‖² and commitment loss β‖z − sg(e)‖² on L2-normalised vectors, with the
straight-through estimator. Codes unused over a window are re-seeded from encoder outputs of the
current batch, so the whole codebook stays alive.

LPD model (`lpd_loss`, `train_lpd`): the LPD objective. Each sample gets its own uniformly random
generation order; each batch draws a step count (log-uniform over a range) and takes its group
sizes from `group_sizes_for(N, steps)`; every position is predicted by its position query through
`LPD.teacher_forced`, seeing exactly what it would see at inference; the loss is cross-entropy
over all positions. 10% of the samples have their class replaced by the null class
(`fake_latent`) so the model can run classifier-free guidance.

`ShapeClassifier` / `train_classifier`: a small CNN trained on the same procedural data; the
benchmark and the tests use it to judge generated samples.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import shapes
from .model import LPD, LPDConfig
from .schedule import group_sizes_for
from .vq import VQConfig, VQModel, images_to_pixels
from .settings import GenerationSettings
from .weights import save_model, save_tokenizer

TRAINING_METADATA_KEY = "lpd_training"  # JSON of the training arguments (informational)


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# VQ tokenizer
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# LPD model
# ---------------------------------------------------------------------------------------------

def sample_steps(num_tokens: int, min_steps: int, max_steps: int, generator: torch.Generator) -> int:
    """A step count drawn log-uniformly from [min_steps, max_steps] (inclusive)."""
    max_steps = min(max_steps, num_tokens)
    low, high = math.log(min_steps - 0.5), math.log(max_steps + 0.5)
    value = math.exp(low + (high - low) * torch.rand((), generator=generator).item())
    return int(min(max_steps, max(min_steps, round(value))))


def lpd_loss(model: LPD, tokens: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
             min_steps: int = 2, max_steps: int | None = None, label_drop: float = 0.1,
             steps: int | None = None) -> tuple[torch.Tensor, int]:
    """The LPD objective on one batch. Returns (mean cross-entropy over all positions, steps).

    tokens (B, N) raster order and labels (B,), on the model's device. Random draws come from
    `generator` (a CPU generator), so a seed fixes orders, step counts and label drops.
    """
    batch, num_tokens = tokens.shape
    device = tokens.device
    if steps is None:
        steps = sample_steps(num_tokens, min_steps, max_steps or num_tokens, generator)
    sizes = group_sizes_for(num_tokens, steps)
    orders = torch.argsort(torch.rand(batch, num_tokens, generator=generator), dim=1).to(device)
    dropped = (torch.rand(batch, generator=generator) < label_drop).to(device)
    targets = torch.gather(tokens, 1, orders)
    total = tokens.new_zeros((), dtype=torch.float32)
    # teacher_forced takes one condition for the whole call: labels, or None for the null class.
    # Run the kept and the dropped samples as two calls (same total work, no change to the model).
    for rows, use_labels in ((~dropped, True), (dropped, False)):
        if not bool(rows.any()):
            continue
        logits = model.teacher_forced(tokens[rows], labels[rows] if use_labels else None, orders[rows], sizes)
        total = total + F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets[rows].reshape(-1),
                                        reduction="sum")
    return total / tokens.numel(), steps


def demo_lpd_config(vq: VQModel, image_size: int = 32, width: int = 256, depth: int = 5, heads: int = 4) -> LPDConfig:
    return LPDConfig(embed_dim=width, depth=depth, num_heads=heads, grid_size=image_size // vq.stride,
                     vocab_size=vq.vocab_size, num_classes=shapes.NUM_CLASSES)


def with_demo_metadata(model: LPD, tokenizer_name: str = "demo") -> LPD:
    """What the shipped demo file says about itself: the shape class names, the sampling settings
    it generates well with (`shapes.DEMO_DEFAULTS`), and the tokenizer `load_pair` loads with it."""
    model.class_names = list(shapes.SHAPE_CLASSES)
    model.generation_defaults = GenerationSettings(steps=shapes.DEMO_DEFAULTS["steps"], cfg=shapes.DEMO_DEFAULTS["cfg"],
                                                   cfg_schedule=shapes.DEMO_DEFAULTS["cfg_schedule"])
    model.tokenizer_name = tokenizer_name
    return model


def train_lpd(vq: VQModel, config: LPDConfig, *, steps: int = 3000, batch: int = 128, lr: float = 1e-3,
              num_images: int = 40000, image_size: int = 32, seed: int = 0, min_steps: int = 2,
              max_steps: int | None = None, label_drop: float = 0.1, weight_decay: float = 0.05,
              data_seed: int | None = None, device=None, log=None, log_every: int = 50,
              history: list | None = None, bf16: bool = False) -> LPD:
    """Train an LPD model on the tokens of `num_images` procedural images. Each step's loss is
    appended to `history` when one is given. `bf16`: matmuls under bfloat16 autocast (weights and
    optimizer stay float32); about 2× faster on CPUs with AMX and on GPUs."""
    device = torch.device(device) if device is not None else default_device()
    log = log or Log()
    data_seed = seed + 1000 if data_seed is None else data_seed  # not the tokenizer's images
    images, labels = shapes.dataset_uint8(num_images, seed=data_seed, size=image_size)
    vq = vq.to(device).eval()
    tokens = encode_images(vq, images)
    labels = torch.from_numpy(labels)
    log(f"lpd: encoded {num_images} images into {tokens.shape[1]} tokens each "
        f"({int(torch.unique(tokens).numel())} distinct codes)")
    torch.manual_seed(seed)
    model = LPD(config).init_weights(torch.Generator().manual_seed(seed)).to(device)
    log(f"lpd: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {config}")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n and "pos" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n and "pos" not in n)]
    optimizer = torch.optim.AdamW([dict(params=decay, weight_decay=weight_decay),
                                   dict(params=no_decay, weight_decay=0.0)], lr=lr, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(seed + 1)
    running = None
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup=max(1, steps // 20))
        index = torch.randint(num_images, (batch,), generator=generator)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, drawn_steps = lpd_loss(model, tokens[index].to(device), labels[index].to(device), generator,
                                         min_steps, max_steps, label_drop)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if history is not None:
            history.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log(f"lpd step {step + 1}/{steps}  loss {running:.3f}  (this batch {loss.item():.3f} at "
                f"{drawn_steps} steps)  lr {optimizer.param_groups[0]['lr']:.2e}")
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------
# A judge for generated samples
# ---------------------------------------------------------------------------------------------

class ShapeClassifier(nn.Module):
    """Small CNN over (B, H, W, 3) images in [0, 1]; `features` is the penultimate layer."""

    def __init__(self, num_classes: int = shapes.NUM_CLASSES, width: int = 32, feature_dim: int = 64):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width))
        self.project = nn.Linear(4 * width * 2 * 2, feature_dim)
        self.out = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2) * 2 - 1
        x = F.adaptive_avg_pool2d(self.body(x), 2).flatten(1)
        return F.relu(self.project(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(images))


def train_classifier(*, num_images: int = 20000, epochs: int = 2, batch: int = 128, lr: float = 3e-3,
                     image_size: int = 32, seed: int = 12345, device=None, log=None) -> ShapeClassifier:
    """Train the judge on procedural images (a seed of its own, apart from the models' data)."""
    device = torch.device(device) if device is not None else default_device()
    images, labels = shapes.dataset_uint8(num_images, seed=seed, size=image_size)
    torch.manual_seed(seed)
    model = ShapeClassifier().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    total = epochs * (num_images // batch)
    model.train()
    step = 0
    for epoch in range(epochs):
        permutation = torch.randperm(num_images, generator=generator).numpy()
        for start in range(0, num_images - batch + 1, batch):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, lr, warmup=max(1, total // 20), floor=0.0)
            index = permutation[start:start + batch]
            x = torch.from_numpy(images[index]).to(device).float() / 255.0
            y = torch.from_numpy(labels[index]).to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        if log:
            log(f"classifier epoch {epoch + 1}/{epochs}  loss {loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def classify(model: ShapeClassifier, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels (n,), penultimate features (n, d)) of images (n, H, W, 3) in [0, 1]."""
    device = model.out.weight.device
    predictions, features = [], []
    for start in range(0, len(images), batch):
        x = torch.as_tensor(images[start:start + batch]).to(device).float()
        f = model.features(x)
        predictions.append(model.out(f).argmax(-1).cpu())
        features.append(f.cpu())
    return torch.cat(predictions), torch.cat(features)


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n, d)."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) = Σ sqrt(eig(sqrt(A) B sqrt(A))), all symmetric PSD
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def _preview(vq: VQModel, model: LPD, path, steps: int = 8, cfg: float = 3.0) -> None:
    from PIL import Image

    from .generate import generate
    from .schedule import build_schedule

    n = shapes.NUM_CLASSES
    schedule = build_schedule(model.config.grid_size, steps=steps, order="locality", seed=0)
    labels = torch.arange(n).repeat_interleave(8)
    tokens = generate(model, schedule, labels, cfg=cfg, seeds=0)
    images = vq.decode_images(tokens).numpy()
    size = images.shape[1]
    grid = images.reshape(n, 8, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(n * size, 8 * size, 3)
    Image.fromarray((grid * 255).round().astype(np.uint8)).resize((8 * size * 3, n * size * 3), Image.NEAREST).save(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lpd_core.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--out", required=True, help="where to write the .safetensors file")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
        p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
        p.add_argument("--image-size", type=int, default=32)

    vq = sub.add_parser("vq", help="train the VQ tokenizer")
    common(vq)
    vq.add_argument("--steps", type=int, default=6000)
    vq.add_argument("--batch", type=int, default=8)
    vq.add_argument("--lr", type=float, default=2e-3)
    vq.add_argument("--images", type=int, default=30000, help="size of the training set")
    vq.add_argument("--crop", type=int, default=16, help="crop size of the first training phase (0: none)")
    vq.add_argument("--crop-fraction", type=float, default=0.8, help="fraction of the steps trained on crops")
    vq.add_argument("--codebook-size", type=int, default=DEMO_VQ_CONFIG.codebook_size)
    vq.add_argument("--codebook-dim", type=int, default=DEMO_VQ_CONFIG.codebook_dim)
    vq.add_argument("--ch", type=int, default=DEMO_VQ_CONFIG.ch, help="base channels (a multiple of 32)")
    vq.add_argument("--ch-mult", default=",".join(map(str, DEMO_VQ_CONFIG.ch_mult)),
                    help="channel multipliers per level; stride is 2^(levels-1)")
    vq.add_argument("--z-channels", type=int, default=DEMO_VQ_CONFIG.z_channels)
    vq.add_argument("--res-blocks", type=int, default=DEMO_VQ_CONFIG.num_res_blocks)

    lpd = sub.add_parser("lpd", help="train the LPD model on a trained tokenizer's codes")
    common(lpd)
    lpd.add_argument("--tokenizer", required=True, help="the tokenizer .safetensors from `train vq`")
    lpd.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    lpd.add_argument("--batch", type=int, default=128)
    lpd.add_argument("--lr", type=float, default=1e-3)
    lpd.add_argument("--images", type=int, default=40000, help="size of the training set")
    lpd.add_argument("--width", type=int, default=256)
    lpd.add_argument("--depth", type=int, default=5)
    lpd.add_argument("--heads", type=int, default=4)
    lpd.add_argument("--min-decode-steps", type=int, default=2,
                     help="decode step counts are drawn log-uniformly from [min, max] per batch")
    lpd.add_argument("--max-decode-steps", type=int, default=None, help="default: the number of tokens")
    lpd.add_argument("--label-drop", type=float, default=0.1)
    lpd.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the matmuls (CPU with AMX, GPU)")
    lpd.add_argument("--tokenizer-name", default="demo",
                     help="what loaders pair with this model: a registry name, 'demo' (default) or a path")
    lpd.add_argument("--preview", default=None, help="also write a PNG grid of samples here")

    args = parser.parse_args(argv)
    seed_everything(args.seed, args.threads)
    device = torch.device(args.device) if args.device else default_device()
    log = Log()
    log(f"{args.command}: device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    training = json.dumps({k: v for k, v in vars(args).items() if k not in ("out", "preview")} |
                          {"command": "python -m lpd_core.train " + " ".join(sys.argv[1:] if argv is None else argv)})
    extra = {TRAINING_METADATA_KEY: training}

    if args.command == "vq":
        config = VQConfig(codebook_size=args.codebook_size, codebook_dim=args.codebook_dim, ch=args.ch,
                          ch_mult=tuple(int(m) for m in args.ch_mult.split(",")), z_channels=args.z_channels,
                          num_res_blocks=args.res_blocks)
        model = train_vq(config, steps=args.steps, batch=args.batch, lr=args.lr, num_images=args.images,
                         image_size=args.image_size, seed=args.seed, crop=args.crop or None,
                         crop_fraction=args.crop_fraction, device=device, log=log)
        held_out, _ = shapes.dataset_uint8(2000, seed=args.seed + 777, size=args.image_size)
        stats = evaluate_vq(model, held_out)
        log(f"vq held-out: psnr {stats['psnr']:.2f} dB, codes used {stats['codes_used']}/{config.codebook_size}, "
            f"perplexity {stats['perplexity']:.0f}")
        path = save_tokenizer(model, args.out, extra)
    else:
        from .weights import load_tokenizer
        vq_model = load_tokenizer(args.tokenizer, device=device)
        config = demo_lpd_config(vq_model, args.image_size, args.width, args.depth, args.heads)
        model = train_lpd(vq_model, config, steps=args.steps, batch=args.batch, lr=args.lr, num_images=args.images,
                          image_size=args.image_size, seed=args.seed, min_steps=args.min_decode_steps,
                          max_steps=args.max_decode_steps, label_drop=args.label_drop, device=device, log=log,
                          bf16=args.bf16)
        path = save_model(with_demo_metadata(model, args.tokenizer_name), args.out, extra)
        if args.preview:
            _preview(vq_model, model, args.preview)
            log(f"preview written to {args.preview}")
    log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {log.elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
