"""A judge for generated samples: `ShapeClassifier`, a small CNN trained on the procedural shapes
(a seed of its own, apart from the models' data), its predictions and penultimate features
(`classify`), and the Fréchet distance between two feature sets (`frechet_distance`).

The benchmark (`benchmarks/bench_demo.py`) and the tests use it to judge samples. The tests load
the judge shipped in tests/fixtures/ (`load_judge`), made by `python -m training judge`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from . import shapes
from .common import cosine_lr, default_device


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
                     image_size: int = 32, seed: int = 12345, device=None, log=None,
                     history: list | None = None) -> ShapeClassifier:
    """Train the judge on procedural images (a seed of its own, apart from the models' data).
    Each step's loss is appended to `history` when one is given."""
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
            if history is not None:
                history.append(loss.item())
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


def save_judge(model: ShapeClassifier, path, metadata: dict[str, str] | None = None):
    """Write the judge's weights (and `metadata`, strings) as .safetensors; returns the path."""
    path = Path(path)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    return path


def load_judge(path, device="cpu") -> ShapeClassifier:
    """A judge written by `save_judge` (`python -m training judge`), in eval mode."""
    model = ShapeClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def add_judge_arguments(parser) -> None:
    """The benchmarks' options for their judge: a judge file to load, or how to train one."""
    parser.add_argument("--judge", default=None, help="load this judge file instead of training one")
    parser.add_argument("--judge-images", type=int, default=20000, help="training images of the judge")
    parser.add_argument("--judge-epochs", type=int, default=2)


def judge_from_arguments(args) -> ShapeClassifier:
    """The judge `add_judge_arguments`' options ask for: loaded from --judge, else trained, logging its progress."""
    if args.judge:
        return load_judge(args.judge)
    return train_classifier(num_images=args.judge_images, epochs=args.judge_epochs, device="cpu",
                            log=lambda line: print("  " + line))
