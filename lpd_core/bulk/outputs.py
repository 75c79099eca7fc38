"""What sample-many writes: one PNG per image, the manifest, the .npz; all atomically."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import ResumeError
from ..files import atomic_write
from ..imaging import to_pil
from .indices import image_path


def write_png(image: torch.Tensor, path: Path) -> None:
    """One (H, W, 3) image in [0, 1], rounded as `generate`'s PNGs are, written atomically."""
    picture = to_pil(image)
    atomic_write(path, lambda temp: picture.save(temp, format="PNG"))


def write_json(path: Path, data: dict) -> None:
    """Valid JSON only (no NaN or Infinity: settings are checked finite before), written atomically."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda temp: temp.write_text(text))


def pack_npz(folder, count: int, labels: Sequence[int], destination) -> dict:
    """Stream images/000000.png … into `destination` as an uncompressed .npz (zip64): arr_0 the
    uint8 (N, H, W, 3) images, arr_1 the int64 labels. Memory stays at one image, so 50,000
    images at 512×512 (39 GB) pack on any machine. Returns shape and the sha256 of arr_0's bytes."""
    folder, destination = Path(folder), Path(destination)
    first = np.asarray(Image.open(image_path(folder, 0)).convert("RGB"))
    shape = (count, *first.shape)
    digest = hashlib.sha256()

    def write(temp: Path) -> None:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("arr_0.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                    "shape": shape})
                for index in range(count):
                    path = image_path(folder, index)
                    try:
                        with Image.open(path) as picture:
                            array = np.asarray(picture.convert("RGB"))
                    except OSError as error:
                        raise ResumeError(f"{path} is unreadable ({error}); delete it and run the same "
                                          f"command again to make it anew") from None
                    if array.shape != first.shape:
                        raise ResumeError(f"{path} is {array.shape[1]}x{array.shape[0]} but image 0 is "
                                          f"{first.shape[1]}x{first.shape[0]}: the folder mixes runs; use "
                                          f"another --out folder")
                    data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
                    digest.update(data)
                    member.write(data)
            with archive.open("arr_1.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(labels, dtype=np.int64))

    atomic_write(destination, write)
    return {"file": destination.name, "shape": list(shape), "arr_0_sha256": digest.hexdigest(),
            "arrays": {"arr_0": "uint8 (N, H, W, 3) RGB images, index order",
                       "arr_1": "int64 (N,) class label of each image"}}
