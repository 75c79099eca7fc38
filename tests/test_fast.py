"""The fast path of the decode loop (`generate(..., fast=True)`): padded fixed-shape steps give the
eager path's greedy tokens bit for bit and its logits to float rounding; its state is kept, reused,
rebuilt and released as documented."""

import copy
import gc

import pytest
import torch

from lpd_core import ClassMix, build_schedule, generate
from lpd_core.fast import ROW_MULTIPLE, padded_length, release_fast_state, static_decoder, step_rows
from lpd_core.step import plan_steps
from lpd_core.model import KVCache

GROUPS = [1, 2, 4, 6, 9, 12, 14, 16]


@pytest.fixture(scope="module")
def schedule():
    return build_schedule(8, group_sizes=GROUPS, order="random", seed=7)


def _step_logits(model, schedule, **kwargs):
    logits = []
    tokens = generate(model, schedule, callback=lambda s: logits.append(s.logits), **kwargs)
    return tokens, logits


@pytest.mark.parametrize("settings", [
    dict(labels=[1, 4, 8], cfg=3.0, cfg_schedule="linear"),
    dict(labels=[2, 5], cfg=2.0, cfg_schedule="constant"),
    dict(labels=[0, 9], cfg=1.0),
    dict(labels=None, batch=2, cfg=1.0),
])
def test_fast_greedy_tokens_and_logits_equal_eager(reference_model, schedule, settings):
    eager_tokens, eager_logits = _step_logits(reference_model, schedule, temperature=0, **settings)
    fast_tokens, fast_logits = _step_logits(reference_model, schedule, temperature=0, fast=True, **settings)
    release_fast_state(reference_model)
    assert torch.equal(fast_tokens, eager_tokens)
    assert len(fast_logits) == len(eager_logits) == len(GROUPS)
    for eager, fast in zip(eager_logits, fast_logits):
        assert eager.shape == fast.shape
        assert (eager - fast).abs().max().item() < 1e-5


@pytest.mark.parametrize("settings", [
    dict(labels=[1, 4, 8], negative=3, cfg=3.0, cfg_schedule="linear"),
    dict(labels=[2, 5], negative=[None, ClassMix(((0, 1.0), (7, 1.0)))], cfg=2.0, cfg_schedule="constant"),
    dict(labels=[2, 5], negative=[6, 6], cfg=2.5, switch_labels=[9, 1], switch_step=3),
])
def test_fast_greedy_tokens_equal_eager_with_a_negative_class(reference_model, schedule, settings):
    eager_tokens, eager_logits = _step_logits(reference_model, schedule, temperature=0, **settings)
    plain = generate(reference_model, schedule, temperature=0, **{**settings, "negative": None})
    fast_tokens, fast_logits = _step_logits(reference_model, schedule, temperature=0, fast=True, **settings)
    release_fast_state(reference_model)
    assert torch.equal(fast_tokens, eager_tokens)
    assert not torch.equal(eager_tokens, plain)  # the negative class is really used
    for eager, fast in zip(eager_logits, fast_logits):
        assert (eager - fast).abs().max().item() < 1e-5


def test_fast_sampling_is_seeded_like_eager(reference_model, schedule):
    settings = dict(labels=[3, 6], cfg=2.5, top_p=0.9, seeds=21)
    fast = generate(reference_model, schedule, fast=True, **settings)
    again = generate(reference_model, schedule, fast=True, **settings)
    release_fast_state(reference_model)
    assert torch.equal(fast, again)
    assert torch.equal(fast, generate(reference_model, schedule, **settings))


def test_fast_editing_feeds_known_groups_in_one_padded_pass(reference_model, schedule):
    known = generate(reference_model, schedule, [5], temperature=0)
    settings = dict(labels=[5], cfg=2.0, temperature=0, known_tokens=known[0], known_steps=3)
    fast = generate(reference_model, schedule, fast=True, **settings)
    release_fast_state(reference_model)
    eager = generate(reference_model, schedule, **settings)
    assert torch.equal(fast, eager)
    first_known = torch.from_numpy(schedule.order[: sum(GROUPS[:3])])
    assert torch.equal(fast[0, first_known], known[0, first_known])


def test_plan_pads_every_step_into_spare_slots():
    num_tokens = 64
    plans = plan_steps(GROUPS, 0, num_tokens, "cpu", padded_length)
    assert [p.previous for p in plans] == [1, *GROUPS[:-1]]
    assert [p.queries for p in plans] == GROUPS
    for plan in plans:
        length = plan.previous + plan.queries + plan.padding
        assert length % ROW_MULTIPLE == 0 and plan.padding < ROW_MULTIPLE
        slots, visible = plan.slots.tolist(), plan.visible_end.tolist()
        assert len(slots) == len(set(slots)) == length
        real = slots[: plan.previous + plan.queries]
        assert real == list(range(plan.start, plan.start + len(real)))
        assert all(1 + num_tokens <= s < 1 + num_tokens + ROW_MULTIPLE - 1 for s in slots[len(real):])
        assert visible[len(real):] == [1] * plan.padding  # padding sees only the class slot
        assert visible[plan.previous: len(real)] == [real[-1] + 1] * plan.queries
    eager = plan_steps(GROUPS, 0, num_tokens, "cpu")
    assert all(p.padding == 0 for p in eager)


def test_state_is_kept_reused_rebuilt_and_released(reference_model, schedule):
    generate(reference_model, schedule, [1], cfg=2.0, fast=True)
    state = static_decoder(reference_model, 1, True)
    generate(reference_model, schedule, [4], cfg=3.0, fast=True)
    assert static_decoder(reference_model, 1, True) is state  # same batch: same cache, no new capture
    assert state.buffers.cache.keys.shape[3] == 1 + 64 + ROW_MULTIPLE - 1
    assert static_decoder(reference_model, 2, True) is not state  # another batch: new state
    release_fast_state(reference_model)
    del state
    gc.collect()
    assert not [obj for obj in gc.get_objects() if type(obj) is KVCache]


def test_state_follows_a_dtype_change(reference_model, schedule):
    model = copy.deepcopy(reference_model)
    generate(model, schedule, [1], fast=True)
    state = static_decoder(model, 1, False)
    model.to(torch.bfloat16)
    assert static_decoder(model, 1, False) is not state
    tokens = generate(model, schedule, [1], temperature=0, fast=True)
    assert tokens.shape == (1, 64) and static_decoder(model, 1, False).buffers.cache.keys.dtype == torch.bfloat16


def test_interrupt_releases_the_fast_state(reference_model, schedule):
    class Stop(Exception):
        pass

    def stop(step):
        if step.step == 2:
            raise Stop

    with pytest.raises(Stop):
        generate(reference_model, schedule, [1], cfg=2.0, fast=True, callback=stop)
    assert getattr(reference_model, "_lpd_fast_state", None) is None


def test_failed_capture_falls_back_with_one_log_line(reference_model, schedule, caplog):
    """A capture that fails (here for real: this process has no CUDA) leaves the same padded steps
    running without graphs, says so once, and is not tried again on that device."""
    from lpd_core import fast
    expected = generate(reference_model, schedule, [2], cfg=2.0, temperature=0)
    decoder = static_decoder(reference_model, 1, True)
    decoder.use_graphs = True  # as on a GPU
    try:
        with caplog.at_level("WARNING", logger="lpd_core"):
            tokens = generate(reference_model, schedule, [2], cfg=2.0, temperature=0, fast=True)
            release_fast_state(reference_model)
            again = generate(reference_model, schedule, [2], cfg=2.0, temperature=0, fast=True)
        failures = [r for r in caplog.records if "CUDA graph capture failed" in r.getMessage()]
        assert len(failures) == 1 and "decoding without graphs" in failures[0].getMessage()
        assert torch.equal(tokens, expected) and torch.equal(again, expected)
        assert static_decoder(reference_model, 1, True).use_graphs is False  # not tried again on this device
    finally:
        release_fast_state(reference_model)
        fast._capture_failed.clear()


def test_memory_estimate_counts_what_the_decoder_holds(reference_model, schedule):
    from lpd_core.fast import decoder_memory_bytes, decoder_memory_parts
    config = reference_model.config
    generate(reference_model, schedule, [1, 2, 3], cfg=2.0, fast=True)
    buffers = static_decoder(reference_model, 3, True).buffers
    held = [buffers.cache.keys, buffers.cache.values, buffers.ordered, buffers.position_rows, buffers.uniforms,
            buffers.condition]
    release_fast_state(reference_model)
    longest = max(step_rows(GROUPS))
    parts = decoder_memory_parts(config, 6, torch.float32, longest, allocator="native")
    held_bytes = sum(t.numel() * t.element_size() for t in held)
    assert held_bytes <= parts["cache"] + parts["buffers"] <= 1.01 * held_bytes
    # every captured shape keeps its (B, L, vocab) logits; the longest step's logits for all rows are transient
    assert parts["outputs"] >= 3 * padded_length(longest) * config.vocab_size * 4
    assert parts["step"] >= 6 * padded_length(longest) * config.vocab_size * 4
    total = decoder_memory_bytes(config, 6, torch.float32, longest, allocator="native")
    assert total == sum(parts.values())
    assert decoder_memory_bytes(config, 6, torch.bfloat16, longest, allocator="native") < total < \
        decoder_memory_bytes(config, 12, torch.float32, longest, allocator="native")


def test_memory_estimate_by_formula_one_pool_per_shape_under_cudamallocasync(monkeypatch):
    """Worked by hand for a tiny config (width 64, MLP 256, depth 2, vocab 100, 16 tokens, so 24
    cache slots), batch 2 with guidance (4 rows), fp32, steps of 3, 10 and 12 input rows: shapes
    8 and 16. A shape's transient is the transformer's 4·L·(4·64 + 3·64 + 2·256)·4 bytes + the
    mask L·24 = 15384·L (the sampling tail, 9600·L, is smaller)."""
    from types import SimpleNamespace

    from lpd_core import fast
    config = SimpleNamespace(embed_dim=64, depth=2, vocab_size=100, num_tokens=16, mlp_ratio=4.0)
    common = dict(cache=2 * 2 * 4 * 24 * 64 * 4, buffers=2 * 24 * 24 + 2 * 4 * 64 * 4, outputs=2 * (8 + 16) * 100 * 4)
    native = fast.decoder_memory_parts(config, 4, torch.float32, [3, 10, 12], allocator="native")
    assert native == dict(common, step=15384 * 16)  # one shared pool: the largest shape's
    asynchronous = fast.decoder_memory_parts(config, 4, torch.float32, [3, 10, 12], allocator="cudaMallocAsync")
    assert asynchronous == dict(common, step=15384 * (8 + 16))  # a pool per captured shape
    # only the longest step given: every shape up to it is counted (here the same two)
    assert fast.decoder_memory_parts(config, 4, torch.float32, 12, allocator="cudaMallocAsync") == asynchronous
    assert fast.decoder_memory_parts(config, 4, torch.float32, 20, allocator="cudaMallocAsync")["step"] == \
        15384 * (8 + 16 + 24)
    assert step_rows([1, 2, 4]) == [2, 3, 6]
    # the back-end is read from the environment where CUDA is not there to ask
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    assert fast.allocator_backend() == "native"
    assert fast.decoder_memory_bytes(config, 4, torch.float32, [3, 10, 12]) == sum(native.values())
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "backend:cudaMallocAsync")
    assert fast.allocator_backend() == "cudaMallocAsync"
    assert fast.decoder_memory_bytes(config, 4, torch.float32, [3, 10, 12]) == sum(asynchronous.values())
    with pytest.raises(ValueError, match="allocator"):
        fast.decoder_memory_bytes(config, 4, torch.float32, 12, allocator="pinned")


def test_auto_takes_the_fast_path_on_cuda_only():
    """On a CPU there is nothing to capture and the padded steps cost time (README, Benchmarks): the
    CLI's and the library's "auto" keep the plain path there; "on" still forces the fast one."""
    from lpd_core.__main__ import _fast
    from lpd_core.fast import on_by_default
    assert on_by_default("cuda") and on_by_default(torch.device("cuda", 1)) and not on_by_default("cpu")
    assert (_fast("auto", "cpu"), _fast("auto", "cuda:0"), _fast("on", "cpu"), _fast("off", "cuda:0")) == (
        False, True, True, False)
