"""lpd_core: Locality-aware Parallel Decoding (arXiv 2507.01957) in plain PyTorch.

Typical use::

    from lpd_core import load_model, load_tokenizer, build_schedule, generate
    model = load_model("lpd_l_256.pth")
    vq = load_tokenizer("vq_ds16_c2i.pt")
    schedule = build_schedule(model.config.grid_size, steps=20, order="locality", seed=0)
    tokens = generate(model, schedule, labels=[207], cfg=4.8, seeds=0)
    images = vq.decode_images(tokens)  # (B, H, W, 3) in [0, 1]

The names below are imported on first use, not with the package: `import lpd_core` (and so the
command line, `python -m lpd_core`) imports no torch, so a mistake in a command's arguments is
answered before torch's seconds of start-up.
"""

import sys
from importlib import import_module
from types import ModuleType

# public name -> the module of lpd_core that defines it
_EXPORTS = {
    "ClassMix": "blend", "parse_class_mix": "blend", "wide_canvas": "canvas", "DecodeStep": "generate",
    "generate": "generate", "LPD": "model", "LPDConfig": "model", "PRESETS": "model", "Schedule": "schedule",
    "build_schedule": "schedule", "group_sizes_for": "schedule", "vary": "variation", "VQConfig": "vq",
    "VQModel": "vq", "check_pair": "weights", "load_model": "weights", "load_tokenizer": "weights",
    "read_checkpoint": "weights", "class_morph": "morph",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(ModuleType):
    # Importing a submodule binds it to its package under its name; lpd_core.generate (the module)
    # would then hide `generate` (the function) from `from lpd_core import generate`. An exported
    # name keeps meaning the export; the submodule stays reachable as sys.modules["lpd_core.generate"].
    def __setattr__(self, name, value):
        if not (name in _EXPORTS and isinstance(value, ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
