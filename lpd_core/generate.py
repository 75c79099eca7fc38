"""The decode loop: one whole-step call per group through a static KV cache.

Every caller (ComfyUI nodes, CLI, benchmarks) goes through `generate`. It prepares, once per
generation, everything that depends only on the schedule (each step's rows, slots, visibility and
span: `lpd_core.step.plan_steps`) or on the settings (guidance scales per slot, the seeded uniforms,
the class-slot embeddings), then calls one step object per group: `lpd_core.step.EagerStep`, or
with `fast=True` the CUDA-graph decoder of `lpd_core.fast`. The loop itself has no fast-path
branches: the step is swapped, not branched on.
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Sequence

import torch

from .blend import class_weights, is_class_mix
from .errors import SettingError
from .fast import padded_length, release_fast_state, static_decoder
from .model import LPD
from .sampling import CFG_SCHEDULES, guidance_table, seed_uniforms
from .schedule import Schedule, validate_group_sizes, validate_order
from .settings import check_negative
from .step import DecodeBuffers, EagerStep, Sampling, plan_steps

LOOP_RANGE = "lpd_core.decode_loop"  # profiler range of the step loop (see tests/test_step.py)


class DecodeStep:
    """What the per-step callback sees after step `step` (0-based) of `total`. `tokens`, `known`
    and `logits` are computed when first read, so a callback that only counts steps costs nothing;
    read them inside the callback (the next step overwrites what they are made from).

    tokens (B, N): raster order, undecoded positions hold 0; known (B, N) bool: positions decoded
    so far; logits (B, group size, vocab): the guided logits of this step, in order of the group."""

    def __init__(self, step: int, total: int, ordered: torch.Tensor, orders: torch.Tensor, decoded: int,
                 logits: torch.Tensor, query_rows: slice):
        self.step, self.total = step, total
        self._ordered, self._orders, self._decoded = ordered, orders, decoded
        self._logits, self._query_rows = logits, query_rows

    @cached_property
    def tokens(self) -> torch.Tensor:
        done = self._decoded
        return torch.zeros_like(self._orders).scatter_(1, self._orders[:, :done], self._ordered[:, 1:1 + done])

    @cached_property
    def known(self) -> torch.Tensor:
        return torch.zeros_like(self._orders, dtype=torch.bool).scatter_(1, self._orders[:, :self._decoded], True)

    @cached_property
    def logits(self) -> torch.Tensor:
        return self._logits[:, self._query_rows].clone()


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
        raise SettingError(f"class index {bad[0].item()} is out of range: this model has {num_classes} "
                         f"classes, so use 0..{num_classes - 1}")
    return labels


def _negative_condition(model: LPD, negative, batch: int) -> torch.Tensor:
    """(batch, dim) embeddings guidance contrasts the samples with: the null class where `negative`
    is None (for all, or for one sample of a per-sample list), else the class or mix given."""
    null = model.fake_latent.expand(batch, -1)
    if negative is None:
        return null
    config, device = model.config, model.pos_embed.device
    if isinstance(negative, (list, tuple)) and any(item is None for item in negative):
        if len(negative) != batch:
            raise SettingError(f"got {len(negative)} negative classes for a batch of {batch}")
        rows = [null[:1] if item is None else model.condition(_labels_tensor([item], 1, config.num_classes, device), 1)
                for item in negative]
        return torch.cat(rows)
    labels = _labels_tensor(negative, batch, config.num_classes, device)
    if len(labels) != batch:
        raise SettingError(f"got {len(labels)} negative classes for a batch of {batch}: give one for all, or one "
                           f"per sample")
    return model.condition(labels, batch)


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
        return [(seeds + i) % 2**64 for i in range(batch)]
    seeds = [int(s) for s in seeds]
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
    return seeds


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
    switch_labels: int | Sequence[int] | torch.Tensor | None = None,
    switch_step: int | None = None,
    negative=None,
    fast: bool = False,
) -> torch.Tensor:
    """Generate image tokens, (B, N) in raster order.

    The order and group sizes come from `schedule` (one order for the whole batch), or from
    `orders` ((N,) or (B, N)) and `group_sizes`. `labels` are class indices (one per sample, or one
    for all), or class mixes (`lpd_core.blend.ClassMix`, or (B, num_classes) weights); None generates
    unconditionally (the null class). Sample b draws from its own
    counter-based random numbers seeded with seeds[b] (an int s means s, s+1, ... mod 2^64;
    `lpd_core.sampling.seed_uniforms`), so a seed gives the same image whatever the batch.
    cfg ≠ 1 runs the null class beside each sample and mixes the logits per `cfg_schedule`.
    `negative` puts another class there instead ("a fox, less like a dog"): class indices or mixes
    in the same forms as `labels` (one for all, or one per sample; None in a per-sample list keeps
    the null class for that sample). Guidance then pushes each sample away from its negative; it
    needs cfg ≠ 1, since at cfg 1 nothing reads it.
    `callback` runs after every step; raising from it stops generation.

    Editing: the first `known_steps` groups of the order are not generated but taken from
    `known_tokens` ((B, N) or (N,) raster order), all fed in one forward pass with the same
    block-causal attention they would have had one step at a time. Steps and the callback then
    count only the generated groups.

    Class switch: from generated step `switch_step` on (0-based, as the callback counts), the
    class slot holds `switch_labels` instead of `labels` (its keys and values are rewritten in
    every layer at that step; tokens decoded before keep what they saw). Guidance's side (the null
    class, or `negative`) stays as it was. `switch_step` 0 is plain generation with `switch_labels`.

    `fast=True`: every step is padded to a multiple of 8 rows, so a handful of fixed shapes serve
    any schedule; on CUDA each whole step (embeddings, transformer, guidance, sampling) is captured
    once per shape as a CUDA graph and replayed (falling back to plain execution, with one log
    line, where capture fails). The buffers and graphs are kept on the model for the next call
    with the same batch and guidance (labels, negatives, seeds, orders and settings are inputs of
    the graphs); `lpd_core.fast.release_fast_state(model)` frees them (an
    exception out of the loop, e.g. an interrupt, frees them too). Greedy tokens are the same as
    without it; logits agree to float rounding.
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
    generated_steps = len(group_sizes) - known_steps
    if (switch_step is None) != (switch_labels is None):
        raise ValueError("a class switch needs both switch_labels and switch_step")
    if switch_step is not None and not 0 <= switch_step < generated_steps:
        raise ValueError(f"switch_step must be between 0 and {generated_steps - 1} (a generated step), "
                         f"got {switch_step}")
    switched = _labels_tensor(switch_labels, batch, config.num_classes, device) if switch_labels is not None else labels
    if switched is not None and len(switched) != batch:
        raise ValueError(f"got {len(switched)} switch labels for a batch of {batch}")
    seeds = _seeds(seeds, batch)
    check_negative(negative, cfg)
    guided = cfg != 1.0
    contrast = _negative_condition(model, negative, batch)

    sampling = Sampling(guided=guided, greedy=temperature == 0, top_k=int(top_k), nucleus=top_p < 1.0)
    first = known_steps
    if fast:
        step = static_decoder(model, batch, guided)
        buffers = step.buffers
        plans = plan_steps(group_sizes, first, num_tokens, device, padded_length, switch_step)
        step.prepare(plans, sampling)
    else:
        buffers = DecodeBuffers(model, batch, guided)
        plans = plan_steps(group_sizes, first, num_tokens, device, None, switch_step)
        step = EagerStep(model, buffers, sampling)
    known = orders[:, :sum(group_sizes[:first])]  # the given tokens' positions, in order
    if first:
        known = torch.gather(torch.as_tensor(known_tokens, dtype=torch.long, device=device).expand(batch, num_tokens),
                             1, known)
    conditions = [model.condition(labels, batch), model.condition(switched, batch)]
    if guided:  # rows [0, B) conditional, [B, 2B) what guidance contrasts them with
        conditions = [torch.cat([c, contrast]) for c in conditions]
    num_slots = buffers.cache.slots
    buffers.load(orders=orders, known=known,
                 uniforms=torch.from_numpy(seed_uniforms(seeds, num_slots)).to(device),
                 scales=guidance_table(cfg, cfg_schedule, num_tokens, num_slots).to(device),
                 condition=torch.stack(conditions), temperature=temperature, top_p=top_p)
    try:
        with torch.profiler.record_function(LOOP_RANGE):
            for index, plan in enumerate(plans):
                logits = step(plan)
                if callback is not None:
                    callback(DecodeStep(index, len(plans), buffers.ordered, orders, plan.decoded, logits,
                                        plan.query_rows))
        return torch.zeros_like(orders).scatter_(1, orders, buffers.ordered[:, 1:1 + num_tokens])
    except BaseException:
        if fast:
            release_fast_state(model)  # an interrupted run gives its memory back at once
        raise
    finally:
        del buffers, step  # free the cache at once, also when a callback interrupts
