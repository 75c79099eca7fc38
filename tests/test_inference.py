"""No autograd in inference, and the fast path whichever inference mode built it.

Every public inference entry point returns tensors that do not require grad (no graph is built,
even where grad mode is on), and a fast-path decoder made under `torch.inference_mode()` (as
ComfyUI runs every node) serves a later run outside it, and the other way round."""

import pytest
import torch

from lpd_core import build_schedule, generate, wide_canvas
from lpd_core.editing import edit
from lpd_core.fast import release_fast_state
from lpd_core.variation import vary


@pytest.fixture(scope="module")
def demo():
    from lpd_core.checkpoints import load_pair
    return load_pair()


def test_no_output_requires_grad(demo):
    model, tokenizer = demo
    assert all(p.requires_grad for p in model.parameters())  # weights as loaded: nothing frozen by hand
    schedule = build_schedule(8, steps=4)
    picture = torch.rand(2, 32, 32, 3, requires_grad=True)
    mask = torch.zeros(32, 32)
    mask[:16] = 1
    with torch.enable_grad():
        outputs = {
            "generate": generate(model, schedule, [1, 2], cfg=2.0),
            "generate fast": generate(model, schedule, [1, 2], cfg=2.0, fast=True),
            "decode_images": tokenizer.decode_images(torch.zeros(1, 64, dtype=torch.long)),
            "decode": tokenizer.decode(torch.zeros(1, 64, dtype=torch.long)),
            "encode_images": tokenizer.encode_images(picture),
            "encode": tokenizer.encode(picture.permute(0, 3, 1, 2) * 2 - 1),
            "edit": edit(model, tokenizer, picture, mask, 3, steps=2).images,
            "vary": vary(model, tokenizer, picture, 3, 0.5, steps=2).images,
            "wide": wide_canvas(model, tokenizer, 3, width=12, steps=2).images,
        }
    release_fast_state(model)
    for name, output in outputs.items():
        assert not output.requires_grad and output.grad_fn is None, name


@pytest.mark.parametrize("first_inside", [True, False], ids=["made inside, used outside", "made outside, used inside"])
def test_fast_path_works_whichever_mode_made_it(demo, first_inside):
    model, _ = demo
    schedule = build_schedule(8, steps=4, seed=1)
    eager = generate(model, schedule, [4, 5], cfg=3.0, seeds=7)
    release_fast_state(model)

    def run(inside: bool):
        if inside:
            with torch.inference_mode():
                return generate(model, schedule, [4, 5], cfg=3.0, seeds=7, fast=True).clone()
        return generate(model, schedule, [4, 5], cfg=3.0, seeds=7, fast=True)

    first, second = run(first_inside), run(not first_inside)
    third = run(first_inside)
    release_fast_state(model)
    assert torch.equal(first, eager) and torch.equal(second, eager) and torch.equal(third, eager)
