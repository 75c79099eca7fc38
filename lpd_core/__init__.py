"""lpd_core: Locality-aware Parallel Decoding (arXiv 2507.01957) in plain PyTorch.

Typical use::

    from lpd_core import load_model, load_tokenizer, build_schedule, generate
    model = load_model("lpd_l_256.pth")
    vq = load_tokenizer("vq_ds16_c2i.pt")
    schedule = build_schedule(model.config.grid_size, steps=20, order="locality", seed=0)
    tokens = generate(model, schedule, labels=[207], cfg=4.8, seeds=0)
    images = vq.decode_images(tokens)  # (B, H, W, 3) in [0, 1]
"""

from .blend import ClassMix, parse_class_mix
from .canvas import wide_canvas
from .generate import DecodeStep, generate
from .model import LPD, PRESETS, LPDConfig
from .morph import class_morph
from .schedule import Schedule, build_schedule, group_sizes_for
from .variation import vary
from .vq import VQConfig, VQModel
from .weights import check_pair, load_model, load_tokenizer, read_checkpoint

__all__ = [
    "DecodeStep", "generate", "LPD", "LPDConfig", "PRESETS", "Schedule", "build_schedule",
    "group_sizes_for", "VQConfig", "VQModel", "check_pair", "load_model", "load_tokenizer",
    "read_checkpoint", "ClassMix", "parse_class_mix", "vary", "wide_canvas", "class_morph",
]
