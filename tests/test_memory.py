"""Memory before work: a run whose tokens or images cannot fit is refused before it allocates, with
the figures and how many images would fit; a generation whose cache and step tensors do not fit at
once is decoded in chunks that do, and makes the same tokens."""

import pytest
import torch

from lpd_core import build_schedule, generate
from lpd_core import memory
from lpd_core.errors import LPDError, NotEnoughMemoryError
from lpd_core.fast import decoder_memory_bytes, release_fast_state, step_rows
from lpd_core.__main__ import main


@pytest.fixture(scope="module")
def demo():
    from lpd_core.checkpoints import load_pair
    return load_pair()


def limit_memory(monkeypatch, available: int) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: available)


def per_chunk(model, count: int, schedule, guided=True) -> int:
    """The library's estimate for `count` images of the schedule's steps (on the CPU: no graphs, one pool)."""
    return decoder_memory_bytes(model.config, count * (2 if guided else 1), model.pos_embed.dtype,
                                step_rows(schedule.group_sizes), guided, "native")


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_a_batch_that_does_not_fit_is_decoded_in_chunks_that_do(demo, monkeypatch, fast):
    model, _ = demo
    schedule = build_schedule(8, steps=4, seed=2)
    whole = generate(model, schedule, list(range(7)), cfg=3.0, seeds=11, fast=fast)
    release_fast_state(model)  # a decoder kept for this batch would be reused: its memory is taken already
    # room for the 7 images' tokens and the cache of 3 images at once, not 4
    room = 7 * 64 * 8 + (per_chunk(model, 3, schedule) + per_chunk(model, 4, schedule)) // 2
    limit_memory(monkeypatch, int(room / memory.USABLE_SHARE) + 1)
    steps = []
    chunked = generate(model, schedule, list(range(7)), cfg=3.0, seeds=11, fast=fast,
                       callback=lambda step: steps.append((step.step, step.total, step.first, len(step.tokens))))
    release_fast_state(model)
    assert torch.equal(chunked, whole)
    assert [s[:2] for s in steps] == [(i, 12) for i in range(12)]  # 3 chunks of 4 steps, counted on
    assert [(s[2], s[3]) for s in steps[::4]] == [(0, 3), (3, 3), (6, 1)]


def test_what_cannot_fit_even_in_chunks_is_refused_before_any_work(demo, monkeypatch):
    model, _ = demo
    schedule = build_schedule(8, steps=4)
    limit_memory(monkeypatch, per_chunk(model, 1, schedule) // 2)
    steps = []
    with pytest.raises(NotEnoughMemoryError) as caught:
        generate(model, schedule, [1, 2], cfg=3.0, callback=steps.append)
    message = str(caught.value)
    assert "generating 2 images (" in message and "not even one image fits" in message, message
    assert not steps and isinstance(caught.value, MemoryError) and isinstance(caught.value, LPDError)
    # room for one image's work, not for a million images' tokens: how many would fit
    limit_memory(monkeypatch, int((per_chunk(model, 1, schedule) + 1000 * 64 * 8) / memory.USABLE_SHARE))
    with pytest.raises(NotEnoughMemoryError, match=r"generating 1000000 images \(512\.0 MB held for all of them, .* "
                                                   r"at most 99\d images fit in one run: ask for fewer"):
        generate(model, schedule, 1, batch=10**6, cfg=3.0)


def test_largest_chunk_and_figures():
    assert memory.largest_chunk(100, lambda n: 10 * n, 355) == 35
    assert memory.largest_chunk(100, lambda n: 10 * n, 5) == 0
    assert memory.largest_chunk(3, lambda n: n, 10**9) == 3
    assert [memory.size_text(n) for n in (999, 1500, 2_500_000, 3_200_000_000)] == ["999 bytes", "1.5 kB", "2.5 MB",
                                                                                      "3.2 GB"]
    assert memory.chunk_starts(7, 3) == [(0, 3), (3, 6), (6, 7)]


def test_available_memory_is_read_on_this_machine():
    available = memory.available_bytes("cpu")
    assert available is None or 0 < available
    assert memory.available_bytes("meta") is None


def test_decoding_is_split_the_same_way(demo, monkeypatch):
    model, tokenizer = demo
    codes = generate(model, build_schedule(8, steps=4), list(range(5)), cfg=2.0)
    whole = tokenizer.decode_images(codes)
    calls = []
    decode = type(tokenizer)._decode
    monkeypatch.setattr(type(tokenizer), "_decode", lambda self, c, grid: (calls.append(len(c)), decode(self, c, grid))[1])
    per_image = tokenizer.memory_per_image(32, 32)
    limit_memory(monkeypatch, int((5 * 32 * 32 * 3 * 4 + 2.5 * per_image) / memory.USABLE_SHARE))
    assert torch.allclose(tokenizer.decode_images(codes), whole, atol=1e-6) and calls == [2, 2, 1]


def test_cli_huge_batch_is_one_line_before_any_work(tmp_path, capsys):
    """--batch 100000000: 1.2 TB of images (and 51 GB of tokens) on any machine; refused in one line."""
    status = main(["generate", "--class", "3", "--batch", "100000000", "--out", str(tmp_path / "x.png")])
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("error: holding 100000000 images needs 1.2 TB of memory on cpu"), lines[0]
    assert "images fit in one run: ask for fewer" in lines[0]
    assert not list(tmp_path.iterdir())


def test_cli_schedule_of_a_huge_grid_is_one_line(tmp_path, capsys):
    status = main(["schedule", "--grid", "10000000", "--steps", "1"])
    stderr = capsys.readouterr().err
    assert status == 2 and stderr.startswith("error: building 1 order(s) of 10000000×10000000 tokens needs") and \
        "use a smaller grid" in stderr and len(stderr.strip().splitlines()) == 1, stderr
