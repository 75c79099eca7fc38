"""Class blends, variations of an image, wide canvases, negative classes, class morphs and canvases
that travel between classes on the bundled demo model, measured with the demo's judge CNN (the one
`bench_demo` uses, trained on procedural images of its own seed, or loaded with `--judge`, e.g.
tests/fixtures/shape_judge.safetensors).

    python -m benchmarks.bench_creative                       # all parts
    python -m benchmarks.bench_creative --parts wide --canvases 50   # a quick look
    python -m benchmarks.bench_creative --parts negative,morph,travel --judge tests/fixtures/shape_judge.safetensors

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

Negative class: for pairs of classes that share features (circle/ring, square/diamond, triangle/star,
both ways), samples of the target class with plain guidance (against the null class) and with the
other class as the negative, the same seeds, orders and cfg: the judge's mean probability of the
negative class and of the target, and how many samples it names as each. The same for the half-half
mix of the two classes as the target, where the judge is unsure to begin with.

Morph: for each pair (A, B) and seed s, the frames from A to B that `class_morph` makes with seed s and
the order of seed s (all seeds in one batch, with the frames' classes of `morph.frame_classes`), for
several layout steps (0: a plain blend of every step). Reported: the mean pixel change
(mean absolute difference, values 0–1) between neighbouring frames and the largest one per morph,
against the change between two seeds of one class (plain samples of A, and of B, with seeds s and
s + 1); the Spearman correlation of the judge's P(B) with the frame index, per morph (averaged over
seeds) and of the seeds' mean P(B); and P(B) in the first and the last frame.

Travel: canvases of 24×8 tokens (five 8×8 tiles overlapping by 4) from A at the first tile to B at
the last (`wide_canvas(to_labels=...)`): how often the judge names A in the first tile's window and
B in the last tile's (both, in one canvas), and the seam measure of the wide-canvas part. For scale,
how often it names B in the last tile's window of plain canvases of B (the same seeds): what a
canvas's last tile reaches on this model without any travel.
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
from lpd_core.morph import frame_classes, morph_weights
from lpd_core.schedule import build_orders, group_sizes_for
from lpd_core.variation import vary
from training.judge import add_judge_arguments, classify, judge_from_arguments
from training.shapes import NUM_CLASSES, SHAPE_CLASSES, dataset_uint8

VARY_SEED = 616161  # the real images to vary: not the judge's, the tokenizer's or the model's data
PAIRS = ((0, 1), (2, 9), (4, 7), (5, 6), (3, 8))  # circle→square, triangle→star, ring→checkerboard, …
NEGATIVE_PAIRS = ((4, 0), (0, 4), (8, 1), (1, 8), (9, 2), (2, 9))  # (target, negative): ring/circle, diamond/square, …


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


@torch.no_grad()
def negative_part(model, vq, judge, args, settings) -> list[dict]:
    grid = model.config.grid_size
    sizes = group_sizes_for(grid * grid, settings.steps)
    seeds = list(range(args.negative_samples))
    common = dict(orders=locality_orders(grid, sizes, seeds), group_sizes=sizes, cfg=settings.cfg,
                  cfg_schedule=settings.cfg_schedule, seeds=seeds)
    rows = []
    cases = [(target, negative, target) for target, negative in NEGATIVE_PAIRS[:args.negative_pairs]]
    cases += [(ClassMix.between(target, negative, 0.5), negative, target)
              for target, negative in NEGATIVE_PAIRS[:args.negative_pairs]]
    for condition, negative, target in cases:
        labels = [condition] * len(seeds)
        plain = judge_probabilities(judge, vq.decode_images(generate(model, None, labels, **common)))
        pushed = judge_probabilities(judge, vq.decode_images(generate(model, None, labels, negative=negative,
                                                                      **common)))
        mixed = isinstance(condition, ClassMix)
        row = dict(target=SHAPE_CLASSES[target], negative=SHAPE_CLASSES[negative], mix=mixed)
        for name, probabilities in (("plain", plain), ("with_negative", pushed)):
            named = probabilities.argmax(1)
            row[name] = dict(p_target=float(probabilities[:, target].mean()),
                             p_negative=float(probabilities[:, negative].mean()),
                             named_target=int((named == target).sum()), named_negative=int((named == negative).sum()))
        row["negative_drops"] = row["with_negative"]["p_negative"] < row["plain"]["p_negative"]
        row["target_within_0.05"] = abs(row["with_negative"]["p_target"] - row["plain"]["p_target"]) <= 0.05
        rows.append(row)
        a, b = row["plain"], row["with_negative"]
        print(f"  {'half-half mix of ' if mixed else ''}{row['target']}{' and ' + row['negative'] if mixed else ''}, "
              f"negative {row['negative']}: P({row['negative']}) {a['p_negative']:.4f} → "
              f"{b['p_negative']:.4f}, P({row['target']}) {a['p_target']:.3f} → {b['p_target']:.3f}; named "
              f"{row['negative']} {a['named_negative']} → {b['named_negative']}, {row['target']} {a['named_target']} "
              f"→ {b['named_target']} of {len(seeds)}", flush=True)
    return rows


def spearman(x, y) -> float:
    """Spearman's rank correlation (ties share their mean rank); 0 where one side is constant."""
    def ranks(values):
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        rank = np.empty(len(values))
        rank[order] = np.arange(len(values))
        for value in np.unique(values):
            rank[values == value] = rank[values == value].mean()
        return rank
    rx, ry = ranks(x), ranks(y)
    return 0.0 if rx.std() == 0 or ry.std() == 0 else float(np.corrcoef(rx, ry)[0, 1])


@torch.no_grad()
def morph_part(model, vq, judge, args, settings) -> list[dict]:
    """Morphs for many seeds in one batch: the frames' classes from `lpd_core.morph.frame_classes` (what
    `class_morph` gives `generate`), each seed's frames with its own seed and order."""
    grid = model.config.grid_size
    num_tokens = grid * grid
    sizes = group_sizes_for(num_tokens, settings.steps)
    seeds = list(range(args.morph_seeds))
    weights = morph_weights(args.frames)
    frames = len(weights)
    orders = locality_orders(grid, sizes, seeds).repeat_interleave(frames, 0)
    common = dict(group_sizes=sizes, cfg=settings.cfg, cfg_schedule=settings.cfg_schedule)
    layouts = [int(v) for v in args.layout_steps.split(",")]
    rows = []
    for first, second in PAIRS[:args.pairs]:
        plain_changes = []
        for label in (first, second):  # two seeds of one class: seed s against seed s + 1
            images = vq.decode_images(generate(model, None, [label] * (len(seeds) + 1),
                                               orders=locality_orders(grid, sizes, seeds + [len(seeds)]),
                                               seeds=seeds + [len(seeds)], **common))
            plain_changes.append(float((images[1:] - images[:-1]).abs().mean()))
        for layout in layouts:
            classes = frame_classes(first, second, weights, model.config.num_classes, layout)
            tiled = {name: (value * len(seeds) if isinstance(value, list) else
                            value.repeat(len(seeds), 1) if isinstance(value, torch.Tensor) else value)
                     for name, value in classes.items()}
            tokens = generate(model, None, **tiled, orders=orders, seeds=[s for s in seeds for _ in range(frames)],
                              **common)
            images = vq.decode_images(tokens).reshape(len(seeds), frames, *vq_shape(vq, grid))
            change = (images[:, 1:] - images[:, :-1]).abs().mean(dim=(2, 3, 4))
            curves = judge_probabilities(judge, images.flatten(0, 1))[:, second].reshape(len(seeds), frames).numpy()
            rhos = [spearman(np.arange(frames), curve) for curve in curves]
            mean_curve = curves.mean(axis=0)
            row = dict(first=SHAPE_CLASSES[first], second=SHAPE_CLASSES[second], layout_steps=layout,
                       frames=frames, seeds=len(seeds), neighbour_change=float(change.mean()),
                       largest_neighbour_change=float(change.max(dim=1).values.mean()),
                       two_seeds_change=float(np.mean(plain_changes)),
                       first_last_change=float((images[:, -1] - images[:, 0]).abs().mean()),
                       spearman_per_seed=float(np.mean(rhos)),
                       spearman_of_mean=spearman(np.arange(frames), mean_curve), p_second=mean_curve.tolist())
            rows.append(row)
            print(f"  {row['first']} → {row['second']}, layout steps {layout}: neighbouring frames "
                  f"{row['neighbour_change']:.4f} (largest {row['largest_neighbour_change']:.4f}), two seeds of one "
                  f"class {row['two_seeds_change']:.4f} "
                  f"(ratio {row['neighbour_change'] / row['two_seeds_change']:.2f}),"
                  f" first→last {row['first_last_change']:.4f}; Spearman of P({row['second']}) per seed "
                  f"{row['spearman_per_seed']:.3f}, of the mean {row['spearman_of_mean']:.3f}; P({row['second']}) "
                  f"{mean_curve[0]:.3f} → {mean_curve[-1]:.3f}", flush=True)
    return rows


def vq_shape(vq, grid: int) -> tuple[int, int, int]:
    side = grid * vq.stride
    return side, side, 3


@torch.no_grad()
def travel_part(model, vq, judge, args, settings) -> list[dict]:
    grid, stride = model.config.grid_size, vq.stride
    side = grid * stride
    rows = []
    for first, second in PAIRS[:args.pairs]:
        result = wide_canvas(model, vq, [first] * args.travel_canvases, to_labels=second, width=3 * grid,
                             overlap=args.overlap, steps=settings.steps, seed=0, cfg=settings.cfg,
                             cfg_schedule=settings.cfg_schedule)
        plain = wide_canvas(model, vq, [second] * args.travel_canvases, width=3 * grid, overlap=args.overlap,
                            steps=settings.steps, seed=0, cfg=settings.cfg, cfg_schedule=settings.cfg_schedule)
        starts = [col for _, col in result.tiles]
        named_first, _ = classify(judge, result.images[:, :, :side])
        named_last, _ = classify(judge, result.images[:, :, -side:])
        named_plain, _ = classify(judge, plain.images[:, :, -side:])
        first_ok, last_ok = named_first.numpy() == first, named_last.numpy() == second
        seam, interior, ratio = seam_ratio(result.images, stride, [start + grid for start in starts[:-1]])
        row = dict(first=SHAPE_CLASSES[first], second=SHAPE_CLASSES[second], canvases=args.travel_canvases,
                   tiles=len(result.tiles), first_tile_is_first=float(first_ok.mean()),
                   last_tile_is_second=float(last_ok.mean()), both=float((first_ok & last_ok).mean()),
                   plain_last_tile_is_second=float((named_plain.numpy() == second).mean()), seam=seam,
                   interior=interior, seam_ratio=ratio)
        rows.append(row)
        print(f"  {row['first']} → {row['second']}: first tile judged {row['first']} {row['first_tile_is_first']:.2f}, "
              f"last judged {row['second']} {row['last_tile_is_second']:.2f}, both {row['both']:.2f} of "
              f"{row['canvases']} canvases (last tile of plain {row['second']} canvases: "
              f"{row['plain_last_tile_is_second']:.2f}); seam {seam:.4f} vs interior {interior:.4f} (ratio {ratio:.3f})", flush=True)
    return rows


PARTS = {"blend": ("blend:", blend_part), "variation": ("variation:", variation_part),
         "wide": ("wide canvas:", wide_part), "negative": ("negative class:", negative_part),
         "morph": ("morph:", morph_part), "travel": ("canvases from one class to another:", travel_part)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"{', '.join(PARTS)} (comma-separated)")
    parser.add_argument("--pairs", type=int, default=len(PAIRS), help=f"class pairs to sweep (1..{len(PAIRS)})")
    parser.add_argument("--blend-samples", type=int, default=200, help="samples per weight and class pair")
    parser.add_argument("--blend-weights", type=int, default=11, help="weights from 0 to 1 (11: steps of 0.1)")
    parser.add_argument("--vary-images", type=int, default=500, help="real images varied at each strength")
    parser.add_argument("--strengths", default="0,0.125,0.25,0.375,0.5,0.625,0.75,0.875,1")
    parser.add_argument("--canvases", type=int, default=500)
    parser.add_argument("--overlap", type=int, default=4, help="tile overlap in tokens")
    parser.add_argument("--negative-samples", type=int, default=500, help="samples per negative-class pair")
    parser.add_argument("--negative-pairs", type=int, default=len(NEGATIVE_PAIRS),
                        help=f"(target, negative) pairs (1..{len(NEGATIVE_PAIRS)})")
    parser.add_argument("--morph-seeds", type=int, default=20, help="morphs (one per seed) per class pair")
    parser.add_argument("--frames", type=int, default=17, help="frames per morph")
    parser.add_argument("--layout-steps", default="0,2,4", help="the morph's layout steps to compare")
    parser.add_argument("--travel-canvases", type=int, default=100, help="canvases per class pair")
    add_judge_arguments(parser)
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
    judge = judge_from_arguments(args)
    real_uint8, real_labels = dataset_uint8(1000, seed=VARY_SEED + 1)
    predicted, _ = classify(judge, torch.from_numpy(real_uint8).float() / 255)
    results = dict(config=vars(args), judge_accuracy_real=float((predicted.numpy() == real_labels).mean()))
    print(f"judge accuracy on 1000 held-out real images: {results['judge_accuracy_real']:.3f}")
    for name, (title, part) in PARTS.items():
        if name in parts:
            print(title)
            results[name] = part(model, vq, judge, args, settings)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
