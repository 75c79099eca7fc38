"""Zero-shot editing on the fixture checkpoints (8×8 tokens, 128×128 pixels)."""

import numpy as np
import pytest
import torch

from lpd_core import build_schedule, generate
from lpd_core.editing import edit, mask_to_grid, pad_for_outpaint, plan_edit

GRID, SIZE = 8, 128


@pytest.fixture(scope="module")
def picture():
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 8, 8, 3, generator=generator)
    return torch.nn.functional.interpolate(base.permute(0, 3, 1, 2), size=(SIZE, SIZE), mode="bilinear").permute(0, 2, 3, 1)


def square_mask(top=2, left=3, height=3, width=4):
    mask = torch.zeros(SIZE, SIZE)
    mask[top * 16:(top + height) * 16, left * 16:(left + width) * 16] = 1
    return mask


def test_mask_rule_and_grow():
    mask = torch.zeros(SIZE, SIZE)
    mask[20, 40] = 0.6  # one pixel ≥ 0.5 inside token (1, 2)
    mask[100, 100] = 0.4  # below the threshold
    grid = mask_to_grid(mask, GRID)
    assert grid.sum() == 1 and grid[1, 2]
    grown = mask_to_grid(mask, GRID, grow=1)
    assert grown.sum() == 9 and grown[0:3, 1:4].all()


def test_known_tokens_come_back_unchanged(reference_model, reference_vq, picture):
    result = edit(reference_model, reference_vq, picture, square_mask(), [3], steps=4, seed=1)
    codes = reference_vq.encode_images(picture)
    keep = ~result.regenerated.reshape(-1)
    assert torch.equal(result.tokens[0, keep], codes[0, keep])
    assert result.images.shape == (1, SIZE, SIZE, 3)
    outside = ~result.regenerated.repeat_interleave(16, 0).repeat_interleave(16, 1)
    assert torch.allclose(result.images[0][outside], picture[0][outside])  # composited


def test_plan_covers_exactly_the_unknown_positions_and_starts_at_the_border():
    regenerate = mask_to_grid(square_mask(), GRID)
    for seed in range(5):
        plan = plan_edit(regenerate, steps=4, order="locality", seed=seed)
        assert sorted(plan.generated.tolist()) == np.flatnonzero(regenerate.reshape(-1).numpy()).tolist()
        assert sum(plan.group_sizes) == GRID * GRID and len(plan.group_sizes) - plan.known_steps == 4
        first = plan.generated[: plan.group_sizes[plan.known_steps]]
        known = ~regenerate.numpy()
        for position in first:
            r, c = divmod(int(position), GRID)
            assert known[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any(), (seed, r, c)


def test_empty_mask_returns_the_input_with_a_message(reference_model, reference_vq, picture):
    result = edit(reference_model, reference_vq, picture, torch.zeros(SIZE, SIZE), [3], steps=4)
    assert torch.equal(result.images, picture)
    assert "mask covers no token" in result.message


def test_full_mask_equals_plain_generation(reference_model, reference_vq, picture):
    result = edit(reference_model, reference_vq, picture, torch.ones(SIZE, SIZE), [5], steps=6, seed=7, cfg=2.0)
    plain = generate(reference_model, build_schedule(GRID, steps=6, order="locality", seed=7), [5], cfg=2.0, seeds=7)
    assert torch.equal(result.tokens, plain)


@pytest.mark.parametrize("split", [[1, 5, 10], [16], [3, 3, 3, 7]])
def test_known_groups_in_one_pass_equal_step_by_step(reference_model, split):
    rng = np.random.default_rng(sum(split))
    order = torch.from_numpy(rng.permutation(GRID * GRID))
    group_sizes = [*split, 8, 12, 12, 16]
    known = torch.randint(0, 512, (2, GRID * GRID), generator=torch.Generator().manual_seed(3))
    steps = []
    tokens = generate(reference_model, labels=[1, 4], orders=order, group_sizes=group_sizes, cfg=1.0,
                      seeds=0, known_tokens=known, known_steps=len(split), callback=lambda s: steps.append(s.logits))
    assert len(steps) == 4
    # the teacher-forced pass is the step-by-step pass (see test_parity)
    with torch.no_grad():
        expected = reference_model.teacher_forced(tokens, torch.tensor([1, 4]), order.expand(2, -1), group_sizes)
    assert (torch.cat(steps, 1) - expected[:, sum(split):]).abs().max() < 1e-4
    kept = order[: sum(split)]
    assert torch.equal(tokens[:, kept], known[:, kept])


def test_pad_for_outpaint_masks_the_new_band():
    image = torch.rand(1, 64, 64, 3)
    canvas, mask = pad_for_outpaint(image, SIZE, 16, right=2)
    assert canvas.shape == (1, SIZE, SIZE, 3) and mask.shape == (1, SIZE, SIZE)
    assert mask[0, :, 96:].eq(1).all()  # the right band is generated
    assert mask[0, 16:112, :96].eq(0).all()  # the image fills the rest (centred, aspect kept)
    with pytest.raises(ValueError, match="must be ≥ 0 and leave room"):
        pad_for_outpaint(image, SIZE, 16, left=4, right=4)


# One fitting rule, one mask rule


def test_fit_to_resolution_is_antialiased_both_ways_and_centre_crops():
    from lpd_core.editing import fit_to_resolution
    import torch.nn.functional as F
    image = torch.rand(1, 48, 80, 3, generator=torch.Generator().manual_seed(1))
    for size in (32, 96):  # shrinking, enlarging: the same rule
        fitted = fit_to_resolution(image, size)
        scaled_w = round(80 * size / 48)
        expected = F.interpolate(image.permute(0, 3, 1, 2), size=(size, scaled_w), mode="bicubic",
                                 align_corners=False, antialias=True)
        left = (scaled_w - size) // 2
        expected = expected[..., left:left + size].clamp(0, 1).permute(0, 2, 3, 1)
        assert fitted.shape == (1, size, size, 3) and torch.equal(fitted, expected)
        assert 0 <= fitted.min() and fitted.max() <= 1
    assert torch.equal(fit_to_resolution(image[:, :48, :48], 48), image[:, :48, :48])  # nothing to do


def test_edit_refuses_a_mask_of_another_aspect_ratio(reference_model, reference_vq, picture):
    from lpd_core.errors import SettingError
    wide = torch.zeros(SIZE, SIZE * 2)
    wide[:, :SIZE] = 1  # would be cropped to its centre, regenerating the wrong half
    with pytest.raises(SettingError, match=r"mask is 256×128 px but the image 128×128 px: their aspect ratios differ"):
        edit(reference_model, reference_vq, picture, wide, [3], steps=4)
    half = square_mask()[::2, ::2]  # another size, the same ratio: fitted like the image
    result = edit(reference_model, reference_vq, picture, half, [3], steps=4, seed=1)
    assert torch.equal(result.regenerated, mask_to_grid(square_mask(), GRID))


def test_grey_images_are_edited_as_rgb(reference_model, reference_vq, picture):
    grey = picture.mean(-1, keepdim=True)
    one = edit(reference_model, reference_vq, grey, square_mask(), [3], steps=4, seed=2)
    three = edit(reference_model, reference_vq, grey.expand(-1, -1, -1, 3), square_mask(), [3], steps=4, seed=2)
    assert torch.equal(one.images, three.images) and torch.equal(one.tokens, three.tokens)
