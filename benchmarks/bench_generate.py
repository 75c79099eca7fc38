"""Time `lpd_core.generate` on published model shapes with random weights.

    python -m benchmarks.bench_generate --model lpd_l --steps 20 --batch 1 --cfg 4.8

Prints ms per image (and images/s) with the device, dtype and torch version. Random weights give
the same arithmetic as the published ones; only the pictures are meaningless.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lpd_core import LPD, LPDConfig, build_schedule, generate
from lpd_core.weights import resolve_dtype


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lpd_l", choices=["lpd_l", "lpd_xl", "lpd_xxl"])
    parser.add_argument("--resolution", type=int, default=256, choices=[256, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--cfg", type=float, default=4.8)
    parser.add_argument("--order", default="locality", choices=["locality", "random", "raster"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    device, dtype = torch.device(args.device), resolve_dtype(args.dtype)
    config = LPDConfig.preset(args.model, grid_size=args.resolution // 16)
    torch.manual_seed(0)
    with torch.device(device):
        model = LPD(config).init_weights()
    model = model.to(dtype).eval()
    schedule = build_schedule(config.grid_size, steps=args.steps, order=args.order, seed=0)
    labels = torch.arange(args.batch) % config.num_classes

    def run() -> float:
        synchronize(device)
        start = time.perf_counter()
        generate(model, schedule, labels, cfg=args.cfg, seeds=0)
        synchronize(device)
        return time.perf_counter() - start

    for _ in range(args.warmup):
        run()
    seconds = statistics.median(run() for _ in range(args.repeats))
    print(f"{args.model} {args.resolution}px, {args.steps} steps, batch {args.batch}, cfg {args.cfg}: "
          f"{1000 * seconds / args.batch:.1f} ms/image, {args.batch / seconds:.2f} images/s "
          f"(median of {args.repeats}; device {device} "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}, dtype {args.dtype}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
