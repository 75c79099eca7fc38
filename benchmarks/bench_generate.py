"""Time `lpd_core.generate` on published model shapes with random weights: eager against fast.

    python -m benchmarks.bench_generate                                  # LPD-L-256, 20 steps, batch 1 and 64
    python -m benchmarks.bench_generate --models lpd_l,lpd_xl,lpd_xxl --resolutions 256,512 \\
        --steps 20,32,48 --batches 1,64                                  # the whole matrix
    python -m benchmarks.bench_generate --batches 1 --variants eager-fp32,fast-bf16   # the CPU comparison

A variant is `<mode>-<dtype>`: mode `eager` (generate as it is) or `fast` (generate(fast=True):
padded fixed-shape steps, CUDA graphs on a GPU), dtype fp32 / bf16 / fp16 for the transformer and
the VQ decoder alike. Every row prints ms per image and images/s for the decode loop alone and
with the VQ decode (tokens → pixels on the host), and how close the loop comes to the
weight-reading floor: steps × weight bytes / the device's memory bandwidth, measured here with a
large copy. Random weights do the same arithmetic as the published ones; only the pictures are
meaningless. Cfg is on (4.8, linear), so every step runs the batch twice.

`--check` also prints, per model and resolution, how far the variants' teacher-forced logits are
from fp32 (relative L2 error) and what share of greedy tokens each fast variant shares with its
eager twin (1.0 in fp32 on CPU; in half precision padding changes rounding, so a few may differ).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import platform
import statistics
import time

import torch

from lpd_core import LPD, LPDConfig, VQConfig, VQModel, build_schedule, generate, load_model
from lpd_core.fast import release_fast_state
from lpd_core.hub import TOKENIZER_STRIDE
from lpd_core.weights import resolve_dtype


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def memory_bandwidth(device: torch.device, megabytes: int) -> float:
    """Bytes per second of a large device-to-device copy (read + write), best of a few."""
    source = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32, device=device).fill_(1.0)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best


def timed(function, device: torch.device, repeats: int, warmup: int = 0) -> float:
    """Median seconds of `function()` after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def accuracy_check(model: LPD, variants: list[str], device: torch.device) -> None:
    """Teacher-forced logits of each dtype against fp32 (`model` is fp32), and greedy fast-vs-eager
    token agreement."""
    config = model.config
    schedule = build_schedule(config.grid_size, steps=20 if config.num_tokens == 256 else 48, order="locality", seed=0)
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(config.vocab_size, (2, config.num_tokens), generator=generator).to(device)
    labels = torch.tensor([1, 2], device=device)
    orders = torch.from_numpy(schedule.order).to(device).expand(2, -1)
    reference = model.teacher_forced(tokens, labels, orders, schedule.group_sizes).float()
    for dtype_name in sorted({v.split("-")[1] for v in variants}):
        low = copy.deepcopy(model).to(resolve_dtype(dtype_name))
        logits = low.teacher_forced(tokens, labels, orders, schedule.group_sizes).float()
        relative = ((logits - reference).norm() / reference.norm()).item()
        eager = generate(low, schedule, labels, cfg=4.8, temperature=0)
        fast = generate(low, schedule, labels, cfg=4.8, temperature=0, fast=True)
        del low
        print(f"  check {dtype_name}: teacher-forced logits vs fp32, relative error {relative:.2e}; "
              f"greedy tokens fast = eager: {(fast == eager).float().mean().item():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--models", default="lpd_l", help="comma-separated: lpd_l, lpd_xl, lpd_xxl")
    parser.add_argument("--resolutions", default="256", help="comma-separated: 256, 512")
    parser.add_argument("--steps", default="20", help="comma-separated step counts")
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes")
    parser.add_argument("--variants", default="eager-bf16,fast-bf16" if cuda else "eager-fp32,fast-bf16",
                        help="comma-separated <eager|fast>-<fp32|bf16|fp16>")
    parser.add_argument("--cfg", type=float, default=4.8)
    parser.add_argument("--order", default="locality", choices=["locality", "random", "raster"])
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--repeats", type=int, default=5 if cuda else 1)
    parser.add_argument("--warmup", type=int, default=2 if cuda else 1)
    parser.add_argument("--weights", help="an LPD checkpoint to time instead of random weights (e.g. the "
                        "reference's, from bench_reference.py --save-weights); one model and resolution")
    parser.add_argument("--no-vq", action="store_true", help="skip the VQ decode timing")
    parser.add_argument("--check", action="store_true", help="also print accuracy figures (see above)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    device = torch.device(args.device)
    bandwidth = memory_bandwidth(device, 2048 if device.type == "cuda" else 512)
    print(f"device {device} ({device_name(device)}), torch {torch.__version__}, "
          f"copy bandwidth {bandwidth / 1e9:.0f} GB/s")
    rows = []
    header = ("| model | px | steps | batch | variant | ms/image | images/s | ms/image +VQ | images/s +VQ "
              "| floor ms | % of floor |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, resolution in itertools.product(args.models.split(","), map(int, args.resolutions.split(","))):
        config = LPDConfig.preset(name, grid_size=resolution // TOKENIZER_STRIDE)
        torch.manual_seed(0)
        with torch.device(device):
            base = LPD(config).init_weights().eval() if args.weights is None else None
            vq_base = None if args.no_vq else VQModel(VQConfig()).eval()
        if args.weights is not None:
            base = load_model(args.weights, device=device)
            if base.config != config:
                parser.error(f"{args.weights} is not {name} at {resolution} px: {base.config}")
        weight_count = sum(p.numel() for p in base.parameters())
        if args.check:
            accuracy_check(base, args.variants.split(","), device)
        for variant in args.variants.split(","):
            mode, dtype_name = variant.split("-")
            dtype = resolve_dtype(dtype_name)
            model = base.to(dtype)
            vq = vq_base.to(dtype) if vq_base is not None else None
            for steps, batch in itertools.product(map(int, args.steps.split(",")), map(int, args.batches.split(","))):
                if steps > config.num_tokens:
                    continue
                schedule = build_schedule(config.grid_size, steps=steps, order=args.order, seed=0)
                labels = torch.arange(batch) % config.num_classes

                def run_loop():
                    return generate(model, schedule, labels, cfg=args.cfg, seeds=0, fast=mode == "fast")

                loop = timed(run_loop, device, args.repeats, args.warmup)
                with_vq = None
                if vq is not None:
                    tokens = run_loop()
                    with torch.no_grad():
                        decode = timed(lambda: vq.decode_images(tokens), device, args.repeats, 1)
                    with_vq = loop + decode
                floor = steps * weight_count * model.pos_embed.element_size() / bandwidth
                row = dict(model=name, resolution=resolution, steps=steps, batch=batch, variant=variant,
                           ms_per_image=1000 * loop / batch, images_per_s=batch / loop,
                           ms_per_image_vq=None if with_vq is None else 1000 * with_vq / batch,
                           images_per_s_vq=None if with_vq is None else batch / with_vq,
                           floor_ms=1000 * floor, floor_percent=100 * floor / loop,
                           device=device_name(device), torch=torch.__version__)
                rows.append(row)
                vq_cells = ("–", "–") if with_vq is None else (f"{row['ms_per_image_vq']:.1f}",
                                                             f"{row['images_per_s_vq']:.1f}")
                print(f"| {name} | {resolution} | {steps} | {batch} | {variant} | {row['ms_per_image']:.1f} | "
                      f"{row['images_per_s']:.1f} | {vq_cells[0]} | {vq_cells[1]} | {row['floor_ms']:.1f} | "
                      f"{row['floor_percent']:.0f}% |", flush=True)
                release_fast_state(model)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
