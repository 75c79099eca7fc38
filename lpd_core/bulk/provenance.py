"""Keeping one folder one run: the settings and weights a run is made of (compared on resume),
software versions, and the lock that keeps a second run out while one is writing."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..errors import ResumeError
from .indices import IMAGES_DIR, present_indices

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".sample-many.lock"
FORMAT = "lpd_core sample-many 2"  # 2: weights identified by the sha256 of all their tensors
SEED_RULE = ("image i: seed = (base_seed + i) mod 2^64, used for its token sampling (its own counter-based "
             "random numbers, lpd_core.sampling.seed_uniforms) and, for locality/random orders, for its generation "
             "order (build_schedule(seed=...))")
CLASS_RULE = "image i: class = classes[i % len(classes)]; 'all' means classes = 0..num_classes-1"
# Settings that may change between a run and its resumption: they do not change any image (the
# weights are compared by content instead of by name or path).
NOT_COMPARED = ("model", "tokenizer")


def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 of every tensor of the module (name, dtype, shape and bytes, in name order), streamed
    one tensor at a time: identifies weights by their full content. Seconds for a published model,
    next to hours of sampling."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def software_versions() -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                "cuda": torch.version.cuda, "lpd_core_git_revision": None, "lpd_core_git_dirty": None}
    try:
        import PIL
        versions["pillow"] = PIL.__version__
    except ImportError:
        pass
    here = Path(__file__).resolve().parent.parent
    try:
        revision = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                                  text=True, timeout=10)
        if revision.returncode == 0:
            versions["lpd_core_git_revision"] = revision.stdout.strip()
            status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."],
                                    capture_output=True, text=True, timeout=10)
            versions["lpd_core_git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return versions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_resumable(folder: Path, settings: dict) -> dict | None:
    """The folder's manifest, if its run is this one (same weights, same settings; else
    ResumeError); None for a folder with no run in it."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        if present_indices(folder):
            raise ResumeError(f"{folder / IMAGES_DIR} holds images but {folder} has no {MANIFEST_NAME}, so "
                              f"their settings are unknown; use an empty --out folder")
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        previous, made_by = manifest["settings"], manifest.get("format")
    except (ValueError, KeyError, TypeError, OSError):
        raise ResumeError(f"{manifest_path} is not a sample-many manifest; use another --out folder") from None
    if made_by != FORMAT:
        raise ResumeError(f"{folder} was made by another version of sample-many ({made_by!r}, this is "
                          f"{FORMAT!r}); use another --out folder")
    changed = [key for key in sorted(set(previous) | set(settings))
               if key not in NOT_COMPARED and previous.get(key) != settings.get(key)]
    if changed:
        key = changed[0]
        what = ("other weights" if key.endswith("_sha256") else "other settings")
        raise ResumeError(f"{folder} was started with {what} ({key}: {previous.get(key)!r} there, "
                          f"{settings.get(key)!r} now{f'; also {len(changed) - 1} more' if len(changed) > 1 else ''}"
                          f"); resume with the same model, tokenizer and settings, or use another --out folder")
    return manifest


class FolderLock:
    """An exclusive lock on an output folder, held by the process that plans and packs a run
    (rank 0): a second sample-many on the same folder is refused at once instead of computing the
    same images. The lock is the kernel's (flock), so a killed holder leaves no stale lock; the
    file names the holder for the error message and is removed on release."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; an exclusive create, which a killed run leaves behind
            self._acquire_by_creation()
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise self._busy(holder) from None
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:  # the previous holder removed it between our open and flock
                same_file = False
            if same_file:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, self._holder().encode())
        self.fd = fd

    def _acquire_by_creation(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = self.path.read_text(errors="replace").strip() or "another process"
            raise self._busy(holder, stale_hint=True) from None
        os.write(fd, self._holder().encode())
        self.fd = fd

    def _holder(self) -> str:
        return f"pid {os.getpid()} on {socket.gethostname()}, since {now()}"

    def _busy(self, holder: str, stale_hint: bool = False) -> ResumeError:
        stale = f"; if that run is gone (killed), delete {self.path}" if stale_hint else ""
        return ResumeError(f"another sample-many run ({holder}) is writing to {self.path.parent}; wait for it to "
                           f"finish (then run the same command to resume or pack), or use another --out folder{stale}")

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiting run then makes a new file
        os.close(self.fd)
        self.fd = None
