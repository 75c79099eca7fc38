"""Sample quality of the shipped demo model (`lpd_core/data/demo/`, trained here on the procedural
shapes): does the locality-aware order beat random and raster orders at few steps, and does
zero-shot editing draw the class it is asked for?

    python -m benchmarks.bench_demo                                   # both tables (≥ 500 samples a cell)
    python -m benchmarks.bench_demo --parts orders --samples 100 --steps 8,64   # a quick look

A judge CNN (`training.judge.ShapeClassifier`) is trained on real procedural images (its own
seed), or loaded with `--judge` (tests/fixtures/shape_judge.safetensors is the one this trains
by default, written by `python -m training judge`). Its accuracy on held-out real images and on
their VQ reconstructions is printed first: the second is the ceiling a generator can reach
through this tokenizer.

Orders: for every cell (order × step count) the demo model generates the same samples (class
b % 10 and seed b for sample b; sample b of the locality and random orders uses order seed b);
the table reports the class accuracy (how often the judge names the class the sample was
generated for) and the Fréchet distance (FD) between Gaussians fitted to the judge's penultimate
features of the generated samples and of held-out real images (lower is better). Reference rows
give the FD of as many other real images (the noise floor) and of VQ reconstructions.

Editing: real images of every class; the mask is the bounding box of the shape (the pixels that
differ from the background colour). Inpaint regenerates the box under the image's own class,
class-swap under the next class (c + 1 mod 10). The judge's accuracy for the requested class is
reported per order, with the demo's steps and the default compositing of `lpd_core.editing.edit`.

Steps of the editing part, and cfg unless given, are the demo file's own sampling settings.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from lpd_core import build_schedule, generate, load_model, load_tokenizer
from lpd_core.checkpoints import DEMO_MODEL_PATH, DEMO_TOKENIZER_PATH
from lpd_core.editing import edit
from lpd_core.schedule import group_sizes_for
from training.judge import add_judge_arguments, classify, frechet_distance, judge_from_arguments
from training.shapes import NUM_CLASSES, dataset_uint8, shape_box
from training.vq import encode_images

REAL_SEED = 424242  # held-out real images: not the judge's, the tokenizer's or the model's data
EDIT_SEED = 515151  # the images to edit


def orders_for(kind: str, grid: int, sizes, count: int) -> torch.Tensor:
    """(count, N) orders: sample b of a seeded kind uses order seed b."""
    if kind == "raster":
        return torch.arange(grid * grid).expand(count, -1)
    return torch.stack([torch.from_numpy(build_schedule(grid, group_sizes=sizes, order=kind, seed=b).order)
                        for b in range(count)])


@torch.no_grad()
def generate_cell(model, vq, kind: str, steps: int, count: int, cfg: float, cfg_schedule: str,
                  batch: int = 500) -> tuple[np.ndarray, np.ndarray, float]:
    """Images (count, H, W, 3) in [0, 1], their labels, and seconds spent generating."""
    grid = model.config.grid_size
    sizes = group_sizes_for(grid * grid, steps)
    orders = orders_for(kind, grid, sizes, count)
    labels = torch.arange(count) % NUM_CLASSES
    images, seconds = [], 0.0
    for start in range(0, count, batch):
        stop = min(count, start + batch)
        begin = time.perf_counter()
        tokens = generate(model, None, labels[start:stop], orders=orders[start:stop], group_sizes=sizes,
                          cfg=cfg, cfg_schedule=cfg_schedule, seeds=list(range(start, stop)))
        seconds += time.perf_counter() - begin
        images.append(vq.decode_images(tokens).numpy())
    return np.concatenate(images), labels.numpy(), seconds


def orders_part(model, vq, judge, args, reference, kinds) -> list[dict]:
    cells = []
    for steps in [int(s) for s in args.steps.split(",")]:
        for kind in kinds:
            images, labels, seconds = generate_cell(model, vq, kind, steps, args.samples, args.cfg, args.cfg_schedule)
            predicted, features = classify(judge, torch.from_numpy(images))
            cell = dict(order=kind, steps=steps, accuracy=float((predicted.numpy() == labels).mean()),
                        fd=frechet_distance(features, reference), seconds=seconds)
            cells.append(cell)
            print(f"  {kind:8s} {steps:3d} steps: accuracy {cell['accuracy']:.3f}  FD {cell['fd']:7.2f}  "
                  f"({seconds:.1f} s to generate)", flush=True)
    return cells


def editing_part(model, vq, judge, args, kinds) -> list[dict]:
    images_uint8, labels = dataset_uint8(args.edits, seed=EDIT_SEED)
    images = torch.from_numpy(images_uint8).float() / 255
    masks = [torch.from_numpy(shape_box(image)) for image in images_uint8]
    cells = []
    for task, shift in (("inpaint", 0), ("class-swap", 1)):
        targets = (labels + shift) % NUM_CLASSES
        for kind in kinds:
            edited = []
            for i in range(args.edits):
                result = edit(model, vq, images[i:i + 1], masks[i], int(targets[i]), steps=args.edit_steps,
                              order=kind, seed=i, cfg=args.cfg, cfg_schedule=args.cfg_schedule)
                edited.append(result.images)
            predicted, _ = classify(judge, torch.cat(edited))
            cell = dict(task=task, order=kind, accuracy=float((predicted.numpy() == targets).mean()),
                        masked_fraction=float(torch.stack(masks).mean()))
            cells.append(cell)
            print(f"  {task:10s} {kind:8s}: accuracy for the requested class {cell['accuracy']:.3f}", flush=True)
    return cells


def print_table(caption: str, corner: str, rows, kinds) -> None:
    """A markdown table, one row per (label, {order: cell text}), one column per order."""
    print(caption)
    print()
    print(f"| {corner} | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for label, cells in rows:
        print(f"| {label} | " + " | ".join(cells[k] for k in kinds) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="orders,editing", help="orders, editing or both")
    parser.add_argument("--samples", type=int, default=500, help="generated samples per order cell")
    parser.add_argument("--edits", type=int, default=500, help="edited images per editing cell")
    parser.add_argument("--steps", default="4,8,16,64", help="step counts; 64 = one token per step")
    parser.add_argument("--orders", default="locality,random,raster")
    parser.add_argument("--cfg", type=float, default=None, help="default: the demo file's")
    parser.add_argument("--cfg-schedule", default=None, help="default: the demo file's")
    parser.add_argument("--real", type=int, default=2000, help="held-out real images for the FD reference")
    add_judge_arguments(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    parts, kinds = args.parts.split(","), args.orders.split(",")

    model, vq = load_model(DEMO_MODEL_PATH), load_tokenizer(DEMO_TOKENIZER_PATH)
    settings = model.generation_defaults
    args.cfg = settings.cfg if args.cfg is None else args.cfg
    args.cfg_schedule = args.cfg_schedule or settings.cfg_schedule
    args.edit_steps = settings.steps
    print(f"demo model {DEMO_MODEL_PATH.name}: {model.config}")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    judge = judge_from_arguments(args)

    real_uint8, real_labels = dataset_uint8(args.real + args.samples, seed=REAL_SEED)
    real = torch.from_numpy(real_uint8).float() / 255.0
    predicted, features = classify(judge, real)
    reference, floor = features[: args.real], features[args.real:]
    judge_accuracy = float((predicted[: args.real].numpy() == real_labels[: args.real]).mean())
    with torch.no_grad():
        recon = vq.decode_images(encode_images(vq, real_uint8[args.real:]))
    recon_predicted, recon_features = classify(judge, recon)
    recon_accuracy = float((recon_predicted.numpy() == real_labels[args.real:]).mean())
    results = dict(
        config=vars(args), judge_accuracy_real=judge_accuracy, judge_accuracy_vq_recon=recon_accuracy,
        fd_real_floor=frechet_distance(floor, reference), fd_vq_recon=frechet_distance(recon_features, reference),
    )
    print(f"judge accuracy on {args.real} held-out real images: {judge_accuracy:.3f}; "
          f"on {args.samples} VQ reconstructions: {recon_accuracy:.3f}")
    print(f"FD of {args.samples} other real images: {results['fd_real_floor']:.2f}; "
          f"of their VQ reconstructions: {results['fd_vq_recon']:.2f}")

    if "orders" in parts:
        results["cells"] = orders_part(model, vq, judge, args, reference, kinds)
    if "editing" in parts:
        results["editing"] = editing_part(model, vq, judge, args, kinds)

    print()
    if "orders" in parts:
        rows = [(steps, {c["order"]: f"{c['accuracy']:.3f} / {c['fd']:.2f}" for c in results["cells"]
                         if c["steps"] == steps}) for steps in dict.fromkeys(c["steps"] for c in results["cells"])]
        print_table(f"Demo model, {args.samples} samples per cell, cfg {args.cfg} ({args.cfg_schedule}); "
                    f"class accuracy ↑ / FD ↓", "steps", rows, kinds)
        print(f"reference: real images {judge_accuracy:.3f} / {results['fd_real_floor']:.2f}, "
              f"VQ reconstructions {recon_accuracy:.3f} / {results['fd_vq_recon']:.2f}")
        print()
    if "editing" in parts:
        rows = [(task, {c["order"]: f"{c['accuracy']:.3f}" for c in results["editing"] if c["task"] == task})
                for task in ("inpaint", "class-swap")]
        print_table(f"Editing, {args.edits} images per cell, {args.edit_steps} steps, cfg {args.cfg}; "
                    f"accuracy for the requested class (mask: the shape's bounding box)", "edit", rows, kinds)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
