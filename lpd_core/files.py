"""Writing files so that nothing half-written is ever where a reader looks, checking output paths
before any work is done, and telling what a checkpoint file holds before anything reads it.

Every file the library and the CLI write (images, grids, order maps, converted checkpoints,
sample-many's PNGs, manifest and .npz) goes through `atomic_write`: the bytes go to a hidden
temporary name in the destination's folder, which is renamed onto the destination only once it is
complete. A crash or Ctrl-C leaves the old file (if any) untouched and removes the temporary.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
import zipfile
from pathlib import Path
from typing import Callable

from .errors import CheckpointError, OutputError

TEMP_SUFFIX = ".tmp"  # temporary files are named .<name>.<pid>.<random>.tmp


def temp_path(path: Path) -> Path:
    """A hidden temporary name next to `path` (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """write(temporary) then rename it onto `path` (its folder is created if needed). If anything,
    Ctrl-C included, stops it, the temporary goes away and `path` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temp_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def is_temp_file(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _probe(folder: Path, what: str, path: Path) -> None:
    """Create and remove a hidden file in `folder`: catches read-only folders and file systems."""
    probe = temp_path(folder / path.name)
    try:
        probe.touch(exist_ok=False)
    except OSError as error:
        raise OutputError(f"cannot write the {what} {path}: {folder} does not accept new files "
                          f"({error.strerror or error}); choose a folder you can write to") from None
    probe.unlink(missing_ok=True)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def as_path(path, what: str, error=OutputError) -> Path:
    """A path given as text or a Path that the system can look up; `error` (naming `what`) for
    anything else: not a path, a name too long, a loop of symbolic links, a folder that cannot be
    searched. A path that does not exist (yet) is fine."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise error(f"the {what} is named by its path (text or a pathlib.Path), got {path!r}")
    path = Path(path)
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):  # not there (yet), or under a file: the callers say which
        pass
    except OSError as failure:  # pathlib's exists()/is_dir() raise these instead of answering
        raise error(f"the {what} {_shortened(path)} cannot be used: {failure.strerror or failure}; "
                    f"check the path, or choose another") from None
    return path


def _shortened(path: Path, keep: int = 120) -> str:
    """`path` for a message: whole, or its start and end around "…" when it is very long."""
    text = str(path)
    return text if len(text) <= keep else f"{text[:keep // 2]}…{text[-keep // 2:]}"


def check_writable(path, what: str = "output") -> Path:
    """`path` can be created or replaced as a file: not a folder, and its folder (or the nearest
    folder above it that exists) accepts new files. Nothing is left behind."""
    path = as_path(path, what)
    if path.is_dir():
        raise OutputError(f"the {what} {path} is a folder; give a file name inside it, e.g. {path / 'out.png'}")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise OutputError(f"cannot write the {what} {path}: {folder} is a file, not a folder; choose another path")
    _probe(folder, what, path)
    return path


def check_output_folder(folder, what: str = "output folder") -> Path:
    """`folder` is a folder, or can be made one, that accepts new files (nothing is created here)."""
    folder = as_path(folder, what)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"the {what} {folder} cannot be used: {existing} is a file; give a folder (new or "
                          f"existing) instead")
    _probe(existing, what, folder)
    return folder


# What to do about a damaged or missing checkpoint file.
GET_AGAIN = ("get the file again: published models with python -m lpd_core download <name> (e.g. lpd_l_256, "
             "vq_ds16_c2i), your own by copying it again")
_MAX_HEADER = 100_000_000  # safetensors refuses longer headers too
_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
          b"RIFF": "a RIFF file (WebP image or audio)", b"%PDF": "a PDF document", b"<": "an HTML or XML page",
          b"{": "a JSON file", b"version https://git-lfs": "a Git LFS pointer, not the file it points to"}


def checkpoint_format(path) -> str:
    """What a checkpoint file holds, read from its first bytes and its structure: "safetensors",
    "torch-zip" (torch.save's format) or "torch-pickle" (the legacy one). CheckpointError, naming
    the file and what to do, for a missing, empty, truncated or non-checkpoint file."""
    path = as_path(path, "checkpoint", CheckpointError)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; name the .safetensors or .pth file "
                              f"inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; check the path, or {GET_AGAIN}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), e.g. from an interrupted download or copy; {GET_AGAIN}")
    try:
        with open(path, "rb") as f:
            return _format_of(path, f, size)
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read ({error.strerror or error}); check its permissions") from None


def _format_of(path: Path, f, size: int) -> str:
    head = f.read(64)
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then a JSON header
        (header_length,) = struct.unpack("<Q", head[:8])
        if header_length > _MAX_HEADER:
            raise CheckpointError(f"{path} has a damaged safetensors header ({header_length} bytes long); {GET_AGAIN}")
        if 8 + header_length > size:
            raise CheckpointError(f"{path} is truncated: its safetensors header alone needs "
                                  f"{8 + header_length} bytes, the file has {size}; {GET_AGAIN}")
        f.seek(8)
        try:
            header = json.loads(f.read(header_length))
            end = max([int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"],
                      default=0)
        except (ValueError, KeyError, TypeError, IndexError):
            raise CheckpointError(f"{path} has a damaged safetensors header; {GET_AGAIN}") from None
        if 8 + header_length + end != size:
            raise CheckpointError(f"{path} is {'truncated' if 8 + header_length + end > size else 'damaged'}: "
                                  f"its header describes {8 + header_length + end} bytes, the file has "
                                  f"{size}; {GET_AGAIN}")
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            raise CheckpointError(f"{path} is truncated or damaged (its zip directory cannot be read); "
                                  f"{GET_AGAIN}") from None
        if not any(name.endswith("/data.pkl") for name in names):  # what torch.save writes into its zip
            raise CheckpointError(f"{path} is not a checkpoint: it is a zip archive without a PyTorch checkpoint in "
                                  f"it (expected a .safetensors file or a PyTorch .pth/.pt file); pass the model or "
                                  f"tokenizer file instead")
        return "torch-zip"
    if head[:1] == b"\x80":  # pickle protocol 2+: the legacy torch.save format
        return "torch-pickle"
    kind = next((what for magic, what in _MAGIC.items() if head.lstrip().startswith(magic)), None)
    raise CheckpointError(f"{path} is not a checkpoint{f': it is {kind}' if kind else ''} (expected a .safetensors "
                          f"file or a PyTorch .pth/.pt file); pass the model or tokenizer file instead")


# Image files the CLI writes, by suffix → PIL format. PNG is lossless; the others are there
# because users ask for them by name.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}


def check_image_path(path) -> Path:
    """An output image path of a known type in a folder that can be written (OutputError if not),
    checked before any work is done."""
    path = check_writable(path, "output image")
    if path.suffix.lower() not in IMAGE_FORMATS:
        raise OutputError(f"{path} has no image extension ({path.suffix or 'none'}); name the output "
                          f"{path.with_suffix('.png').name} (or .jpg, .webp, .bmp, .tif)")
    return path


# Animations the CLI writes (class morphs), by suffix → PIL format; WEBP frames are lossless.
ANIMATION_FORMATS = {".webp": "WEBP", ".gif": "GIF"}


def check_animation_path(path) -> Path:
    """An output animation path (.webp or .gif) in a folder that can be written (OutputError if not),
    checked before any work is done."""
    path = check_writable(path, "output animation")
    if path.suffix.lower() not in ANIMATION_FORMATS:
        raise OutputError(f"{path} is not an animation file ({path.suffix or 'no extension'}); name the output "
                          f"{path.with_suffix('.webp').name} or {path.with_suffix('.gif').name}")
    return path
