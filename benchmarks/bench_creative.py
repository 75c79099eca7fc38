"""Class blends, variations of an image and wide canvases on the bundled demo model, measured with
the demo's judge CNN (the one `bench_demo` uses, trained on procedural images of its own seed).

    python -m benchmarks.bench_creative                       # all three parts
    python -m benchmarks.bench_creative --parts wide --canvases 50   # a quick look

Blend: for each pair of classes (A, B) and each weight w of a sweep 0 → 1, the same samples
(sample b: seed b, locality order seed b) are conditioned on the mix (1 − w)·A + w·B; reported
are the judge's mean probability of A and of B, whether they move monotonically, and whether the
end points give exactly the tokens of plain generation of A and of B.

Variation: real images of every class (their own class as the condition); for each strength the
share of tokens equal to the input's and the judge's accuracy for the class. Strength 1 is plain
generation with the same seeds (checked token for token).

Wide canvas: canvases of 8×24 tokens (96×32 px) from 8×8 tiles overlapping by 4 tokens: whether
every tile's overlap tokens are exactly those of the tiles before it, and a seam measure: the mean
absolute difference of neighbouring pixel columns across the borders where a tile's new tokens
meet the ones it was given, against the same measure at every other token border inside the
canvas (ratio 1 = no seam). For scale, the same measure on tiles generated independently and
placed side by side (no overlap, decoded one by one), and the judge's accuracy on each tile-sized
window of the canvases.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from lpd_core import generate, load_model, load_tokenizer
from lpd_core.blend import ClassMix
from lpd_core.canvas import wide_canvas
from lpd_core.checkpoints import DEMO_MODEL_PATH, DEMO_TOKENIZER_PATH, generation_defaults
from lpd_core.schedule import build_orders, group_sizes_for
from lpd_core.variation import vary
from training.judge import classify, train_classifier
from training.shapes import NUM_CLASSES, SHAPE_CLASSES, dataset_uint8

VARY_SEED = 616161  # the real images to vary: not the judge's, the tokenizer's or the model's data
PAIRS = ((0, 1), (2, 9), (4, 7), (5, 6), (3, 8))  # circle→square, triangle→star, ring→checkerboard, …


def judge_probabilities(judge, images: torch.Tensor) -> torch.Tensor:
    """(n, classes) softmax of the judge."""
    _, features = classify(judge, images)
    with torch.no_grad():
        return torch.softmax(judge.out(features.to(judge.out.weight.device)), -1).cpu()


def locality_orders(grid: int, sizes, seeds) -> torch.Tensor:
    return torch.from_numpy(build_orders(grid, grid, sizes, "locality", seeds))


def monotone(values, increasing: bool) -> bool:
    steps = np.diff(values)
    return bool((steps >= 0).all() if increasing else (steps <= 0).all())


@torch.no_grad()
def blend_part(model, vq, judge, args, settings) -> list[dict]:
    grid = model.config.grid_size
    sizes = group_sizes_for(grid * grid, settings.steps)
    seeds = list(range(args.blend_samples))
    orders = locality_orders(grid, sizes, seeds)
    common = dict(orders=orders, group_sizes=sizes, cfg=settings.cfg, cfg_schedule=settings.cfg_schedule, seeds=seeds)
    weights = np.linspace(0, 1, args.blend_weights)
    rows = []
    for first, second in PAIRS[:args.pairs]:
        p_first, p_second, ends_equal_plain = [], [], True
        for w in weights:
            tokens = generate(model, None, [ClassMix.between(first, second, float(w))] * len(seeds), **common)
            if w in (0, 1):
                plain = generate(model, None, [first if w == 0 else second] * len(seeds), **common)
                ends_equal_plain &= bool(torch.equal(tokens, plain))
            probabilities = judge_probabilities(judge, vq.decode_images(tokens))
            p_first.append(float(probabilities[:, first].mean()))
            p_second.append(float(probabilities[:, second].mean()))
        row = dict(first=SHAPE_CLASSES[first], second=SHAPE_CLASSES[second], weights=weights.tolist(),
                   p_first=p_first, p_second=p_second, monotone=monotone(p_second, True) and monotone(p_first, False),
                   ends_equal_plain=ends_equal_plain)
        rows.append(row)
        print(f"  {row['first']} → {row['second']}: P({row['second']}) " + " ".join(f"{p:.2f}" for p in p_second)
              + f"; monotone {row['monotone']}; end points = plain generation {ends_equal_plain}", flush=True)
    return rows


@torch.no_grad()
def variation_part(model, vq, judge, args, settings) -> list[dict]:
    images_uint8, labels = dataset_uint8(args.vary_images, seed=VARY_SEED)
    images = torch.from_numpy(images_uint8).float() / 255
    labels_list = [int(label) for label in labels]
    grid = model.config.grid_size
    sizes = group_sizes_for(grid * grid, settings.steps)
    seeds = list(range(args.vary_images))
    plain = generate(model, None, labels_list, orders=locality_orders(grid, sizes, seeds), group_sizes=sizes,
                     cfg=settings.cfg, cfg_schedule=settings.cfg_schedule, seeds=seeds)
    rows = []
    for strength in [float(s) for s in args.strengths.split(",")]:
        result = vary(model, vq, images, labels_list, strength, steps=settings.steps, seed=0, cfg=settings.cfg,
                      cfg_schedule=settings.cfg_schedule)
        predicted, _ = classify(judge, result.images)
        row = dict(strength=strength, kept=int(result.kept[0].sum()),
                   agreement=float((result.tokens == result.source).float().mean()),
                   accuracy=float((predicted.numpy() == labels).mean()),
                   equals_plain=bool(torch.equal(result.tokens, plain.cpu())))
        rows.append(row)
        print(f"  strength {strength:.3f}: {row['kept']:2d} tokens kept, agreement {row['agreement']:.3f}, "
              f"accuracy {row['accuracy']:.3f}" + (" (= plain generation, token for token)" if row["equals_plain"]
                                                    else ""), flush=True)
    return rows


def seam_ratio(images: torch.Tensor, stride: int, seams: list[int]) -> tuple[float, float, float]:
    """(seam measure, interior measure, ratio): mean |column x − column x−1| of the pixels at the token
    borders x = stride·c for c in `seams`, and at every other token border of the canvas."""
    width = images.shape[2] // stride
    step = (images[:, :, stride::stride] - images[:, :, stride - 1:-1:stride]).abs().mean(dim=(0, 1, 3))
    borders = list(range(1, width))
    seam = float(np.mean([step[c - 1] for c in seams]))
    interior = float(np.mean([step[c - 1] for c in borders if c not in seams]))
    return seam, interior, seam / interior


@torch.no_grad()
def wide_part(model, vq, judge, args, settings) -> dict:
    grid, stride = model.config.grid_size, vq.stride
    count = args.canvases
    labels = [b % NUM_CLASSES for b in range(count)]
    finished: dict[int, torch.Tensor] = {}

    def on_step(tile, step):
        if step.step == step.total - 1:
            finished[tile] = step.tokens.reshape(count, grid, grid).cpu()

    result = wide_canvas(model, vq, labels, width=3 * grid, overlap=args.overlap, steps=settings.steps, seed=0,
                         cfg=settings.cfg, cfg_schedule=settings.cfg_schedule, callback=on_step)
    starts = [col for _, col in result.tiles]
    overlap_exact = all(torch.equal(finished[k][:, :, :starts[k - 1] + grid - starts[k]],
                                    finished[k - 1][:, :, starts[k] - starts[k - 1]:]) for k in range(1, len(starts)))
    seams = [start + grid for start in starts[:-1]]  # where each later tile's new tokens begin
    seam, interior, ratio = seam_ratio(result.images, stride, seams)
    # For scale: three independent tiles side by side, each decoded on its own.
    sizes = group_sizes_for(grid * grid, settings.steps)
    tiles = []
    for k in range(3):
        seeds = [1000 * k + b for b in range(count)]
        tokens = generate(model, None, labels, orders=locality_orders(grid, sizes, seeds), group_sizes=sizes,
                          cfg=settings.cfg, cfg_schedule=settings.cfg_schedule, seeds=seeds)
        tiles.append(vq.decode_images(tokens))
    naive_seam, naive_interior, naive_ratio = seam_ratio(torch.cat(tiles, dim=2), stride, [grid, 2 * grid])
    side = grid * stride
    windows = torch.cat([result.images[:, :, x:x + side] for x in range(0, result.images.shape[2] - side + 1, side)])
    predicted, _ = classify(judge, windows)
    accuracy = float((predicted.numpy() == np.tile(labels, len(windows) // count)).mean())
    row = dict(canvases=count, grid=list(result.grid), tiles=len(result.tiles), overlap=args.overlap,
               overlap_exact=overlap_exact, seam=seam, interior=interior, ratio=ratio, naive_seam=naive_seam,
               naive_interior=naive_interior, naive_ratio=naive_ratio, window_accuracy=accuracy)
    print(f"  {count} canvases of {result.grid[1]}×{result.grid[0]} tokens, {len(result.tiles)} tiles: overlap tokens "
          f"exact {overlap_exact}; seam {seam:.4f} vs interior {interior:.4f} (ratio {ratio:.3f}); independent "
          f"tiles side by side: {naive_seam:.4f} vs {naive_interior:.4f} (ratio {naive_ratio:.3f}); judge accuracy "
          f"on tile-sized windows {accuracy:.3f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="blend,variation,wide", help="blend, variation, wide (comma-separated)")
    parser.add_argument("--pairs", type=int, default=len(PAIRS), help=f"class pairs to sweep (1..{len(PAIRS)})")
    parser.add_argument("--blend-samples", type=int, default=200, help="samples per weight and class pair")
    parser.add_argument("--blend-weights", type=int, default=11, help="weights from 0 to 1 (11: steps of 0.1)")
    parser.add_argument("--vary-images", type=int, default=500, help="real images varied at each strength")
    parser.add_argument("--strengths", default="0,0.125,0.25,0.375,0.5,0.625,0.75,0.875,1")
    parser.add_argument("--canvases", type=int, default=500)
    parser.add_argument("--overlap", type=int, default=4, help="tile overlap in tokens")
    parser.add_argument("--judge-images", type=int, default=20000, help="training images of the judge")
    parser.add_argument("--judge-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    parts = args.parts.split(",")

    model, vq = load_model(DEMO_MODEL_PATH), load_tokenizer(DEMO_TOKENIZER_PATH)
    settings = generation_defaults(model)
    print(f"demo model, {settings.steps} steps, cfg {settings.cfg} ({settings.cfg_schedule}), locality order, fp32; "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    judge = train_classifier(num_images=args.judge_images, epochs=args.judge_epochs, device="cpu",
                             log=lambda line: print("  " + line))
    real_uint8, real_labels = dataset_uint8(1000, seed=VARY_SEED + 1)
    predicted, _ = classify(judge, torch.from_numpy(real_uint8).float() / 255)
    results = dict(config=vars(args), judge_accuracy_real=float((predicted.numpy() == real_labels).mean()))
    print(f"judge accuracy on 1000 held-out real images: {results['judge_accuracy_real']:.3f}")
    if "blend" in parts:
        print("blend:")
        results["blend"] = blend_part(model, vq, judge, args, settings)
    if "variation" in parts:
        print("variation:")
        results["variation"] = variation_part(model, vq, judge, args, settings)
    if "wide" in parts:
        print("wide canvas:")
        results["wide"] = wide_part(model, vq, judge, args, settings)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
