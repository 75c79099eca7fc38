"""The editing nodes (LPDEditSampler, LPDPadForOutpaint), called directly on the fixture checkpoints
(8×8 tokens, stride 16: 128×128 pixels, 10 classes), the way tests/test_nodes.py calls the others."""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest
import torch

from tests.test_nodes import (FIXTURES, PACK_NAME, REAL_COMFY, _load_pack, node_classes, recording_progress, schema_inputs,
                              small_tokenizer)

GRID, STRIDE, SIZE = 8, 16, 128


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from lpd_core.weights import convert
    folder = tmp_path_factory.mktemp("models_lpd_editing")
    convert(FIXTURES / "lpd.pth", folder / "lpd_fixture.safetensors", num_heads=4)
    convert(FIXTURES / "vq.pt", folder / "vq_fixture.safetensors")
    previous = os.environ.get("LPD_MODELS_DIR")
    os.environ["LPD_MODELS_DIR"] = str(folder)
    if REAL_COMFY:
        import folder_paths
        folder_paths.add_model_folder_path("lpd", str(folder), is_default=True)
    yield folder
    if REAL_COMFY:
        import folder_paths
        folder_paths.folder_names_and_paths["lpd"][0].remove(str(folder))
    if previous is None:
        os.environ.pop("LPD_MODELS_DIR", None)
    else:
        os.environ["LPD_MODELS_DIR"] = previous


@pytest.fixture(scope="module")
def pack(models_dir):
    return _load_pack()


@pytest.fixture(scope="module")
def nodes(pack):
    return node_classes(pack)


@pytest.fixture(scope="module")
def model(nodes):
    return nodes["LPDModelLoader"].execute("lpd_fixture.safetensors", "auto")[0]


@pytest.fixture(scope="module")
def vq(nodes):
    return nodes["LPDTokenizerLoader"].execute("vq_fixture.safetensors", "auto")[0]


@pytest.fixture(scope="module")
def picture():
    """A smooth random image at the model's resolution (1, 128, 128, 3)."""
    base = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(base, size=(SIZE, SIZE), mode="bilinear").permute(0, 2, 3, 1).contiguous()


@pytest.fixture
def progress(pack, monkeypatch):
    with recording_progress(monkeypatch) as recorder:
        yield recorder


@pytest.fixture
def notices(pack, monkeypatch):
    """What the nodes tell the user through runtime.notify (a toast in the browser)."""
    runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]
    told = []
    original = runtime.notify
    monkeypatch.setattr(runtime, "notify", lambda message, summary="LPD": (told.append(message), original(message, summary)))
    return told


def box_mask(top=2, left=3, height=3, width=4, batch=None):
    """1 over a rectangle of tokens (in token units), as a ComfyUI MASK."""
    mask = torch.zeros(SIZE, SIZE)
    mask[top * STRIDE:(top + height) * STRIDE, left * STRIDE:(left + width) * STRIDE] = 1
    return mask[None] if batch is None else mask[None].repeat(batch, 1, 1)


def run(nodes, model, vq, image, mask, class_index=3, **settings):
    settings = {"steps": 4, "seed": 0, **settings}
    out = nodes["LPDEditSampler"].execute(model, vq, image, mask, class_index, **settings)
    assert out.ui is None  # messages go to runtime.notify: the core frontend shows no ui.text here
    images, tokens = out.result
    return images, tokens


def pixel_mask(token_mask):
    return token_mask.repeat_interleave(STRIDE, 0).repeat_interleave(STRIDE, 1)


# ------------------------------------------------------------------------------------------ definitions
def test_registered_with_tooltips(pack):
    classes = node_classes(pack)
    for name in ("LPDEditSampler", "LPDPadForOutpaint"):
        schema = classes[name].define_schema()
        assert schema.display_name.startswith("LPD") and schema.category == "LPD" and schema.description
        for item in [*schema.inputs, *schema.outputs]:
            assert item.tooltip, f"{name}.{item.id}"
    edit = classes["LPDEditSampler"]
    assert [o.io_type for o in edit.define_schema().outputs] == ["IMAGE", "LPD_TOKENS"]
    inputs = schema_inputs(edit)
    assert inputs["seed"].control_after_generate is True
    assert inputs["composite"].default is True and inputs["steps"].default == 0
    assert "first" in inputs["mask"].tooltip  # a mask batch: the first mask is used
    assert [o.io_type for o in classes["LPDPadForOutpaint"].define_schema().outputs] == ["IMAGE", "MASK"]


# ------------------------------------------------------------------------------------------ inpaint
def test_inpaint_keeps_what_is_not_masked(nodes, model, vq, picture):
    mask = box_mask()
    images, tokens = run(nodes, model, vq, picture, mask)
    assert images.shape == (1, SIZE, SIZE, 3) and images.dtype == torch.float32 and images.device.type == "cpu"
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    regenerated = torch.zeros(GRID, GRID, dtype=torch.bool)
    regenerated[2:5, 3:7] = True
    # composite on, no feather: kept pixels are exactly the input's; the masked part is new
    assert torch.equal(images[0][~pixel_mask(regenerated)], picture[0][~pixel_mask(regenerated)])
    assert not torch.allclose(images[0][pixel_mask(regenerated)], picture[0][pixel_mask(regenerated)], atol=0.02)
    # the token grid is LPD Sampler's structure: kept tokens are the encoded image's
    assert tokens.tokens.shape == (1, GRID * GRID) and tokens.tokens.dtype == torch.int64
    assert tokens.grid == (GRID, GRID) and tokens.vocab_size == 512 and tokens.labels == [3] and tokens.seeds == [0]
    assert tokens.settings["steps"] == 4 and tokens.settings["regenerated"] == 12 and tokens.settings["cfg"] == 4.0
    codes = vq.module.encode_images(picture)
    keep = ~regenerated.reshape(-1)
    assert torch.equal(tokens.tokens[0, keep], codes[0, keep])
    # LPD Decode takes them: outside the mask the decode is the tokenizer's reconstruction
    decoded = nodes["LPDDecode"].execute(tokens, vq)[0]
    assert decoded.shape == (1, SIZE, SIZE, 3)
    assert torch.allclose(decoded[0][pixel_mask(regenerated)], images[0][pixel_mask(regenerated)], atol=1e-5)


def test_composite_off_and_feather(nodes, model, vq, picture):
    mask = box_mask()
    composited, tokens = run(nodes, model, vq, picture, mask)
    plain, same = run(nodes, model, vq, picture, mask, composite=False)
    assert torch.equal(tokens.tokens, same.tokens)
    assert torch.allclose(plain, vq.module.decode_images(same.tokens), atol=1e-5)  # all decoded
    feathered, _ = run(nodes, model, vq, picture, mask, feather=1)
    region = torch.zeros(GRID, GRID, dtype=torch.bool)
    region[2:5, 3:7] = True
    ring = dilate(region, 1) & ~region
    assert not torch.allclose(feathered[0][pixel_mask(ring)], picture[0][pixel_mask(ring)])  # blended band
    far = ~dilate(region, 2)  # the blend reaches less than two tokens out
    assert torch.equal(feathered[0][pixel_mask(far)], picture[0][pixel_mask(far)])
    assert torch.equal(feathered[0][pixel_mask(region)], composited[0][pixel_mask(region)])


def dilate(tokens, by):
    return torch.nn.functional.max_pool2d(tokens[None, None].float(), 2 * by + 1, 1, by)[0, 0].bool()


def test_grow_widens_the_region(nodes, model, vq, picture):
    _, tokens = run(nodes, model, vq, picture, box_mask(3, 3, 2, 2), grow=1)
    assert tokens.settings["regenerated"] == 16


def test_empty_mask_returns_the_input(nodes, model, vq, picture, progress, notices, caplog):
    with caplog.at_level("WARNING"):
        images, tokens = run(nodes, model, vq, picture, torch.zeros(1, SIZE, SIZE))
    assert torch.equal(images, picture)
    assert len(notices) == 1 and "mask covers no token" in notices[0] and "mask covers no token" in caplog.text
    assert torch.equal(tokens.tokens, vq.module.encode_images(picture)) and tokens.settings["regenerated"] == 0
    assert progress.updates == []  # nothing was generated
    # below the 0.5 threshold counts as empty too
    assert torch.equal(run(nodes, model, vq, picture, torch.full((1, SIZE, SIZE), 0.4))[0], picture)


def test_mask_batch_uses_the_first_mask(nodes, model, vq, picture):
    pictures = torch.cat([picture, picture.flip(1)])
    masks = torch.cat([box_mask(), torch.ones(1, SIZE, SIZE)])
    images, tokens = run(nodes, model, vq, pictures, masks, seed=5, order="raster")
    assert images.shape == (2, SIZE, SIZE, 3) and tokens.tokens.shape == (2, GRID * GRID) and tokens.seeds == [5, 6]
    regenerated = torch.zeros(GRID, GRID, dtype=torch.bool)
    regenerated[2:5, 3:7] = True
    for b in range(2):
        assert torch.equal(images[b][~pixel_mask(regenerated)], pictures[b][~pixel_mask(regenerated)])
    codes = vq.module.encode_images(pictures)
    assert torch.equal(tokens.tokens[:, ~regenerated.reshape(-1)], codes[:, ~regenerated.reshape(-1)])
    assert tokens.settings["regenerated"] == 12  # the first mask's tokens, not the second's 64


def test_non_square_input_is_fitted_like_the_image(nodes, model, vq):
    wide = torch.rand(1, 64, 96, 3, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 64, 96)
    mask[:, :, 48:] = 1  # right half of the image
    images, tokens = run(nodes, model, vq, wide, mask)
    assert images.shape == (1, SIZE, SIZE, 3)
    # centre crop of the 192×128 resize: x from 32; the mask starts at x = 96 - 32 = 64 = token 4
    assert tokens.settings["regenerated"] == 32
    with pytest.raises(ValueError, match=r"mask is 64×64 px but the image 96×64 px.*aspect"):
        run(nodes, model, vq, wide, torch.ones(1, 64, 64))
    # a mask of another size with the same aspect ratio is fine
    assert run(nodes, model, vq, wide, torch.ones(1, 32, 48))[1].settings["regenerated"] == 64


def test_determinism_by_seed(nodes, model, vq, picture):
    mask = box_mask()
    first = run(nodes, model, vq, picture, mask, seed=11)
    again = run(nodes, model, vq, picture, mask, seed=11)
    other = run(nodes, model, vq, picture, mask, seed=12)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1].tokens, again[1].tokens)
    assert not torch.equal(first[1].tokens, other[1].tokens)
    for order in ("random", "raster"):
        a = run(nodes, model, vq, picture, mask, seed=3, order=order)[1].tokens
        assert torch.equal(a, run(nodes, model, vq, picture, mask, seed=3, order=order)[1].tokens)


def test_class_swap_changes_only_the_masked_part(nodes, model, vq, picture):
    mask = box_mask(1, 1, 6, 6)
    _, as_three = run(nodes, model, vq, picture, mask, class_index=3, seed=4)
    _, as_seven = run(nodes, model, vq, picture, mask, class_index=7, seed=4)
    regenerated = torch.zeros(GRID, GRID, dtype=torch.bool)
    regenerated[1:7, 1:7] = True
    inside = regenerated.reshape(-1)
    assert as_seven.labels == [7]
    assert torch.equal(as_three.tokens[0, ~inside], as_seven.tokens[0, ~inside])
    assert not torch.equal(as_three.tokens[0, inside], as_seven.tokens[0, inside])
    with pytest.raises(ValueError, match=r"class index 10 is out of range.*0 to 9"):
        run(nodes, model, vq, picture, mask, class_index=10)
    with pytest.raises(ValueError, match=r"class index 10 is out of range"):  # also when nothing is masked
        run(nodes, model, vq, picture, torch.zeros(1, SIZE, SIZE), class_index=10)


def test_full_mask_is_plain_generation(nodes, model, vq, picture):
    """Masking everything is LPD Sampler with the same steps, order and seed."""
    _, tokens = run(nodes, model, vq, picture, torch.ones(1, SIZE, SIZE), steps=6, seed=9)
    schedule = nodes["LPDSchedule"].execute(model, 6, "locality", 9)[0]
    sampled = nodes["LPDSampler"].execute(model, schedule, 3, 1, 9)[0]
    assert torch.equal(tokens.tokens, sampled.tokens)


def test_steps_default_and_cap(nodes, model, vq, picture):
    from lpd_core.checkpoints import generation_defaults
    _, tokens = run(nodes, model, vq, picture, box_mask(1, 1, 5, 6), steps=0)  # 30 tokens
    assert tokens.settings["steps"] == generation_defaults(model.module).steps == 20
    _, many = run(nodes, model, vq, picture, box_mask(), steps=500)  # capped: at least one token per step
    assert many.settings["steps"] == 12
    _, everything = run(nodes, model, vq, picture, torch.ones(1, SIZE, SIZE), steps=500)
    assert everything.settings["steps"] == GRID * GRID


def test_explicit_settings(nodes, model, vq, picture):
    mask = box_mask()
    greedy = run(nodes, model, vq, picture, mask, seed=1, cfg=1.0, cfg_schedule="constant", temperature=1.0,
                 top_k=1, top_p=1.0)[1]
    assert greedy.settings["cfg"] == 1.0 and greedy.settings["top_k"] == 1
    assert greedy.settings["cfg_schedule"] == "constant"
    other_seed = run(nodes, model, vq, picture, mask, seed=2, order="raster", cfg=1.0, cfg_schedule="constant",
                     top_k=1)[1]
    same_order = run(nodes, model, vq, picture, mask, seed=7, order="raster", cfg=1.0, cfg_schedule="constant",
                     top_k=1)[1]
    assert torch.equal(other_seed.tokens, same_order.tokens)  # top-1 in a fixed order ignores the seed


def test_mismatched_tokenizer(nodes, model, picture):
    with pytest.raises(ValueError, match="tokenizer/model mismatch"):
        run(nodes, model, small_tokenizer(256), picture, box_mask())


# ------------------------------------------------------------------------------------------ progress
def test_progress_preview_starts_from_the_kept_tokens(nodes, model, vq, picture, progress):
    run(nodes, model, vq, picture, box_mask(), steps=4)
    assert [(value, total) for value, total, _ in progress.updates] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    grey = []
    for _, _, frame in progress.updates:
        pixels = np.asarray(frame)
        grey.append(np.mean(np.all(pixels == 128, axis=-1)))
    # after the first step only part of the 12 masked tokens is grey; the kept 52 are drawn from the start
    assert 0 < grey[0] < 12 / 64 and grey[-1] == 0


def test_interrupt(pack, nodes, model, vq, picture, progress, monkeypatch):
    from lpd_core.model import KVCache
    runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]

    class Cancelled(Exception):
        pass

    calls = []

    def throw_if_interrupted():
        calls.append(1)
        if len(calls) == 3:
            raise Cancelled()

    monkeypatch.setattr(runtime, "throw_if_interrupted", throw_if_interrupted)
    with pytest.raises(Cancelled):
        run(nodes, model, vq, picture, box_mask(), steps=4)
    assert [value for value, _, _ in progress.updates] == [1, 2]
    gc.collect()
    assert not [obj for obj in gc.get_objects() if type(obj) is KVCache], "KV cache still alive"


# ------------------------------------------------------------------------------------------ outpaint
def test_pad_for_outpaint(nodes, model, vq):
    image = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    pad = nodes["LPDPadForOutpaint"]
    canvas, mask = pad.execute(image, vq, left=0, top=0, right=2, bottom=0, model=model)
    assert canvas.shape == (2, SIZE, SIZE, 3) and mask.shape == (2, SIZE, SIZE)
    assert canvas.dtype == mask.dtype == torch.float32 and 0 <= float(canvas.min()) and float(canvas.max()) <= 1
    assert mask[:, :, 96:].eq(1).all() and mask[:, 16:112, :96].eq(0).all()  # image 96×96, centred vertically
    assert canvas[:, :, 96:].eq(0.5).all()
    # without a model: the size widget, rounded down to the stride
    small, small_mask = pad.execute(image, vq, left=1, top=1, right=1, bottom=1, size=70)
    assert small.shape == (2, 64, 64, 3) and small_mask.shape == (2, 64, 64)
    assert small_mask[:, 16:48, 16:48].eq(0).all() and small_mask[:, :16].eq(1).all()


def test_outpaint_regenerates_the_band(nodes, model, vq):
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(4))
    canvas, mask = nodes["LPDPadForOutpaint"].execute(image, vq, left=0, top=2, right=0, bottom=0, model=model)
    images, tokens = run(nodes, model, vq, canvas, mask, steps=3)
    assert tokens.settings["regenerated"] == 2 * GRID + 2 * 6  # the top band + the uncovered side columns
    assert torch.equal(images[0][mask[0] < 0.5], canvas[0][mask[0] < 0.5])
    assert not images[0, :32].eq(0.5).all()


def test_bad_bands(nodes, model, vq):
    image = torch.rand(1, 32, 32, 3)
    with pytest.raises(ValueError, match=r"must be ≥ 0 and leave room.*at most 7 tokens"):
        nodes["LPDPadForOutpaint"].execute(image, vq, left=4, top=0, right=4, bottom=0, model=model)
    with pytest.raises(ValueError, match="leave room"):
        nodes["LPDPadForOutpaint"].execute(image, vq, left=0, top=8, right=0, bottom=0, size=128)
    with pytest.raises(ValueError, match="tokenizer/model mismatch"):
        nodes["LPDPadForOutpaint"].execute(image, small_tokenizer(256), left=1, top=0, right=0, bottom=0, model=model)
