"""The fast path of the decode loop: fixed-shape whole steps, replayed as CUDA graphs.

At batch 1 a decode step is a few hundred small kernels, and launching them from Python costs more
than running them. `generate(..., fast=True)` therefore pads every step to a multiple of
`ROW_MULTIPLE` rows (padding rows write to spare cache slots that nothing attends to), so a
schedule needs only a handful of step shapes; on CUDA each shape is captured once as a CUDA graph
of the whole step (`lpd_core.step.decode_step`: embeddings, transformer, guidance, filters and the
seeded draw) over buffers that stay put, and every later step of that shape is one copy of its
rows into the graph's input and one replay.

The state (buffers, graphs) lives on the model, for one batch size and guidance setting at a time,
and is rebuilt when the model's weights move (ComfyUI offloading it, `.to()`), change dtype, the
batch changes or the run is in the other inference mode (tensors made under
`torch.inference_mode()`, as ComfyUI runs its nodes, cannot be written outside it); labels,
negative classes, seeds, orders, cfg, temperature and top-p are graph inputs, so they never cause a
new capture (a new top-k or switching greedy/nucleus on or off captures that variant once).
`release_fast_state(model)` frees it. Where capture fails (some cudaMallocAsync set-ups, old
drivers, ...) the same steps run without graphs after one log line; it never fails the
generation. On the CPU there is nothing to capture: the step function runs eagerly over the same
buffers and full-cache shapes a graph would replay.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import torch

from .model import LPD
from .step import QUERY_ROW, STEP_RANGE, DecodeBuffers, Sampling, StepPlan, decode_step

log = logging.getLogger("lpd_core")

ROW_MULTIPLE = 8  # step rows are padded to a multiple of this: few shapes, little wasted work
WARMUP_RUNS = 2  # eager runs on a side stream before capture (cuBLAS/SDPA pick their kernels)
_STATE_ATTRIBUTE = "_lpd_fast_state"
_capture_failed: set[torch.device] = set()  # devices where capture failed once: not tried again


def allocator_backend() -> str:
    """The CUDA allocator back-end of this process, "native" or "cudaMallocAsync" (ComfyUI's
    default). It is fixed when CUDA starts, from PYTORCH_CUDA_ALLOC_CONF (or PYTORCH_ALLOC_CONF);
    without CUDA, what those variables would choose."""
    if torch.cuda.is_available():
        return torch.cuda.get_allocator_backend()
    settings = ",".join(os.environ.get(name, "") for name in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"))
    return "cudaMallocAsync" if "backend:cudaMallocAsync" in settings.replace(" ", "") else "native"


def on_by_default(device) -> bool:
    """Where "auto" takes the fast path: CUDA, the only place it has graphs to replay."""
    return torch.device(device).type == "cuda"


def padded_length(length: int) -> int:
    """Rows of a step of `length` rows on the fast path."""
    return -(-length // ROW_MULTIPLE) * ROW_MULTIPLE


def _fingerprint(model: LPD, batch: int, guided: bool) -> tuple:
    """Everything a captured graph depends on: a graph reads weights at fixed addresses, and its
    buffers can only be written in the inference mode they were made in."""
    return (batch, guided, model.pos_embed.device, model.pos_embed.dtype, torch.is_inference_mode_enabled(),
            tuple(p.data_ptr() for p in model.parameters()))


class _ShapeStep:
    """The step for one length and sampling variant: its input rows buffer and, on CUDA, the
    graph that replays `decode_step` over it. Without a graph, calling it runs the same function
    over the same buffers."""

    def __init__(self, model: LPD, buffers: DecodeBuffers, sampling: Sampling, length: int):
        device, slots = buffers.ordered.device, buffers.cache.slots
        # distinct slots, so the warm-up and capture runs write where nothing is read yet
        self.rows = torch.stack([torch.arange(length), torch.full((length,), slots),
                                 torch.full((length,), QUERY_ROW)]).to(device)
        self.graph = None
        self.run = lambda: decode_step(model, buffers, self.rows, sampling)

    def capture(self, pool) -> None:
        # Warm-up and capture write into the buffers. That is harmless: capture happens before a
        # generation loads its values, and a step reads only slots written earlier in its own run.
        device = self.rows.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.run()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            self.output = self.run()
        self.graph = graph

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        self.rows.copy_(rows)
        with torch.profiler.record_function(STEP_RANGE):
            if self.graph is None:
                return self.run()
            self.graph.replay()
            return self.output


class StaticDecoder:
    """Fixed-shape whole decode steps for one model, batch and guidance setting. Called with a
    step's plan like `lpd_core.step.EagerStep`; `prepare` first makes the step shapes a run needs."""

    def __init__(self, model: LPD, batch: int, guided: bool):
        self.model = model
        self.fingerprint = _fingerprint(model, batch, guided)
        self.buffers = DecodeBuffers(model, batch, guided, spare=ROW_MULTIPLE - 1)
        self.steps: dict[tuple[int, Sampling], _ShapeStep] = {}
        device = model.pos_embed.device
        self.use_graphs = device.type == "cuda" and device not in _capture_failed
        # The graphs of one decoder run one after another, so they can share one memory pool. The
        # cudaMallocAsync allocator (ComfyUI's default) keeps graph memory its own way: no pool.
        native = self.use_graphs and allocator_backend() == "native"
        self.pool = torch.cuda.graph_pool_handle() if native else None
        self.sampling: Sampling | None = None

    def prepare(self, plans: list[StepPlan], sampling: Sampling) -> None:
        """Make (on CUDA: capture) the step of every length in `plans` not made yet."""
        self.sampling = sampling
        for length in sorted({plan.length for plan in plans}):
            if (length, sampling) in self.steps:
                continue
            step = _ShapeStep(self.model, self.buffers, sampling, length)
            if self.use_graphs:
                try:
                    step.capture(self.pool)
                except Exception as error:  # any capture failure: run the same steps without graphs
                    log.warning("lpd_core: CUDA graph capture failed (%s: %s); decoding without graphs",
                                type(error).__name__, (str(error).splitlines() or [""])[0])
                    self.use_graphs = False
                    _capture_failed.add(self.buffers.cache.keys.device)
                    for made in self.steps.values():
                        made.graph = None
                    step.graph = None
            self.steps[length, sampling] = step

    def __call__(self, plan: StepPlan) -> torch.Tensor:
        """Run the step; its guided logits (B, L, vocab) are a graph buffer until the next step."""
        return self.steps[plan.length, self.sampling](plan.rows)


def step_rows(group_sizes: Sequence[int]) -> list[int]:
    """Input rows of each step of a plain (non-editing) schedule: the previous group (the class
    token before the first) and the step's queries."""
    sizes = list(group_sizes)
    return [previous + size for previous, size in zip([1, *sizes[:-1]], sizes)]


def decoder_memory_bytes(config, rows: int, dtype: torch.dtype, steps: int | Sequence[int], guided: bool = True,
                         allocator: str | None = None) -> int:
    """Device memory the fast path keeps for `rows` rows (batch, ×2 with guidance) while the model
    stays loaded: what a memory manager should reserve beside the weights. `steps`: the input rows
    of every step (`step_rows`), or only the longest (then every shape up to it is counted, an
    upper bound). `guided=False` for cfg 1 (rows = batch). `allocator`: the CUDA allocator
    back-end, "native" or "cudaMallocAsync" (None: this process's, `allocator_backend`). See
    `decoder_memory_parts` for the parts."""
    return sum(decoder_memory_parts(config, rows, dtype, steps, guided, allocator).values())


def decoder_memory_parts(config, rows: int, dtype: torch.dtype, steps: int | Sequence[int], guided: bool = True,
                         allocator: str | None = None) -> dict[str, int]:
    """The parts of `decoder_memory_bytes`:

    - `cache`: keys and values of every layer, (rows, slots, width) each;
    - `buffers`: per slot and sample the token, position row (int64) and uniform (float64); the
      class-slot embeddings;
    - `outputs`: each captured step shape (the steps' rows padded to a multiple of `ROW_MULTIPLE`)
      keeps its guided logits (B, L, vocab) alive;
    - `step`: the transient tensors of the steps, which the graphs' memory pools hold: per shape
      the widest of the transformer (input, residual, qkv, attention output, MLP hidden and its
      GELU) and of the sampling tail (raw logits for all rows, then float32 logits, their softmax
      and the float64 running sum for the draw; top-p adds a sort). Under the native allocator
      the shapes share one pool, the largest shape's; under cudaMallocAsync each captured shape
      has its own, so they add up.
    """
    allocator = allocator_backend() if allocator is None else allocator
    if allocator not in ("native", "cudaMallocAsync"):
        raise ValueError(f"unknown CUDA allocator back-end {allocator!r}; expected native or cudaMallocAsync")
    if isinstance(steps, int):
        shapes = list(range(ROW_MULTIPLE, padded_length(steps) + 1, ROW_MULTIPLE))
    else:
        shapes = sorted({padded_length(length) for length in steps})
    item = torch.empty((), dtype=dtype).element_size()
    width, vocab = config.embed_dim, config.vocab_size
    slots = 1 + config.num_tokens + ROW_MULTIPLE - 1
    batch = rows // 2 if guided else rows
    hidden = int(width * config.mlp_ratio)

    def transient(length: int) -> int:
        transformer = rows * length * (4 * width + 3 * width + 2 * hidden) * item + length * slots
        sampling = rows * length * vocab * item + batch * length * vocab * (item + 4 + 4 + 8 + 8 + 4 + 8)
        return max(transformer, sampling)

    pools = [transient(length) for length in shapes]
    return dict(cache=2 * config.depth * rows * slots * width * item,
                buffers=batch * slots * (8 + 8 + 8) + 2 * rows * width * item,
                outputs=sum(batch * length * vocab * item for length in shapes),
                step=max(pools) if allocator == "native" else sum(pools))


def static_decoder(model: LPD, batch: int, guided: bool) -> StaticDecoder:
    """The model's fast-path state for `batch` samples with or without guidance, made (or remade) when needed."""
    state = getattr(model, _STATE_ATTRIBUTE, None)
    if state is None or state.fingerprint != _fingerprint(model, batch, guided):
        release_fast_state(model)
        state = StaticDecoder(model, batch, guided)
        setattr(model, _STATE_ATTRIBUTE, state)
    return state


def holds(model: LPD, batch: int, guided: bool) -> bool:
    """Whether the model keeps a fast-path state this run would reuse (its memory is already taken)."""
    state = getattr(model, _STATE_ATTRIBUTE, None)
    return state is not None and state.fingerprint == _fingerprint(model, batch, guided)


def release_fast_state(model: LPD) -> None:
    """Free the buffers and graphs that `generate(..., fast=True)` keeps on the model."""
    if getattr(model, _STATE_ATTRIBUTE, None) is not None:
        setattr(model, _STATE_ATTRIBUTE, None)
