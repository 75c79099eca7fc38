"""Classifier-free guidance, logit filters and per-sample seeded sampling.

Everything here runs inside a decode step (`lpd_core.step.decode_step`), which the fast path
captures as one CUDA graph, so nothing synchronises with the host and nothing loops over the batch.
The values come checked (`lpd_core.settings`): nothing here checks them again.
"""

from __future__ import annotations

import numpy as np
import torch

# splitmix64 (Steele, Lea & Flood 2014): a 64-bit counter mixed by two xor-shift-multiply rounds.
_GAMMA = 0x9E3779B97F4A7C15
_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
_UNIFORM_BITS = 52


def guidance_table(cfg: float, schedule: str, num_tokens: int, num_slots: int) -> torch.Tensor:
    """Guidance scale of the query for each KV-cache slot, shape (num_slots,), float32 on the CPU.

    Slot 1 + j holds the j-th token of the order. "linear": that token gets 1 + (cfg − 1)·j/N, so
    guidance grows as the image fills in; "constant": cfg everywhere. Slot 0 (the class) and the
    spare slots after the image get 1 (nothing reads them).
    """
    scales = {"linear": lambda: 1 + (cfg - 1) * torch.arange(num_tokens, dtype=torch.float32) / num_tokens,
              "constant": lambda: torch.full((num_tokens,), float(cfg))}  # settings.CFG_SCHEDULES
    image = scales[schedule]()  # a name not among them was refused by settings.check_settings: a bug here
    return torch.cat([torch.ones(1), image, torch.ones(num_slots - 1 - num_tokens)])


def guide(cond: torch.Tensor, uncond: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """uncond + s·(cond − uncond), with one scale per position (dim 1)."""
    return uncond + scales.to(cond.dtype)[None, :, None] * (cond - uncond)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Set to −inf every logit outside the top-k and outside the nucleus of mass top_p.

    Ties with the k-th logit are kept. The nucleus keeps the smallest prefix of the sorted
    distribution whose mass reaches top_p (the token that crosses it included). A tensor top_p
    (a captured graph's input) always applies the nucleus.
    """
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if isinstance(top_p, torch.Tensor) or top_p < 1.0:
        sorted_logits, sorted_index = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop_sorted = torch.cumsum(probs, dim=-1) - probs > top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, sorted_index, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _mix64(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX[0])
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX[1])
    return x ^ (x >> np.uint64(31))


def seed_uniforms(seeds, count: int) -> np.ndarray:
    """(len(seeds), count) float64 uniforms in [0, 1 − 2⁻⁵²]: the random numbers of a generation.

    Counter-based: number c of seed s is splitmix64 of (mix(s) + (c + 1)·γ), in numpy's uint64
    arithmetic (which wraps modulo 2⁶⁴, exactly as the generator is defined). So a sample's
    numbers depend on its seed alone, never on the batch around it, and all of them are known
    before the first step: the decode loop uploads them once and every step reads its own (the
    draw of cache slot c uses number c). Seeds are mixed first so that the streams of adjacent
    seeds (s, s + 1, ...: one per image of a batch) are unrelated.
    """
    seeds = np.asarray([int(s) % 2**64 for s in seeds], dtype=np.uint64).reshape(-1, 1)
    with np.errstate(over="ignore"):
        state = _mix64(seeds) + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(_GAMMA)
        bits = _mix64(state) >> np.uint64(64 - _UNIFORM_BITS)
    return bits.astype(np.float64) * 2.0 ** -_UNIFORM_BITS


def draw(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float | torch.Tensor = 1.0,
         top_k: int = 0, top_p: float | torch.Tensor = 1.0) -> torch.Tensor:
    """One token per row of logits (..., V) → (...), each from its own uniform in `uniforms` (...).

    Inverse-CDF sampling: the token is the first whose cumulative probability exceeds u · total.
    It is exact in distribution: token i is drawn with probability p_i up to the 2⁻⁵² grain of u
    and float64 rounding of the running sum (1e-12 for 16k codes), far below float32's own
    rounding of p; zero-probability tokens are never drawn (their cumulative sum equals the one
    before, and u · total < total). It needs one random number per token (not one per
    vocabulary entry, as a Gumbel or exponential race would: 16k times the noise), no host
    synchronisation and no loop over samples, so it runs inside the captured step.
    """
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    cumulative = logits.softmax(dim=-1).double().cumsum(dim=-1)
    threshold = uniforms * cumulative[..., -1]
    token = torch.searchsorted(cumulative, threshold.unsqueeze(-1), right=True).squeeze(-1)
    return token.clamp_(max=logits.shape[-1] - 1)  # only a NaN row could reach V
