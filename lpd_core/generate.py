"""The decode loop: one whole-step call per group through a static KV cache.

Every caller (ComfyUI nodes, CLI, benchmarks) goes through `generate`. It prepares, once per
generation, everything that depends only on the schedule (each step's rows, slots, visibility and
span: `lpd_core.step.plan_steps`) or on the settings (guidance scales per slot, the seeded uniforms,
the class-slot embeddings), then calls one step object per group: `lpd_core.step.EagerStep`, or
with `fast=True` the CUDA-graph decoder of `lpd_core.fast`. The loop itself has no fast-path
branches: the step is swapped, not branched on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import torch

from .blend import check_labels
from .errors import SettingError
from .fast import allocator_backend, decoder_memory_bytes, holds, padded_length, release_fast_state, static_decoder
from .locality import check_positions
from .memory import chunk_starts, plan_chunks
from .model import LPD
from .sampling import guidance_table, seed_uniforms
from .schedule import Schedule
from .settings import (GenerationSettings, check_count, check_flag, check_group_sizes, check_integer,
                       check_negative, check_seed, check_settings, check_switch_step, seed_of)
from .step import DecodeBuffers, EagerStep, Sampling, StepPlan, plan_steps

LOOP_RANGE = "lpd_core.decode_loop"  # profiler range of the step loop (see tests/test_step.py)
log = logging.getLogger("lpd_core")


class DecodeStep:
    """What the per-step callback sees after step `step` (0-based) of `total`. `tokens`, `known`
    and `logits` are computed when first read, so a callback that only counts steps costs nothing;
    read them inside the callback (the next step overwrites what they are made from).

    tokens (B, N): raster order, undecoded positions hold 0; known (B, N) bool: positions decoded
    so far; logits (B, group size, vocab): the guided logits of this step, in order of the group.
    A batch too large for memory is decoded in chunks (`lpd_core.memory`): the steps then count on
    over the chunks (total = chunks × steps) and B is the chunk's samples, from sample `first`."""

    def __init__(self, step: int, total: int, ordered: torch.Tensor, orders: torch.Tensor, decoded: int,
                 logits: torch.Tensor, query_rows: slice, first: int = 0):
        self.step, self.total, self.first = step, total, first
        self._ordered, self._orders, self._decoded = ordered, orders, decoded  # ordered: padded rows too
        self._logits, self._query_rows = logits, query_rows

    @cached_property
    def tokens(self) -> torch.Tensor:
        done, count = self._decoded, len(self._orders)
        return torch.zeros_like(self._orders).scatter_(1, self._orders[:, :done], self._ordered[:count, 1:1 + done])

    @cached_property
    def known(self) -> torch.Tensor:
        return torch.zeros_like(self._orders, dtype=torch.bool).scatter_(1, self._orders[:, :self._decoded], True)

    @cached_property
    def logits(self) -> torch.Tensor:
        return self._logits[:len(self._orders), self._query_rows].clone()


@dataclass
class _Run:
    """One generation's inputs, checked: what the decode loop reads, chunk by chunk."""
    batch: int
    orders: torch.Tensor  # (B, N) int64 on the CPU (one order for all: expanded, not copied)
    group_sizes: tuple[int, ...]
    settings: GenerationSettings
    labels: torch.Tensor | None  # (B,) indices or (B, num_classes) weights, CPU (`blend.check_labels`)
    switched: torch.Tensor | None
    seeds: int | list[int]  # a start seed (image i: seed + i) or one per image
    known: torch.Tensor | None  # (B, N) raster tokens on the CPU (expanded where one serves all)
    known_steps: int
    switch_step: int | None
    negative: torch.Tensor | None  # what guidance contrasts with: labels as above, None: the null class for all
    keeps_null: torch.Tensor | None  # (B,) bool: samples whose negative is the null class (None: none or all)

    def seeds_of(self, start: int, end: int) -> list[int]:
        if isinstance(self.seeds, int):
            return [seed_of(self.seeds, i) for i in range(start, end)]
        return self.seeds[start:end]


def _rows(tensor: torch.Tensor | None, start: int, end: int, pad_to: int) -> torch.Tensor | None:
    """Rows start..end of a per-sample (B, ...) tensor, the last one repeated up to `pad_to` rows."""
    if tensor is None:
        return None
    part = tensor[start:end]
    return torch.cat([part, part[-1:].expand(pad_to - len(part), *part.shape[1:])]) if pad_to > len(part) else part


def _check_seeds(seeds, batch: int) -> int | list[int]:
    """One start seed (image i uses seed + i, mod 2^64), or one seed per image, each in 0..2^64−1."""
    if isinstance(seeds, (str, bytes)):
        raise SettingError(f"seeds must be one whole number (image i then uses seed + i) or one per image, got "
                           f"{seeds!r}")
    try:
        values = list(seeds)
    except TypeError:  # a single seed: an int, a numpy integer, a one-element tensor
        return check_seed(seeds)
    if len(values) != batch:
        raise SettingError(f"got {len(values)} seeds for a batch of {batch}: give one seed per image, or one whole "
                           f"number (image i then uses seed + i)")
    return [check_seed(seed) for seed in values]


def _check_known(known_tokens, batch: int, num_tokens: int, vocab_size: int) -> torch.Tensor:
    """Given tokens for editing: (N,) or (B, N) codes in raster order, each in 0..vocab−1."""
    what = f"known_tokens must be codes in raster order, ({num_tokens},) or ({batch}, {num_tokens}), each in " \
           f"0..{vocab_size - 1}"
    try:
        known = torch.as_tensor(known_tokens)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise SettingError(f"{what}; got {type(known_tokens).__name__}") from None
    if known.dtype == torch.bool or known.is_floating_point() or known.is_complex() or known.ndim not in (1, 2) \
            or known.shape[-1] != num_tokens or known.ndim == 2 and len(known) not in (1, batch):
        raise SettingError(f"{what}; got shape {tuple(known.shape)} of {known.dtype}")
    known = known.cpu().long()
    if known.numel() and (known.min() < 0 or known.max() >= vocab_size):
        raise SettingError(f"{what}; got codes from {int(known.min())} to {int(known.max())}")
    return known.reshape(-1, num_tokens).expand(batch, -1)


def check_callback(callback) -> None:
    """A per-step callback: None, or something to call with each step."""
    if callback is not None and not callable(callback):
        raise SettingError(f"callback must be a function of one step (or None), got {type(callback).__name__}")


def check_negative_classes(negative, num_classes: int, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A negative class as (labels, keeps_null): labels checked like the class labels (one for all or
    one per sample); in a per-sample list, None keeps the null class for that sample (its row of the
    labels is a stand-in that `keeps_null` masks)."""
    if negative is None:
        return None, None
    if isinstance(negative, (list, tuple)) and any(item is None for item in negative):
        if len(negative) != batch:
            raise SettingError(f"got {len(negative)} negative classes for a batch of {batch}: give one for all, or "
                               f"one per sample (None keeps the null class)")
        keeps_null = torch.tensor([item is None for item in negative])
        stand_in = next(item for item in negative if item is not None) if not keeps_null.all() else 0
        negative = [stand_in if item is None else item for item in negative]
        return check_labels(negative, num_classes, batch, "negative classes"), keeps_null
    return check_labels(negative, num_classes, batch, "negative classes"), None


def _check_run(model, schedule, labels, batch, orders, group_sizes, cfg, cfg_schedule, temperature, top_k, top_p,
               seeds, callback, known_tokens, known_steps, switch_labels, switch_step, negative, fast) -> _Run:
    """Every input of `generate`, checked before any work (SettingError with what to give)."""
    if not isinstance(model, LPD):
        raise SettingError(f"the model must be an LPD model (lpd_core.load_model), got {type(model).__name__}")
    config = model.config
    num_tokens, num_classes = config.num_tokens, config.num_classes
    if schedule is not None:
        if not isinstance(schedule, Schedule):
            raise SettingError(f"schedule must be an lpd_core Schedule (lpd_core.build_schedule), got "
                               f"{type(schedule).__name__}")
        if orders is not None or group_sizes is not None:
            raise SettingError("give a schedule, or orders and group_sizes, not both")
        if schedule.num_tokens != num_tokens:
            raise SettingError(f"the schedule is for a {schedule.grid_h}x{schedule.grid_w} grid but the model "
                               f"generates {config.grid_size}x{config.grid_size} tokens; build it for the model's "
                               f"grid (model.config.grid_size)")
        orders, group_sizes = schedule.order, schedule.group_sizes
    if orders is None or group_sizes is None:
        raise SettingError("give a schedule, or both orders and group_sizes")
    orders = torch.from_numpy(check_positions(orders, num_tokens))
    group_sizes = check_group_sizes(group_sizes, num_tokens)
    settings = check_settings(GenerationSettings(len(group_sizes), cfg, cfg_schedule, temperature, top_k, top_p),
                              num_tokens)
    labels = check_labels(labels, num_classes)
    if batch is not None:
        batch = check_count("batch size", batch)
    elif labels is not None:
        batch = len(labels)
    else:
        batch = len(orders) if orders.ndim == 2 else 1
    labels = check_labels(labels, num_classes, batch)
    if orders.ndim == 2 and len(orders) != batch:
        raise SettingError(f"got {len(orders)} orders for a batch of {batch}: give one order for all, or one per image")
    known_steps = check_integer("known_steps", known_steps, 0, len(group_sizes) - 1)
    known = None
    if known_steps:
        if known_tokens is None:
            raise SettingError("known_steps > 0 needs known_tokens: the tokens of the groups not to generate")
        known = _check_known(known_tokens, batch, num_tokens, config.vocab_size)
    if (switch_step is None) != (switch_labels is None):
        raise SettingError("a class switch needs both switch_labels and switch_step")
    switched = labels
    if switch_step is not None:
        switch_step = check_switch_step(switch_step, len(group_sizes) - known_steps)
        switched = check_labels(switch_labels, num_classes, batch, "switch labels")
    check_negative(negative, settings.cfg)
    negative, keeps_null = check_negative_classes(negative, num_classes, batch)
    check_callback(callback)
    check_flag("fast", fast)
    return _Run(batch, orders.expand(batch, -1), group_sizes, settings, labels, switched, _check_seeds(seeds, batch),
                known, known_steps, switch_step, negative, keeps_null)


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

    Every input is checked before any work, by the rules the CLI uses (`lpd_core.settings`,
    `lpd_core.blend.check_labels`): a value out of range is a SettingError that says what to give.
    Memory is planned before anything is allocated (`lpd_core.memory`): the returned tokens must
    fit (else NotEnoughMemoryError, saying how many images would), and a batch whose KV cache and
    step tensors do not fit is decoded in chunks that do (the same tokens: each sample's random
    numbers are its own).

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
    run = _check_run(model, schedule, labels, batch, orders, group_sizes, cfg, cfg_schedule, temperature, top_k,
                     top_p, seeds, callback, known_tokens, known_steps, switch_labels, switch_step, negative, fast)
    settings, device = run.settings, model.pos_embed.device
    guided = settings.cfg != 1.0
    sampling = Sampling(guided=guided, greedy=settings.temperature == 0, top_k=settings.top_k,
                        nucleus=settings.top_p < 1.0)
    plans = plan_steps(run.group_sizes, run.known_steps, model.config.num_tokens, device,
                       padded_length if fast else None, run.switch_step)
    chunk = _chunk_size(model, run, [plan.length for plan in plans], guided, fast)
    chunks = chunk_starts(run.batch, chunk)
    tokens = torch.empty(run.batch, model.config.num_tokens, dtype=torch.long, device=device)
    try:
        for index, (start, end) in enumerate(chunks):
            steps = (index * len(plans), len(chunks) * len(plans))  # the callback counts on over the chunks
            tokens[start:end] = _decode(model, run, start, end, chunk if fast else end - start, plans, sampling,
                                        callback, steps, fast)
    except BaseException:
        if fast:
            release_fast_state(model)  # an interrupted run gives its memory back at once
        raise
    return tokens


def _chunk_size(model: LPD, run: _Run, lengths: list[int], guided: bool, fast: bool) -> int:
    """Samples decoded at once: all of them when their cache and step tensors fit beside the
    tokens of the whole batch, else as many as fit (NotEnoughMemoryError when not one does).
    `lengths`: the rows of each step."""
    config, dtype = model.config, model.pos_embed.dtype
    # CUDA graphs keep memory per captured shape under cudaMallocAsync; without graphs one step's
    # tensors live at a time, as under the native allocator's one pool
    allocator = allocator_backend() if fast and model.pos_embed.device.type == "cuda" else "native"
    if fast and holds(model, run.batch, guided):
        return run.batch  # the state of an earlier run of this batch is reused: its memory is already taken
    if fast:
        release_fast_state(model)  # another batch's state goes before this one is made: do not count it

    def working(count: int) -> int:
        return decoder_memory_bytes(config, count * (2 if guided else 1), dtype, lengths, guided, allocator)

    whole = run.batch * config.num_tokens * torch.empty((), dtype=torch.long).element_size()  # the returned tokens
    chunk = plan_chunks("generating", run.batch, whole, working, model.pos_embed.device)
    if chunk < run.batch:
        log.info("lpd_core: %d images do not fit in memory at once; decoding them %d at a time", run.batch, chunk)
    return chunk


def _contrast(model: LPD, negative: torch.Tensor | None, keeps_null: torch.Tensor | None, rows: int) -> torch.Tensor:
    """(rows, dim) embeddings guidance contrasts the samples with: the negative class, or the null
    class where there is none (all samples, or those `keeps_null` marks)."""
    null = model.fake_latent.expand(rows, -1)
    if negative is None:
        return null
    device = model.pos_embed.device
    contrast = model.condition(negative.to(device), rows)
    return contrast if keeps_null is None else torch.where(keeps_null.to(device)[:, None], null, contrast)


def _decode(model: LPD, run: _Run, start: int, end: int, rows: int, plans: list[StepPlan], sampling: Sampling,
            callback, steps: tuple[int, int], fast: bool) -> torch.Tensor:
    """Samples start..end of the run through the decode loop, as a batch of `rows` (the last sample
    repeated: a fast-path state keeps one batch size); returns their tokens (end − start, N).
    `steps`: the callback's number of this chunk's first step, and the total."""
    config, device = model.config, model.pos_embed.device
    num_tokens, settings = config.num_tokens, run.settings
    count = end - start
    orders = _rows(run.orders, start, end, rows).to(device)
    labels, switched = _rows(run.labels, start, end, rows), _rows(run.switched, start, end, rows)
    seeds = run.seeds_of(start, end)
    seeds += seeds[-1:] * (rows - count)
    if fast:
        step = static_decoder(model, rows, sampling.guided)
        buffers = step.buffers
        step.prepare(plans, sampling)
    else:
        buffers = DecodeBuffers(model, rows, sampling.guided)
        step = EagerStep(model, buffers, sampling)
    known = orders[:, :sum(run.group_sizes[:run.known_steps])]  # the given tokens' positions, in order
    if run.known_steps:
        known = torch.gather(_rows(run.known, start, end, rows).to(device), 1, known)
    conditions = [model.condition(None if c is None else c.to(device), rows) for c in (labels, switched)]
    if sampling.guided:  # rows [0, B) conditional, [B, 2B) what guidance contrasts them with
        contrast = _contrast(model, _rows(run.negative, start, end, rows), _rows(run.keeps_null, start, end, rows),
                             rows)
        conditions = [torch.cat([c, contrast]) for c in conditions]
    num_slots = buffers.cache.slots
    buffers.load(orders=orders, known=known,
                 uniforms=torch.from_numpy(seed_uniforms(seeds, num_slots)).to(device),
                 scales=guidance_table(settings.cfg, settings.cfg_schedule, num_tokens, num_slots).to(device),
                 condition=torch.stack(conditions), temperature=settings.temperature, top_p=settings.top_p)
    real_orders = orders[:count] if count < rows else orders
    try:
        with torch.profiler.record_function(LOOP_RANGE):
            for index, plan in enumerate(plans):
                logits = step(plan)
                if callback is not None:
                    callback(DecodeStep(steps[0] + index, steps[1], buffers.ordered, real_orders, plan.decoded,
                                        logits, plan.query_rows, start))
        return torch.zeros_like(real_orders).scatter_(1, real_orders, buffers.ordered[:count, 1:1 + num_tokens])
    finally:
        del buffers, step  # free the cache at once, also when a callback interrupts
