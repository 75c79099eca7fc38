"""From what a user names (a registry name, a path, a folder, or nothing) to loaded models, class
names and the generation settings that suit them.

Shared by the CLI and the ComfyUI nodes, so both resolve names and defaults the same way.

The modules that build models (and so torch) are imported inside the functions that build one, for
start-up time: finding a checkpoint needs no torch, and the command line finds the model's file
(downloading it if needed) before it imports torch.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import classes, hub
from .errors import CheckpointError
from .files import as_path
from .settings import GenerationSettings, check_integer, check_settings

if TYPE_CHECKING:  # the types only; the modules are imported where a model is built (see above)
    from .model import LPD
    from .vq import VQModel

DEMO = "demo"  # the bundled model trained on procedural shapes: works offline
DEMO_DIR = Path(__file__).resolve().parent / "data" / "demo"
DEMO_MODEL_PATH = DEMO_DIR / "lpd_shapes.safetensors"
DEMO_TOKENIZER_PATH = DEMO_DIR / "vq_shapes.safetensors"


def models_dir(explicit=None) -> Path:
    """Where downloads go: the argument, else $LPD_MODELS_DIR, else ~/.cache/lpd_core."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("LPD_MODELS_DIR") or Path.home() / ".cache" / "lpd_core")


def find_checkpoint(spec: str | os.PathLike, folder=None, progress: Callable | None = None,
                    tokenizer: bool = False) -> Path:
    """A checkpoint file for `spec`: an existing file; a folder holding exactly one checkpoint;
    "demo" (the bundled model, or its tokenizer); or a registry name (found in `folder`, or
    downloaded there with `progress`)."""
    path = as_path(spec, "checkpoint", CheckpointError)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in hub.CHECKPOINT_SUFFIXES and p.is_file())
        if len(found) != 1:
            raise CheckpointError(f"folder {path} holds {len(found)} checkpoint files "
                             f"({', '.join(p.name for p in found) or 'none'}); name the file instead")
        return found[0]
    if str(spec) == DEMO:
        return DEMO_TOKENIZER_PATH if tokenizer else DEMO_MODEL_PATH
    try:
        hub.get_checkpoint(str(spec))
    except CheckpointError:
        raise CheckpointError(
            f"no file or folder {spec!r}, and it is not a known model name (known: {DEMO}, "
            f"{', '.join(hub.CHECKPOINTS)}); check the path, or use one of those names") from None
    return hub.download(str(spec), models_dir(folder), progress=progress)


def published_entry(model: LPD) -> hub.LPDCheckpoint | None:
    """The registry entry whose architecture this model has (width and grid identify them)."""
    from .model import PRESETS  # with a model at hand, torch is imported already

    config = model.config
    for entry in hub.LPD_MODELS.values():
        preset = PRESETS[entry.preset]
        if (preset["embed_dim"], preset["depth"], entry.image_size // hub.TOKENIZER_STRIDE,
                classes.IMAGENET_NUM_CLASSES) == \
                (config.embed_dim, config.depth, config.grid_size, config.num_classes):
            return entry
    return None


def generation_defaults(model: LPD, steps: int | None = None) -> GenerationSettings:
    """Settings the model was evaluated with: stored in the file (the demo model), the published
    evaluation settings (published architectures), or plain ones (20 steps or fewer, cfg 4)."""
    stored = model.generation_defaults
    if stored is not None:
        return stored if steps is None else replace(stored, steps=steps)
    entry = published_entry(model)
    if entry is not None:
        steps = entry.default_steps if steps is None else steps
        return GenerationSettings(steps, hub.default_cfg(entry, steps), entry.cfg_schedule, entry.temperature,
                                  entry.top_k, entry.top_p, entry.repulsion)
    steps = min(20, model.config.num_tokens) if steps is None else check_integer("steps", steps, 1, model.config.num_tokens)
    return GenerationSettings(steps, 4.0)


def resolve_settings(model: LPD, *, steps: int | None = None, cfg: float | None = None,
                     cfg_schedule: str | None = None, temperature: float | None = None, top_k: int | None = None,
                     top_p: float | None = None, repulsion: int | None = None,
                     steps_up_to_tokens: bool = False) -> GenerationSettings:
    """The settings to generate with: each one given, or else the model's default for that step
    count (`generation_defaults`). None means "not given"; every value is checked
    (`settings.check_settings`) before any work starts.

    `steps_up_to_tokens`: where steps count the groups of the tokens to generate and are capped by
    them (editing, variations, canvas tiles), any step count ≥ 1 is taken and more steps than the
    model has tokens mean one per token."""
    num_tokens = model.config.num_tokens
    if steps is not None:
        steps = check_integer("steps", steps, 1, None if steps_up_to_tokens else num_tokens)
        steps = min(steps, num_tokens)
    defaults = generation_defaults(model, steps)
    given = dict(cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                 repulsion=repulsion)
    return check_settings(replace(defaults, **{k: v for k, v in given.items() if v is not None}), num_tokens)


def load_pair(model_spec=None, tokenizer_spec=None, folder=None, device="cpu", dtype="fp32",
              progress_for: Callable[[str], Callable] | None = None) -> tuple[LPD, VQModel]:
    """Load a model and its tokenizer. No model: the demo model. No tokenizer: the one named in
    the model's file (the demo's own), else LlamaGen's VQ-16 as the published models use."""
    from .weights import check_pair, load_model, load_tokenizer

    progress = progress_for or (lambda name: None)
    model_spec = model_spec or DEMO
    model = load_model(find_checkpoint(model_spec, folder, progress(str(model_spec))), device, dtype)
    tokenizer_spec = tokenizer_spec or model.tokenizer_name
    tokenizer = load_tokenizer(find_checkpoint(tokenizer_spec, folder, progress(str(tokenizer_spec)), tokenizer=True),
                               device, dtype)
    check_pair(model, tokenizer)
    return model, tokenizer
