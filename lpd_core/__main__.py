"""Command line: python -m lpd_core COMMAND …

Commands:
  generate     images of one or more classes (or class blends, or a class switch) into one image file
  vary         variations of an image: keep a spread-out share of its tokens, regenerate the rest
  wide         a picture wider (or taller) than the model's square, from overlapping outpainted tiles
  morph        an animation (WEBP or GIF) that turns one class into another, frame by frame
  download     a published checkpoint into the models folder, verified
  convert      a .pth/.pt checkpoint to .safetensors with its config
  schedule     print a schedule's group sizes; save its order map
  sample-many  many images (e.g. 50,000 for FID) into a folder and an .npz; resumable; torchrun

A problem with the user's input (an `lpd_core.errors.LPDError`: a setting out of range, a missing
or damaged file, an unwritable output, an unavailable device, more memory than there is, a folder of
another run) is printed as one line `error: …` on stderr with exit status 2; Ctrl-C prints one line
and exits with 130. Anything else is a bug and keeps its traceback.

Each command imports the modules it needs when it runs (imports inside the functions, for start-up
time: a command does not pay for the others'). And each checks what it can without torch first (the
output path, the numbers, the names of the model and tokenizer, the model's file, downloaded if
needed) and imports torch only then, so a mistake is answered in a fraction of a second instead of
after torch's start-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import LPDError, SettingError
from .files import check_animation_path, check_image_path
from .hub import TOKENIZER_STRIDE
from .settings import (CFG_SCHEDULES, EASINGS, check_count, check_easing, check_fps, check_frames, check_integer,
                       check_layout_steps, check_negative, check_pixels, check_proximity, check_seed, check_strength,
                       check_switch_step, check_values, seeds_for)

EXAMPLES = """examples:
  {prog} generate --class 3 --out demo.png
  {prog} generate --model lpd_l_256 --tokenizer vq_ds16_c2i --class "golden retriever" --steps 20 --out dog.png
  {prog} download lpd_l_256
  {prog} convert lpd_l_256.pth
  {prog} schedule --resolution 256 --steps 20 --order locality --seed 0 --out order.png
  {prog} sample-many --model lpd_l_256 --steps 20 --out samples/l256
"""
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


def _progress_bar(description: str, total: int | None = None, unit: str = "it"):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, unit=unit, unit_scale=unit == "B", leave=False,
                file=sys.stderr, dynamic_ncols=True)


def _step_progress(steps: int):
    """A progress bar over the decode steps, and the callback that advances it (a batch decoded in
    chunks, `lpd_core.memory`, has more steps than its schedule)."""
    bar = _progress_bar("decoding", total=steps, unit="step")

    def advance(step) -> None:
        bar.total = step.total
        bar.update(1)
    return bar, advance


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
    parser.add_argument("--cfg-schedule", choices=CFG_SCHEDULES, help="default: the model's (linear)")
    parser.add_argument("--temperature", type=float, help="default: the model's (1)")
    parser.add_argument("--top-k", type=int, help="0 = off (default: the model's, 0)")
    parser.add_argument("--top-p", type=float, help="1 = off (default: the model's, 1)")
    parser.add_argument("--seed", type=int, default=0, help="0..2^64-1; image i of the run uses seed + i")
    parser.add_argument("--repulsion", type=int, help="locality order: min Chebyshev gap inside a step")
    parser.add_argument("--proximity", type=float, default=1.0, help="locality order: proximity threshold")
    parser.add_argument("--fast", default="auto", choices=["auto", "on", "off"],
                        help="fixed-shape steps replayed as CUDA graphs (auto: on with CUDA)")


def program() -> str:
    """The command as it was called: `lpd` (the installed script) or `python -m lpd_core`."""
    name = Path(sys.argv[0]).name
    return "python -m lpd_core" if name == "__main__.py" else name


def build_parser(prog: str = "python -m lpd_core") -> argparse.ArgumentParser:
    examples = EXAMPLES.format(prog=prog)
    parser = argparse.ArgumentParser(
        prog=prog, description="Locality-aware Parallel Decoding: image generation.",
        epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate images of one or more classes into a PNG",
                              epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("--model", help="registry name, checkpoint path or folder (default: the bundled demo model)")
    gen.add_argument("--tokenizer", help="registry name or path (default: the one that goes with the model)")
    gen.add_argument("--models-dir", type=Path, help="where downloads go (default: $LPD_MODELS_DIR or ~/.cache/lpd_core)")
    wanted = gen.add_mutually_exclusive_group(required=True)
    wanted.add_argument("--class", dest="classes", action="append",
                        help="class index or name; repeat or comma-separate for several")
    gen.add_argument("--batch", type=int, default=1, help="images per class")
    _add_sampling_arguments(gen)
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    gen.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                     help="auto: bf16 on GPU; on CPU bf16 for the published models where the CPU has "
                          "bf16 instructions (AMX, AVX512-BF16), else fp32")
    gen.add_argument("--out", type=Path, required=True,
                     help="output image: .png (or .jpg, .webp, .bmp, .tif); a grid when several images")

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
        epilog=f"examples:\n  {prog} sample-many --model lpd_l_256 --steps 20 --out samples/l256\n"
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
    many.add_argument("--batch-size", type=int, default=32, help="images per forward, per process (default 32)")
    many.add_argument("--device", default="auto", help="auto, cpu, cuda (under torchrun: cuda:LOCAL_RANK)")
    many.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                      help="auto: as for generate")
    many.add_argument("--no-progress", action="store_true", help="no progress bar")
    many.add_argument("--out", type=Path, required=True,
                      help="output folder: images/NNNNNN.png, manifest.json, samples_NxHxWx3.npz")

    sched = commands.add_parser("schedule", help="print the group sizes of a schedule; save its order map")
    where = sched.add_mutually_exclusive_group(required=True)
    where.add_argument("--resolution", type=int,
                       help=f"image size with a stride-{TOKENIZER_STRIDE} tokenizer (256 → 16×16)")
    where.add_argument("--grid", type=int, help="tokens per side")
    sched.add_argument("--steps", type=int, required=True)
    sched.add_argument("--order", default="locality", choices=["locality", "random", "raster"])
    sched.add_argument("--seed", type=int, default=0)
    sched.add_argument("--repulsion", type=int)
    sched.add_argument("--proximity", type=float, default=1.0)
    sched.add_argument("--out", type=Path, help="PNG of the order map (which step decodes each token)")
    _add_creative_arguments(commands, gen, wanted, prog)
    return parser


def _fast(choice: str, device: str) -> bool:
    from .fast import on_by_default
    return choice == "on" or (choice == "auto" and on_by_default(device))


def _check_settings(args) -> None:
    """The sampling settings given, each in its range; the steps' range is the model's token count,
    so they are checked once it is loaded (resolve_settings)."""
    check_values(cfg=args.cfg, cfg_schedule=args.cfg_schedule, temperature=args.temperature, top_k=args.top_k,
                 top_p=args.top_p, repulsion=args.repulsion)
    check_seed(args.seed)
    check_proximity(args.proximity)


def _find_checkpoints(args) -> tuple[Path, Path | None]:
    """The model's file and the tokenizer's (None: the one the model names), found or downloaded
    before torch is imported: a wrong name or an unreachable Hub is answered at once."""
    from .checkpoints import DEMO, find_checkpoint
    model = args.model or DEMO
    model_file = find_checkpoint(model, args.models_dir, _download_progress(model))
    if args.tokenizer is None:
        return model_file, None
    return model_file, find_checkpoint(args.tokenizer, args.models_dir, _download_progress(args.tokenizer),
                                       tokenizer=True)


def _load(args, model_file, tokenizer_file, steps_up_to_tokens: bool = False):
    """Device, model, tokenizer and resolved settings of a generate/vary/wide run
    (`steps_up_to_tokens`: as `checkpoints.resolve_settings`)."""
    from .checkpoints import load_pair, resolve_settings
    from .weights import resolve_device
    device = resolve_device(args.device)
    model, tokenizer = load_pair(model_file, tokenizer_file, args.models_dir, device, args.dtype,
                                 progress_for=_download_progress)
    settings = resolve_settings(model, steps=args.steps, cfg=args.cfg, cfg_schedule=args.cfg_schedule,
                                temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                repulsion=args.repulsion, steps_up_to_tokens=steps_up_to_tokens)
    return device, model, tokenizer, settings


def run_generate(args) -> None:
    check_image_path(args.out)
    batch = check_count("batch size", args.batch)
    _check_settings(args)
    if (args.switch_class is None) != (args.switch_step is None):
        raise SettingError("--switch-class and --switch-step go together: give both, or neither")
    if args.switch_step is not None:
        check_switch_step(args.switch_step)
    files = _find_checkpoints(args)

    from . import generate
    from .imaging import image_grid, save_image
    from .schedule import build_schedule

    device, model, tokenizer, settings = _load(args, *files)
    labels = _generate_labels(args, model, tokenizer, batch)
    schedule = build_schedule(model.config.grid_size, steps=settings.steps, order=args.order, seed=args.seed,
                              proximity=args.proximity, repulsion=settings.repulsion)
    negative = _negative(args, model, settings)
    if args.switch_step is not None:
        check_switch_step(args.switch_step, schedule.steps)
    bar, advance = _step_progress(schedule.steps)
    tokens = generate(model, schedule, labels, cfg=settings.cfg, cfg_schedule=settings.cfg_schedule,
                      temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                      seeds=seeds_for(args.seed, len(labels)), callback=advance, negative=negative,
                      fast=_fast(args.fast, device), **_class_switch(args, model, len(labels)))
    bar.close()
    images = tokenizer.decode_images(tokens)
    save_image(image_grid(images, columns=batch if len(labels) > batch else None), args.out)
    print(f"wrote {args.out}: {len(labels)} image(s) of class(es) {', '.join(map(str, dict.fromkeys(labels)))}, "
          f"{schedule.steps} steps, {args.order} order, cfg {settings.cfg:g}{_negative_words(negative)}, "
          f"seed {args.seed}")
    if args.model is None:
        print("(the bundled demo model; published ImageNet models: python -m lpd_core download lpd_l_256, "
              "then --model lpd_l_256)")


def run_download(args) -> None:
    from .checkpoints import models_dir
    from .hub import download
    path = download(args.name, models_dir(args.models_dir), filename=args.filename,
                    progress=_download_progress(args.name), check_hub=True,
                    log=lambda line: print(line, file=sys.stderr))
    print(path)


def run_convert(args) -> None:
    num_heads = None if args.num_heads is None else check_integer("--num-heads", args.num_heads, 1)
    from .weights import convert
    print(convert(args.source, args.destination, num_heads=num_heads))


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
    from .schedule import build_schedule

    if args.grid is not None:
        grid = check_integer("--grid", args.grid, 1)
    else:
        grid = check_pixels("--resolution", args.resolution, TOKENIZER_STRIDE)
    steps = check_integer("steps", args.steps, 1, grid * grid)
    seed, proximity = check_seed(args.seed), check_proximity(args.proximity)
    repulsion = None if args.repulsion is None else check_integer("repulsion", args.repulsion, 0)
    if args.out:
        check_image_path(args.out)
    schedule = build_schedule(grid, steps=steps, order=args.order, seed=seed, repulsion=repulsion,
                              proximity=proximity)
    print(f"{schedule.steps} steps over {schedule.num_tokens} tokens ({grid}×{grid}), group sizes: "
          f"{', '.join(map(str, schedule.group_sizes))}")
    if args.out:
        from .imaging import order_map_image, save_image, to_pil
        save_image(to_pil(order_map_image(schedule.order_map(), schedule.steps)), args.out)
        print(f"wrote {args.out}")


# -- class blends, negative classes, variations, wide canvases, class morphs ---------------------------------
CREATIVE_EXAMPLES = """examples:
  {prog} generate --blend "circle:0.7, star:0.3" --out blend.png
  {prog} generate --class circle --switch-class star --switch-step 3 --out switch.png
  {prog} generate --class ring --negative circle --out ring.png
  {prog} vary --image in.png --class star --strength 0.5 --count 4 --out variations.png
  {prog} wide --class ring --width 96 --out wide.png
  {prog} wide --model lpd_l_256 --class "golden retriever" --width 768 --out wide.png
  {prog} wide --class circle --to-class star --width 128 --out travel.png
  {prog} wide --class "circle; ring; star" --width 96 --overlap 4 --out tiles.png
  {prog} morph --class circle --to-class star --frames 16 --out morph.webp
"""


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="registry name, checkpoint path or folder (default: the bundled demo model)")
    parser.add_argument("--tokenizer", help="registry name or path (default: the one that goes with the model)")
    parser.add_argument("--models-dir", type=Path, help="where downloads go (default: $LPD_MODELS_DIR or ~/.cache/lpd_core)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="auto: as for generate")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, device, sampling and negative-class options of vary, wide and morph."""
    _add_model_arguments(parser)
    _add_sampling_arguments(parser)
    _add_negative_argument(parser)


def _add_negative_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--negative", metavar="CLASS_OR_MIX",
                        help="guide away from this class (or mix) instead of the null class: 'a ring, less like a "
                             "circle' is --class ring --negative circle; needs cfg above 1 (default: the null class)")


def _add_creative_arguments(commands, gen: argparse.ArgumentParser, wanted, prog: str) -> None:
    """--blend, the class switch and --negative on generate; the vary, wide and morph commands."""
    examples = CREATIVE_EXAMPLES.format(prog=prog)
    wanted.add_argument("--blend", dest="blends", action="append", metavar="MIX",
                        help="instead of --class: a weighted mix of classes for one image, e.g. "
                             "'tiger:0.7, golden retriever:0.3' or '0:0.7,3:0.3' (indices or names; weights are "
                             "relative); repeat for several mixes, --batch images of each")
    gen.add_argument("--switch-class", metavar="CLASS_OR_MIX",
                     help="change the class part-way: from --switch-step on every image is conditioned on this "
                          "class (or mix), e.g. layout from --class, details from this one")
    gen.add_argument("--switch-step", type=int, help="the decode step (0-based) at which --switch-class takes over")
    _add_negative_argument(gen)

    mix_help = "class index or name, or a mix 'circle:0.7, star:0.3' (weights are relative)"
    vary = commands.add_parser(
        "vary", help="variations of an image: keep a spread-out share of its tokens, regenerate the rest",
        description="Encodes --image, keeps a share 1 - strength of its tokens (spread over the grid) and "
                    "regenerates the others under --class in a locality-aware order grown from the kept ones. "
                    "Strength 0 gives back the image's own tokens, 1 a fresh sample.",
        epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    vary.add_argument("--image", type=Path, required=True,
                      help="the picture to vary (resized so its shorter side is the model's resolution, centre-cropped)")
    vary.add_argument("--class", dest="mix", required=True, help=mix_help + " of the regenerated tokens")
    vary.add_argument("--strength", type=float, default=0.5,
                      help="share of tokens to regenerate, 0..1 (default 0.5); the rest is kept from the image")
    vary.add_argument("--count", type=int, default=1, help="variations to make (variation i uses seed + i)")
    _add_run_arguments(vary)
    vary.add_argument("--out", type=Path, required=True, help="output PNG (a grid when several)")

    wide = commands.add_parser(
        "wide", help="a picture wider (or taller) than the model's square, from overlapping outpainted tiles",
        description="Generates a canvas of --width × --height pixels from tiles of the model's size: the first "
                    "tile is a plain sample, each next one an outpaint that keeps --overlap tokens of the tiles "
                    "before it; the whole canvas is decoded at once, so there is no seam. Sizes are in pixels "
                    "(what the picture should measure); they must be multiples of the tokenizer's stride "
                    "(16 px for the published models, 4 for the demo).",
        epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    wide.add_argument("--class", dest="mix", required=True,
                      help=mix_help + "; or one per tile, separated by ';' ('circle; ring; star': spread evenly over "
                                      "the tiles, left to right)")
    wide.add_argument("--to-class", dest="to_mix", metavar="CLASS_OR_MIX",
                      help="travel from --class at the first tile to this class (or mix) at the last: each tile is "
                           "conditioned on the mix at its place along the canvas")
    wide.add_argument("--width", type=int, required=True,
                      help="canvas width in pixels, at least the model's resolution (e.g. 768 for a 256 px model)")
    wide.add_argument("--height", type=int, help="canvas height in pixels (default: the model's resolution)")
    wide.add_argument("--overlap", type=int,
                      help="tokens each tile shares with the tiles before it (default: half a tile); more overlap "
                           "gives each tile more context, and takes more tiles")
    wide.add_argument("--batch", type=int, default=1, help="canvases to make (canvas i uses seed + i)")
    _add_run_arguments(wide)
    wide.add_argument("--out", type=Path, required=True, help="output PNG (canvases one under the other)")

    morph = commands.add_parser(
        "morph", help="an animation (WEBP or GIF) that turns one class into another, frame by frame",
        description="Frames from --class to --to-class: frame i is conditioned on the mix (1 - w)·start + w·end, "
                    "w going from 0 to 1 along --easing, and every frame has the same seed, order and settings, so "
                    "neighbouring frames differ little. The first frame is exactly `generate --class START`, the "
                    "last exactly `generate --class END` (same seed). Written as a looping animation.",
        epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    morph.add_argument("--class", dest="mix", required=True, help=mix_help + " of the first frame")
    morph.add_argument("--to-class", dest="to_mix", required=True, metavar="CLASS_OR_MIX",
                       help="class index or name, or a mix, of the last frame")
    morph.add_argument("--frames", type=int, default=16, help="frames of the animation, at least 2 (default 16)")
    morph.add_argument("--easing", default="linear", choices=EASINGS,
                       help="how the end class's weight grows over the frames (default linear; ease-in-out is "
                            "slow at both ends)")
    morph.add_argument("--layout-steps", type=int,
                       help="the first decode steps of every frame follow the start class in the first half of "
                            "the frames and the end class in the second, so composition and colours change once, "
                            "in the middle; 0 blends every step (default: a quarter of the steps)")
    morph.add_argument("--fps", type=float, default=8.0, help="frames per second (default 8)")
    _add_run_arguments(morph)
    morph.add_argument("--out", type=Path, required=True, help="output animation: .webp (lossless) or .gif")


def _generate_labels(args, model, tokenizer, batch: int) -> list:
    """generate's labels: `batch` images of each --class, or of each --blend mix, once their images
    are known to fit in memory (NotEnoughMemoryError before any list of them is made)."""
    from .blend import label_or_mix, parse_class_mix
    from .classes import resolve_classes
    if args.blends:
        wanted = [label_or_mix(parse_class_mix(text, model)) for text in args.blends]
    else:
        wanted = [c for text in args.classes for c in resolve_classes(text, model)]
    side = model.config.grid_size * tokenizer.stride
    tokenizer.images_at_once(len(wanted) * batch, side, side)
    return [label for label in wanted for _ in range(batch)]


def _class_switch(args, model, batch: int) -> dict:
    """generate's switch_labels/switch_step from --switch-class/--switch-step (nothing when not asked)."""
    if args.switch_class is None:
        return {}
    from .blend import label_or_mix, parse_class_mix
    return dict(switch_labels=[label_or_mix(parse_class_mix(args.switch_class, model))] * batch,
                switch_step=args.switch_step)


def _negative(args, model, settings):
    """generate's `negative` from --negative (None: the null class), checked against cfg."""
    negative = None
    if args.negative is not None:
        from .blend import label_or_mix, parse_class_mix
        negative = label_or_mix(parse_class_mix(args.negative, model))
    check_negative(negative, settings.cfg)
    return negative


def _negative_words(negative) -> str:
    return "" if negative is None else f", negative {negative}"


def _sampling(args, settings, device, model) -> dict:
    """vary's and wide's sampling arguments, the negative class included."""
    return dict(steps=settings.steps, order=args.order, seed=args.seed, cfg=settings.cfg,
                cfg_schedule=settings.cfg_schedule, temperature=settings.temperature, top_k=settings.top_k,
                top_p=settings.top_p, proximity=args.proximity, repulsion=settings.repulsion,
                negative=_negative(args, model, settings), fast=_fast(args.fast, device))


def run_vary(args) -> None:
    check_strength(args.strength)
    check_count("--count", args.count)
    check_image_path(args.out)
    _check_settings(args)
    picture = _read_picture(args.image)
    files = _find_checkpoints(args)

    import numpy as np
    import torch

    from .blend import label_or_mix, parse_class_mix
    from .imaging import image_grid, save_image
    from .variation import vary

    image = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255)[None]
    device, model, tokenizer, settings = _load(args, *files, steps_up_to_tokens=True)
    label = label_or_mix(parse_class_mix(args.mix, model))
    result = vary(model, tokenizer, image.expand(args.count, -1, -1, -1), label, args.strength,
                  **_sampling(args, settings, device, model))
    save_image(image_grid(result.images), args.out)
    agreement = (result.tokens == result.source).float().mean().item()
    print(f"wrote {args.out}: {args.count} variation(s) of {args.image} as {label} at strength {args.strength:g} "
          f"({int(result.kept[0].sum())} of {result.kept.shape[1]} tokens kept; {agreement:.0%} of tokens as in "
          f"the image), seed {args.seed}")


def _read_picture(path: Path):
    """--image as an RGB PIL image (SettingError if it is missing, unreadable, not a picture or huge)."""
    from PIL import Image
    try:
        with Image.open(path) as picture:
            return picture.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # missing, unreadable, not an image, huge
        raise SettingError(f"cannot read --image {path}: {error}; give the path of a PNG or JPEG picture") from None


def run_wide(args) -> None:
    check_count("--batch", args.batch)
    check_image_path(args.out)
    _check_settings(args)
    files = _find_checkpoints(args)

    from .blend import label_or_mix, parse_class_mix, parse_class_mixes
    from .canvas import wide_canvas
    from .imaging import image_grid, save_image

    device, model, tokenizer, settings = _load(args, *files, steps_up_to_tokens=True)
    stride, side = tokenizer.stride, model.config.grid_size * tokenizer.stride
    height = side if args.height is None else args.height
    columns, rows = check_pixels("--width", args.width, stride), check_pixels("--height", height, stride)
    tile_labels = parse_class_mixes(args.mix, model)
    if len(tile_labels) > 1 and args.to_mix is not None:
        raise SettingError("--to-class goes with one --class (the start); with a class per tile ('a; b; c') leave "
                           "--to-class out")
    if len(tile_labels) > 1:
        classes, words = dict(tile_labels=tile_labels, batch=args.batch), " → ".join(map(str, tile_labels))
    else:
        (label,) = tile_labels
        classes, words = dict(labels=[label], batch=args.batch), str(label)  # one class for every canvas
        if args.to_mix is not None:
            to_label = label_or_mix(parse_class_mix(args.to_mix, model))
            classes["to_labels"], words = [to_label], f"{label} → {to_label}"
    result = wide_canvas(model, tokenizer, width=columns, height=rows, overlap=args.overlap, **classes,
                         **_sampling(args, settings, device, model))
    save_image(image_grid(result.images, columns=1), args.out)
    print(f"wrote {args.out}: {args.batch} canvas(es) of {args.width}×{height} px as {words}, {len(result.tiles)} "
          f"tiles of {side} px, seed {args.seed}")


def run_morph(args) -> None:
    frames = check_frames(args.frames)
    check_easing(args.easing)
    check_fps(args.fps)
    if args.layout_steps is not None:
        check_layout_steps(args.layout_steps)
    check_animation_path(args.out)
    _check_settings(args)
    files = _find_checkpoints(args)

    from .blend import label_or_mix, parse_class_mix
    from .imaging import save_animation
    from .morph import class_morph
    from .schedule import build_schedule

    device, model, tokenizer, settings = _load(args, *files)
    side = model.config.grid_size * tokenizer.stride
    tokenizer.images_at_once(frames, side, side)  # NotEnoughMemoryError before the progress bar starts
    start = label_or_mix(parse_class_mix(args.mix, model))
    end = label_or_mix(parse_class_mix(args.to_mix, model))
    schedule = build_schedule(model.config.grid_size, steps=settings.steps, order=args.order, seed=args.seed,
                              proximity=args.proximity, repulsion=settings.repulsion)
    if args.layout_steps is not None:
        check_layout_steps(args.layout_steps, schedule.steps)
    negative = _negative(args, model, settings)
    bar, advance = _step_progress(schedule.steps)
    result = class_morph(model, tokenizer, start, end, schedule=schedule, frames=frames, easing=args.easing,
                         layout_steps=args.layout_steps, seed=args.seed, cfg=settings.cfg,
                         cfg_schedule=settings.cfg_schedule, temperature=settings.temperature, top_k=settings.top_k,
                         top_p=settings.top_p, negative=negative, callback=advance, fast=_fast(args.fast, device))
    bar.close()
    save_animation(result.images, args.out, args.fps)
    print(f"wrote {args.out}: {frames} frames from {start} to {end} ({args.easing}) at {args.fps:g} fps, "
          f"{schedule.steps} steps, cfg {settings.cfg:g}{_negative_words(negative)}, seed {args.seed}")


COMMANDS = {"generate": run_generate, "download": run_download, "convert": run_convert,
            "schedule": run_schedule, "sample-many": run_sample_many, "vary": run_vary, "wide": run_wide,
            "morph": run_morph}


def main(argv=None) -> int:
    args = build_parser(program()).parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("\nerror: interrupted; files are written whole or not at all, so run the same command again "
              "(sample-many resumes where it stopped)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LPDError as error:  # the user's input: one line; anything else is a bug and keeps its traceback
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
