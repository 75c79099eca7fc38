"""What the live preview costs next to a decode step (the sampler node draws one frame per step).

    python -m benchmarks.bench_preview                      # LPD-L shapes, 256 px, 20 steps, fp32
    python -m benchmarks.bench_preview --model lpd_xl --resolution 512 --steps 48 --dtype bf16

Random weights for the transformer and a VQ-16 tokenizer (same shapes as the published ones).
Prints the one-off palette fit, the median decode step and the median preview frame (the
`LivePreview.frame` call the node makes: token grid → coloured cells → uint8 picture), and the
frame's share of a step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lpd_core import LPD, LPDConfig, VQConfig, VQModel, build_schedule, generate
from lpd_core.preview import LivePreview, palette_for
from lpd_core.weights import resolve_dtype

from .bench_generate import device_name, synchronize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lpd_l", choices=["lpd_l", "lpd_xl", "lpd_xxl"])
    parser.add_argument("--resolution", type=int, default=256, choices=[256, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
