"""The fast path of the decode loop: fixed-shape steps, replayed as CUDA graphs.

At batch 1 a decode step is a few hundred small kernels, and launching them from Python costs more
than running them. `generate(..., fast=True)` therefore pads every step to a multiple of
`ROW_MULTIPLE` rows (padding rows write to spare cache slots that nothing attends to), so a
schedule needs only a handful of step shapes; on CUDA each shape is captured once as a CUDA graph
over a KV cache that stays put, and every later step of that shape is one graph replay.

The state (cache, graphs, their input buffers) lives on the model, for one batch size at a time,
and is rebuilt when the model's weights move (ComfyUI offloading it, `.to()`), change dtype or the
batch changes. `release_fast_state(model)` frees it. Where capture fails (some cudaMallocAsync
set-ups, old drivers, ...) the steps run without graphs after one log line; it never fails the
generation. On the CPU there is nothing to capture: the padded steps run as they are.
"""

from __future__ import annotations

import logging

import torch

from .model import LPD, KVCache

log = logging.getLogger("lpd_core")

ROW_MULTIPLE = 8  # step rows are padded to a multiple of this: few shapes, little wasted work
WARMUP_RUNS = 2  # eager runs on a side stream before capture (cuBLAS/SDPA pick their kernels)
_STATE_ATTRIBUTE = "_lpd_fast_state"
_capture_failed: set[torch.device] = set()  # devices where capture failed once: not tried again


def on_by_default(device) -> bool:
    """Where "auto" takes the fast path: CUDA, the only place it has graphs to replay."""
    return torch.device(device).type == "cuda"


def _fingerprint(model: LPD, rows: int) -> tuple:
    """Everything a captured graph depends on: a graph reads weights at fixed addresses."""
    return rows, model.pos_embed.device, model.pos_embed.dtype, tuple(p.data_ptr() for p in model.parameters())


class _Graph:
    """One captured step shape: its input buffers, the graph, and the output it writes."""

    def __init__(self, model: LPD, cache: KVCache, rows: int, length: int, pool):
        device, dtype, dim = model.pos_embed.device, model.pos_embed.dtype, model.config.embed_dim
        self.content = torch.zeros(rows, length, dim, device=device, dtype=dtype)
        self.positions = torch.zeros_like(self.content)
        self.slots = torch.arange(length, device=device)  # distinct slots for the warm-up writes
        self.visible_end = torch.full((length,), cache.slots, device=device)

        def run():
            return model.step(self.content, self.positions, cache, self.slots, self.visible_end)

        # Warm-up and capture write into the cache. That is harmless: capture happens before a
        # generation starts, and a step reads only slots written earlier in its own generation.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                run()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local"):
            self.output = run()

    def __call__(self, content, positions, slots, visible_end) -> torch.Tensor:
        self.content.copy_(content)
        self.positions.copy_(positions)
        self.slots.copy_(slots)
        self.visible_end.copy_(visible_end)
        self.graph.replay()
        return self.output


class StaticDecoder:
    """Fixed-shape decode steps for one model and one batch (rows = batch, ×2 with guidance)."""

    def __init__(self, model: LPD, rows: int):
        self.model = model
        self.rows = rows
        self.fingerprint = _fingerprint(model, rows)
        device = model.pos_embed.device
        self.cache = KVCache(model.config, rows, device, model.pos_embed.dtype, spare=ROW_MULTIPLE - 1)
        self.graphs: dict[int, _Graph] = {}
        self.use_graphs = device.type == "cuda" and device not in _capture_failed
        # The graphs of one decoder run one after another, so they can share one memory pool. The
        # cudaMallocAsync allocator (ComfyUI's default) keeps graph memory its own way: no pool.
        native = self.use_graphs and torch.cuda.get_allocator_backend() == "native"
        self.pool = torch.cuda.graph_pool_handle() if native else None

    @staticmethod
    def padded_length(length: int) -> int:
        return -(-length // ROW_MULTIPLE) * ROW_MULTIPLE

    def prepare(self, lengths) -> None:
        """Capture a graph for every step length not captured yet (CUDA only)."""
        if not self.use_graphs:
            return
        for length in sorted(set(lengths) - set(self.graphs)):
            try:
                self.graphs[length] = _Graph(self.model, self.cache, self.rows, length, self.pool)
            except Exception as error:  # any capture failure: run the same steps without graphs
                log.warning("lpd_core: CUDA graph capture failed (%s: %s); decoding without graphs",
                            type(error).__name__, (str(error).splitlines() or [""])[0])
                self.use_graphs = False
                _capture_failed.add(self.cache.keys.device)
                self.graphs.clear()
                return

    def run(self, content, positions, slots, visible_end, query_rows: slice, span: int) -> torch.Tensor:
        """Logits (rows, queries, vocab) of the query rows; a fresh tensor, not a graph buffer.
        Without a graph, attention reads only the first `span` slots (all a step can see); a graph
        reads the whole cache, the price of one shape for every step."""
        graph = self.graphs.get(content.shape[1])
        if graph is None:
            return self.model.step(content, positions, self.cache, slots, visible_end, span)[:, query_rows]
        return graph(content, positions, slots, visible_end)[:, query_rows].clone()


def decoder_memory_bytes(config, rows: int, dtype: torch.dtype, max_step_rows: int) -> int:
    """Device memory the fast path keeps for `rows` rows (batch, ×2 with guidance) while the model
    stays loaded: the KV cache, plus the step's activations and logits that the graph pool holds,
    for steps of up to `max_step_rows` rows. What a memory manager should reserve beside the weights."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    slots = 1 + config.num_tokens + ROW_MULTIPLE - 1
    cache = 2 * config.depth * rows * slots * config.embed_dim * itemsize
    length = StaticDecoder.padded_length(max_step_rows)
    hidden = int(config.embed_dim * config.mlp_ratio)
    # one layer's widest tensors live at a time (qkv, MLP hidden, attention weights), plus the logits
    activations = rows * length * (3 * config.embed_dim + hidden + config.num_heads * slots) * itemsize
    logits = rows * length * config.vocab_size * (itemsize + 4)
    return cache + 2 * activations + logits


def static_decoder(model: LPD, rows: int) -> StaticDecoder:
    """The model's fast-path state for `rows` rows, made (or remade) when needed."""
    state = getattr(model, _STATE_ATTRIBUTE, None)
    if state is None or state.fingerprint != _fingerprint(model, rows):
        release_fast_state(model)
        state = StaticDecoder(model, rows)
        setattr(model, _STATE_ATTRIBUTE, state)
    return state


def release_fast_state(model: LPD) -> None:
    """Free the cache and graphs that `generate(..., fast=True)` keeps on the model."""
    if getattr(model, _STATE_ATTRIBUTE, None) is not None:
        setattr(model, _STATE_ATTRIBUTE, None)
