"""Safe checkpoint loading and config inference."""

import copy
import os
import pickle

import pytest
import torch

from lpd_core import LPDConfig, VQConfig, VQModel, check_pair, load_model, load_tokenizer
from lpd_core.checkpoints import load_pair
from lpd_core.errors import SettingError
from lpd_core.model import LPD

from conftest import REFERENCE, REFERENCE_HEADS


class _CreatesFile:
    """Unpickling this calls os.system, which would create the file named in it."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": {"x": torch.zeros(1)}, "payload": _CreatesFile(target)}, f)
    torch.save({"model": {"x": torch.zeros(1)}, "payload": _CreatesFile(target)}, tmp_path / "evil2.pth")
    for candidate in (path, tmp_path / "evil2.pth"):
        with pytest.raises(ValueError, match="refusing to load"):
            load_model(candidate)
    assert not target.exists()


def test_bare_state_dict_and_model_key_both_load(tmp_path, reference_model):
    state = reference_model.state_dict()
    torch.save(state, tmp_path / "bare.pth")
    loaded = load_model(tmp_path / "bare.pth", num_heads=REFERENCE_HEADS)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_config_is_read_from_the_weights(reference_model):
    assert reference_model.config == LPDConfig(embed_dim=64, depth=2, num_heads=4, grid_size=8,
                                               vocab_size=512, num_classes=10)


def test_unknown_width_needs_explicit_heads():
    with pytest.raises(ValueError, match=r"number of attention heads for width 64.*pass num_heads"):
        load_model(REFERENCE / "lpd.pth")


def test_published_widths_get_preset_heads():
    config = LPDConfig.preset("lpd_l", depth=1, grid_size=2, vocab_size=8, num_classes=2)
    with torch.device("meta"):
        state = LPD(config).state_dict()
    assert LPDConfig.from_state_dict(state).num_heads == 16


def test_missing_and_unexpected_keys_are_listed(tmp_path, reference_model):
    state = dict(reference_model.state_dict())
    del state["head.weight"]
    state["extra.bias"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"missing keys \['head.weight'\], unexpected keys \['extra.bias'\]"):
        load_model(tmp_path / "broken.pth", num_heads=REFERENCE_HEADS)


def test_wrong_kind_of_checkpoint_is_named():
    with pytest.raises(ValueError, match="is not an LPD checkpoint.*tokenizer"):
        load_model(REFERENCE / "vq.pt")
    with pytest.raises(ValueError, match="is not a VQ tokenizer checkpoint"):
        load_tokenizer(REFERENCE / "lpd.pth")


def test_missing_file_is_named(tmp_path):
    from lpd_core.errors import CheckpointError
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nowhere.pth.*python -m lpd_core download"):
        load_model(tmp_path / "nowhere.pth")


def test_tokenizer_vocabulary_must_match(reference_model, reference_vq):
    check_pair(reference_model, reference_vq)
    config = LPDConfig(embed_dim=64, depth=1, num_heads=4, grid_size=8, vocab_size=16384, num_classes=10)
    with pytest.raises(ValueError, match=r"model predicts 16384 codes but the tokenizer has 512"):
        check_pair(LPD(config), reference_vq)


def test_vq_images_round_trip_shapes(reference_vq):
    images = torch.rand(2, 128, 128, 3)
    codes = reference_vq.encode_images(images)
    assert codes.shape == (2, 64)
    with torch.no_grad():
        out = reference_vq.decode_images(codes)
    assert out.shape == (2, 128, 128, 3) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    with pytest.raises(SettingError, match=r"the images are 128×100 px, not a multiple of the tokenizer's stride \(16 px\)"):
        reference_vq.encode_images(torch.rand(1, 100, 128, 3))


def test_auto_dtype_is_bf16_on_gpu_and_only_for_wide_networks_on_bf16_cpus(monkeypatch):
    from lpd_core import weights
    published_tokenizer, demo_tokenizer = VQConfig().width, load_pair()[1].config.width
    assert (published_tokenizer, demo_tokenizer) == (512, 64)
    assert weights.resolve_dtype("auto", "cuda", 64) == torch.bfloat16
    assert weights.resolve_dtype("auto", "cuda") == torch.bfloat16
    for native in (True, False):
        monkeypatch.setattr(weights, "cpu_multiplies_bf16", lambda: native)
        wide = torch.bfloat16 if native else torch.float32
        assert weights.resolve_dtype("auto", "cpu", 1024) == wide  # LPD-L
        assert weights.resolve_dtype("auto", "cpu", published_tokenizer) == wide  # LlamaGen's VQ-16
        assert weights.resolve_dtype("auto", "cpu", 256) == torch.float32  # the demo model
        assert weights.resolve_dtype("auto", "cpu", demo_tokenizer) == torch.float32
    with pytest.raises(ValueError, match="choose one of auto, fp32, bf16, fp16"):
        weights.resolve_dtype("fp8")


def test_auto_dtype_loads_small_models_in_fp32_and_follows_the_compute_device():
    model = load_model(REFERENCE / "lpd.pth", dtype="auto", num_heads=REFERENCE_HEADS)
    vq = load_tokenizer(REFERENCE / "vq.pt", dtype="auto")
    assert model.pos_embed.dtype == torch.float32 and vq.quant_conv.weight.dtype == torch.float32
    # loaded on the CPU (ComfyUI's offload device) to compute on a GPU: auto means the GPU's dtype
    model = load_model(REFERENCE / "lpd.pth", dtype="auto", num_heads=REFERENCE_HEADS, run_on="cuda")
    vq = load_tokenizer(REFERENCE / "vq.pt", dtype="auto", run_on="cuda")
    assert model.pos_embed.device.type == "cpu" and model.pos_embed.dtype == torch.bfloat16
    assert vq.quant_conv.weight.device.type == "cpu" and vq.quant_conv.weight.dtype == torch.bfloat16


# bf16 VQ decode against fp32, pixels in [0, 1], two 128 px images of random codes (harder than a
# generated image's). Measured 2026-12-02, torch 2.13.0 CPU: the demo tokenizer (trained) max 0.012,
# mean 0.0010 (a quarter of an 8-bit level); LlamaGen's VQ-16 shape with random weights: max 0.058,
# mean 0.0043 (one 256 px image: max 0.088, mean 0.0048). Random weights have no trained structure to keep
# errors small.
BF16_DECODE_BOUNDS = {"demo": (0.02, 0.002), "published shape": (0.15, 0.008)}  # (max, mean)


@pytest.mark.parametrize("tokenizer", sorted(BF16_DECODE_BOUNDS))
def test_bf16_vq_decode_error_against_fp32_is_bounded(tokenizer):
    if tokenizer == "demo":
        vq = load_pair()[1]
    else:
        torch.manual_seed(0)
        vq = VQModel(VQConfig()).eval()
    side = 128 // vq.stride  # 128 px
    codes = torch.randint(vq.vocab_size, (2, side * side), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = vq.decode_images(codes)
        half = copy.deepcopy(vq).to(torch.bfloat16).decode_images(codes)
    assert half.dtype == torch.float32 and half.shape == full.shape == (2, 128, 128, 3)
    assert ((full > 0) & (full < 1)).float().mean() > 0.9  # not saturated: the error is not clamped away
    error = (half - full).abs()
    worst, mean = BF16_DECODE_BOUNDS[tokenizer]
    assert 0 < error.max() <= worst and error.mean() <= mean
