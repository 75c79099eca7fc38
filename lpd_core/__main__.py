"""Command line: python -m lpd_core {generate,download,convert,schedule} …

Every command reports a problem as one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLES = """examples:
  python -m lpd_core generate --class 3 --out demo.png
  python -m lpd_core generate --model lpd_l_256 --tokenizer vq_ds16_c2i --class "golden retriever" --steps 20 --out dog.png
  python -m lpd_core download lpd_l_256
  python -m lpd_core convert lpd_l_256.pth
  python -m lpd_core schedule --resolution 256 --steps 20 --order locality --seed 0 --out order.png
"""


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def _progress_bar(description: str, total: int | None = None, unit: str = "it"):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, unit=unit, unit_scale=unit == "B", leave=False,
                file=sys.stderr, dynamic_ncols=True)


def _download_progress(name: str):
    bars = []  # made on the first report, so nothing is drawn when no download happens

    def report(done: int, total: int | None) -> None:
        if not bars:
            bars.append(_progress_bar(f"downloading {name}", total=total, unit="B"))
        bars[0].total = total
        bars[0].n = done
        bars[0].refresh()
    return report


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, help="decode steps, 1..number of tokens (default: the model's)")
    parser.add_argument("--order", default="locality", choices=["locality", "random", "raster"],
                        help="generation order (default: locality)")
    parser.add_argument("--cfg", type=float, help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--cfg-schedule", default="linear", choices=["linear", "constant"])
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    parser.add_argument("--seed", type=int, default=0, help="image i of the run uses seed + i")
    parser.add_argument("--repulsion", type=int, help="locality order: min Chebyshev gap inside a step")
    parser.add_argument("--proximity", type=float, default=1.0, help="locality order: proximity threshold")
    parser.add_argument("--fast", default="auto", choices=["auto", "on", "off"],
                        help="fixed-shape steps replayed as CUDA graphs (auto: on with CUDA)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lpd_core", description="Locality-aware Parallel Decoding: image generation.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate images of one or more classes into a PNG",
                              epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("--model", help="registry name, checkpoint path or folder (default: the bundled demo model)")
    gen.add_argument("--tokenizer", help="registry name or path (default: the one that goes with the model)")
    gen.add_argument("--models-dir", type=Path, help="where downloads go (default: $LPD_MODELS_DIR or ~/.cache/lpd_core)")
    gen.add_argument("--class", dest="classes", action="append", required=True,
                     help="class index or name; repeat or comma-separate for several")
    gen.add_argument("--batch", type=int, default=1, help="images per class")
    _add_sampling_arguments(gen)
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    gen.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                     help="auto: bf16 on GPU; on CPU bf16 for the published models where the CPU has "
                          "bf16 instructions (AMX, AVX512-BF16), else fp32")
    gen.add_argument("--out", type=Path, required=True, help="output PNG (a grid when several images)")

    down = commands.add_parser("download", help="download a published checkpoint into the models folder")
    down.add_argument("name", help="registry name, e.g. lpd_l_256 or vq_ds16_c2i")
    down.add_argument("--models-dir", type=Path)
    down.add_argument("--filename", help="file inside the repository (default: resolved through the hub)")

    conv = commands.add_parser("convert", help="convert a .pth/.pt checkpoint to .safetensors with its config")
    conv.add_argument("source", type=Path)
    conv.add_argument("destination", type=Path, nargs="?")
    conv.add_argument("--num-heads", type=int, help="needed only for widths other than 1024/1280/1536")

    many = commands.add_parser(
        "sample-many", help="sample many images (e.g. 50,000 for FID) into a folder and an .npz; "
        "resumable; shards over processes under torchrun",
        epilog="examples:\n  python -m lpd_core sample-many --model lpd_l_256 --steps 20 --out samples/l256\n"
               "  torchrun --nproc_per_node=8 -m lpd_core sample-many --model lpd_l_256 --steps 20 --out samples/l256\n"
               "Run the same command again to resume; images already written are skipped.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    many.add_argument("--model", help="registry name, checkpoint path or folder (default: the bundled demo model)")
    many.add_argument("--tokenizer", help="registry name or path (default: the one that goes with the model)")
    many.add_argument("--models-dir", type=Path, help="where downloads go (default: $LPD_MODELS_DIR or ~/.cache/lpd_core)")
    many.add_argument("--classes", help="comma-separated class indices or names, assigned in turn "
                      "(image i gets the (i mod count)-th); default: all classes evenly")
    count = many.add_mutually_exclusive_group()
    count.add_argument("--images-per-class", type=int, help="default 50 (50,000 images for 1000 classes)")
    count.add_argument("--num-images", type=int, help="total number of images instead")
    _add_sampling_arguments(many)
    many.set_defaults(cfg_schedule=None, temperature=None, top_k=None, top_p=None)  # None: the model's defaults
    many.add_argument("--batch-size", type=int, default=32, help="images per forward, per process (default 32)")
    many.add_argument("--device", default="auto", help="auto, cpu, cuda (under torchrun: cuda:LOCAL_RANK)")
    many.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                      help="auto: as for generate")
    many.add_argument("--no-progress", action="store_true", help="no progress bar")
    many.add_argument("--out", type=Path, required=True,
                      help="output folder: images/NNNNNN.png, manifest.json, samples_NxHxWx3.npz")

    sched = commands.add_parser("schedule", help="print the group sizes of a schedule; save its order map")
    where = sched.add_mutually_exclusive_group(required=True)
    where.add_argument("--resolution", type=int, help="image size with a stride-16 tokenizer (256 → 16×16)")
    where.add_argument("--grid", type=int, help="tokens per side")
    sched.add_argument("--steps", type=int, required=True)
    sched.add_argument("--order", default="locality", choices=["locality", "random", "raster"])
    sched.add_argument("--seed", type=int, default=0)
    sched.add_argument("--repulsion", type=int)
    sched.add_argument("--proximity", type=float, default=1.0)
    sched.add_argument("--out", type=Path, help="PNG of the order map (which step decodes each token)")
    return parser


def _device(device: str) -> str:
    import torch
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def _fast(choice: str, device: str) -> bool:
    from .fast import on_by_default
    return choice == "on" or (choice == "auto" and on_by_default(device))


def run_generate(args) -> None:
    import torch

    from . import generate
    from .checkpoints import generation_defaults, load_pair, resolve_classes
    from .imaging import image_grid
    from .schedule import build_schedule

    device = _device(args.device)
    model, tokenizer = load_pair(args.model, args.tokenizer, args.models_dir, device, args.dtype,
                                 progress_for=_download_progress)
    per_class = [resolve_classes(text, model) for text in args.classes]
    labels = [c for group in per_class for c in group for _ in range(args.batch)]
    defaults = generation_defaults(model, args.steps)
    schedule = build_schedule(model.config.grid_size, steps=defaults.steps, order=args.order, seed=args.seed,
                              proximity=args.proximity,
                              repulsion=defaults.repulsion if args.repulsion is None else args.repulsion)
    cfg = defaults.cfg if args.cfg is None else args.cfg
    bar = _progress_bar("decoding", total=schedule.steps, unit="step")
    tokens = generate(model, schedule, labels, cfg=cfg, cfg_schedule=args.cfg_schedule,
                      temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seeds=args.seed,
                      callback=lambda step: bar.update(1), fast=_fast(args.fast, device))
    bar.close()
    with torch.no_grad():
        images = tokenizer.decode_images(tokens)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, columns=args.batch if len(labels) > args.batch else None).save(args.out)
    print(f"wrote {args.out}: {len(labels)} image(s) of class(es) {', '.join(map(str, dict.fromkeys(labels)))}, "
          f"{schedule.steps} steps, {args.order} order, cfg {cfg:g}, seed {args.seed}")
    if args.model is None:
        print("(the bundled demo model; published ImageNet models: python -m lpd_core download lpd_l_256, "
              "then --model lpd_l_256)")


def run_download(args) -> None:
    from .checkpoints import models_dir
    from .hub import download
    path = download(args.name, models_dir(args.models_dir), filename=args.filename,
                    progress=_download_progress(args.name))
    print(path)


def run_convert(args) -> None:
    from .weights import convert
    print(convert(args.source, args.destination, num_heads=args.num_heads))


def run_sample_many(args) -> None:
    from .bulk import sample_many
    sample_many(args.out, args.model, args.tokenizer, models_dir=args.models_dir, classes=args.classes,
                images_per_class=args.images_per_class, num_images=args.num_images, steps=args.steps,
                order=args.order, cfg=args.cfg, cfg_schedule=args.cfg_schedule, temperature=args.temperature,
                top_k=args.top_k, top_p=args.top_p, seed=args.seed, repulsion=args.repulsion,
                proximity=args.proximity, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                fast={"auto": None, "on": True, "off": False}[args.fast],
                progress=not args.no_progress, progress_for=_download_progress)


def run_schedule(args) -> None:
    from .imaging import order_map_image, to_pil
    from .schedule import build_schedule
    grid = args.grid if args.grid is not None else args.resolution // 16
    if grid < 1:
        raise UserError(f"--resolution must be at least 16 (one token), got {args.resolution}")
    schedule = build_schedule(grid, steps=args.steps, order=args.order, seed=args.seed,
                              repulsion=args.repulsion, proximity=args.proximity)
    print(f"{schedule.steps} steps over {schedule.num_tokens} tokens ({grid}×{grid}), group sizes: "
          f"{', '.join(map(str, schedule.group_sizes))}")
    if args.out:
        to_pil(order_map_image(schedule.order_map(), schedule.steps)).save(args.out)
        print(f"wrote {args.out}")


COMMANDS = {"generate": run_generate, "download": run_download, "convert": run_convert,
            "schedule": run_schedule, "sample-many": run_sample_many}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2
    except (UserError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
