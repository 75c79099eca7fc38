"""LPDModelLoader and LPDTokenizerLoader: a file, a published name (downloaded on first use) or the
bundled demo → a loaded module that takes part in ComfyUI's memory management."""

from __future__ import annotations

import json
from pathlib import Path

from . import runtime
from .schema import CATEGORY, Model, Tokenizer, io

DOWNLOAD_SUFFIX = " (download)"


def published(kind: str) -> dict:
    """The registry of published checkpoints of a kind ("lpd" or "vq"), by name."""
    from lpd_core import hub
    return hub.LPD_MODELS if kind == "lpd" else hub.TOKENIZERS


def demo_name() -> str:
    from lpd_core.checkpoints import DEMO
    return DEMO


def demo_path(kind: str) -> Path:
    """The bundled demo's model or tokenizer file; it may be absent in a checkout."""
    from lpd_core.checkpoints import DEMO_MODEL_PATH, DEMO_TOKENIZER_PATH
    return DEMO_MODEL_PATH if kind == "lpd" else DEMO_TOKENIZER_PATH


# ------------------------------------------------------------------------------------------ file kinds
_KIND_CACHE: dict[tuple[str, float, int], str | None] = {}


def file_kind(path: Path) -> str | None:
    """"lpd", "vq" or None (unknown without unpickling: .pth/.pt files) from a file's header."""
    if path.suffix != ".safetensors":
        return None
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    if key not in _KIND_CACHE:
        _KIND_CACHE[key] = _safetensors_kind(path)
    return _KIND_CACHE[key]


def _safetensors_kind(path: Path) -> str | None:
    from lpd_core.errors import CheckpointError
    from lpd_core.weights import checkpoint_kind, safetensors_header
    try:
        metadata, shapes = safetensors_header(path)
    except CheckpointError:  # not a usable file: the loader reports it when it is picked
        return None
    return checkpoint_kind(metadata, shapes)


def _listed_kind(name: str) -> str | None:
    first = name.replace("\\", "/").split("/")[0]
    if first in published("lpd"):
        return "lpd"
    if first in published("vq"):
        return "vq"
    path = runtime.checkpoint_path(name)
    kind = file_kind(path) if path is not None else None
    if kind is None and "vq" in Path(name).name.lower():
        kind = "vq"
    return kind


def local_published(name: str) -> Path | None:
    """A published checkpoint already on disk in one of the model folders (downloaded, or put there by
    hand as described in docs/checkpoints.md), or None."""
    from lpd_core import hub
    from lpd_core.errors import CheckpointError
    for folder in runtime.model_folders():
        try:
            found = hub.resolve_local(name, folder)
        except CheckpointError:  # several candidate files: resolve() lets the download code report it
            return None
        if found is not None:
            return found
    return None


def choices(kind: str) -> list[str]:
    """Widget entries, one per checkpoint: the demo (when bundled), published names ("<name> (download)"
    until they are on disk), then the other files in the model folders that can be of this kind. A
    published checkpoint on disk is listed by its name only, not also as its file."""
    entries = [demo_name()] if demo_path(kind).is_file() else []
    on_disk = set()
    for name in published(kind):
        local = local_published(name)
        entries.append(name if local else name + DOWNLOAD_SUFFIX)
        if local:
            on_disk.add(local.resolve())
    for name in runtime.list_checkpoint_files():
        path = runtime.checkpoint_path(name)
        if path is not None and path.resolve() in on_disk:
            continue
        if _listed_kind(name) in (kind, None):
            entries.append(name)
    return entries


def plain_name(choice: str) -> str:
    return choice[: -len(DOWNLOAD_SUFFIX)] if choice.endswith(DOWNLOAD_SUFFIX) else choice


def validate_choice(choice: str, kind: str) -> bool | str:
    """True, or why the value cannot be loaded. A published name is valid with or without
    " (download)", so workflows keep working after the download."""
    if choice is None:  # fed by a link: checked when the node runs
        return True
    name = plain_name(choice)
    if name in published(kind):
        return True
    if name == demo_name():
        return True if demo_path(kind).is_file() else (
            "the demo model is not in this copy of the pack (lpd_core/data/demo/ is missing); "
            "reinstall the pack or pick another model")
    if runtime.checkpoint_path(name) is not None:
        return True
    folders = ", ".join(str(f) for f in runtime.model_folders())
    return (f"no checkpoint named {choice!r}: put .safetensors/.pth files in {folders} (models/lpd) "
            f"and press R to refresh, or pick a published name ({', '.join(published(kind))})")


def resolve(choice: str, kind: str) -> Path:
    """The checkpoint file for a widget value, downloading a published one on first use (progress on
    the node)."""
    from lpd_core.checkpoints import find_checkpoint
    from lpd_core.errors import CheckpointError
    name = plain_name(choice)
    if name == demo_name():
        path = demo_path(kind)
        if not path.is_file():
            raise CheckpointError(validate_choice(choice, kind))
        return path
    if name in published(kind):
        local = local_published(name)
        if local is not None:
            return local
        bar = runtime.progress_bar(100)

        def progress(done, total):
            if total:
                bar.update_absolute(min(done, total), total)

        folder = runtime.download_folder()
        folder.mkdir(parents=True, exist_ok=True)
        return find_checkpoint(name, folder, progress=progress, tokenizer=kind == "vq")
    path = runtime.checkpoint_path(name)
    if path is None:
        raise CheckpointError(validate_choice(choice, kind))
    return path


# ------------------------------------------------------------------------------------------ nodes
_DTYPE_TOOLTIP = ("Weight precision. auto: bf16 on a GPU; on the CPU bf16 for the published models and "
                  "tokenizer where the CPU has bf16 instructions (AMX, AVX512-BF16), else fp32 (the demo is "
                  "always fp32). Same seed + same dtype + same device = same image.")


def _dtype_input():
    return io.Combo.Input("dtype", options=runtime.DTYPE_CHOICES, default="auto", tooltip=_DTYPE_TOOLTIP)


class LPDModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDModelLoader", display_name="LPD Model Loader", category=CATEGORY,
            description=("Loads an LPD generator. Published models (LPD-L/XL/XXL, 256 and 512 px) download into "
                         "models/lpd on first use; 'demo' is a small bundled model of 10 shape classes that runs "
                         "offline. The model joins ComfyUI's memory management like any checkpoint."),
            inputs=[
                io.Combo.Input("model_name", options=choices("lpd"), tooltip=(
                    "A checkpoint in models/lpd (.safetensors, .pth or .pt), a published name ('(download)' = "
                    "not on disk yet: it downloads from Hugging Face when the node first runs, with progress "
                    "on the node), or 'demo' (bundled, offline). A published checkpoint on disk is listed "
                    "once, by its name.")),
                _dtype_input(),
            ],
            outputs=[Model.Output("model", tooltip="The LPD transformer, ready for LPD Schedule and LPD Sampler.")],
        )

    @classmethod
    def validate_inputs(cls, model_name):
        return validate_choice(model_name, "lpd")

    @classmethod
    def execute(cls, model_name, dtype="auto"):
        from lpd_core.weights import load_model
        path = resolve(model_name, "lpd")
        module = load_model(path, device=runtime.offload_device(), dtype=dtype, run_on=runtime.torch_device())
        return io.NodeOutput(runtime.Managed(module, plain_name(model_name), "lpd", path))


class LPDTokenizerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDTokenizerLoader", display_name="LPD Tokenizer Loader", category=CATEGORY,
            description=("Loads the VQ tokenizer that turns token grids into images and back: LlamaGen's VQ-16 "
                         "(vq_ds16_c2i, used by every published LPD model; downloads on first use) or the "
                         "demo's."),
            inputs=[
                io.Combo.Input("tokenizer_name", options=choices("vq"), tooltip=(
                    "A tokenizer checkpoint in models/lpd, 'vq_ds16_c2i' (LlamaGen VQ-16 for the published "
                    "models; downloads on first use) or 'demo' (the demo model's own tokenizer).")),
                _dtype_input(),
            ],
            outputs=[Tokenizer.Output("tokenizer", tooltip=(
                "The VQ tokenizer, for LPD Decode, LPD Encode and the sampler's live preview."))],
        )

    @classmethod
    def validate_inputs(cls, tokenizer_name):
        return validate_choice(tokenizer_name, "vq")

    @classmethod
    def execute(cls, tokenizer_name, dtype="auto"):
        from lpd_core.weights import load_tokenizer
        path = resolve(tokenizer_name, "vq")
        module = load_tokenizer(path, device=runtime.offload_device(), dtype=dtype, run_on=runtime.torch_device())
        return io.NodeOutput(runtime.Managed(module, plain_name(tokenizer_name), "vq", path))


NODES = [LPDModelLoader, LPDTokenizerLoader]


# ------------------------------------------------------------------------------------------ class names
def class_names_for_choice(choice: str) -> dict:
    """Class names for the web UI's class picker, from a model widget value, without loading weights:
    {"names": [...] or None, "aliases": [[...], ...] or None, "num_classes": int or None}.
    Published models and .pth files: ImageNet-1k; .safetensors files: their stored names, else
    ImageNet's when they have 1000 classes, else just the count."""
    from lpd_core.errors import CheckpointError
    from lpd_core.weights import CLASS_NAMES_METADATA_KEY, safetensors_header
    name = plain_name(choice or "")
    path = None
    if name == demo_name():
        path = demo_path("lpd")
    elif name not in published("lpd"):
        path = runtime.checkpoint_path(name)
    if path is None or not path.is_file() or path.suffix != ".safetensors":
        return imagenet_classes()
    try:
        metadata, shapes = safetensors_header(path)
    except CheckpointError:  # not a usable file: the loader says why when it runs
        return {"names": None, "aliases": None, "num_classes": None}
    count = shapes["class_emb.weight"][0] if "class_emb.weight" in shapes else None
    try:
        names = json.loads(metadata[CLASS_NAMES_METADATA_KEY]) if CLASS_NAMES_METADATA_KEY in metadata else None
    except ValueError:  # damaged metadata: the loader says so when it runs
        names = None
    if isinstance(names, list):
        return {"names": names, "aliases": None, "num_classes": count or len(names)}
    if count == 1000:
        return imagenet_classes()
    return {"names": None, "aliases": None, "num_classes": count}


def imagenet_classes() -> dict:
    from lpd_core.classes import class_names, class_synonyms
    names = class_names()
    return {"names": names, "aliases": [class_synonyms(i)[1:] for i in range(len(names))], "num_classes": 1000}
