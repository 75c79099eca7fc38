"""What the live preview costs next to a decode step (the sampler node draws one frame per step),
and how close its colours come to the decoded image.

    python -m benchmarks.bench_preview                      # LPD-L shapes, 256 px, 20 steps, fp32
    python -m benchmarks.bench_preview --model lpd_xl --resolution 512 --steps 48 --dtype bf16
    python -m benchmarks.bench_preview --colour             # colour error of the finished frame, fp32

Speed: random weights for the transformer and a VQ-16 tokenizer (same shapes as the published
ones). Prints the one-off palette fit, the median decode step and the median preview frame (the
`LivePreview.frame` call the node makes: token grid → coloured cells → uint8 picture), and the
frame's share of a step.

Colour (`--colour`): the last preview frame of a decode (every token known), drawn at the decoded
image's size, against the decoded image: the mean absolute difference per channel (colours in
[0, 1]) and the mean over pixels of the largest of the three channels' differences. For (a) the
bundled demo model and tokenizer, `--per-class` samples of each of its classes with its own
sampling settings (sample b: class b % 10, seed b); (b) the published VQ-16 tokenizer shape with
random weights (torch seed 0; 16384 codes, stride 16), `--vq-samples` grids of 16×16 uniformly
random codes. Each palette's fit is timed (the fastest of 3). Rows: the palette lpd_core builds
(`build_palette`), the linear map it used before (codebook vector → colour, fitted on codes laid
out in 2×2 blocks), each code decoded in 2×2 blocks of itself (the demo's 512 codes only: VQ-16's
16384 so laid out fill 256 decodes of 256 px), `build_palette` on the demo's training pictures
instead of shape pictures; and for reference, no palette at all: one colour for everything (the samples'
mean), the best one colour per code can do (each code's mean over these very samples; demo only,
where codes recur) and the best any frame of one colour per cell can do (each cell's own mean).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lpd_core import LPD, LPDConfig, VQConfig, VQModel, build_schedule, generate
from lpd_core.preview import PALETTE_PIXELS, PICTURE_TOKENS, LivePreview, build_palette, mosaic, paint, palette_for
from lpd_core.weights import resolve_dtype

from .bench_generate import device_name, synchronize


def speed(args) -> None:
    device, dtype = torch.device(args.device), resolve_dtype(args.dtype)
    grid = args.resolution // 16
    torch.manual_seed(0)
    with torch.device(device):
        model = LPD(LPDConfig.preset(args.model, grid_size=grid)).init_weights().eval().to(dtype)
        tokenizer = VQModel(VQConfig()).eval().to(dtype)
    start = time.perf_counter()
    palette_for(tokenizer)
    palette_seconds = time.perf_counter() - start
    preview = LivePreview(tokenizer, (grid, grid))
    schedule = build_schedule(grid, steps=args.steps, order="locality", seed=0)
    step_times, frame_times, last = [], [], [0.0]

    def on_step(step):
        synchronize(device)
        now = time.perf_counter()
        step_times.append(now - last[0])
        preview.frame(step.tokens, step.known)
        last[0] = time.perf_counter()
        frame_times.append(last[0] - now)

    synchronize(device)
    last[0] = time.perf_counter()
    generate(model, schedule, [1], cfg=4.8, seeds=0, callback=on_step)
    step, frame = statistics.median(step_times[1:]), statistics.median(frame_times)
    print(f"{args.model} {args.resolution}px {args.steps} steps, {args.dtype}, {device} ({device_name(device)}): "
          f"palette fit {palette_seconds * 1e3:.0f} ms once; step {step * 1e3:.1f} ms, preview frame "
          f"{frame * 1e3:.2f} ms = {100 * frame / step:.1f}% of a step (medians)")


# ------------------------------------------------------------------------------------------ colour
@torch.no_grad()
def linear_palette(tokenizer, grids: int = 4, grid_size: int = 8, block: int = 2, seed: int = 0) -> torch.Tensor:
    """The palette of lpd_core before 2026-12-02: 4 grids of 8×8 tokens in 2×2 blocks of random
    codes decoded, the centre of each block averaged, and colour ≈ [codebook vector, 1] @ W fitted
    by ridge-regularised least squares, applied to the whole codebook."""
    codebook = tokenizer.quantize.codebook().detach().float().cpu()
    vocab, side = codebook.shape[0], grid_size // block
    codes = torch.randint(0, vocab, (grids, side, side), generator=torch.Generator().manual_seed(seed))
    grid = codes.repeat_interleave(block, 1).repeat_interleave(block, 2).reshape(grids, -1)
    images = tokenizer.decode_images(grid).float().cpu()
    square = images.shape[1] // side
    margin = square // 4
    blocks = images.reshape(grids, side, square, side, square, 3)
    means = blocks[:, :, margin:square - margin, :, margin:square - margin].mean(dim=(2, 4)).reshape(-1, 3)
    features = torch.cat([codebook[codes.reshape(-1)], torch.ones(codes.numel(), 1)], dim=1).double()
    gram = features.T @ features + 1e-3 * torch.eye(features.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, features.T @ means.double())
    palette = torch.cat([codebook.double(), torch.ones(vocab, 1, dtype=torch.float64)], dim=1) @ weights
    return palette.clamp(0, 1).float()


@torch.no_grad()
def block_palette(tokenizer, side: int = 4, seed: int = 0) -> torch.Tensor:
    """Each code's own colour: every code once as a 2×2 block in grids of side × side blocks (codes
    in random places), the centre half of its block averaged."""
    vocab, stride = tokenizer.vocab_size, tokenizer.stride
    per_grid = side * side
    count = -(-vocab // per_grid)
    generator = torch.Generator().manual_seed(seed)
    codes = torch.cat([torch.randperm(vocab, generator=generator),
                       torch.randint(0, vocab, (count * per_grid - vocab,), generator=generator)])
    codes = codes.reshape(count, side, side)
    images = tokenizer.decode_images(codes.repeat_interleave(2, 1).repeat_interleave(2, 2).reshape(count, -1))
    square = 2 * stride
    centre = images.reshape(count, side, square, side, square, 3)[:, :, stride // 2:square - stride // 2, :,
                                                                  stride // 2:square - stride // 2]
    palette = torch.zeros(vocab, 3)
    first = codes.reshape(-1)[:vocab]  # the permutation: every code's first block
    palette[first] = centre.mean(dim=(2, 4)).reshape(-1, 3)[:vocab]
    return palette


def last_frames(palette: torch.Tensor, tokens: torch.Tensor, grid: tuple[int, int], size: int) -> torch.Tensor:
    """The preview frame of each finished token grid, as the sampler node draws it (paint, then
    mosaic: cells enlarged to `size`, rounded to uint8), (B, H, W, 3) in [0, 1]."""
    frames = [torch.from_numpy(np.array(mosaic(paint(palette, row[None], None, grid, 1), size))) for row in tokens]
    return torch.stack(frames).float() / 255


def errors(frames: torch.Tensor, images: torch.Tensor) -> tuple[float, float]:
    difference = (frames - images).abs()
    return difference.mean().item(), difference.amax(dim=-1).mean().item()


def colour_rows(name: str, tokenizer, tokens: torch.Tensor, images: torch.Tensor, palettes: dict,
                ceiling: bool) -> None:
    """One table: each of `palettes` (label → function fitting it) and the references. `ceiling`:
    include each code's mean over the samples (meaningful where codes recur in them)."""
    count, height, width, _ = images.shape
    stride = tokenizer.stride
    grid = (height // stride, width // stride)
    cells = images.reshape(count, grid[0], stride, grid[1], stride, 3).mean(dim=(2, 4))
    codes = tokens.reshape(-1)
    sums = torch.zeros(tokenizer.vocab_size, 3).index_add_(0, codes, cells.reshape(-1, 3))
    counts = torch.zeros(tokenizer.vocab_size).index_add_(0, codes, torch.ones(len(codes)))
    references = {"one colour for all codes (the samples' mean)": images.mean(dim=(0, 1, 2)).expand(tokenizer.vocab_size, 3)}
    if ceiling:
        references["each code's mean over these samples (best one colour per code)"] = sums / counts.clamp(min=1)[:, None]
    print(f"\n{name}: {count} samples of {height}×{width} px")
    print("| palette | fit, s | mean abs. difference | mean per-pixel max difference |\n|---|---:|---:|---:|")
    for label, make in palettes.items():
        seconds = []
        for _ in range(3):  # the fastest of 3 fits: the least disturbed by other work
            start = time.perf_counter()
            palette = make()
            seconds.append(time.perf_counter() - start)
        seconds = min(seconds)
        mean, worst = errors(last_frames(palette, tokens, grid, max(height, width)), images)
        print(f"| {label} | {seconds:.2f} | {mean:.4f} | {worst:.4f} |", flush=True)
    for label, palette in references.items():
        mean, worst = errors(last_frames(palette, tokens, grid, max(height, width)), images)
        print(f"| {label} | | {mean:.4f} | {worst:.4f} |")
    cell_means = cells.repeat_interleave(stride, 1).repeat_interleave(stride, 2)
    mean, worst = errors(cell_means, images)
    print(f"| each cell's own mean colour (best one colour per cell) | | {mean:.4f} | {worst:.4f} |")


def colour(args) -> None:
    from lpd_core.checkpoints import load_pair
    from training.shapes import dataset

    print(f"torch {torch.__version__}, {device_name(torch.device('cpu'))}, fp32")
    model, vq = load_pair()
    settings = model.generation_defaults
    count = args.per_class * model.config.num_classes
    schedule = build_schedule(model.config.grid_size, steps=settings.steps, order="locality", seed=0)
    tokens = generate(model, schedule, torch.arange(count) % model.config.num_classes, cfg=settings.cfg,
                      cfg_schedule=settings.cfg_schedule, temperature=settings.temperature, seeds=0)
    images = vq.decode_images(tokens)
    side = PICTURE_TOKENS * vq.stride
    training_pictures = torch.from_numpy(dataset(PALETTE_PIXELS // side ** 2, seed=777, size=side)[0])
    colour_rows("(a) demo model and tokenizer", vq, tokens, images, {
        "build_palette: shape pictures through the tokenizer (now)": lambda: build_palette(vq),
        "linear map from codebook vectors (before)": lambda: linear_palette(vq),
        "each code decoded in 2×2 blocks of itself": lambda: block_palette(vq),
        "build_palette on the demo's training pictures": lambda: build_palette(vq, training_pictures),
    }, ceiling=True)

    torch.manual_seed(0)
    vq16 = VQModel(VQConfig()).eval()
    codes = torch.randint(0, vq16.vocab_size, (args.vq_samples, 256), generator=torch.Generator().manual_seed(1))
    colour_rows("(b) VQ-16 shape, random weights", vq16, codes, vq16.decode_images(codes), {
        "build_palette: shape pictures through the tokenizer (now)": lambda: build_palette(vq16),
        "linear map from codebook vectors (before)": lambda: linear_palette(vq16),
    }, ceiling=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lpd_l", choices=["lpd_l", "lpd_xl", "lpd_xxl"])
    parser.add_argument("--resolution", type=int, default=256, choices=[256, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--colour", action="store_true", help="the colour error of the finished frame instead")
    parser.add_argument("--per-class", type=int, default=20, help="--colour: demo samples of each class")
    parser.add_argument("--vq-samples", type=int, default=4, help="--colour: random 16×16 code grids for VQ-16")
    args = parser.parse_args()
    (colour if args.colour else speed)(args)


if __name__ == "__main__":
    main()
