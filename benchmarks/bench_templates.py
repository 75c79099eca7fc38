"""The example workflows that run on the bundled demo model, measured as an artist runs them: each
template's LPD nodes are executed with its own widget values (each node is one lpd_core call), and
what they draw is scored with the demo's judge CNN (the one `bench_demo` and `bench_creative` use;
`--judge tests/fixtures/shape_judge.safetensors` loads the tests' one).

    python -m benchmarks.bench_templates --judge tests/fixtures/shape_judge.safetensors
    python -m benchmarks.bench_templates --judge tests/fixtures/shape_judge.safetensors --before bc7692e

`--before REV` measures the templates of git revision REV too and prints both side by side;
`--set TEMPLATE:NODE=VALUES` measures a variant of a template with a node's widget values replaced
(what one setting does, everything else equal). Every template runs `--repeats` times: run 0 is the
template as saved (its own seeds), run r adds 64·r to every seed widget (new pictures with the same
settings: how the settings do beyond the seeds shown).

Measured templates: every workflow whose loaders all load "demo" and that holds an LPD Edit Sampler
(inpaint, outpaint, class swap) or an LPD Wide Canvas. Only what those nodes need is run: the pack's
nodes, and ComfyUI's SolidMask and MaskComposite reproduced here (`CORE_NODES`).

Edits, per edited picture:
* P(class): the judge's mean probability of the edit's class (named: how often it is the judge's top
  class), next to the same on the input picture; for a class swap also P(old class), the probability
  of the class the picture was generated with, after the edit and on the input (the old shape should
  be gone).
* seam: the mean absolute pixel step (values 0–1) across the token borders between a regenerated
  and a kept token, over the mean step across every other token border of the picture (1 = the
  border of the edit is no sharper than the picture's own token borders). For inpaint and class swap
  also the same ratio on the input picture at the same borders, since a shape's edge can lie on them.
* new colours: the share of regenerated pixels more than 0.1 (mean |ΔRGB|, values 0–1) from both
  main colours of the input picture, its background (the median colour) and its shape (the mean of
  the pixels far from the background): off-colour patches. For an outpaint the input picture is
  the one fed to LPD Pad For Outpaint.

Wide canvases, per tile (the tile's window of the canvas, the model's square):
* named: how often the judge's top class is the tile's class (for a tile conditioned on a mix, one
  of the mixed classes), per tile, and in every tile of a canvas at once;
* seam: `bench_creative.seam_ratio` at the borders where a tile's new tokens meet the ones it was
  given (1 = no seam).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import subprocess
import sys
import time
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_creative import judge_probabilities, seam_ratio
from lpd_core.files import atomic_write
from training.judge import add_judge_arguments, judge_from_arguments

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = "example_workflows"
SEED_STEP = 64  # run r adds SEED_STEP·r to every seed: past the largest batch, so the pictures are new
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
MEASURED = ("LPDEditSampler", "LPDWideCanvas")
FAR = 0.25  # summed |ΔRGB| from the background that makes a pixel part of the shape
NEW_COLOUR = 0.1  # mean |ΔRGB| from both main colours that makes a regenerated pixel a new colour


# ------------------------------------------------------------------------------------------ templates
def read_templates(revision: str | None) -> dict[str, dict]:
    """The workflows of example_workflows/ by name: the working tree's, or those of a git revision, named as the
    working tree names the workflow of the same id (a template renamed since then is still compared)."""
    current = {json.loads(path.read_text(encoding="utf-8"))["id"]: path.stem
               for path in sorted((ROOT / WORKFLOWS).glob("*.json"))}
    if revision is None:
        return {name: json.loads((ROOT / WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))
                for name in current.values()}
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{revision}:{WORKFLOWS}"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    workflows = [json.loads(subprocess.run(["git", "show", f"{revision}:{WORKFLOWS}/{name}"], cwd=ROOT, check=True,
                                           capture_output=True, text=True).stdout)
                 for name in sorted(names) if name.endswith(".json")]
    return {current.get(workflow["id"], workflow["id"]): workflow for workflow in workflows}


def runs_on_the_demo(workflow: dict) -> bool:
    """Whether a workflow loads only the demo model and tokenizer and holds a node measured here."""
    loaders = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] in ("LPDModelLoader", "LPDTokenizerLoader")]
    return bool(loaders) and set(loaders) == {"demo"} and any(n["type"] in MEASURED for n in workflow["nodes"])


def pack_nodes() -> dict[str, type]:
    """The pack's node classes by id, from its nodes/ package loaded under a name of its own (a bare
    `import nodes` would find ComfyUI's nodes.py where ComfyUI is on the path); outside ComfyUI they
    run on the standalone schema."""
    name = "lpd_template_nodes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "nodes" / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / "nodes")])
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return {cls.define_schema().node_id: cls for cls in sys.modules[name].node_list()}


def widget_inputs(cls, values: list) -> dict:
    """A node's saved widget values by input name: ComfyUI stores them in the schema's order of its
    widget inputs, with one more value (the 'control after generate' mode) after a seed."""
    inputs, position = {}, 0
    for item in cls.define_schema().inputs:
        if item.io_type not in WIDGET_TYPES or position >= len(values):
            continue
        inputs[item.id] = values[position]
        position += 2 if getattr(item, "control_after_generate", False) else 1
    return inputs


def solid_mask(value, width, height):
    return (torch.full((1, height, width), float(value)),)


def mask_composite(destination, source, x, y, operation):
    """ComfyUI's MaskComposite for the operation the templates use ("add", clamped to [0, 1])."""
    if operation != "add":
        raise NotImplementedError(f"MaskComposite {operation!r}: only 'add' is reproduced here")
    out = destination.clone()
    height, width = source.shape[-2:]
    region = out[:, y:y + height, x:x + width]
    region.copy_((region + source[:, :region.shape[1], :region.shape[2]]).clamp(0, 1))
    return (out,)


CORE_NODES = {"SolidMask": solid_mask, "MaskComposite": mask_composite}


class Graph:
    """A workflow evaluated node by node, only what a measured node needs; loaders are shared."""

    def __init__(self, workflow: dict, nodes: dict, loaded: dict, seed_shift: int = 0):
        self.nodes = {n["id"]: n for n in workflow["nodes"]}
        self.links = {link[0]: link for link in workflow["links"]}
        self.classes, self.loaded, self.seed_shift = nodes, loaded, seed_shift
        self.outputs: dict[int, tuple] = {}

    def upstream(self, node_id: int, name: str) -> int:
        (link,) = [inp["link"] for inp in self.nodes[node_id]["inputs"] if inp["name"] == name]
        return self.links[link][1]

    def inputs(self, node_id: int) -> dict:
        return {inp["name"]: self.output(*self.links[inp["link"]][1:3])
                for inp in self.nodes[node_id].get("inputs", []) if inp.get("link") is not None}

    def output(self, node_id: int, slot: int = 0):
        if node_id not in self.outputs:
            self.outputs[node_id] = self.run(self.nodes[node_id])
        return self.outputs[node_id][slot]

    def run(self, node: dict) -> tuple:
        kind, values = node["type"], node.get("widgets_values", [])
        if kind in CORE_NODES:
            return CORE_NODES[kind](*self.inputs(node["id"]).values(), *values)
        cls = self.classes[kind]
        widgets = widget_inputs(cls, values)
        if "seed" in widgets:
            widgets["seed"] += self.seed_shift
        key = (kind, json.dumps(values))
        if kind.endswith("Loader"):
            if key not in self.loaded:
                self.loaded[key] = tuple(cls.execute(**widgets).args)
            return self.loaded[key]
        return tuple(cls.execute(**self.inputs(node["id"]), **widgets).args)


# ------------------------------------------------------------------------------------------ measures
def main_colours(pictures: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3): each picture's background (its median colour) and shape colour (the mean of the
    pixels far from the background; the background again where there are none)."""
    colours = []
    for picture in pictures:
        pixels = picture.reshape(-1, 3)
        background = pixels.median(0).values
        far = (pixels - background).abs().sum(1) > FAR
        colours.append(torch.stack([background, pixels[far].mean(0) if far.any() else background]))
    return torch.stack(colours)


def new_colour_share(edited: torch.Tensor, pictures: torch.Tensor, regenerated_pixels: torch.Tensor) -> torch.Tensor:
    """(B,) share of the regenerated pixels farther than NEW_COLOUR from both main colours of the picture."""
    colours = main_colours(pictures)
    inside = edited[:, regenerated_pixels]  # (B, P, 3)
    distance = (inside[:, :, None] - colours[:, None]).abs().mean(-1).min(-1).values
    return (distance > NEW_COLOUR).float().mean(1)


def border_steps(images: torch.Tensor, regenerated: torch.Tensor, stride: int) -> tuple[float, float]:
    """Mean |pixel step| across the token borders with one side regenerated, and across all others."""
    columns = (images[:, :, stride::stride] - images[:, :, stride - 1:-1:stride]).abs().mean(-1)  # (B, H, w-1)
    rows = (images[:, stride::stride] - images[:, stride - 1:-1:stride]).abs().mean(-1)  # (B, h-1, W)
    columns = columns.reshape(len(images), -1, stride, columns.shape[-1]).mean(2)  # (B, h, w-1) per token side
    rows = rows.reshape(len(images), rows.shape[1], -1, stride).mean(3)  # (B, h-1, w)
    edge_columns = regenerated[:, 1:] != regenerated[:, :-1]
    edge_rows = regenerated[1:] != regenerated[:-1]
    edge = torch.cat([columns[:, edge_columns].flatten(), rows[:, edge_rows].flatten()])
    other = torch.cat([columns[:, ~edge_columns].flatten(), rows[:, ~edge_rows].flatten()])
    return float(edge.mean()), float(other.mean())


def measure_edit(graph: Graph, node_id: int, judge) -> dict:
    from lpd_core.editing import fit_to_resolution, mask_to_grid
    node_inputs = graph.inputs(node_id)
    widgets = widget_inputs(graph.classes["LPDEditSampler"], graph.nodes[node_id]["widgets_values"])
    edited = graph.output(node_id).float().cpu()
    model, tokenizer = node_inputs["model"].module, node_inputs["tokenizer"].module
    grid, stride = model.config.grid_size, tokenizer.stride
    # the tokens the edit regenerated, by lpd_core.editing's mask rule (fitted like the image, then per token)
    mask = node_inputs["mask"].float().cpu()
    mask = mask if mask.ndim == 2 else mask[0]
    fitted = fit_to_resolution(mask[None, :, :, None], grid * stride)[0, :, :, 0]
    regenerated = mask_to_grid(fitted, grid, widgets["grow"])
    pixels = regenerated.repeat_interleave(stride, 0).repeat_interleave(stride, 1)
    picture_node = graph.upstream(node_id, "image")
    padded = graph.nodes[picture_node]["type"] == "LPDPadForOutpaint"
    if padded:
        picture_node = graph.upstream(picture_node, "image")
    picture = fit_to_resolution(graph.output(picture_node).float().cpu(), grid * stride)
    probabilities = judge_probabilities(judge, edited)
    target = widgets["class_index"]
    row = dict(images=len(edited), p_class=probabilities[:, target].tolist(),
               new_colours=new_colour_share(edited, picture, pixels).tolist())
    edge, other = border_steps(edited, regenerated, stride)
    row.update(seam_edge=edge, seam_other=other)
    if not padded:
        edge, other = border_steps(picture, regenerated, stride)
        row.update(input_seam_edge=edge, input_seam_other=other)
    # the classes the picture was generated with (LPD Sampler's labels, through LPD Decode), when known
    tokens = graph.output(graph.upstream(picture_node, "tokens")) if graph.nodes[picture_node]["type"] == "LPDDecode" \
        else None
    labels = getattr(tokens, "labels", None)
    if labels is not None:
        index = torch.arange(len(labels)), torch.tensor(labels)
        row["p_input"] = judge_probabilities(judge, picture)[index].tolist()
        if any(label != target for label in labels):
            row["p_old_class"] = probabilities[index].tolist()
    return row


def measure_canvas(graph: Graph, node_id: int, judge) -> dict:
    from lpd_core.blend import (
        label_or_mix,
        mix_weights,
        parse_class_mix,
        parse_class_mixes,
    )
    from lpd_core.canvas import tile_classes, tile_starts

    node_inputs = graph.inputs(node_id)
    model, stride = node_inputs["model"].module, node_inputs["tokenizer"].module.stride
    images, canvas = graph.output(node_id, 0).float().cpu(), graph.output(node_id, 1)
    grid, num_classes, batch = model.config.grid_size, model.config.num_classes, len(images)
    (height, width), settings = canvas.grid, canvas.settings
    tiles = [(row, col) for row in tile_starts(height, grid, settings["overlap"])
             for col in tile_starts(width, grid, settings["overlap"])]
    # each tile's classes as LPD Wide Canvas sets them: a class per tile, or one class (travelling to another)
    per_tile = parse_class_mixes(settings["classes"], model)
    if len(per_tile) > 1:
        classes = {"tile_labels": per_tile}
    else:
        to_classes = settings.get("to_classes") or ""
        classes = {"labels": per_tile * batch,
                   "to_labels": label_or_mix(parse_class_mix(to_classes, model)) if to_classes.strip() else None}
    labels = tile_classes(tiles, grid, width, height, num_classes, batch, **classes)
    named = []
    side = grid * stride
    for (row, col), label in zip(tiles, labels):
        window = images[:, row * stride:row * stride + side, col * stride:col * stride + side]
        top = judge_probabilities(judge, window).argmax(1)
        named.append((mix_weights(label, num_classes, batch)[torch.arange(batch), top] > 0).tolist())
    seams = sorted({col + grid for _, col in tiles if col + grid < width})
    seam, interior, ratio = seam_ratio(images, stride, seams) if seams else (0.0, 0.0, float("nan"))
    return dict(images=batch, tiles=[[col * stride, row * stride] for row, col in tiles], named=named, seam=seam,
                interior=interior, seam_ratio=ratio)


def measure(workflow: dict, nodes: dict, loaded: dict, judge, repeats: int) -> list[dict]:
    """Per measured node: the template's own run and the runs with shifted seeds, pooled."""
    results = []
    for node in workflow["nodes"]:
        if node["type"] not in MEASURED:
            continue
        runs = []
        for run in range(repeats):
            graph = Graph(workflow, nodes, loaded, SEED_STEP * run)
            runs.append((measure_edit if node["type"] == "LPDEditSampler" else measure_canvas)(graph, node["id"], judge))
        results.append(dict(node=node["id"], type=node["type"], widgets=node["widgets_values"], template=runs[0],
                            other_seeds=pool(runs[1:])))
    return results


def pool(runs: list[dict]) -> dict:
    """Several runs' figures as one: lists joined, counts summed, means averaged."""
    if not runs:
        return {}
    pooled = {}
    for key, value in runs[0].items():
        if key == "named":  # per tile, the canvases of every run
            pooled[key] = [list(chain.from_iterable(run[key][tile] for run in runs)) for tile in range(len(value))]
        elif key == "tiles":
            pooled[key] = value
        elif isinstance(value, list):
            pooled[key] = list(chain.from_iterable(run[key] for run in runs))
        elif key == "images":
            pooled[key] = sum(run[key] for run in runs)
        else:
            pooled[key] = float(np.mean([run[key] for run in runs]))
    return pooled


# ------------------------------------------------------------------------------------------ report
def summary(row: dict) -> dict[str, str]:
    """The figures of one measured run (or pooled runs) as table cells."""
    if not row:
        return {}
    cells = {}
    if "p_class" in row:
        p = np.array(row["p_class"])
        swap = "p_old_class" in row
        given = f"; input {np.mean(row['p_input']):.3f}" if "p_input" in row and not swap else ""
        cells["P(class)"] = f"{p.mean():.3f} (named {np.mean(p > 0.5):.2f}{given})"
        if swap:
            cells["P(old class)"] = f"{np.mean(row['p_old_class']):.3f} (input {np.mean(row['p_input']):.3f})"
        seam = row["seam_edge"] / row["seam_other"]
        plain = f" (input {row['input_seam_edge'] / row['input_seam_other']:.2f})" if "input_seam_edge" in row else ""
        cells["seam"] = f"{seam:.2f}{plain}"
        cells["new colours"] = f"{np.mean(row['new_colours']):.3f}"
    else:
        named = np.array(row["named"], dtype=float)  # (tiles, canvases)
        one_row = all(y == 0 for _, y in row["tiles"])
        cells["tiles at (px)"] = ", ".join(str(x) if one_row else f"({x}, {y})" for x, y in row["tiles"])
        cells["named per tile"] = " ".join(f"{v:.2f}" for v in named.mean(1))
        cells["every tile named"] = f"{named.min(0).mean():.2f}"
        cells["seam"] = f"{row['seam_ratio']:.2f}"
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=None, help="also measure the templates of this git revision")
    parser.add_argument("--templates", default=None, help="comma-separated template names (default: every demo one)")
    parser.add_argument("--set", action="append", default=[], metavar="TEMPLATE:NODE=VALUES", help=(
        "also measure a variant of a template with a node's widget values replaced by a JSON list, e.g. "
        "'lpd_outpaint_demo:7=[2, 2, 2, 2, 256]'; several nodes joined by ' & ' (repeatable)"))
    parser.add_argument("--repeats", type=int, default=25, help="runs per template: its own seeds, then shifted ones")
    add_judge_arguments(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"threads, fp32; {args.repeats} runs per template (run r: every seed + {SEED_STEP}·r)")
    judge = judge_from_arguments(args)
    nodes, loaded = pack_nodes(), {}
    versions = {"after": read_templates(None)}
    if args.before:
        versions = {"before": read_templates(args.before), **versions}
    for variant in args.set:  # a template with some nodes' widgets replaced
        name, changes = variant.split(":", 1)
        workflow = copy.deepcopy(versions["after"][name])
        for change in changes.split(" & "):
            node_id, values = change.split("=", 1)
            (node,) = [n for n in workflow["nodes"] if n["id"] == int(node_id)]
            node["widgets_values"] = json.loads(values)
        versions[changes] = {name: workflow}
    wanted = args.templates.split(",") if args.templates else None
    results = {}
    for version, templates in versions.items():
        for name, workflow in templates.items():
            if not runs_on_the_demo(workflow) or (wanted and name not in wanted):
                continue
            results.setdefault(name, {})[version] = measure(workflow, nodes, loaded, judge, args.repeats)
            for item in results[name][version]:
                print(f"  {name} ({version}) node {item['node']} {item['type']} {json.dumps(item['widgets'])}", flush=True)
                for label in ("template", "other_seeds"):
                    print(f"    {label}: " + "; ".join(f"{k} {v}" for k, v in summary(item[label]).items()), flush=True)
    print()
    for name, by_version in results.items():
        for index, item in enumerate(by_version[list(by_version)[-1]]):
            columns = {f"{version}, {label.replace('_', ' ')}": summary(items[index][label])
                       for version, items in by_version.items() if index < len(items)
                       for label in ("template", "other_seeds")}
            print(f"{name}, node {item['node']} ({item['type']}):")
            print()
            print("| measure | " + " | ".join(columns) + " |")
            print("|---|" + "---|" * len(columns))
            for key in dict.fromkeys(k for cells in columns.values() for k in cells):
                print(f"| {key} | " + " | ".join(cells.get(key, "") for cells in columns.values()) + " |")
            print()
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        report = json.dumps({"config": vars(args), "results": results}, indent=2)
        atomic_write(args.json, lambda temporary: temporary.write_text(report))


if __name__ == "__main__":
    main()
