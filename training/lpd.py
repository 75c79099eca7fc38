"""Training the LPD model (`lpd_loss`, `train_lpd`) on a trained tokenizer's codes.

The LPD objective: each sample gets its own uniformly random generation order; each batch draws a
step count (log-uniform over a range) and takes its group sizes from `group_sizes_for(N, steps)`;
every position is predicted by its position query through `LPD.teacher_forced`, seeing exactly
what it would see at inference; the loss is cross-entropy over all positions. 10% of the samples
have their class replaced by the null class (`fake_latent`) so the model can run classifier-free
guidance.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lpd_core.generate import generate
from lpd_core.model import LPD, LPDConfig
from lpd_core.schedule import build_schedule, group_sizes_for
from lpd_core.settings import GenerationSettings
from lpd_core.vq import VQModel

from . import shapes
from .common import Log, cosine_lr, default_device
from .vq import encode_images

# The sampling settings the demo file stores as its defaults: with the locality order, 8 steps
# gave the lowest FD of the orders table of benchmarks/bench_demo.py (docs/benchmarks.md, "The demo model").
DEMO_SETTINGS = GenerationSettings(steps=8, cfg=3.0, cfg_schedule="linear")


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
    it generates well with (`DEMO_SETTINGS`), and the tokenizer `load_pair` loads with it."""
    model.class_names = list(shapes.SHAPE_CLASSES)
    model.generation_defaults = DEMO_SETTINGS
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


@torch.no_grad()
def write_preview(vq: VQModel, model: LPD, path, settings: GenerationSettings = DEMO_SETTINGS) -> None:
    """A PNG grid of samples, one row of 8 per class, 3× enlarged (locality order, seeds 0..)."""
    from PIL import Image

    n = model.config.num_classes
    schedule = build_schedule(model.config.grid_size, steps=settings.steps, order="locality", seed=0)
    labels = torch.arange(n).repeat_interleave(8)
    tokens = generate(model, schedule, labels, cfg=settings.cfg, cfg_schedule=settings.cfg_schedule, seeds=0)
    images = vq.decode_images(tokens).numpy()
    size = images.shape[1]
    grid = images.reshape(n, 8, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(n * size, 8 * size, 3)
    Image.fromarray((grid * 255).round().astype(np.uint8)).resize((8 * size * 3, n * size * 3), Image.NEAREST).save(path)
