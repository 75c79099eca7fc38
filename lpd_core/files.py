"""Writing files so that nothing half-written is ever where a reader looks, and checking output
paths before any work is done.

Every file the library and the CLI write (images, grids, order maps, converted checkpoints,
sample-many's PNGs, manifest and .npz) goes through `atomic_write`: the bytes go to a hidden
temporary name in the destination's folder, which is renamed onto the destination only once it is
complete. A crash or Ctrl-C leaves the old file (if any) untouched and removes the temporary.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

from .errors import OutputError

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


def check_writable(path, what: str = "output") -> Path:
    """`path` can be created or replaced as a file: not a folder, and its folder (or the nearest
    folder above it that exists) accepts new files. Nothing is left behind."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"the {what} {path} is a folder; give a file name inside it, e.g. {path / 'out.png'}")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise OutputError(f"cannot write the {what} {path}: {folder} is a file, not a folder; choose another path")
    _probe(folder, what, path)
    return path


def check_output_folder(folder, what: str = "output folder") -> Path:
    """`folder` is a folder, or can be made one, that accepts new files (nothing is created here)."""
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"the {what} {folder} cannot be used: {existing} is a file; give a folder (new or "
                          f"existing) instead")
    _probe(existing, what, folder)
    return folder


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
