"""One decode step, whole: the function the decode loop calls, eager or captured as a CUDA graph.

A step reads everything it needs from `DecodeBuffers` (loaded once per generation) and from its
`StepPlan` (made once per schedule), and writes its sampled tokens back into the buffers:

    embed the step's rows (the class token, the previous group's tokens, the next group's position
    queries) → the transformer through the KV cache → guidance → temperature, top-k, top-p → the
    seeded draw → the sampled tokens into their cache slots.

Nothing in it synchronises with the host or depends on Python values that change from step to
step, so the same function runs eagerly (`EagerStep`) and is captured once per step shape by the
fast path (`lpd_core.fast.StaticDecoder`); the loop calls either through the same interface and
holds no fast-path branches (`lpd_core.generate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch

from .model import LPD, KVCache, group_starts, step_rows
from .sampling import draw, guide

# What each input row of a step is (the third row of `StepPlan.rows`).
CLASS_ROW = 0  # the class slot with the generation's labels
SWITCHED_CLASS_ROW = 1  # the class slot with the labels switched to (`generate(switch_labels=...)`)
TOKEN_ROW = 2  # a decoded token: its embedding goes in
QUERY_ROW = 3  # a position query (padding rows are queries too, into spare slots nobody reads)

STEP_RANGE = "lpd_core.step"  # profiler range of one step: what a CUDA graph replays


class Sampling(NamedTuple):
    """The Python-level choices of a step (a captured graph is made for each combination)."""
    guided: bool  # the null class runs beside every sample (cfg ≠ 1)
    greedy: bool  # temperature 0: argmax
    top_k: int  # 0: off
    nucleus: bool  # top_p < 1


@dataclass
class StepPlan:
    """The input rows of one decode step: `previous` real rows (the class token, known groups,
    the previous group), `queries` query rows and `padding` empty rows, the group's tokens in
    cache slots from `start` on; `rows` (3, L) on the device: each row's cache slot, the end of
    the slots it sees (`model.step_rows`) and its kind (`*_ROW`); `span`: slots any row sees;
    `decoded`: tokens known once the step is done."""
    previous: int
    queries: int
    padding: int
    start: int
    span: int
    decoded: int
    rows: torch.Tensor

    @property
    def length(self) -> int:
        return self.rows.shape[1]

    @property
    def query_rows(self) -> slice:
        return slice(self.previous, self.previous + self.queries)

    @property
    def slots(self) -> torch.Tensor:
        return self.rows[0]

    @property
    def visible_end(self) -> torch.Tensor:
        return self.rows[1]

    @property
    def kinds(self) -> torch.Tensor:
        return self.rows[2]


def plan_steps(group_sizes: Sequence[int], first: int, num_tokens: int, device,
               padded_length: Callable[[int], int] | None = None, switch_step: int | None = None) -> list[StepPlan]:
    """The rows of steps `first`..T−1, uploaded to `device` in one copy. With `padded_length`,
    every step is padded to that length; padding rows write to the spare cache slots after the
    image tokens and see only the class slot. At step `first + switch_step` the class row is fed
    again (slot 0, seeing only itself) with the switched labels, which rewrites the class slot's
    keys and values in every layer; at the first step the class row is there anyway."""
    starts = group_starts(group_sizes)
    layouts, previous_sizes, start = [], [1, *group_sizes[:first]], 0
    for step in range(first, len(group_sizes)):
        slots, visible_end = step_rows(previous_sizes, group_sizes[step], start)
        kinds = [TOKEN_ROW] * sum(previous_sizes) + [QUERY_ROW] * group_sizes[step]
        switched = switch_step is not None and step == first + switch_step
        if step == first:
            kinds[0] = SWITCHED_CLASS_ROW if switched else CLASS_ROW
        elif switched:
            slots, visible_end, kinds = [0, *slots], [1, *visible_end], [SWITCHED_CLASS_ROW, *kinds]
        previous, span = len(slots) - group_sizes[step], visible_end[-1]
        padding = (padded_length(len(slots)) if padded_length else len(slots)) - len(slots)
        slots += range(1 + num_tokens, 1 + num_tokens + padding)
        visible_end += [1] * padding
        kinds += [QUERY_ROW] * padding
        layouts.append((previous, group_sizes[step], padding, start, span, starts[step + 1] - 1,
                        [*slots, *visible_end, *kinds]))
        previous_sizes, start = [group_sizes[step]], starts[step]
    flat = torch.tensor([v for *_, values in layouts for v in values], device=device)
    plans, offset = [], 0
    for *head, values in layouts:
        plans.append(StepPlan(*head, flat[offset:offset + len(values)].view(3, -1)))
        offset += len(values)
    return plans


class DecodeBuffers:
    """Everything a step reads or writes besides its plan, for one batch: the KV cache and, per
    cache slot, each sample's token (`ordered`), position-embedding row and uniform for the draw;
    the guidance scale per slot; the class-slot embeddings (rows [0, B) the samples', [B, 2B) when
    guided what guidance contrasts them with: the null class, or a negative class), before and after
    a class switch; temperature and top-p.

    Generations load their values into these tensors (`load`), so one captured graph serves any
    labels, negative classes, seeds, orders, cfg, temperature and top-p."""

    def __init__(self, model: LPD, batch: int, guided: bool, spare: int = 0):
        config, device, dtype = model.config, model.pos_embed.device, model.pos_embed.dtype
        self.batch, self.guided = batch, guided
        rows = 2 * batch if guided else batch
        self.cache = KVCache(config, rows, device, dtype, spare=spare)
        slots = self.cache.slots
        self.ordered = torch.zeros(batch, slots, dtype=torch.long, device=device)
        self.position_rows = torch.zeros(batch, slots, dtype=torch.long, device=device)
        self.uniforms = torch.zeros(batch, slots, dtype=torch.float64, device=device)
        self.scales = torch.ones(slots, device=device)
        self.condition = torch.zeros(2, rows, config.embed_dim, device=device, dtype=dtype)
        self.temperature = torch.ones((), device=device)
        self.top_p = torch.ones((), device=device)

    def load(self, *, orders: torch.Tensor, known: torch.Tensor, uniforms: torch.Tensor, scales: torch.Tensor,
             condition: torch.Tensor, temperature: float, top_p: float) -> None:
        """One generation's values. orders (B, N); known (B, K): the tokens of the order's first K
        slots, given (editing); uniforms (B, slots); scales (slots,); condition (2, rows, dim)."""
        num_tokens = orders.shape[1]
        self.position_rows[:, 1:1 + num_tokens].copy_(orders + 1)  # pos_embed row 0 is the class slot
        self.ordered[:, 1:1 + known.shape[1]].copy_(known)
        self.uniforms.copy_(uniforms)
        self.scales.copy_(scales)
        self.condition.copy_(condition)
        self.temperature.fill_(temperature)
        self.top_p.fill_(top_p)


def decode_step(model: LPD, buffers: DecodeBuffers, rows: torch.Tensor, sampling: Sampling,
                span: int | None = None) -> torch.Tensor:
    """Run one whole step (see the module docstring) over `rows` (`StepPlan.rows`): the sampled
    tokens of the query rows go into `buffers.ordered` at their slots. Returns the guided logits
    (B, L, vocab) of every row. `span`: cache slots attention reads (None: all, a fixed shape)."""
    slots, visible_end, kinds = rows
    tokens = buffers.ordered.index_select(1, slots)
    content = model.token_emb(tokens)
    positions = model.pos_embed[0][buffers.position_rows.index_select(1, slots)]
    if sampling.guided:
        content, positions = torch.cat([content, content]), torch.cat([positions, positions])
    content = torch.where((kinds == QUERY_ROW)[:, None], model.mask_token[0], content)
    for kind in (CLASS_ROW, SWITCHED_CLASS_ROW):
        content = torch.where((kinds == kind)[:, None], buffers.condition[kind][:, None], content)
    logits = model.step(content, positions, buffers.cache, slots, visible_end, span)
    if sampling.guided:
        logits = guide(*logits.chunk(2), buffers.scales[slots])
    if sampling.greedy:
        sampled = logits.argmax(dim=-1)
    else:
        sampled = draw(logits, buffers.uniforms.index_select(1, slots), buffers.temperature, sampling.top_k,
                       buffers.top_p if sampling.nucleus else 1.0)
    buffers.ordered.index_copy_(1, slots, torch.where(kinds == QUERY_ROW, sampled, tokens))
    return logits


class EagerStep:
    """The step as it is: `decode_step` over the plan's own rows, attention over the slots it sees."""

    def __init__(self, model: LPD, buffers: DecodeBuffers, sampling: Sampling):
        self.model, self.buffers, self.sampling = model, buffers, sampling

    def __call__(self, plan: StepPlan) -> torch.Tensor:
        with torch.profiler.record_function(STEP_RANGE):
            return decode_step(self.model, self.buffers, plan.rows, self.sampling, plan.span)
