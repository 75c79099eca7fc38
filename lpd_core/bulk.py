"""Bulk sampling for evaluation: many images (e.g. 50,000 for ImageNet FID), sharded over the
processes that torchrun starts, resumable, packed into the .npz the standard evaluators read.

Every image is a function of its index alone, never of which process or batch made it:

- seed:  ``base_seed + index``, for the token sampling (its own generator per image, as in
  `generate`) and for the generation order (locality / random orders are built per image with
  that seed; raster is the same for all);
- class: ``classes[index % len(classes)]``, with ``classes`` = every class of the model
  (0..C-1, so C·k images give k per class) unless a list is given.

So the images are the same whatever the number of processes, and each image is decoded by the
tokenizer on its own (batch 1), so its pixels do not depend on its batch either. Token sampling
runs in batches of `batch_size`, the last one padded to that size: for one batch size every
forward has the same shapes in every process, so GPU kernels cannot round differently. (On CPU,
any batch size gives the same images; on a GPU a different batch size may pick other kernels
and, rarely, flip a sampled token.)

Output folder::

    images/000000.png …    one PNG per index, written atomically (temp file, then rename)
    manifest.json          settings (checked on resume), seed and class rules, versions
    samples_NxHxWx3.npz    arr_0: uint8 (N, H, W, 3) images; arr_1: int64 (N,) class labels

A restarted run skips the PNGs already there, so a crash or Ctrl-C loses at most one batch per
process. When all N images exist, rank 0 (after a barrier) packs them into the .npz.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

IMAGES_DIR = "images"
MANIFEST_NAME = "manifest.json"
FORMAT = "lpd_core sample-many 1"
SEED_RULE = ("image i: seed = base_seed + i, used for its token sampling (a torch.Generator of its own) "
             "and, for locality/random orders, for its generation order (build_schedule(seed=...))")
CLASS_RULE = "image i: class = classes[i % len(classes)]; 'all' means classes = 0..num_classes-1"
# Settings that may change between a run and its resumption: they do not change any image.
_NOT_COMPARED = ("model", "tokenizer")
_PROCESS_GROUP_TIMEOUT = timedelta(hours=2)  # rank 0 may be downloading while the others wait


class BulkError(ValueError):
    """A problem the user can fix (the CLI prints it as one line)."""


# --------------------------------------------------------------------------------------------
# Index rules and files


def seed_of(base_seed: int, index: int) -> int:
    return base_seed + index


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
    """Delete temp files left by a killed run (their names start with a dot)."""
    removed = 0
    for path in (Path(folder) / IMAGES_DIR).glob(".*.tmp"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """write(temp) then rename onto `path`; the temp goes away if anything (Ctrl-C too) stops it."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_png(image: torch.Tensor, path: Path) -> None:
    """One (H, W, 3) image in [0, 1], rounded as `generate`'s PNGs are, written atomically."""
    from .imaging import to_pil
    picture = to_pil(image)
    _atomic_write(path, lambda temp: picture.save(temp, format="PNG"))


def _write_json(path: Path, data: dict) -> None:
    _atomic_write(path, lambda temp: temp.write_text(json.dumps(data, indent=2) + "\n"))


def pack_npz(folder, count: int, labels: Sequence[int], destination) -> dict:
    """Stream images/000000.png … into `destination` as an uncompressed .npz (zip64): arr_0 the
    uint8 (N, H, W, 3) images, arr_1 the int64 labels. Memory stays at one image, so 50,000
    images at 512×512 (39 GB) pack on any machine. Returns shape and the sha256 of arr_0's bytes."""
    from PIL import Image

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
                        raise BulkError(f"{path} is unreadable ({error}); delete it and run the same "
                                        f"command again to make it anew") from None
                    if array.shape != first.shape:
                        raise BulkError(f"{path} is {array.shape[1]}x{array.shape[0]} but image 0 is "
                                        f"{first.shape[1]}x{first.shape[0]}: the folder mixes runs")
                    data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
                    digest.update(data)
                    member.write(data)
            with archive.open("arr_1.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(labels, dtype=np.int64))

    _atomic_write(destination, write)
    return {"file": destination.name, "shape": list(shape), "arr_0_sha256": digest.hexdigest(),
            "arrays": {"arr_0": "uint8 (N, H, W, 3) RGB images, index order",
                       "arr_1": "int64 (N,) class label of each image"}}


# --------------------------------------------------------------------------------------------
# Processes


@dataclass
class Processes:
    """Where this process stands among those torchrun started (or alone: rank 0 of 1)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False
    device: torch.device | None = None  # for object collectives under nccl

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def broadcast(self, value):
        """rank 0's `value`, on every rank."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def resolve_device(device: str, local_rank: int = 0) -> str:
    """"auto" → cuda when available, else cpu; under torchrun, plain "cuda" → cuda:LOCAL_RANK."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    return device


def start_processes(device: str = "auto") -> tuple[Processes, str]:
    """Join torchrun's process group (env:// from RANK, WORLD_SIZE, MASTER_ADDR, …): nccl on
    GPU, gloo on CPU. Without torchrun (no WORLD_SIZE, or 1) there is no group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device, local_rank)
    if world_size <= 1:
        return Processes(), device
    rank = int(os.environ["RANK"])
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.cuda.set_device(torch.device(device))
    torch.distributed.init_process_group("nccl" if on_gpu else "gloo", init_method="env://",
                                         timeout=_PROCESS_GROUP_TIMEOUT)
    return Processes(rank, world_size, local_rank, True, torch.device(device) if on_gpu else None), device


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """torchrun stops workers with SIGTERM (on Ctrl-C, or when another worker fails): treat it like
    Ctrl-C, so the current batch is abandoned cleanly and the process group is destroyed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------------------------
# Provenance


def software_versions() -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                "cuda": torch.version.cuda, "lpd_core_git_revision": None, "lpd_core_git_dirty": None}
    try:
        import PIL
        versions["pillow"] = PIL.__version__
    except ImportError:
        pass
    here = Path(__file__).resolve().parent
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


def _fingerprint(tensor: torch.Tensor) -> str:
    """Identifies weights without hashing gigabytes: sha256 of one small tensor, as float32."""
    data = tensor.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_resumable(folder: Path, settings: dict) -> dict | None:
    """The folder's manifest, if its settings match these (else BulkError); None for a new folder."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        if present_indices(folder):
            raise BulkError(f"{folder / IMAGES_DIR} holds images but {folder} has no {MANIFEST_NAME}, so "
                            f"their settings are unknown; use an empty --out folder")
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        previous = manifest["settings"]
    except (ValueError, KeyError):
        raise BulkError(f"{manifest_path} is not a sample-many manifest; use another --out folder") from None
    changed = [key for key in sorted(set(previous) | set(settings))
               if key not in _NOT_COMPARED and previous.get(key) != settings.get(key)]
    if changed:
        key = changed[0]
        raise BulkError(f"{folder} was started with other settings ({key}: {previous.get(key)!r} there, "
                        f"{settings.get(key)!r} now{f'; also {len(changed) - 1} more' if len(changed) > 1 else ''}"
                        f"); resume with the same settings, or use another --out folder")
    return manifest


# --------------------------------------------------------------------------------------------
# The run


def _may_download(model, tokenizer) -> bool:
    if model is None and tokenizer is None:
        return False  # the bundled demo model and its tokenizer
    return not all(spec is not None and Path(spec).exists() for spec in (model, tokenizer))


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc="sampling (all processes)", unit="img", file=sys.stderr, dynamic_ncols=True,
                smoothing=0.1)


@torch.no_grad()
def sample_many(
    out,
    model: str | None = None,
    tokenizer: str | None = None,
    *,
    models_dir=None,
    classes: str | Sequence[int] | None = None,
    images_per_class: int | None = None,
    num_images: int | None = None,
    steps: int | None = None,
    order: str = "locality",
    cfg: float | None = None,
    cfg_schedule: str | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    repulsion: int | None = None,
    proximity: float = 1.0,
    batch_size: int = 32,
    device: str = "auto",
    dtype: str = "auto",
    fast: bool | None = None,
    progress: bool = True,
    progress_for: Callable[[str], Callable] | None = None,
    log: Callable[[str], None] = print,
) -> dict | None:
    """Generate images 0..N-1 into `out`/images (this process's share of the missing ones), then on
    rank 0 pack all of them into `out`/samples_NxHxWx3.npz with `out`/manifest.json.

    model/tokenizer: as `checkpoints.load_pair` (names, paths; None = the demo model). classes:
    None = all, else indices (or a comma-separated string of indices/names). N = num_images, or
    images_per_class × number of classes (default 50 per class: 50,000 for ImageNet). steps, cfg,
    cfg_schedule, temperature, top_k, top_p, repulsion: None = the model's defaults
    (`checkpoints.generation_defaults`). batch_size: per process. dtype "auto": as
    `weights.auto_dtype`. fast: `generate`'s fast path (None: on with CUDA). Returns the manifest
    on rank 0, None on the other ranks.
    """
    from .checkpoints import generation_defaults, load_pair, resolve_classes
    from .fast import on_by_default
    from .schedule import build_schedule
    from .weights import dtype_name

    if batch_size < 1:
        raise BulkError(f"the batch size must be at least 1, got {batch_size}")
    if images_per_class is not None and num_images is not None:
        raise BulkError("give the number of images per class or in total, not both")
    out = Path(out)
    processes, device = start_processes(device)
    if fast is None:
        fast = on_by_default(device)
    bar = None
    try:
        with _sigterm_as_interrupt():
            # When a name may need a download, local rank 0 loads first and the others then find
            # the files on disk; paths (and the bundled demo pair) load everywhere at once.
            serial = processes.broadcast(_may_download(model, tokenizer))  # the same on every rank
            if serial and processes.local_rank != 0:
                processes.barrier()
            lpd, vq = load_pair(model, tokenizer, models_dir, device, dtype, progress_for=progress_for)
            if serial and processes.local_rank == 0:
                processes.barrier()
            dtype = dtype_name(lpd.pos_embed.dtype)  # what "auto" chose

            num_classes = lpd.config.num_classes
            if classes is None:
                class_list = list(range(num_classes))
            elif isinstance(classes, str):
                class_list = resolve_classes(classes, lpd)
            else:
                class_list = [int(c) for c in classes]
                bad = [c for c in class_list if not 0 <= c < num_classes]
                if bad or not class_list:
                    raise BulkError(f"class index {bad[0] if bad else '(none)'} is out of range: this model "
                                    f"has {num_classes} classes, so use 0..{num_classes - 1}")
            if num_images is None:
                num_images = (50 if images_per_class is None else images_per_class) * len(class_list)
            if num_images < 1:
                raise BulkError(f"the number of images must be at least 1, got {num_images}")

            defaults = generation_defaults(lpd, steps)
            pick = lambda given, default: default if given is None else given  # noqa: E731
            cfg, cfg_schedule = pick(cfg, defaults.cfg), pick(cfg_schedule, defaults.cfg_schedule)
            temperature, top_k, top_p = (pick(temperature, defaults.temperature), pick(top_k, defaults.top_k),
                                         pick(top_p, defaults.top_p))
            repulsion = pick(repulsion, defaults.repulsion)
            grid = lpd.config.grid_size

            def schedule_of(index: int):
                return build_schedule(grid, steps=defaults.steps, order=order, seed=seed_of(seed, index),
                                      proximity=proximity, repulsion=repulsion)

            first = schedule_of(0)  # validates steps, order, repulsion and proximity on every rank
            if order == "locality" and repulsion is None:
                from .locality import default_repulsion
                repulsion = default_repulsion(grid, grid)
            settings = {
                "model": str(model or "demo"), "tokenizer": str(tokenizer or lpd.tokenizer_name),
                "model_config": lpd.config.to_dict(), "model_fingerprint": _fingerprint(lpd.pos_embed),
                "tokenizer_fingerprint": _fingerprint(vq.quantize.embedding.weight), "dtype": dtype, "fast": fast,
                "steps": first.steps, "group_sizes": list(first.group_sizes), "order": order,
                "proximity": proximity if order == "locality" else None,
                "repulsion": repulsion if order == "locality" else None,
                "cfg": cfg, "cfg_schedule": cfg_schedule, "temperature": temperature, "top_k": top_k,
                "top_p": top_p, "base_seed": seed, "seed_rule": SEED_RULE,
                "classes": "all" if classes is None else class_list, "num_classes": num_classes,
                "class_rule": CLASS_RULE,
            }

            # Rank 0 looks at the folder and tells everyone what is missing (one view for all).
            plan = None
            if processes.main:
                try:
                    manifest = _check_resumable(out, settings)
                    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
                    remove_partial_files(out)
                    missing = missing_indices(out, num_images)
                    started = (manifest or {}).get("started", _now())
                    if manifest is None or missing:
                        _write_json(out / MANIFEST_NAME, {"format": FORMAT, "status": "sampling",
                                                          "started": started, "num_images": num_images,
                                                          "settings": settings})
                    plan = {"missing": missing, "manifest": manifest}
                except (BulkError, OSError) as error:
                    plan = {"error": f"{type(error).__name__}: {error}" if isinstance(error, OSError)
                            else str(error)}
            plan = processes.broadcast(plan)
            if "error" in plan:
                raise BulkError(plan["error"])
            missing = plan["missing"]
            mine = shard(missing, processes.rank, processes.world_size)
            if processes.main and len(missing) < num_images:
                log(f"resuming: {num_images - len(missing)} of {num_images} images already in "
                    f"{out / IMAGES_DIR}, {len(missing)} to go")

            bar = _progress(len(missing), progress and processes.main and bool(missing))
            began = time.perf_counter()
            made = _sample_shard(lpd, vq, out, mine, batch_size, class_list, seed, schedule_of,
                                 dict(cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature,
                                      top_k=top_k, top_p=top_p, fast=fast),
                                 lambda n: bar.update(min(n * processes.world_size, bar.total - bar.n)) if bar else None)
            elapsed = time.perf_counter() - began
            if bar is not None:
                bar.close()
                bar = None
            if processes.main and missing:
                log(f"sampled {len(missing)} images in {elapsed:.1f} s: {len(missing) / max(elapsed, 1e-9):.2f} "
                    f"images/s with {processes.world_size} process(es) ({made} on rank 0)")

            processes.barrier()  # every shard is on disk (or, on several machines, on its own disk)
            if not processes.main:
                return None
            still = missing_indices(out, num_images)
            if still:
                raise BulkError(
                    f"{len(still)} of {num_images} images are not in {out / IMAGES_DIR} (e.g. "
                    f"{image_path(out, still[0]).name}); on several machines --out must be one shared folder "
                    f"(or copy every machine's {IMAGES_DIR}/ into one and run the same command again to pack)")
            previous = plan["manifest"]
            npz_name = f"samples_{num_images}x{first.grid_h * vq.stride}x{first.grid_w * vq.stride}x3.npz"
            if (not missing and previous and previous.get("status") == "complete"
                    and previous.get("num_images") == num_images and (out / npz_name).is_file()):
                log(f"all {num_images} images were already sampled and packed: {out / npz_name}")
                return previous
            labels = [class_of(i, class_list) for i in range(num_images)]
            packed = pack_npz(out, num_images, labels, out / npz_name)
            manifest = {
                "format": FORMAT, "status": "complete", "num_images": num_images,
                "image_size": packed["shape"][1:3], "images": f"{IMAGES_DIR}/{{index:06d}}.png",
                "started": (previous or {}).get("started", _now()), "finished": _now(),
                "settings": settings, "npz": packed,
                "class_counts": {str(c): labels.count(c) for c in dict.fromkeys(class_list)},
                "last_run": {"processes": processes.world_size, "batch_size_per_process": batch_size,
                             "device": device, "images_sampled": len(missing), "seconds": round(elapsed, 3)},
                "software": software_versions(),
            }
            _write_json(out / MANIFEST_NAME, manifest)
            log(f"wrote {out / npz_name} ({num_images} images, {packed['shape'][1]}x{packed['shape'][2]}) "
                f"and {out / MANIFEST_NAME}")
            return manifest
    except KeyboardInterrupt:
        if processes.main:
            print(f"\ninterrupted: the images written so far stay in {out / IMAGES_DIR}; run the same "
                  f"command again to resume", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
        processes.close()


def _sample_shard(model, tokenizer, out: Path, indices: list[int], batch_size: int, class_list, base_seed,
                  schedule_of, sampling: dict, advance: Callable[[int], None]) -> int:
    """Sample and write `indices` in batches. While the GPU samples batch k (queued, no host
    sync), the CPU builds batch k+1's orders and writes batch k-1's PNGs."""
    from .generate import generate

    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]

    def prepare(batch: list[int]) -> dict:
        padded = batch + [batch[-1]] * (batch_size - len(batch))  # same shapes for every batch
        schedules = [schedule_of(i) for i in padded]
        return dict(labels=[class_of(i, class_list) for i in padded], seeds=[seed_of(base_seed, i) for i in padded],
                    orders=torch.from_numpy(np.stack([s.order for s in schedules])),
                    group_sizes=schedules[0].group_sizes)

    def write(batch: list[int], images: list[torch.Tensor]) -> None:
        for index, image in zip(batch, images):
            write_png(image, image_path(out, index))
        advance(len(batch))

    made = 0
    pending = None
    inputs = prepare(batches[0]) if batches else None
    for k, batch in enumerate(batches):
        tokens = generate(model, **inputs, **sampling)[:len(batch)]
        inputs = prepare(batches[k + 1]) if k + 1 < len(batches) else None
        if pending is not None:
            write(*pending)
        # One image at a time through the tokenizer: its pixels cannot depend on the batch.
        pending = (batch, [tokenizer.decode_images(tokens[j:j + 1])[0] for j in range(len(batch))])
        made += len(batch)
    if pending is not None:
        write(*pending)
    return made

