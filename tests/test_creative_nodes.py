"""The creative nodes (LPDClassBlend, LPDVariation, LPDWideCanvas, LPDClassMorph) and the samplers'
negative class, called directly on the bundled demo model (8×8 tokens, 4 px per token, 10 classes),
outside ComfyUI."""

from __future__ import annotations

import pytest
import torch

from lpd_core.errors import SettingError
from nodes import creative
from nodes.loaders import LPDModelLoader, LPDTokenizerLoader
from nodes.sampling import LPDSampler, LPDSchedule
from nodes.tokens import LPDDecode


@pytest.fixture(scope="module")
def model():
    return LPDModelLoader.execute("demo", "auto")[0]


@pytest.fixture(scope="module")
def vq():
    return LPDTokenizerLoader.execute("demo", "auto")[0]


@pytest.fixture(scope="module")
def schedule(model):
    return LPDSchedule.execute(model, 0, "locality", 3)[0]


def test_nodes_are_listed_with_their_ids():
    ids = [node.define_schema().node_id for node in creative.NODES]
    assert ids == ["LPDClassBlend", "LPDVariation", "LPDWideCanvas", "LPDClassMorph"]
    for node in creative.NODES:
        schema = node.define_schema()
        assert schema.category == "LPD" and schema.description
        assert all(item.tooltip for item in [*schema.inputs, *schema.outputs])


def test_class_blend_end_point_is_the_sampler_and_a_mix_is_not(model, vq, schedule):
    plain = LPDSampler.execute(model, schedule, 9, 2, 5)[0]
    end = creative.LPDClassBlend.execute(model, schedule, "circle:0, star:1", 2, 5, tokenizer=vq)[0]
    assert torch.equal(end.tokens, plain.tokens)
    mixed = creative.LPDClassBlend.execute(model, schedule, "circle:0.5, star:0.5", 2, 5)[0]
    assert mixed.tokens.shape == (2, 64) and not torch.equal(mixed.tokens, plain.tokens)
    with pytest.raises(SettingError, match="a class weight must be a finite number at least 0, got -1"):
        creative.LPDClassBlend.execute(model, schedule, "circle:-1, star:1", 1, 5)


def test_class_blend_switch(model, schedule):
    plain = LPDSampler.execute(model, schedule, 9, 1, 5)[0]
    switched = creative.LPDClassBlend.execute(model, schedule, "circle", 1, 5, switch_classes="star",
                                              switch_step=0)[0]
    assert torch.equal(switched.tokens, plain.tokens)


def test_variation_node(model, vq, schedule):
    picture = LPDDecode.execute(LPDSampler.execute(model, schedule, 1, 1, 0)[0], vq)[0]
    same = creative.LPDVariation.execute(model, vq, picture, "square", 0.0, 2, seed=0)
    assert same[0].shape == (2, 32, 32, 3)
    assert torch.equal(same[1].tokens, vq.module.encode_images(picture).expand(2, -1))
    varied = creative.LPDVariation.execute(model, vq, picture, "square", 0.5, 3, seed=0)
    assert varied[0].shape == (3, 32, 32, 3) and varied[1].seeds == [0, 1, 2]
    agreement = (varied[1].tokens == same[1].tokens[:1]).float().mean(1)
    assert ((agreement >= 0.5) & (agreement < 1)).all()  # half the tokens kept, the rest regenerated


def test_wide_canvas_node(model, vq):
    image, tokens = creative.LPDWideCanvas.execute(model, vq, "ring", width=96, overlap=4, seed=1)
    assert image.shape == (1, 32, 96, 3) and tokens.grid == (8, 24)
    assert torch.equal(LPDDecode.execute(tokens, vq)[0], image)  # LPD Decode takes the wide grid as it is
    tall = creative.LPDWideCanvas.execute(model, vq, "ring", width=0, height=48, seed=1)[0]
    assert tall.shape == (1, 48, 32, 3)
    with pytest.raises(SettingError, match="not a multiple of the tokenizer's stride"):
        creative.LPDWideCanvas.execute(model, vq, "ring", width=97)


def test_class_morph_node_ends_are_the_samplers_images(model, vq, schedule):
    frames, tokens = creative.LPDClassMorph.execute(model, vq, schedule, "circle", "star", frames=5, seed=5)
    assert frames.shape == (5, 32, 32, 3) and tokens.tokens.shape == (5, 64)
    for index, label in ((0, 0), (-1, 9)):
        plain = LPDSampler.execute(model, schedule, label, 1, 5)[0]
        assert torch.equal(tokens.tokens[index], plain.tokens[0])
        assert torch.allclose(frames[index], LPDDecode.execute(plain, vq)[0][0], atol=1e-5)  # decoded in a batch
    assert tokens.settings["weights"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    eased = creative.LPDClassMorph.execute(model, vq, schedule, "circle", "star", frames=5, easing="ease-in-out",
                                           layout_steps=0, seed=5, negative="square")[1]
    assert eased.settings["weights"][1] < 0.25 and not torch.equal(eased.tokens, tokens.tokens)
    with pytest.raises(SettingError, match="frames must be at least 2"):
        creative.LPDClassMorph.execute(model, vq, schedule, "circle", "star", frames=1)
    with pytest.raises(SettingError, match="layout steps must be between 0 and 7"):
        creative.LPDClassMorph.execute(model, vq, schedule, "circle", "star", frames=3, layout_steps=8)


def test_negative_class_on_the_samplers(model, vq, schedule):
    plain = LPDSampler.execute(model, schedule, 4, 2, 5)[0]
    assert torch.equal(LPDSampler.execute(model, schedule, 4, 2, 5, negative=" ")[0].tokens, plain.tokens)
    pushed = LPDSampler.execute(model, schedule, 4, 2, 5, negative="circle")[0]
    assert not torch.equal(pushed.tokens, plain.tokens) and pushed.settings["negative"] == 0  # circle
    blend = creative.LPDClassBlend.execute(model, schedule, "ring", 2, 5, negative="circle")[0]
    assert torch.equal(blend.tokens, pushed.tokens)  # the same generation through either node
    with pytest.raises(SettingError, match="a negative class works through guidance, which is off at cfg 1"):
        LPDSampler.execute(model, schedule, 4, 1, 5, cfg=1.0, negative="circle")
    with pytest.raises(SettingError, match="class index 12 is out of range: this model has 10 classes"):
        LPDSampler.execute(model, schedule, 4, 1, 5, negative="circle:1, 12:1")


def test_wide_canvas_node_travels_between_classes(model, vq):
    settings = dict(width=80, overlap=2, seed=1)
    image, tokens = creative.LPDWideCanvas.execute(model, vq, "circle", to_classes="star", **settings)
    assert image.shape == (1, 32, 80, 3) and tokens.settings["tiles"] == 3
    by_tile = creative.LPDWideCanvas.execute(model, vq, "circle; 0:0.5, 9:0.5; star", **settings)[1]
    assert torch.equal(by_tile.tokens, tokens.tokens)
    same = creative.LPDWideCanvas.execute(model, vq, "ring; ring", **settings)[1]
    assert torch.equal(same.tokens, creative.LPDWideCanvas.execute(model, vq, "ring", **settings)[1].tokens)
    with pytest.raises(SettingError, match="`to_classes` goes with one class or mix"):
        creative.LPDWideCanvas.execute(model, vq, "circle; star", to_classes="ring", **settings)
    with pytest.raises(SettingError, match="got 4 tile classes for a canvas of 3 tiles"):
        creative.LPDWideCanvas.execute(model, vq, "circle; star; ring; cross", **settings)
