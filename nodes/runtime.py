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
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("lpd")

FOLDER_NAME = "lpd"  # models/lpd, also the key for extra_model_paths.yaml
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
    # The loaders offer every file the library's loaders read (lpd_core.hub.CHECKPOINT_SUFFIXES).
    from lpd_core.hub import CHECKPOINT_SUFFIXES
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


def release_decoder(module) -> None:
    """Drop what the fast path keeps on an LPD module (KV cache, CUDA graphs); the next run rebuilds it."""
    from lpd_core.fast import release_fast_state
    release_fast_state(module)


def _patcher_class():
    """ComfyUI's ModelPatcher, extended so that whatever the fast path keeps on our module is released
    whenever ComfyUI takes the module off its device: fully (unload, /free, making room for another
    model: `detach(unpatch_all=True)`) or in part (`partially_unload`). Both methods exist with these
    meanings in ComfyUI 0.8.0 and 0.33.0 (tests/test_nodes.py checks them on both). Built at call
    time: comfy.model_patcher is only importable in ComfyUI."""
    patcher_module = _comfy("comfy.model_patcher")
    if patcher_module is None:
        return None

    class LPDModelPatcher(patcher_module.ModelPatcher):
        def detach(self, unpatch_all=True):
            # load_models_gpu re-attaches a model that is already loaded with detach(unpatch_all=False):
            # its weights stay where they are, so the decoder stays valid. Every real unload unpatches.
            if unpatch_all:
                release_decoder(self.model)
            return super().detach(unpatch_all)

        def partially_unload(self, *args, **kwargs):
            release_decoder(self.model)
            return super().partially_unload(*args, **kwargs)

    return LPDModelPatcher


class Managed:
    """A loaded torch module that takes part in ComfyUI's memory management.

    Inside ComfyUI the module is wrapped in a ModelPatcher (`_patcher_class`); `ready()` calls
    `comfy.model_management.load_models_gpu` with the memory the run needs beside the weights, which
    frees room by unloading other models when memory is short and moves this one onto the compute
    device. ComfyUI may move it back to the offload device later (memory pressure, /free); the next
    `ready()` brings it back. Outside ComfyUI `ready()` just returns the module on the CPU.
    """

    def __init__(self, module, name: str, kind: str, path: Path | None = None):
        self.module = module
        self.name = name
        self.kind = kind  # "lpd" or "vq"
        self.path = path
        patcher_class = _patcher_class()
        self.patcher = None if patcher_class is None else patcher_class(
            module, load_device=torch_device(), offload_device=offload_device())

    @property
    def device(self):
        return next(self.module.parameters()).device

    def ready(self, memory_required: int = 0):
        """The module on its compute device, loaded through ComfyUI's model management with
        `memory_required` bytes of working memory kept free beside it (`load_together`)."""
        load_together([self], memory_required)
        return self.module

    def __repr__(self):
        return f"<{self.kind} {self.name!r}>"


def load_together(managed: list[Managed], memory_required: int = 0) -> None:
    """Put modules on their compute device in one `load_models_gpu` call, with `memory_required`
    bytes of working memory kept free beside all of them: ComfyUI makes room for everything at once,
    so loading the second module cannot unload the first. Outside ComfyUI nothing moves."""
    patchers = [m.patcher for m in managed if m.patcher is not None]
    if not patchers:
        return
    mm = _comfy("comfy.model_management")
    mm.load_models_gpu(patchers, memory_required=int(memory_required), force_full_load=True)
    for m in managed:
        # Parameters held by the top module itself (position embeddings, class embeddings) are only
        # moved by a full load; with --novram ComfyUI loads partially, so finish the move here.
        device = m.patcher.load_device
        if any(p.device != device for p in m.module.parameters()):
            m.module.to(device)


def decoder_memory(model: Managed, batch: int, group_sizes, cfg: float) -> int:
    """Bytes the fast path keeps beside the weights for this run (KV cache + graph pool), from the
    library's estimate; what the sampler asks ComfyUI to keep free when it loads the model."""
    from lpd_core.fast import decoder_memory_bytes, on_by_default, step_rows
    module = model.module
    if not on_by_default(torch_device()):
        return 0
    guided = cfg != 1.0
    return decoder_memory_bytes(module.config, batch * (2 if guided else 1), module.pos_embed.dtype,
                                step_rows(group_sizes), guided)


@contextlib.contextmanager
def fast_decoding(module):
    """Yields whether to take generate's fast path (CUDA graphs) for this LPD module: on a GPU.

    The captured decoder stays on the module after the run, so the next run of the same batch on the
    same device replays the graphs instead of capturing them again; the library rebuilds it when the
    batch, dtype or weights' device change. It is released when ComfyUI unloads or moves the module
    (`LPDModelPatcher`), and here when the run fails or is interrupted."""
    from lpd_core.fast import on_by_default
    try:
        yield on_by_default(module.pos_embed.device)
    except BaseException:
        release_decoder(module)
        raise


# ------------------------------------------------------------------------------------------ memory
def free_memory(device) -> int | None:
    """Bytes free on a device: ComfyUI's count inside ComfyUI, else torch's (CUDA) or the OS's (CPU,
    where it can say); None when unknown."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return int(mm.get_free_memory(device))
    import torch
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def batch_that_fits(count: int, per_item: int, device) -> int:
    """How many items of `per_item` bytes to process at once on `device`: all when they fit in its
    free memory (`free_memory`), else as many as fit (at least 1)."""
    free = free_memory(device)
    if free is None:
        return count
    return max(1, min(count, free // max(1, per_item)))


# ------------------------------------------------------------------------------------------ progress
class _NoProgress:
    def update_absolute(self, value, total=None, preview=None):
        pass


class _Progress:
    """Progress (and preview frames) of the executing node through ComfyUI's V3 progress API
    (`ComfyAPISync().execution.set_progress`). Unlike the old ProgressBar hook it does not check for
    Cancel: the decode loops call `throw_if_interrupted` at every step."""

    def __init__(self, api, total: int):
        self.api = api
        self.total = total

    def update_absolute(self, value, total=None, preview=None):
        self.api.execution.set_progress(value, total or self.total, preview_image=preview)


def progress_bar(total: int):
    """The executing node's progress display; a no-op outside a ComfyUI run. `update_absolute`'s
    `preview` is a PIL image (sent as JPEG, scaled to ComfyUI's --preview-size)."""
    executing = _comfy("comfy_execution.utils")
    api = _comfy("comfy_api.v0_0_2")
    if executing is None or api is None or executing.get_executing_context() is None:
        return _NoProgress()
    return _Progress(api.ComfyAPISync(), total)


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException when the user pressed Cancel."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


# ------------------------------------------------------------------------------------------ messages
MESSAGE_EVENT = "lpd.message"  # web/lpd_messages.js shows these as toasts on the canvas


def notify(message: str, summary: str = "LPD") -> None:
    """A warning the user should see: logged, and inside a ComfyUI server pushed to the browser, where
    the pack's web extension shows it as a toast (the core frontend shows a node's `ui.text` only for
    a few core nodes)."""
    log.warning("%s: %s", summary, message)
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return
    executing = _comfy("comfy_execution.utils")
    context = executing.get_executing_context() if executing is not None else None
    instance.send_sync(MESSAGE_EVENT, {"summary": summary, "detail": message,
                                       "node": context.node_id if context is not None else None},
                       instance.client_id)
