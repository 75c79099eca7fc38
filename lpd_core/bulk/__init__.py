"""Bulk sampling for evaluation: many images (e.g. 50,000 for ImageNet FID), sharded over the
processes that torchrun starts, resumable, packed into the .npz the standard evaluators read.

Every image is a function of its index alone, never of which process or batch made it:

- seed:  ``(base_seed + index) mod 2^64``, for the token sampling (its own counter-based random
  numbers per image, as in `generate`) and for the generation order (locality / random orders are built per image with
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
    manifest.json          settings and weight hashes (checked on resume), seed and class rules, versions
    samples_NxHxWx3.npz    arr_0: uint8 (N, H, W, 3) images; arr_1: int64 (N,) class labels
    .sample-many.lock      while a run is writing: a second run on the folder is refused

A restarted run skips the PNGs already there, so a crash or Ctrl-C loses at most one batch per
process. When all N images exist, rank 0 (after a barrier) packs them into the .npz. Every
setting is checked before the folder is touched, and a folder of another run (other weights,
by the sha256 of all their tensors, or other settings) is refused.

The parts: `indices` (index → seed, class, file; shards), `processes` (torchrun), `provenance`
(settings, weight hashes, manifest check, folder lock), `outputs` (PNG, manifest, .npz); this
module is the orchestration.
"""

from __future__ import annotations

import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from ..checkpoints import load_pair, resolve_settings
from ..classes import check_class, resolve_classes
from ..errors import OutputError, ResumeError, SettingError
from ..fast import on_by_default
from ..files import check_output_folder
from ..generate import generate
from ..memory import plan_chunks
from ..schedule import build_orders, build_schedule, group_sizes_for
from ..settings import check_count, check_flag, check_order, check_proximity, check_seed
from ..weights import dtype_name
from . import outputs
from .indices import IMAGES_DIR, class_of, image_path, missing_indices, remove_partial_files, seed_of, shard
from .processes import Processes, sigterm_as_interrupt, start_processes
from .provenance import (CLASS_RULE, FORMAT, MANIFEST_NAME, SEED_RULE, FolderLock, check_resumable, now,
                         software_versions, state_dict_sha256)

__all__ = ["sample_many", "orders_for", "IMAGES_DIR", "MANIFEST_NAME", "FORMAT", "class_of", "seed_of", "shard",
           "image_path", "missing_indices", "Processes", "start_processes", "state_dict_sha256"]

DEFAULT_IMAGES_PER_CLASS = 50  # 50,000 images for ImageNet's 1000 classes, as FID is reported


def _may_download(model, tokenizer) -> bool:
    if model is None and tokenizer is None:
        return False  # the bundled demo model and its tokenizer
    return not all(spec is not None and Path(spec).exists() for spec in (model, tokenizer))


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    return tqdm(total=total, desc="sampling (all processes)", unit="img", file=sys.stderr, dynamic_ncols=True,
                smoothing=0.1)


def orders_for(indices: Sequence[int], grid: int, steps: int, order: str, base_seed: int, proximity: float,
               repulsion: int | None) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The generation orders (len(indices), N) of these images, each built with its own seed, and
    their common group sizes: the one place bulk sampling builds per-sample schedules."""
    group_sizes = group_sizes_for(grid * grid, steps)
    seeds = [seed_of(base_seed, i) for i in indices]
    return torch.from_numpy(build_orders(grid, grid, group_sizes, order, seeds, proximity, repulsion)), group_sizes


def _class_list(classes, model) -> list[int]:
    num_classes = model.config.num_classes
    if classes is None:
        return list(range(num_classes))
    if isinstance(classes, str):
        return resolve_classes(classes, model)
    if not hasattr(classes, "__iter__"):
        raise SettingError(f"classes must be class indices, comma-separated text, or None for all; got {classes!r}")
    class_list = [check_class(c, num_classes) for c in classes]
    if not class_list:
        raise SettingError(f"no class given: give class indices from 0 to {num_classes - 1}, or none for all")
    return class_list


def _run_settings(lpd, vq, model, tokenizer, dtype, fast, order, proximity, resolved, group_sizes, seed, classes,
                  class_list) -> dict:
    """Everything that decides the images (compared on resume), plus the names given (not compared)."""
    grid = lpd.config.grid_size
    # the schedule fills in the grid's default repulsion; both are None for orders without them
    schedule = build_schedule(grid, group_sizes=group_sizes, order=order, seed=seed, proximity=proximity,
                              repulsion=resolved.repulsion)
    return {
        "model": str(model or "demo"), "tokenizer": str(tokenizer or lpd.tokenizer_name),
        "model_config": lpd.config.to_dict(), "model_sha256": state_dict_sha256(lpd),
        "tokenizer_config": vq.config.to_dict(), "tokenizer_sha256": state_dict_sha256(vq),
        "dtype": dtype, "fast": fast, "steps": resolved.steps, "group_sizes": list(group_sizes), "order": order,
        "proximity": schedule.proximity, "repulsion": schedule.repulsion,
        "cfg": resolved.cfg, "cfg_schedule": resolved.cfg_schedule, "temperature": resolved.temperature,
        "top_k": resolved.top_k, "top_p": resolved.top_p, "base_seed": seed, "seed_rule": SEED_RULE,
        "classes": "all" if classes is None else class_list, "num_classes": lpd.config.num_classes,
        "class_rule": CLASS_RULE,
    }


def _check_layout(out: Path) -> None:
    """What a run keeps in `out` can go there: its images folder is not a file, its manifest not a
    folder (checked with the folder, before any model is loaded)."""
    for name, folder in ((IMAGES_DIR, True), (MANIFEST_NAME, False)):
        path = out / name
        if path.exists() and path.is_dir() != folder:
            kind, wanted = ("a file", "the folder of its PNGs") if folder else ("a folder", "its manifest file")
            raise OutputError(f"{path} is {kind}, but sample-many keeps {wanted} there; move it away, or use "
                              f"another --out folder")


def _plan(out: Path, settings: dict, num_images: int, lock: FolderLock) -> dict:
    """On rank 0: take the folder's lock, check it holds this run (or none), note what is missing.
    A refused folder is left as it was."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire()
        manifest = check_resumable(out, settings)
    except BaseException:
        lock.release()
        if created:
            out.rmdir()
        raise
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    remove_partial_files(out)
    missing = missing_indices(out, num_images)
    if manifest is None or missing:
        outputs.write_json(out / MANIFEST_NAME, {"format": FORMAT, "status": "sampling",
                                                 "started": (manifest or {}).get("started", now()),
                                                 "num_images": num_images, "settings": settings})
    return {"missing": missing, "manifest": manifest}


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
    (`checkpoints.resolve_settings`). batch_size: per process. dtype "auto": as
    `weights.auto_dtype`. fast: `generate`'s fast path (None: on with CUDA). Every input is checked
    (an LPDError) before `out` is touched. Returns the manifest on rank 0, None on the other ranks.
    """
    batch_size = check_count("batch size", batch_size)
    if images_per_class is not None and num_images is not None:
        raise SettingError("give the number of images per class or in total, not both")
    if images_per_class is not None:
        check_count("images per class", images_per_class)
    if num_images is not None:
        check_count("number of images", num_images)
    seed, order, proximity = check_seed(seed), check_order(order), check_proximity(proximity)
    fast = None if fast is None else check_flag("fast", fast)
    progress = check_flag("progress", progress)
    out = check_output_folder(out, "--out folder")
    _check_layout(out)
    processes, device = start_processes(device)
    if fast is None:
        fast = on_by_default(device)
    bar, lock = None, FolderLock(out)
    try:
        with sigterm_as_interrupt():
            # When a name may need a download, local rank 0 loads first and the others then find
            # the files on disk; paths (and the bundled demo pair) load everywhere at once.
            serial = processes.broadcast(_may_download(model, tokenizer))  # the same on every rank
            if serial and processes.local_rank != 0:
                processes.barrier()
            lpd, vq = load_pair(model, tokenizer, models_dir, device, dtype, progress_for=progress_for)
            if serial and processes.local_rank == 0:
                processes.barrier()

            class_list = _class_list(classes, lpd)
            if num_images is None:
                num_images = (images_per_class or DEFAULT_IMAGES_PER_CLASS) * len(class_list)
            resolved = resolve_settings(lpd, steps=steps, cfg=cfg, cfg_schedule=cfg_schedule,
                                        temperature=temperature, top_k=top_k, top_p=top_p, repulsion=repulsion)
            grid = lpd.config.grid_size

            def orders_of(indices: Sequence[int]):
                return orders_for(indices, grid, resolved.steps, order, seed, proximity, resolved.repulsion)

            _, group_sizes = orders_of([0])  # builds one schedule: checks it before the folder is touched
            # Memory, before the folder is touched: the lists of indices and labels (about 64 bytes an image
            # in Python), a batch's orders on the CPU; generate plans its own.
            plan_chunks("sampling", num_images, num_images * 64, lambda n: 0, "cpu")
            batch_size = min(batch_size, num_images)
            plan_chunks("sampling in batches of", batch_size, batch_size * grid * grid * 8, lambda n: 0, "cpu")
            settings = _run_settings(lpd, vq, model, tokenizer, dtype_name(lpd.pos_embed.dtype), fast, order,
                                     proximity, resolved, group_sizes, seed, classes, class_list)

            # Rank 0 looks at the folder and tells everyone what is missing (one view for all).
            plan = None
            if processes.main:
                try:
                    plan = _plan(out, settings, num_images, lock)
                except Exception as error:  # every rank must hear of it, or the others would wait forever
                    plan = {"error": error}
            plan = processes.broadcast(plan)
            if "error" in plan:
                raise plan["error"]
            missing = plan["missing"]
            mine = shard(missing, processes.rank, processes.world_size)
            if processes.main and len(missing) < num_images:
                log(f"resuming: {num_images - len(missing)} of {num_images} images already in "
                    f"{out / IMAGES_DIR}, {len(missing)} to go")

            bar = _progress(len(missing), progress and processes.main and bool(missing))
            began = time.perf_counter()
            sampling = dict(cfg=resolved.cfg, cfg_schedule=resolved.cfg_schedule, temperature=resolved.temperature,
                            top_k=resolved.top_k, top_p=resolved.top_p, fast=fast)
            made = _sample_shard(lpd, vq, out, mine, batch_size, class_list, seed, orders_of, sampling,
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
            return _finish(out, plan["manifest"], settings, num_images, class_list, vq.stride * grid, missing,
                           processes, batch_size, device, elapsed, log)
    finally:
        if bar is not None:
            bar.close()
        lock.release()
        processes.close()


def _finish(out: Path, previous: dict | None, settings: dict, num_images: int, class_list, size: int, missing,
            processes: Processes, batch_size: int, device: str, elapsed: float, log) -> dict:
    """On rank 0, once every image is on disk: pack the .npz and write the complete manifest."""
    still = missing_indices(out, num_images)
    if still:
        raise ResumeError(
            f"{len(still)} of {num_images} images are not in {out / IMAGES_DIR} (e.g. "
            f"{image_path(out, still[0]).name}); on several machines --out must be one shared folder "
            f"(or copy every machine's {IMAGES_DIR}/ into one and run the same command again to pack)")
    npz_name = f"samples_{num_images}x{size}x{size}x3.npz"
    if (not missing and previous and previous.get("status") == "complete"
            and previous.get("num_images") == num_images and zipfile.is_zipfile(out / npz_name)):
        log(f"all {num_images} images were already sampled and packed: {out / npz_name}")
        return previous
    labels = [class_of(i, class_list) for i in range(num_images)]
    packed = outputs.pack_npz(out, num_images, labels, out / npz_name)
    manifest = {
        "format": FORMAT, "status": "complete", "num_images": num_images,
        "image_size": packed["shape"][1:3], "images": f"{IMAGES_DIR}/{{index:06d}}.png",
        "started": (previous or {}).get("started", now()), "finished": now(),
        "settings": settings, "npz": packed,
        "class_counts": {str(c): labels.count(c) for c in dict.fromkeys(class_list)},
        "last_run": {"processes": processes.world_size, "batch_size_per_process": batch_size,
                     "device": device, "images_sampled": len(missing), "seconds": round(elapsed, 3)},
        "software": software_versions(),
    }
    outputs.write_json(out / MANIFEST_NAME, manifest)
    log(f"wrote {out / npz_name} ({num_images} images, {packed['shape'][1]}x{packed['shape'][2]}) "
        f"and {out / MANIFEST_NAME}")
    return manifest


def _sample_shard(model, tokenizer, out: Path, indices: list[int], batch_size: int, class_list, base_seed,
                  orders_of, sampling: dict, advance: Callable[[int], None]) -> int:
    """Sample and write `indices` in batches. While batch k samples and batch k-1's PNGs are
    written, one worker thread builds batch k+1's orders (64 locality orders take longer than a
    batch should take on a GPU), so order building stays off the critical path. Each order
    depends on its image's seed alone, so building it earlier changes nothing."""
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]

    def prepare(batch: list[int]) -> dict:
        padded = batch + [batch[-1]] * (batch_size - len(batch))  # same shapes for every batch
        orders, group_sizes = orders_of(padded)
        return dict(labels=[class_of(i, class_list) for i in padded], seeds=[seed_of(base_seed, i) for i in padded],
                    orders=orders, group_sizes=group_sizes)

    def write(batch: list[int], images: list[torch.Tensor]) -> None:
        for index, image in zip(batch, images):
            outputs.write_png(image, image_path(out, index))
        advance(len(batch))

    made = 0
    pending = None
    builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpd-orders")
    try:
        upcoming = builder.submit(prepare, batches[0]) if batches else None
        for k, batch in enumerate(batches):
            inputs = upcoming.result()  # raises here what the worker raised
            upcoming = builder.submit(prepare, batches[k + 1]) if k + 1 < len(batches) else None
            tokens = generate(model, **inputs, **sampling)[:len(batch)]
            if pending is not None:
                write(*pending)
            # One image at a time through the tokenizer: its pixels cannot depend on the batch.
            pending = (batch, [tokenizer.decode_images(tokens[j:j + 1])[0] for j in range(len(batch))])
            made += len(batch)
        if pending is not None:
            write(*pending)
    finally:
        # On an error or an interrupt: drop the build not started, wait for the one running.
        builder.shutdown(wait=True, cancel_futures=True)
    return made
