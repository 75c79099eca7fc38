"""Classifier-free guidance, logit filters and per-sample seeded sampling."""

from __future__ import annotations

import torch

from .settings import CFG_SCHEDULES


def guidance_scales(cfg: float, schedule: str, decoded_before: int, group_size: int, num_tokens: int,
                    device) -> torch.Tensor:
    """Guidance scale for each position of a group, shape (group_size,).

    "linear": the i-th position of a group that starts after d decoded tokens gets
    1 + (cfg − 1)·(d + i)/N, so guidance grows as the image fills in. "constant": cfg everywhere.
    """
    if schedule == "constant":
        return torch.full((group_size,), float(cfg), device=device)
    if schedule == "linear":
        index = torch.arange(decoded_before, decoded_before + group_size, device=device, dtype=torch.float32)
        return 1 + (cfg - 1) * index / num_tokens
    raise ValueError(f"unknown cfg schedule {schedule!r}; choose one of {', '.join(CFG_SCHEDULES)}")


def guide(cond: torch.Tensor, uncond: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """uncond + s·(cond − uncond), with one scale per position (dim 1)."""
    return uncond + scales.to(cond.dtype)[None, :, None] * (cond - uncond)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to −inf every logit outside the top-k and outside the nucleus of mass top_p.

    Ties with the k-th logit are kept. The nucleus keeps the smallest prefix of the sorted
    distribution whose mass reaches top_p (the token that crosses it included).
    """
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_index = torch.sort(logits, dim=-1, descending=True)
        mass_before = torch.cumsum(sorted_logits.softmax(dim=-1), dim=-1) - sorted_logits.softmax(dim=-1)
        drop_sorted = mass_before > top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, sorted_index, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def make_generators(seeds, device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def sample_tokens(logits: torch.Tensor, generators: list[torch.Generator], temperature: float = 1.0,
                  top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Draw one token per row of logits (B, Q, V) → (B, Q).

    Sample b uses only generators[b], so its draws do not depend on what else is in the batch.
    Drawing is the exponential race (argmax of p / E with E ~ Exp(1)), which samples exactly from
    p and needs no host synchronisation. temperature 0 means greedy.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = logits.softmax(dim=-1)
    noise = torch.stack([
        torch.empty(probs.shape[1:], device=probs.device).exponential_(generator=generator)
        for generator in generators
    ])
    return (probs / noise).argmax(dim=-1)
