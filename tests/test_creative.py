"""Class blends, negative classes, variations of an image, wide canvases (and canvases that travel
between classes) and class morphs on the bundled demo model (8×8 tokens, 32×32 px, milliseconds per
sample on a CPU)."""

import numpy as np
import pytest
import torch

from lpd_core import build_schedule, generate, load_model, load_tokenizer
from lpd_core.blend import ClassMix, check_labels, parse_class_mix
from lpd_core.canvas import tile_classes, tile_position, tile_starts, wide_canvas
from lpd_core.checkpoints import DEMO_MODEL_PATH, DEMO_TOKENIZER_PATH
from lpd_core.errors import SettingError
from lpd_core.morph import class_morph, morph_weights
from lpd_core.variation import spread_positions, vary

GRID, STEPS, CFG = 8, 8, 3.0


@pytest.fixture(scope="module")
def demo():
    return load_model(DEMO_MODEL_PATH), load_tokenizer(DEMO_TOKENIZER_PATH)


def plain(model, label, seed):
    """What `generate --class label --seed seed` makes (one image)."""
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=seed)
    return generate(model, schedule, [label], cfg=CFG, seeds=seed)


# ------------------------------------------------------------------------------------------ blend
def test_mix_embedding_is_the_weighted_mean_and_a_plain_label_is_unchanged(demo):
    model, _ = demo
    table = model.class_emb.weight
    mixed = model.condition(check_labels([ClassMix(((2, 3.0), (7, 1.0)))], 10), 1)
    assert torch.allclose(mixed[0], 0.75 * table[2] + 0.25 * table[7], atol=1e-6)
    labels = torch.tensor([4, 0])
    assert torch.equal(model.condition(labels, 2), table[labels])
    one_hot = check_labels([ClassMix.between(4, 0, 0.0), ClassMix.between(4, 0, 1.0)], 10)
    assert torch.equal(model.condition(one_hot, 2), table[labels])  # exactly, not approximately


def test_blend_end_points_are_plain_generation_and_the_middle_is_not(demo):
    model, _ = demo
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=11)
    mixes = [ClassMix.between(0, 9, w) for w in (0.0, 0.5, 1.0)]
    blended = generate(model, schedule, mixes, cfg=CFG, seeds=[11, 11, 11])
    assert torch.equal(blended[0], plain(model, 0, 11)[0])
    assert torch.equal(blended[2], plain(model, 9, 11)[0])
    assert not torch.equal(blended[1], blended[0]) and not torch.equal(blended[1], blended[2])
    # a weights tensor is the same mix; one mix serves a whole batch; same seed, same tokens
    weights = torch.zeros(1, 10)
    weights[0, 0] = weights[0, 9] = 2.0
    again = generate(model, schedule, weights, batch=2, cfg=CFG, seeds=[11, 12])
    assert torch.equal(again[0], blended[1])
    assert torch.equal(again[1], generate(model, schedule, mixes[1], cfg=CFG, seeds=12)[0])


def test_mix_text_takes_names_and_indices(demo):
    model, _ = demo
    assert parse_class_mix("circle:0.7, star:0.3", model) == ClassMix(((0, 0.7), (9, 0.3)))
    assert parse_class_mix("3", model) == ClassMix(((3, 1.0),))
    assert parse_class_mix("square:1, 4:3", model).weights(10)[[1, 4]].tolist() == [0.25, 0.75]
    with pytest.raises(SettingError, match="weight of 'circle' .* must be a number"):
        parse_class_mix("circle:lots", model)
    with pytest.raises(ValueError, match="unknown|no class|not"):
        parse_class_mix("tiger:0.7", model)


@pytest.mark.parametrize("labels, message", [
    (ClassMix(((3, 1.0), (12, 1.0))), "class index 12 is out of range: this model has 10 classes"),
    (torch.full((1, 10), -0.1), "finite numbers ≥ 0"),
    (torch.zeros(2, 10), "at least one class with a weight above 0"),
    (torch.ones(1, 9), r"shape \(batch, 10\)"),
])
def test_bad_mixes_are_refused_with_a_clear_message(demo, labels, message):
    model, _ = demo
    with pytest.raises(SettingError, match=message):
        generate(model, build_schedule(GRID, steps=STEPS), labels, batch=1, cfg=CFG)


def test_bad_mix_parts_are_refused_when_made():
    with pytest.raises(SettingError, match="a class weight must be a finite number at least 0, got -0.5"):
        ClassMix(((1, -0.5), (2, 1.0)))
    with pytest.raises(SettingError, match="weight above 0"):
        ClassMix(((1, 0.0),))
    with pytest.raises(SettingError, match="the blend weight must be a finite number at least 0 and at most 1"):
        ClassMix.between(1, 2, 1.5)


def test_class_switch_at_the_first_step_is_the_second_class(demo):
    model, _ = demo
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=5)
    switched = generate(model, schedule, [2], cfg=CFG, seeds=5, switch_labels=[8], switch_step=0)
    assert torch.equal(switched, plain(model, 8, 5))
    same = generate(model, schedule, [2], cfg=CFG, seeds=5, switch_labels=[2], switch_step=3)
    assert torch.equal(same, plain(model, 2, 5))
    late = generate(model, schedule, [2], cfg=CFG, seeds=5, switch_labels=[8], switch_step=3)
    assert not torch.equal(late, plain(model, 2, 5)) and not torch.equal(late, plain(model, 8, 5))


def test_class_switch_takes_a_mix(demo):
    model, _ = demo
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=5)
    by_mix = generate(model, schedule, [2], cfg=CFG, seeds=5, switch_labels=[ClassMix.between(8, 1, 0.0)],
                      switch_step=4)
    by_index = generate(model, schedule, [2], cfg=CFG, seeds=5, switch_labels=[8], switch_step=4)
    assert torch.equal(by_mix, by_index)


# ------------------------------------------------------------------------------------------ variation
@pytest.fixture(scope="module")
def pictures(demo):
    model, vq = demo
    with torch.no_grad():
        return vq.decode_images(torch.cat([plain(model, 1, 0), plain(model, 9, 1)]))


def test_spread_positions_cover_the_grid():
    picked = spread_positions(GRID, GRID, 16, seed=3)
    assert len(set(picked.tolist())) == 16
    rows, cols = np.divmod(picked, GRID)
    all_rows, all_cols = np.divmod(np.arange(GRID * GRID), GRID)
    distance = np.maximum(abs(all_rows[:, None] - rows[None]), abs(all_cols[:, None] - cols[None])).min(1)
    assert distance.max() <= 2  # every token has a kept one within 2 (a 4×4 block would leave 4)
    assert not np.array_equal(picked, spread_positions(GRID, GRID, 16, seed=4))
    assert np.array_equal(picked, spread_positions(GRID, GRID, 16, seed=3))


def test_variation_end_points(demo, pictures):
    model, vq = demo
    own = vary(model, vq, pictures, [1, 9], 0.0, steps=STEPS, seed=0, cfg=CFG)
    assert torch.equal(own.tokens, own.source) and own.kept.all()
    assert torch.equal(own.source, vq.encode_images(pictures))
    fresh = vary(model, vq, pictures[:1], 4, 1.0, steps=STEPS, seed=21, cfg=CFG)
    assert not fresh.kept.any()
    assert torch.equal(fresh.tokens, plain(model, 4, 21))
    assert fresh.images.shape == (1, 32, 32, 3)


def test_variation_keeps_its_share_and_is_deterministic_per_seed(demo, pictures):
    model, vq = demo
    result = vary(model, vq, pictures, 1, 0.75, steps=STEPS, seed=7, cfg=CFG)
    assert result.kept.sum(1).tolist() == [16, 16]
    assert torch.equal(result.tokens[result.kept], result.source[result.kept])
    assert not torch.equal(result.tokens, result.source)
    # image 1 of the batch is what seed 8 makes of it alone
    alone = vary(model, vq, pictures[1:], 1, 0.75, steps=STEPS, seed=8, cfg=CFG)
    assert torch.equal(alone.tokens[0], result.tokens[1])
    with pytest.raises(SettingError, match="strength must be a finite number at least 0 and at most 1, got 1.5.*0 gives"):
        vary(model, vq, pictures, 1, 1.5, steps=STEPS)


def test_variation_fits_other_image_sizes(demo):
    model, vq = demo
    result = vary(model, vq, torch.rand(1, 48, 64, 3), 2, 0.5, steps=4, seed=0, cfg=CFG)
    assert result.images.shape == (1, 32, 32, 3) and result.kept.sum() == 32


# ------------------------------------------------------------------------------------------ wide canvas
def test_tile_starts():
    assert tile_starts(24, 8, 4) == [0, 4, 8, 12, 16]
    assert tile_starts(20, 8, 2) == [0, 6, 12]
    assert tile_starts(21, 8, 2) == [0, 6, 12, 13]  # the last tile flush with the edge
    assert tile_starts(8, 8, 4) == [0]


def test_wide_canvas_overlap_tokens_are_the_previous_tiles(demo):
    model, vq = demo
    finished = {}

    def on_step(tile, step):
        if step.step == step.total - 1:
            finished[tile] = step.tokens.reshape(2, GRID, GRID).clone()

    result = wide_canvas(model, vq, [3, ClassMix.between(0, 9, 0.5)], width=24, overlap=4, steps=STEPS, seed=2,
                         cfg=CFG, callback=on_step)
    assert result.images.shape == (2, 32, 96, 3) and result.grid == (8, 24)
    assert result.tiles == [(0, 0), (0, 4), (0, 8), (0, 12), (0, 16)]
    canvas = result.tokens.reshape(2, GRID, 24)
    for index, (_, col) in enumerate(result.tiles):
        assert torch.equal(finished[index], canvas[:, :, col:col + GRID])  # each tile lands where it belongs
        if index:  # its first 4 columns are the previous tile's last 4, exactly
            assert torch.equal(finished[index][:, :, :4], finished[index - 1][:, :, 4:])
    assert torch.equal(canvas[:1, :, :GRID].reshape(1, -1), plain(model, 3, 2))  # tile 0: plain generation
    # canvas 1 alone with its own seed is the same canvas
    alone = wide_canvas(model, vq, [ClassMix.between(0, 9, 0.5)], width=24, overlap=4, steps=STEPS, seed=3, cfg=CFG)
    assert torch.equal(alone.tokens[0], result.tokens[1])


def test_tall_and_large_canvases(demo):
    model, vq = demo
    tall = wide_canvas(model, vq, 5, width=8, height=14, overlap=2, steps=4, seed=0, cfg=CFG)
    assert tall.images.shape == (1, 56, 32, 3) and tall.tiles == [(0, 0), (6, 0)]
    big = wide_canvas(model, vq, 5, width=12, height=12, steps=4, seed=0, cfg=CFG)
    assert big.images.shape == (1, 48, 48, 3) and big.tiles == [(0, 0), (0, 4), (4, 0), (4, 4)]
    with pytest.raises(SettingError, match="the tile overlap must be between 1 and 7, got 8"):
        wide_canvas(model, vq, 5, width=24, overlap=8, steps=4)
    with pytest.raises(SettingError, match=r"at least the model's 32×32 px \(8×8 tokens\) on each side, got 24×32 px"):
        wide_canvas(model, vq, 5, width=6, steps=4)


# ------------------------------------------------------------------------------------------ command line
def run_cli(*argv):
    from lpd_core.__main__ import main
    return main([str(a) for a in argv])


def pixels(path):
    from PIL import Image
    with Image.open(path) as picture:
        return np.asarray(picture)


def test_cli_blend_end_point_is_the_plain_class(tmp_path, capsys):
    assert run_cli("generate", "--blend", "circle:1, star:0", "--seed", 4, "--out", tmp_path / "blend.png") == 0
    assert run_cli("generate", "--class", "circle", "--seed", 4, "--out", tmp_path / "plain.png") == 0
    assert np.array_equal(pixels(tmp_path / "blend.png"), pixels(tmp_path / "plain.png"))
    assert run_cli("generate", "--blend", "0:0.7,3:0.3", "--blend", "star", "--batch", 2, "--out",
                   tmp_path / "mixes.png") == 0
    assert pixels(tmp_path / "mixes.png").shape == (66, 66, 3)
    assert "0.7×0 + 0.3×3" in capsys.readouterr().out
    assert run_cli("generate", "--blend", "circle:-1, star:1", "--out", tmp_path / "bad.png") == 2
    assert "a class weight must be a finite number at least 0" in capsys.readouterr().err
    assert run_cli("generate", "--class", "circle", "--switch-step", 2, "--out", tmp_path / "bad.png") == 2
    assert "--switch-class and --switch-step go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli("generate", "--class", "circle", "--blend", "star", "--out", tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_cli_class_switch(tmp_path):
    assert run_cli("generate", "--class", "circle", "--switch-class", "star", "--switch-step", 0, "--seed", 4,
                   "--out", tmp_path / "switched.png") == 0
    assert run_cli("generate", "--class", "star", "--seed", 4, "--out", tmp_path / "star.png") == 0
    assert np.array_equal(pixels(tmp_path / "switched.png"), pixels(tmp_path / "star.png"))


def test_cli_vary_and_wide(tmp_path, capsys, pictures):
    from lpd_core.imaging import to_pil
    to_pil(pictures[0]).save(tmp_path / "in.png")
    assert run_cli("vary", "--image", tmp_path / "in.png", "--class", "square", "--strength", 0, "--out",
                   tmp_path / "same.png") == 0
    assert "64 of 64 tokens kept; 100% of tokens as in the image" in capsys.readouterr().out
    assert run_cli("vary", "--image", tmp_path / "in.png", "--class", "square", "--strength", 0.5, "--count", 2,
                   "--out", tmp_path / "vary.png") == 0
    assert pixels(tmp_path / "vary.png").shape == (32, 66, 3)
    assert run_cli("vary", "--image", tmp_path / "in.png", "--class", "square", "--strength", 2, "--out",
                   tmp_path / "bad.png") == 2
    assert "strength must be a finite number at least 0 and at most 1, got 2" in capsys.readouterr().err
    assert run_cli("wide", "--class", "ring:0.5, star:0.5", "--width", 96, "--out", tmp_path / "wide.png") == 0
    assert pixels(tmp_path / "wide.png").shape == (32, 96, 3)
    assert "5 tiles of 32 px" in capsys.readouterr().out
    assert run_cli("wide", "--class", "ring", "--width", 97, "--out", tmp_path / "bad.png") == 2
    assert "not a multiple of the tokenizer's stride (4 px): a token covers 4×4 px; use 96 or 100" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


# ------------------------------------------------------------------------------------------ negative class
def test_negative_null_class_is_plain_guidance_and_a_class_is_not(demo):
    model, _ = demo
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=6)
    for cfg_schedule in ("linear", "constant"):
        plain_tokens = generate(model, schedule, [4, 4, 1], cfg=CFG, cfg_schedule=cfg_schedule, seeds=[6, 6, 7])
        negative = generate(model, schedule, [4, 4, 1], cfg=CFG, cfg_schedule=cfg_schedule, seeds=[6, 6, 7],
                            negative=[None, 0, None])
        assert torch.equal(negative[[0, 2]], plain_tokens[[0, 2]])  # the null class named: plain guidance
        assert not torch.equal(negative[1], plain_tokens[1])
    # one negative (class or mix) serves the batch; sample 1 alone with its seed is the same image
    both = generate(model, schedule, [4, 4], cfg=CFG, seeds=[6, 7], negative=ClassMix(((0, 1.0), (9, 1.0))))
    alone = generate(model, schedule, [4], cfg=CFG, seeds=7, negative=[ClassMix.between(0, 9, 0.5)])
    assert torch.equal(both[1], alone[0])


def test_negative_with_a_class_switch_keeps_the_negative(demo):
    model, _ = demo
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=5)
    switched = generate(model, schedule, [2], cfg=CFG, seeds=5, negative=1, switch_labels=[8], switch_step=0)
    assert torch.equal(switched, generate(model, schedule, [8], cfg=CFG, seeds=5, negative=1))


@pytest.mark.parametrize("settings, message", [
    (dict(negative=3, cfg=1.0), "a negative class works through guidance, which is off at cfg 1"),
    (dict(negative=[3, 4, 5], cfg=CFG), "got 3 negative classes for a batch of 2"),
    (dict(negative=[None, 3, 4], cfg=CFG), "got 3 negative classes for a batch of 2"),
    (dict(negative=12, cfg=CFG), "class index 12 is out of range: this model has 10 classes"),
    (dict(negative=[ClassMix(((3, 1.0), (12, 1.0))), 3], cfg=CFG), "class index 12 is out of range"),
])
def test_bad_negative_classes_are_refused(demo, settings, message):
    model, _ = demo
    with pytest.raises(SettingError, match=message):
        generate(model, build_schedule(GRID, steps=STEPS), [1, 2], **settings)


def test_negative_reaches_variation_and_wide_canvas(demo, pictures):
    model, vq = demo
    varied = vary(model, vq, pictures[:1], 4, 1.0, steps=STEPS, seed=21, cfg=CFG, negative=0)
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=21)
    assert torch.equal(varied.tokens, generate(model, schedule, [4], cfg=CFG, seeds=21, negative=0))
    canvas = wide_canvas(model, vq, 3, width=16, overlap=4, steps=STEPS, seed=2, cfg=CFG, negative=0)
    first = canvas.tokens.reshape(GRID, 16)[:, :GRID].reshape(1, -1)
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=2)
    assert torch.equal(first, generate(model, schedule, [3], cfg=CFG, seeds=2, negative=0))


# ------------------------------------------------------------------------------------------ class morph
def test_morph_weights_run_from_0_to_1_along_the_easing():
    assert morph_weights(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    for easing in ("ease-in-out", "ease-in", "ease-out"):
        weights = morph_weights(9, easing)
        assert weights[0] == 0.0 and weights[-1] == 1.0 and weights == sorted(weights)
    assert morph_weights(9, "ease-in")[1] < 0.125 < morph_weights(9, "ease-out")[1]
    assert abs(morph_weights(9, "ease-in-out")[4] - 0.5) < 1e-12
    with pytest.raises(SettingError, match="frames must be at least 2"):
        morph_weights(1)
    with pytest.raises(SettingError, match="unknown easing 'bounce'; choose one of linear, ease-in-out"):
        morph_weights(4, "bounce")


@pytest.mark.parametrize("layout_steps", [0, 2])
def test_morph_end_frames_are_plain_samples_of_the_two_classes(demo, layout_steps):
    model, vq = demo
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=13)
    result = class_morph(model, vq, 1, 9, schedule=schedule, frames=6, layout_steps=layout_steps, seed=13, cfg=CFG)
    assert result.images.shape == (6, 32, 32, 3) and result.tokens.shape == (6, 64)
    assert torch.equal(result.tokens[0], plain(model, 1, 13)[0])
    assert torch.equal(result.tokens[-1], plain(model, 9, 13)[0])
    assert len({tuple(frame.tolist()) for frame in result.tokens}) > 2  # frames between the two


def test_morph_layout_steps_share_the_first_tokens_of_each_half(demo):
    model, vq = demo
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=13)
    result = class_morph(model, vq, 1, 9, schedule=schedule, frames=6, layout_steps=2, seed=13, cfg=CFG)
    first = torch.from_numpy(schedule.order[:sum(schedule.group_sizes[:2])])
    early = result.tokens[:, first]
    assert all(torch.equal(early[i], early[0]) for i in range(3))  # w < 0.5: the start class's layout
    assert all(torch.equal(early[i], early[-1]) for i in range(3, 6))


def test_morph_between_mixes_and_with_a_negative(demo):
    model, vq = demo
    schedule = build_schedule(GRID, steps=STEPS, order="locality", seed=2)
    mix = ClassMix.between(0, 9, 0.5)
    result = class_morph(model, vq, mix, 4, schedule=schedule, frames=3, seed=2, cfg=CFG, negative=0)
    assert torch.equal(result.tokens[0], generate(model, schedule, [mix], cfg=CFG, seeds=2, negative=0)[0])
    assert torch.equal(result.tokens[-1], generate(model, schedule, [4], cfg=CFG, seeds=2, negative=0)[0])
    with pytest.raises(SettingError, match="layout steps must be between 0 and 7"):
        class_morph(model, vq, 0, 4, schedule=schedule, frames=3, layout_steps=8, cfg=CFG)


# ------------------------------------------------------------------------------------------ panoramas
def test_tile_classes_spread_a_list_and_interpolate_along_the_canvas():
    tiles = [(0, 0), (0, 4), (0, 8), (0, 12), (0, 16)]
    assert [t.tolist() for t in tile_classes(tiles, GRID, 24, 8, 10, 1, tile_labels=[3])] == [[3]] * 5
    assert [t.tolist() for t in tile_classes(tiles, GRID, 24, 8, 10, 1, tile_labels=[0, 4, 9])] == \
        [[0], [0], [4], [4], [9]]
    assert [tile_position(r, c, GRID, 24, 8) for r, c in tiles] == [0, 0.25, 0.5, 0.75, 1]
    assert tile_position(6, 0, GRID, 8, 14) == 1.0 and tile_position(0, 0, GRID, 8, 8) == 0.0
    mixes = tile_classes(tiles, GRID, 24, 8, 10, 2, labels=[0, 1], to_labels=9)
    assert [round(float(m[0, 9]), 6) for m in mixes] == [0, 0.25, 0.5, 0.75, 1]
    assert torch.equal(mixes[0][1], torch.eye(10)[1]) and torch.equal(mixes[-1][1], torch.eye(10)[9])
    with pytest.raises(SettingError, match="got 6 tile classes for a canvas of 5 tiles: give 1 to 5"):
        tile_classes(tiles, GRID, 24, 8, 10, 1, tile_labels=[1] * 6)
    with pytest.raises(SettingError, match="either per tile, or as a class"):
        tile_classes(tiles, GRID, 24, 8, 10, 1, labels=1, tile_labels=[2])
    with pytest.raises(SettingError, match="the canvas needs a class"):
        tile_classes(tiles, GRID, 24, 8, 10, 1)


def test_a_per_tile_list_of_one_class_is_the_plain_canvas(demo):
    model, vq = demo
    settings = dict(width=20, overlap=2, steps=STEPS, seed=4, cfg=CFG)
    canvas = wide_canvas(model, vq, 6, **settings)
    assert torch.equal(wide_canvas(model, vq, tile_labels=[6], **settings).tokens, canvas.tokens)
    assert torch.equal(wide_canvas(model, vq, tile_labels=[6] * 3, **settings).tokens, canvas.tokens)
    assert torch.equal(wide_canvas(model, vq, 6, to_labels=6, **settings).tokens, canvas.tokens)


def test_a_canvas_travels_from_one_class_to_another(demo):
    model, vq = demo
    finished = {}

    def on_step(tile, step):
        if step.step == step.total - 1:
            finished[tile] = step.tokens.clone()

    settings = dict(width=20, overlap=2, steps=STEPS, seed=4, cfg=CFG)
    travel = wide_canvas(model, vq, 0, to_labels=9, callback=on_step, **settings)
    assert travel.images.shape == (1, 32, 80, 3) and len(travel.tiles) == 3
    assert torch.equal(finished[0], plain(model, 0, 4))  # the first tile is the start class exactly
    by_tile = wide_canvas(model, vq, tile_labels=[0, ClassMix.between(0, 9, 0.5), 9], **settings)
    assert torch.equal(by_tile.tokens, travel.tokens)  # three tiles: start, half way, end
    assert not torch.equal(travel.tokens, wide_canvas(model, vq, 0, **settings).tokens)


def frames_of(path):
    from PIL import Image, ImageSequence
    with Image.open(path) as animation:
        return animation.format, [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(animation)]


def test_cli_morph_writes_an_animation_whose_ends_are_the_two_classes(tmp_path, capsys):
    assert run_cli("morph", "--class", "circle", "--to-class", "star", "--frames", 5, "--seed", 4, "--out",
                   tmp_path / "morph.webp") == 0
    assert "wrote" in capsys.readouterr().out
    kind, frames = frames_of(tmp_path / "morph.webp")
    assert kind == "WEBP" and len(frames) == 5 and frames[0].shape == (32, 32, 3)
    for label, frame in (("circle", frames[0]), ("star", frames[-1])):
        assert run_cli("generate", "--class", label, "--seed", 4, "--out", tmp_path / f"{label}.png") == 0
        assert np.array_equal(frame, pixels(tmp_path / f"{label}.png"))  # lossless frames
    assert run_cli("morph", "--class", "circle", "--to-class", "ring:0.5, star:0.5", "--frames", 3, "--easing",
                   "ease-in-out", "--layout-steps", 0, "--negative", "square", "--fps", 12, "--out",
                   tmp_path / "morph.gif") == 0
    kind, frames = frames_of(tmp_path / "morph.gif")
    assert kind == "GIF" and len(frames) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


@pytest.mark.parametrize("argv, message", [
    (["--frames", 1], "frames must be at least 2"),
    (["--fps", 0], "fps must be a finite number more than 0"),
    (["--layout-steps", 8], "layout steps must be between 0 and 7"),
    (["--cfg", 1, "--negative", "square"], "a negative class works through guidance, which is off at cfg 1"),
    (["--to-class", "tiger"], "tiger"),
])
def test_cli_morph_bad_inputs_are_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    arguments = {"--class": "circle", "--to-class": "star", "--out": tmp_path / "bad.webp"}
    arguments.update(dict(zip(argv[::2], argv[1::2])))
    assert run_cli("morph", *[str(a) for pair in arguments.items() for a in pair]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert not (tmp_path / "bad.webp").exists()


def test_cli_morph_output_must_be_an_animation(tmp_path, capsys):
    assert run_cli("morph", "--class", "circle", "--to-class", "star", "--out", tmp_path / "morph.png") == 2
    assert "morph.png is not an animation file (.png); name the output morph.webp or morph.gif" \
        in capsys.readouterr().err


def test_cli_negative_class(tmp_path, capsys):
    assert run_cli("generate", "--class", "ring", "--negative", "circle", "--seed", 3, "--out",
                   tmp_path / "negative.png") == 0
    assert "negative 0" in capsys.readouterr().out
    assert run_cli("generate", "--class", "ring", "--seed", 3, "--out", tmp_path / "plain.png") == 0
    assert not np.array_equal(pixels(tmp_path / "negative.png"), pixels(tmp_path / "plain.png"))
    assert run_cli("generate", "--class", "ring", "--negative", "circle", "--cfg", 1, "--out",
                   tmp_path / "bad.png") == 2
    assert "set cfg above 1" in capsys.readouterr().err
    assert run_cli("vary", "--image", tmp_path / "plain.png", "--class", "ring", "--negative", "circle:1, square:1",
                   "--out", tmp_path / "vary.png") == 0
    assert not (tmp_path / "bad.png").exists()


def test_cli_wide_travels_between_classes(tmp_path, capsys):
    assert run_cli("wide", "--class", "circle", "--to-class", "star", "--width", 80, "--overlap", 2, "--seed", 4,
                   "--out", tmp_path / "travel.png") == 0
    assert "as 0 → 9, 3 tiles" in capsys.readouterr().out
    assert run_cli("wide", "--class", "circle; 0:0.5, 9:0.5; star", "--width", 80, "--overlap", 2, "--seed", 4,
                   "--out", tmp_path / "tiles.png") == 0
    assert np.array_equal(pixels(tmp_path / "tiles.png"), pixels(tmp_path / "travel.png"))
    assert run_cli("wide", "--class", "circle; star", "--to-class", "ring", "--width", 80, "--out",
                   tmp_path / "bad.png") == 2
    assert "--to-class goes with one --class" in capsys.readouterr().err
    assert run_cli("wide", "--class", "circle; star; ring; cross", "--width", 80, "--overlap", 2, "--out",
                   tmp_path / "bad.png") == 2
    assert "got 4 tile classes for a canvas of 3 tiles" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()
