"""Figures for the docs, drawn with the project's own code.

    python -m benchmarks.make_figures            # writes docs/samples.png and docs/order_maps.png
    python -m benchmarks.make_figures --thumbnails out/comfyui-screens/0.33.0   # example_workflows/*.jpg

docs/samples.png: samples of the shipped demo model (`lpd_core/data/demo/`), one row per class,
at the demo's default steps / cfg, locality order.
docs/order_maps.png: the step at which each token is decoded, for the locality / random / raster
orders, on the demo's 8×8 grid and on a 256×256 model's 16×16 grid.
example_workflows/<name>.jpg: the thumbnail ComfyUI's template browser shows. A template that runs on the
demo model shows what it saved when the ComfyUI tests ran it in a real ComfyUI (tests/test_comfy_browser.py
keeps those files); one that needs published weights shows a card: its title, the models it downloads, its
classes.
"""

from __future__ import annotations

import argparse
import math
import json
from glob import escape as glob_escape
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from lpd_core import build_schedule, generate, load_model, load_tokenizer
from lpd_core.checkpoints import DEMO_MODEL_PATH, DEMO_TOKENIZER_PATH
from lpd_core.classes import class_label
from lpd_core.imaging import order_map_image, to_pil

DOCS = Path(__file__).resolve().parent.parent / "docs"
TEMPLATES = DOCS.parent / "example_workflows"
THUMBNAIL = (512, 384)
DARK, LIGHT, DIM = (30, 30, 34), (240, 240, 240), (170, 170, 176)
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


@torch.no_grad()
def samples_figure(path, per_class: int = 10, steps: int | None = None, cfg: float | None = None,
                   seed: int = 0, scale: int = 3) -> Path:
    model = load_model(DEMO_MODEL_PATH)
    vq = load_tokenizer(DEMO_TOKENIZER_PATH)
    settings = model.generation_defaults  # the demo file's own
    steps = steps or settings.steps
    cfg = settings.cfg if cfg is None else cfg
    n = len(model.class_names)
    labels = torch.arange(n).repeat_interleave(per_class)
    schedule = build_schedule(model.config.grid_size, steps=steps, order="locality", seed=seed)
    tokens = generate(model, schedule, labels, cfg=cfg, cfg_schedule=settings.cfg_schedule, seeds=seed)
    images = (vq.decode_images(tokens).numpy() * 255).round().astype(np.uint8)
    size = images.shape[1] * scale
    gap, label_width, top = 4, 150, 34
    canvas = Image.new("RGB", (label_width + per_class * (size + gap), top + n * (size + gap)), BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    pen.text((4, 6), f"LPD demo model: {steps} steps, cfg {cfg} ({settings.cfg_schedule}), "
                     f"locality order, seeds {seed}..", fill=INK, font=_font(16))
    for row in range(n):
        y = top + row * (size + gap)
        pen.text((6, y + size // 2 - 8), model.class_names[row], fill=INK, font=_font(15))
        for col in range(per_class):
            tile = Image.fromarray(images[row * per_class + col]).resize((size, size), Image.NEAREST)
            canvas.paste(tile, (label_width + col * (size + gap), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return path


def _order_panel(grid: int, steps: int, order: str, cell: int, seed: int = 0) -> Image.Image:
    schedule = build_schedule(grid, steps=steps, order=order, seed=seed)
    step_map = schedule.order_map()
    panel = to_pil(order_map_image(step_map, steps, cell))  # the colours of the LPD Schedule node
    pen = ImageDraw.Draw(panel)
    if cell >= 16:
        font = _font(max(9, cell // 2))
        for r in range(grid):
            for c in range(grid):
                value = int(step_map[r, c])
                ink = (0, 0, 0) if value > 0.6 * (steps - 1) else (255, 255, 255)
                pen.text((c * cell + cell // 2, r * cell + cell // 2), str(value + 1), fill=ink, font=font,
                         anchor="mm")
    return panel


def order_maps_figure(path, rows=((8, 8), (16, 20)), seed: int = 0) -> Path:
    """One row per (grid, steps), one column per order; the number is the step (1-based)."""
    orders = ("locality", "random", "raster")
    panel_size, gap, left, top = 256, 16, 130, 40
    height = top + len(rows) * (panel_size + gap + 20)
    canvas = Image.new("RGB", (left + len(orders) * (panel_size + gap), height), BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    for col, order in enumerate(orders):
        pen.text((left + col * (panel_size + gap) + panel_size // 2, 14), order, fill=INK, font=_font(18),
                 anchor="mm")
    for row, (grid, steps) in enumerate(rows):
        y = top + row * (panel_size + gap + 20)
        pen.text((8, y + panel_size // 2 - 20), f"{grid}x{grid} tokens", fill=INK, font=_font(15))
        pen.text((8, y + panel_size // 2), f"{steps} steps", fill=INK, font=_font(15))
        sizes = build_schedule(grid, steps=steps, order="raster").group_sizes
        pen.text((left, y + panel_size + 3), "group sizes: " + ",".join(map(str, sizes)), fill=INK, font=_font(12))
        for col, order in enumerate(orders):
            panel = _order_panel(grid, steps, order, panel_size // grid, seed)
            canvas.paste(panel, (left + col * (panel_size + gap), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return path


def _saved_picture(files: list[Path], frames: int = 8) -> Image.Image:
    """The files one template run saved, one above the other; an animation as a row of `frames` frames."""
    pictures = []
    for file in files:
        image = Image.open(file)
        count = getattr(image, "n_frames", 1)
        if count > 1:
            shots = []
            for k in np.linspace(0, count - 1, min(frames, count)).round().astype(int):
                image.seek(int(k))
                shots.append(image.convert("RGB"))
            per_row = math.ceil(len(shots) / 2)  # two rows: frames large enough to see
            width, height = shots[0].size
            sheet = Image.new("RGB", (per_row * (width + 2) - 2, 2 * height + 2), LIGHT)
            for k, shot in enumerate(shots):
                sheet.paste(shot, ((k % per_row) * (width + 2), (k // per_row) * (height + 2)))
            pictures.append(sheet)
        else:
            pictures.append(image.convert("RGB"))
    gap = 8
    sheet = Image.new("RGB", (max(p.width for p in pictures), sum(p.height for p in pictures) + gap * (len(pictures) - 1)),
                      DARK)
    y = 0
    for picture in pictures:
        sheet.paste(picture, ((sheet.width - picture.width) // 2, y))
        y += picture.height + gap
    return sheet


def _result_thumbnail(files: list[Path]) -> Image.Image:
    """The saved picture as large as it fits, by whole pixels (nearest) when enlarged, centred on dark."""
    picture = _saved_picture(files)
    room = (THUMBNAIL[0] - 16, THUMBNAIL[1] - 16)
    scale = min(room[0] / picture.width, room[1] / picture.height)
    scale = int(scale) if scale >= 1 else scale
    picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                             Image.NEAREST if scale >= 1 else Image.LANCZOS)
    thumbnail = Image.new("RGB", THUMBNAIL, DARK)
    thumbnail.paste(picture, ((THUMBNAIL[0] - picture.width) // 2, (THUMBNAIL[1] - picture.height) // 2))
    return thumbnail


def _card_thumbnail(workflow: dict) -> Image.Image:
    """Title (the note's heading), the published files the loaders download, and the classes asked for."""
    nodes = workflow["nodes"]
    note = next(n["widgets_values"][0] for n in nodes if n["type"] == "MarkdownNote")
    title = note.splitlines()[0].lstrip("# ").strip().replace("→", "to")  # the default font has no arrow
    loaders = [n["widgets_values"][0] for n in nodes if n["type"] in ("LPDModelLoader", "LPDTokenizerLoader")]
    classes = []
    for sampler in (n for n in nodes if n["type"] == "LPDSampler"):
        index, listed = sampler["widgets_values"][0], sampler["widgets_values"][-1]
        for part in [p.strip() for p in str(listed).split(",") if p.strip()] or [str(index)]:
            label = class_label(int(part)) if part.isdigit() else part
            if label not in classes:
                classes.append(label)
    card = Image.new("RGB", THUMBNAIL, DARK)
    draw = ImageDraw.Draw(card)
    draw.text((24, 24), title, fill=LIGHT, font=_font(30))
    draw.text((24, 74), "needs " + " + ".join(loaders), fill=DIM, font=_font(18))
    draw.text((24, 98), "(downloaded on the first run)", fill=DIM, font=_font(18))
    y = 146
    for label in classes[:8]:
        draw.text((40, y), label, fill=LIGHT, font=_font(22))
        y += 30
    return card


def thumbnails(saved: Path, out: Path = TEMPLATES) -> list[Path]:
    """Every template's thumbnail: from the files the ComfyUI tests saved in `saved` (demo templates), or a card."""
    written = []
    for path in sorted(TEMPLATES.glob("*.json")):
        workflow = json.loads(path.read_text())
        files = sorted(saved.glob(f"{glob_escape(path.stem)}-saved-*"))
        demo = {n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "LPDModelLoader"} == {"demo"}
        if demo and not files:
            raise SystemExit(f"{saved} holds nothing {path.stem} saved: run the ComfyUI tests first (docs/testing.md)")
        thumbnail = _result_thumbnail(files) if demo else _card_thumbnail(workflow)
        target = out / f"{path.stem}.jpg"
        partial = target.with_name(target.name + ".partial")
        thumbnail.save(partial, "JPEG", quality=90)
        partial.replace(target)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DOCS), help="folder for the PNGs (default: docs/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thumbnails", metavar="FOLDER", help=(
        "write the templates' thumbnails instead, from the files a ComfyUI test run saved in FOLDER "
        "(out/comfyui-screens/<line>)"))
    args = parser.parse_args()
    if args.thumbnails:
        for path in thumbnails(Path(args.thumbnails)):
            print(path)
        return
    torch.set_num_threads(2)
    out = Path(args.out)
    print(samples_figure(out / "samples.png", seed=args.seed))
    print(order_maps_figure(out / "order_maps.png", seed=args.seed))


if __name__ == "__main__":
    main()
