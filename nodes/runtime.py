"""What the nodes need from ComfyUI's runtime: model folders, devices and dtypes, memory management,
progress bars with previews, interruption.

Inside ComfyUI every helper goes through ComfyUI's own modules (imported lazily, at call time, so
that importing the pack stays cheap). Outside a ComfyUI process (a script, or the unit tests without
COMFYUI_DIR) the same helpers fall back to plain behaviour: one models folder ($LPD_MODELS_DIR or
~/.cache/lpd_core), the CPU, no progress display, no interruption.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path

FOLDER_NAME = "lpd"  # models/lpd, also the key for extra_model_paths.yaml
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
DTYPE_CHOICES = ["auto", "bf16", "fp16", "fp32"]


_MISSING: set[str] = set()


def _comfy(module: str):
    """A ComfyUI module, or None outside ComfyUI (a failed import is not retried)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    if module in _MISSING:
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        _MISSING.add(module)
        return None


def in_comfyui() -> bool:
    return _comfy("folder_paths") is not None


# ------------------------------------------------------------------------------------------ folders
def register_model_folder() -> None:
    """Add <ComfyUI models>/lpd to ComfyUI's model folders (keeps paths from extra_model_paths.yaml)."""
    folder_paths = _comfy("folder_paths")
    if folder_paths is None:
        return
    folder_paths.add_model_folder_path(FOLDER_NAME, os.path.join(folder_paths.models_dir, FOLDER_NAME))


def model_folders() -> list[Path]:
    """Every folder searched for checkpoints; downloads go to the first."""
    folder_paths = _comfy("folder_paths")
    if folder_paths is not None and FOLDER_NAME in folder_paths.folder_names_and_paths:
        return [Path(p) for p in folder_paths.get_folder_paths(FOLDER_NAME)]
    from lpd_core.checkpoints import models_dir
    return [models_dir()]


def download_folder() -> Path:
    return model_folders()[0]


def _visible(relative: str) -> bool:
    parts = relative.replace("\\", "/").split("/")
    return relative.endswith(CHECKPOINT_SUFFIXES) and not any(p.startswith(".") for p in parts)


def list_checkpoint_files() -> list[str]:
    """Checkpoint files in the model folders, as names relative to their folder ('a/b.safetensors').
    Hidden folders (a download's temporary files) are skipped."""
    folder_paths = _comfy("folder_paths")
    if folder_paths is not None and FOLDER_NAME in folder_paths.folder_names_and_paths:
        names = folder_paths.get_filename_list(FOLDER_NAME)
    else:
        names = []
        for folder in model_folders():
            if folder.is_dir():
                names += [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return sorted({name for name in names if _visible(name)})


def checkpoint_path(name: str) -> Path | None:
    """The file for a name from `list_checkpoint_files`, or None."""
    if not _visible(name) or ".." in Path(name).parts:
        return None
    for folder in model_folders():
        path = folder / name
        if path.is_file():
            return path
    return None


# ------------------------------------------------------------------------------------------ devices
def torch_device():
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    import torch
    return torch.device("cpu")


def offload_device():
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.unet_offload_device()
    import torch
    return torch.device("cpu")


def intermediate_device():
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.intermediate_device()
    import torch
    return torch.device("cpu")


def resolve_dtype(choice: str, kind: str = "lpd"):
    """A dtype widget value → torch dtype. "auto" follows ComfyUI's choice for the compute device
    (its --bf16-unet/--fp16-vae style flags included): bf16 or fp16 where ComfyUI would use them for a
    diffusion model (LPD) or a VAE (the tokenizer), fp32 on the CPU."""
    import torch
    from lpd_core.weights import resolve_dtype as library_dtype
    if choice != "auto":
        return library_dtype(choice)
    mm = _comfy("comfy.model_management")
    if mm is None:
        return torch.float32
    device = mm.get_torch_device()
    if kind == "vq":
        return mm.vae_dtype(device, [torch.bfloat16, torch.float32])
    return mm.unet_dtype(device, supported_dtypes=[torch.bfloat16, torch.float16, torch.float32])


class Managed:
    """A loaded torch module that takes part in ComfyUI's memory management.

    Inside ComfyUI the module is wrapped in a `comfy.model_patcher.ModelPatcher`; `ready()` calls
    `comfy.model_management.load_models_gpu`, which frees room by unloading other models when memory
    is short and moves this one onto the compute device. ComfyUI may move it back to the offload
    device later (memory pressure, /free); the next `ready()` brings it back.
    Outside ComfyUI `ready()` just returns the module on the CPU.
    """

    def __init__(self, module, name: str, kind: str, path: Path | None = None):
        self.module = module
        self.name = name
        self.kind = kind  # "lpd" or "vq"
        self.path = path
        self.patcher = None
        patcher_module = _comfy("comfy.model_patcher")
        if patcher_module is not None:
            self.patcher = patcher_module.ModelPatcher(module, load_device=torch_device(),
                                                       offload_device=offload_device())

    def ready(self):
        """The module on its compute device, loaded through ComfyUI's model management."""
        if self.patcher is None:
            return self.module
        mm = _comfy("comfy.model_management")
        mm.load_models_gpu([self.patcher], force_full_load=True)
        device = self.patcher.load_device
        # Parameters held by the top module itself (position embeddings, class embeddings) are only
        # moved by a full load; with --novram ComfyUI loads partially, so finish the move here.
        if any(p.device != device for p in self.module.parameters()):
            self.module.to(device)
        return self.module

    def __repr__(self):
        return f"<{self.kind} {self.name!r}>"


@contextlib.contextmanager
def fast_decoding(module):
    """Yields whether to take generate's fast path (CUDA graphs) for this LPD module: on a GPU.
    Its graphs and KV cache are freed on leaving, since ComfyUI's memory management does not see
    them; capturing again on the next run costs a few milliseconds."""
    from lpd_core.fast import on_by_default, release_fast_state
    try:
        yield on_by_default(module.pos_embed.device)
    finally:
        release_fast_state(module)


# ------------------------------------------------------------------------------------------ progress
class _NoProgress:
    def update_absolute(self, value, total=None, preview=None):
        pass


def progress_bar(total: int):
    """ComfyUI's ProgressBar (shows on the executing node; its hook also raises on /interrupt)."""
    utils = _comfy("comfy.utils")
    return utils.ProgressBar(total) if utils is not None else _NoProgress()


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException when the user pressed Cancel."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


def preview_max_size() -> int:
    cli_args = _comfy("comfy.cli_args")
    return int(getattr(cli_args.args, "preview_size", 512)) if cli_args is not None else 512
