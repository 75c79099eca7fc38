"""Which image is which: index → seed, class, file; which indices a folder holds; who makes what."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..files import is_temp_file
from ..settings import seed_of

IMAGES_DIR = "images"

__all__ = ["IMAGES_DIR", "seed_of", "class_of", "shard", "image_path", "present_indices", "missing_indices",
           "remove_partial_files"]


def class_of(index: int, classes: Sequence[int]) -> int:
    return classes[index % len(classes)]


def shard(indices: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This process's part: every world_size-th index, starting at rank (disjoint, covering)."""
    return list(indices[rank::world_size])


def image_path(folder, index: int) -> Path:
    return Path(folder) / IMAGES_DIR / f"{index:06d}.png"


def present_indices(folder) -> set[int]:
    """Indices whose PNG is in `folder`/images (complete files only: they arrive by rename)."""
    found = set()
    directory = Path(folder) / IMAGES_DIR
    if not directory.is_dir():
        return found
    with os.scandir(directory) as entries:
        for entry in entries:
            stem, dot, suffix = entry.name.partition(".")
            if dot and suffix == "png" and stem.isdigit() and entry.stat().st_size > 0:
                found.add(int(stem))
    return found


def missing_indices(folder, count: int) -> list[int]:
    present = present_indices(folder)
    return [i for i in range(count) if i not in present]


def remove_partial_files(folder) -> int:
    """Delete temp files left by a killed run (see `files.atomic_write`). Only the process holding
    the folder's lock calls this, so no live writer's temp file is removed."""
    removed = 0
    directory = Path(folder) / IMAGES_DIR
    for path in directory.iterdir() if directory.is_dir() else ():
        if is_temp_file(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
