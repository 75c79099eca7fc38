"""The decode loop: one forward per group through a static KV cache.

Every caller (ComfyUI nodes, CLI, benchmarks) goes through `generate`; `fast=True` is an option of
this loop (fixed-shape steps replayed as CUDA graphs, see `lpd_core.fast`), not a second loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .blend import class_weights, is_class_mix
from .fast import StaticDecoder, release_fast_state, static_decoder
from .model import LPD, KVCache, group_starts, step_rows
from .sampling import CFG_SCHEDULES, guidance_scales, guide, make_generators, sample_tokens
from .schedule import Schedule, validate_group_sizes, validate_order


@dataclass
class DecodeStep:
    """What the per-step callback sees after step `step` (0-based) of `total`."""
    step: int
    total: int
    tokens: torch.Tensor  # (B, N) raster order; undecoded positions hold 0
    known: torch.Tensor  # (B, N) bool: positions decoded so far
    logits: torch.Tensor  # (B, group size, vocab) guided logits of this step, in order of the group


def _labels_tensor(labels, batch: int | None, num_classes: int, device) -> torch.Tensor | None:
    if labels is None:
        return None
    if is_class_mix(labels):  # (B, num_classes) weights, turned into embeddings by LPD.condition
        return class_weights(labels, num_classes, batch, device)
    labels = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
    if batch is not None and labels.numel() == 1:
        labels = labels.expand(batch)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.numel():
        raise ValueError(f"class index {bad[0].item()} is out of range: this model has {num_classes} "
                         f"classes, so use 0..{num_classes - 1}")
    return labels


def _orders_tensor(orders, batch: int, num_tokens: int, device) -> torch.Tensor:
    orders = torch.as_tensor(orders, dtype=torch.long)
    rows = orders.reshape(-1, orders.shape[-1]) if orders.ndim else orders
    for row in rows:
        validate_order(row.numpy(), num_tokens)
    if orders.ndim == 1:
        orders = orders.expand(batch, -1)
    if orders.shape[0] != batch:
        raise ValueError(f"got {orders.shape[0]} orders for a batch of {batch}")
    return orders.to(device)


def _seeds(seeds, batch: int) -> list[int]:
    if isinstance(seeds, int):
        return [seeds + i for i in range(batch)]
    seeds = [int(s) for s in seeds]
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
    return seeds


@dataclass
class StepPlan:
    """Layout of one decode step's input rows: `previous` real rows (the class token and known groups
    at the first step, else the previous group), `queries` query rows, `padding` empty rows, from
    cache slot `start` on; `slots`/`visible_end` as in `model.step_rows` (device tensors)."""
    previous: int
    queries: int
    padding: int
    start: int
    slots: torch.Tensor
    visible_end: torch.Tensor


def plan_steps(group_sizes: Sequence[int], first: int, num_tokens: int, device,
               padded_length: Callable[[int], int] | None = None) -> list[StepPlan]:
    """The input layout of steps `first`..T−1, uploaded to `device` in one copy. With
    `padded_length`, every step is padded to that length; padding rows write to the spare cache
    slots after the image tokens and see only the class slot."""
    starts = group_starts(group_sizes)
    layouts, previous_sizes, start = [], [1, *group_sizes[:first]], 0
    for step in range(first, len(group_sizes)):
        slots, visible_end = step_rows(previous_sizes, group_sizes[step], start)
        padding = (padded_length(len(slots)) if padded_length else len(slots)) - len(slots)
        slots += range(1 + num_tokens, 1 + num_tokens + padding)
        visible_end += [1] * padding
        layouts.append((sum(previous_sizes), group_sizes[step], padding, start, slots, visible_end))
        previous_sizes, start = [group_sizes[step]], starts[step]
    flat = torch.tensor([v for *_, slots, visible in layouts for v in (*slots, *visible)], device=device)
    plans, offset = [], 0
    for previous, queries, padding, start, slots, _ in layouts:
        length = len(slots)
        plans.append(StepPlan(previous, queries, padding, start, flat[offset:offset + length],
                              flat[offset + length:offset + 2 * length]))
        offset += 2 * length
    return plans


@torch.no_grad()
def generate(
    model: LPD,
    schedule: Schedule | None = None,
    labels: int | Sequence[int] | torch.Tensor | None = None,
    *,
    batch: int | None = None,
    orders: torch.Tensor | None = None,
    group_sizes: Sequence[int] | None = None,
    cfg: float = 1.0,
    cfg_schedule: str = "linear",
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seeds: int | Sequence[int] = 0,
    callback: Callable[[DecodeStep], None] | None = None,
    known_tokens: torch.Tensor | None = None,
    known_steps: int = 0,
    fast: bool = False,
) -> torch.Tensor:
    """Generate image tokens, (B, N) in raster order.

    The order and group sizes come from `schedule` (one order for the whole batch), or from
    `orders` ((N,) or (B, N)) and `group_sizes`. `labels` are class indices (one per sample, or one
    for all), or class mixes (`lpd_core.blend.ClassMix`, or (B, num_classes) weights); None generates
    unconditionally (the null class). Sample b draws from its own
    generator seeded with seeds[b] (an int s means s, s+1, ...), so a seed gives the same image
    whatever the batch. cfg ≠ 1 runs the null class beside each sample and mixes the logits per
    `cfg_schedule`. `callback` runs after every step; raising from it stops generation.

    Editing: the first `known_steps` groups of the order are not generated but taken from
    `known_tokens` ((B, N) or (N,) raster order), all fed in one forward pass with the same
    block-causal attention they would have had one step at a time. Steps and the callback then
    count only the generated groups.

    `fast=True`: every step is padded to a multiple of 8 rows, so a handful of fixed shapes serve
    any schedule; on CUDA each shape is captured once as a CUDA graph and replayed (falling back to
    plain execution, with one log line, where capture fails). The KV cache and graphs are kept on
    the model for the next call with the same batch; `lpd_core.fast.release_fast_state(model)`
    frees them (an exception out of the loop, e.g. an interrupt, frees them too). Greedy tokens
    are the same as without it; logits agree to float rounding.
    """
    config = model.config
    num_tokens = config.num_tokens
    device = model.pos_embed.device
    if schedule is not None:
        if schedule.num_tokens != num_tokens:
            raise ValueError(f"the schedule is for a {schedule.grid_h}x{schedule.grid_w} grid but the model "
                             f"generates {config.grid_size}x{config.grid_size} tokens")
        orders, group_sizes = torch.from_numpy(schedule.order), schedule.group_sizes
    if orders is None or group_sizes is None:
        raise ValueError("give a schedule, or both orders and group_sizes")
    group_sizes = validate_group_sizes(group_sizes, num_tokens)
    if cfg_schedule not in CFG_SCHEDULES:
        raise ValueError(f"unknown cfg schedule {cfg_schedule!r}; choose one of {', '.join(CFG_SCHEDULES)}")
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature ≥ 0, top_k ≥ 0 and 0 < top_p ≤ 1; got {temperature}, {top_k}, {top_p}")

    labels = _labels_tensor(labels, batch, config.num_classes, device)
    if batch is None:
        batch = len(labels) if labels is not None else (orders.shape[0] if torch.as_tensor(orders).ndim == 2 else 1)
    if labels is not None and len(labels) != batch:
        raise ValueError(f"got {len(labels)} class labels for a batch of {batch}")
    orders = _orders_tensor(orders, batch, num_tokens, device)
    if not 0 <= known_steps < len(group_sizes):
        raise ValueError(f"known_steps must be between 0 and {len(group_sizes) - 1} (at least one step must be "
                         f"generated), got {known_steps}")
    if known_steps and known_tokens is None:
        raise ValueError("known_steps > 0 needs known_tokens")
    generators = make_generators(_seeds(seeds, batch), device)

    guided = cfg != 1.0
    condition = model.condition(labels, batch)
    positions = model.positions(orders)
    if guided:  # rows [0, B) conditional, [B, 2B) the null class
        condition = torch.cat([condition, model.fake_latent.expand(batch, -1)])
        positions = torch.cat([positions, positions])
    rows, dim = positions.shape[0], config.embed_dim
    starts = group_starts(group_sizes)
    first = known_steps
    decoder: StaticDecoder | None = static_decoder(model, rows) if fast else None
    plans = plan_steps(group_sizes, first, num_tokens, device, decoder.padded_length if decoder else None)
    if decoder is not None:
        decoder.prepare({plan.slots.numel() for plan in plans})
    cache = decoder.cache if decoder is not None else KVCache(config, rows, device, model.pos_embed.dtype)
    mask_rows = model.mask_token.expand(rows, max(group_sizes), dim)
    try:
        ordered = torch.zeros(batch, num_tokens, dtype=torch.long, device=device)
        # Before the first generated step: the class token, then any known groups, in one pass.
        previous = condition[:, None]
        if first:
            known = torch.as_tensor(known_tokens, dtype=torch.long, device=device).expand(batch, num_tokens)
            ordered[:, : starts[first] - 1] = torch.gather(known, 1, orders[:, : starts[first] - 1])
            known_embeddings = model.token_emb(ordered[:, : starts[first] - 1])
            previous = torch.cat([previous, torch.cat([known_embeddings] * (2 if guided else 1))], dim=1)
        for step, plan in zip(range(first, len(group_sizes)), plans):
            size = group_sizes[step]
            width = plan.previous + plan.queries
            content = torch.cat([previous, mask_rows[:, :size]], dim=1)
            step_positions = positions[:, plan.start: plan.start + width]
            if plan.padding:
                content = F.pad(content, (0, 0, 0, plan.padding))
                step_positions = F.pad(step_positions, (0, 0, 0, plan.padding))
            query_rows = slice(plan.previous, width)
            span = plan.start + width  # the last slot any row of this step sees
            if decoder is not None:
                logits = decoder.run(content, step_positions, plan.slots, plan.visible_end, query_rows, span)
            else:
                logits = model.step(content, step_positions, cache, plan.slots, plan.visible_end,
                                    span)[:, query_rows]
            if guided:
                scales = guidance_scales(cfg, cfg_schedule, starts[step] - 1, size, num_tokens, device)
                logits = guide(*logits.chunk(2), scales)
            sampled = sample_tokens(logits, generators, temperature, top_k, top_p)
            ordered[:, starts[step] - 1: starts[step + 1] - 1] = sampled
            previous = model.token_emb(torch.cat([sampled, sampled]) if guided else sampled)
            if callback is not None:
                done = starts[step + 1] - 1
                tokens = torch.zeros_like(ordered).scatter_(1, orders[:, :done], ordered[:, :done])
                known = torch.zeros_like(ordered, dtype=torch.bool).scatter_(1, orders[:, :done], True)
                callback(DecodeStep(step - first, len(group_sizes) - first, tokens, known, logits))
        return torch.zeros_like(ordered).scatter_(1, orders, ordered)
    except BaseException:
        if decoder is not None:
            release_fast_state(model)  # an interrupted run gives its memory back at once
        raise
    finally:
        del cache  # free the cache at once, also when a callback interrupts
