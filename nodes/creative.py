"""Beyond the paper: LPDClassBlend (a mix of classes, optionally switched part-way), LPDVariation
(variations of an image, a strength slider), LPDWideCanvas (pictures wider or taller than the
model's square, which can travel from one class to another) and LPDClassMorph (frames that turn one
class into another, for an animated save node). Each is one lpd_core call on the same decode loop as
LPD Sampler (lpd_core.blend, lpd_core.variation, lpd_core.canvas, lpd_core.morph), and each has the
optional negative class of every sampler.

Every class field here takes one class or a mix: "circle", "207", "tiger:0.7, golden retriever:0.3"
(indices or names; weights are relative).
"""

from __future__ import annotations

from . import runtime
from .sampling import MODEL_DEFAULT, SamplerRun, negative_input, order_choices, sampling_inputs
from .schema import CATEGORY, DEFAULT, Model, Schedule, Tokenizer, Tokens, io
from .tokens import TokenGrid

MIX_TOOLTIP = ("One class or a mix of classes, by index or name: 'star', '207', or 'tiger:0.7, golden retriever:0.3' "
               "(the weights are relative: '3:1, 5:1' is half and half). A mix conditions on the weighted mean of the "
               "classes' embeddings; a weight of 1 on one class is exactly that class.")
CFG_SCHEDULE_TOOLTIP = ("linear: guidance grows with the share of decoded tokens, kept ones included (the paper's). "
                        "constant: the same scale throughout. default: the model's (linear for the published models).")
STEPS_TOOLTIP = ("Decoding steps for the generated tokens; 0 = the model's default step count (20 for 256 px models, "
                 "the stored value for the demo). Never more than the number of tokens to generate.")


def easing_choices() -> list[str]:
    from lpd_core.settings import EASINGS
    return list(EASINGS)


def _mix(text: str, module):
    """A class index, or a ClassMix when the text mixes several classes."""
    from lpd_core.blend import label_or_mix, parse_class_mix
    return label_or_mix(parse_class_mix(text, module))


class LPDClassBlend(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDClassBlend", display_name="LPD Class Blend", category=CATEGORY,
            description=("LPD Sampler for a mix of classes ('tiger:0.7, golden retriever:0.3'): every image is "
                         "conditioned on the weighted mean of the classes' embeddings. Optionally the class switches "
                         "part-way: from `switch_step` on, the class slot holds `switch_classes` (layout from the "
                         "first, details from the second). Decode the tokens with LPD Decode."),
            inputs=[
                Model.Input("model", tooltip="The LPD model from LPD Model Loader."),
                Schedule.Input("schedule", tooltip="Steps and order from LPD Schedule (same model)."),
                io.String.Input("classes", default="0:0.5, 9:0.5", tooltip=MIX_TOOLTIP),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip=(
                    "Images of the mix. Image i uses seed + i, so an image does not depend on the batch.")),
                *sampling_inputs("Sampling seed. Same seed + settings + device + dtype = same image.",
                                 CFG_SCHEDULE_TOOLTIP),
                io.String.Input("switch_classes", optional=True, default="", tooltip=(
                    "Optional: a class or mix to switch to at `switch_step` (empty = no switch). The class slot's "
                    "keys and values are rewritten at that step, so the tokens decoded before keep the first "
                    "class's layout and the rest follow this one.")),
                io.Int.Input("switch_step", optional=True, default=1, min=0, max=4096, tooltip=(
                    "The decode step (0 = the first) from which `switch_classes` conditions the image.")),
                Tokenizer.Input("tokenizer", optional=True, tooltip=(
                    "Optional: the tokenizer, for a live preview while sampling.")),
                negative_input(),
            ],
            outputs=[Tokens.Output("tokens", tooltip="The generated token grids, for LPD Decode.")],
        )

    @classmethod
    def execute(cls, model, schedule, classes, batch_size, seed, cfg=DEFAULT, cfg_schedule=MODEL_DEFAULT,
                temperature=DEFAULT, top_k=DEFAULT, top_p=DEFAULT, switch_classes="", switch_step=1, tokenizer=None,
                negative=""):
        from lpd_core import generate

        labels = [_mix(classes, model.module)] * batch_size
        switch = {}
        if switch_classes and switch_classes.strip():
            switch = dict(switch_labels=[_mix(switch_classes, model.module)] * batch_size, switch_step=switch_step)
        sampler = SamplerRun(model, tokenizer, count=batch_size, seed=seed, steps=schedule.steps, cfg=cfg,
                             cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                             negative=negative)
        grid = (schedule.grid_h, schedule.grid_w)
        tokens = sampler.run(lambda lpd, vq, on_step, fast: generate(
            lpd, schedule, labels, seeds=sampler.seeds, callback=on_step, fast=fast, **sampler.sampling, **switch),
            group_sizes=schedule.group_sizes, preview_grid=grid)
        return io.NodeOutput(sampler.token_grid(tokens, grid, labels, classes=classes,
                                                switch_classes=switch_classes if switch else "",
                                                switch_step=switch.get("switch_step")))


class LPDVariation(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDVariation", display_name="LPD Variation", category=CATEGORY,
            description=("Variations of an image: encodes it, keeps a share 1 − strength of its tokens (spread over "
                         "the whole grid) and regenerates the others under a class, growing from the kept ones. "
                         "Strength 0 gives the image back (as the tokenizer reconstructs it), 1 a fresh sample."),
            inputs=[
                Model.Input("model", tooltip="The LPD model from LPD Model Loader."),
                Tokenizer.Input("tokenizer", tooltip=(
                    "The tokenizer the model was trained with: it encodes the image and decodes the result.")),
                io.Image.Input("image", tooltip=(
                    "Images to vary; each is resized so its shorter side is the model's resolution and "
                    "centre-cropped to a square.")),
                io.String.Input("classes", default="0", tooltip=MIX_TOOLTIP + " Usually the image's own class."),
                io.Float.Input("strength", default=0.5, min=0.0, max=1.0, step=0.05, display_mode="slider",
                               tooltip=("Share of tokens to regenerate: 0 = the image itself, 1 = a fresh sample "
                                        "of the class.")),
                io.Int.Input("variations", default=4, min=1, max=64, tooltip=(
                    "Variations of each image; variation i of the batch uses seed + i (for which tokens are kept, "
                    "the order and the sampling).")),
                io.Int.Input("steps", default=0, min=0, max=4096, tooltip=STEPS_TOOLTIP),
                io.Combo.Input("order", options=order_choices(), default="locality", tooltip=(
                    "Order of the regenerated tokens; locality grows them from the kept ones.")),
                *sampling_inputs("Seed of the first variation; variation i uses seed + i.", CFG_SCHEDULE_TOOLTIP),
                negative_input(),
            ],
            outputs=[
                io.Image.Output("image", tooltip="The variations at the model's resolution (image by image, "
                                                 "`variations` of each)."),
                Tokens.Output("tokens", tooltip="Their token grids, for LPD Decode."),
            ],
        )

    @classmethod
    def execute(cls, model, tokenizer, image, classes, strength, variations, steps=0, order="locality", seed=0,
                cfg=DEFAULT, cfg_schedule=MODEL_DEFAULT, temperature=DEFAULT, top_k=DEFAULT, top_p=DEFAULT,
                negative=""):
        from lpd_core.variation import vary

        label = _mix(classes, model.module)
        images = image[..., :3].float().cpu().repeat_interleave(variations, dim=0)
        count, grid = images.shape[0], model.module.config.grid_size
        sampler = SamplerRun(model, tokenizer, count=count, seed=seed, steps=steps, steps_up_to_tokens=True, cfg=cfg,
                             cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                             negative=negative)
        settings, side = sampler.settings, grid * tokenizer.module.stride
        result = sampler.run(lambda lpd, vq, on_step, fast: vary(
            lpd, vq, images, label, strength, steps=settings.steps, order=order, seed=seed,
            repulsion=settings.repulsion, callback=on_step, fast=fast, **sampler.sampling),
            group_sizes=[grid * grid], preview_grid=(grid, grid), decoded=(side, side))
        tokens = sampler.token_grid(result.tokens, (grid, grid), [label] * count, steps=settings.steps, order=order,
                                    strength=float(strength))
        return io.NodeOutput(result.images.float().to(runtime.intermediate_device()), tokens)


class LPDWideCanvas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDWideCanvas", display_name="LPD Wide Canvas", category=CATEGORY,
            description=("A picture wider (or taller) than the model's square, e.g. 768×256 px from a 256 px model: "
                         "tiles of the model's size, each next one outpainted from the `overlap` tokens it shares "
                         "with the tiles before it, then the whole canvas decoded at once (no seam). The canvas can "
                         "travel between classes: `to_classes` moves the mix from `classes` at the first tile to it "
                         "at the last, or `classes` lists one class per tile ('circle; ring; star')."),
            inputs=[
                Model.Input("model", tooltip="The LPD model from LPD Model Loader."),
                Tokenizer.Input("tokenizer", tooltip="The tokenizer: it decodes the whole canvas in one pass."),
                io.String.Input("classes", default="4", tooltip=MIX_TOOLTIP + (
                    " Several separated by ';' ('circle; ring:0.5, star:0.5; star') give a class per tile, spread "
                    "evenly over the tiles left to right, then top to bottom.")),
                io.Int.Input("width", default=768, min=0, max=8192, step=4, tooltip=(
                    "Canvas width in pixels, a multiple of the tokenizer's stride (16 px for VQ-16, 4 for the "
                    "demo); 0 = the model's resolution.")),
                io.Int.Input("height", default=0, min=0, max=8192, step=4, tooltip=(
                    "Canvas height in pixels; 0 = the model's resolution (a wide strip).")),
                io.Int.Input("overlap", default=0, min=0, max=1024, tooltip=(
                    "Tokens each tile shares with the tiles before it (kept exactly, as its context); 0 = half a "
                    "tile. More overlap: more context per tile, more tiles.")),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip=(
                    "Canvases; canvas i uses seed + i.")),
                io.Int.Input("steps", default=0, min=0, max=4096, tooltip=STEPS_TOOLTIP + " Per tile."),
                io.Combo.Input("order", options=order_choices(), default="locality", tooltip=(
                    "Order of each tile's new tokens; locality grows them from the overlap.")),
                *sampling_inputs("Seed of the first canvas; canvas i uses seed + i.", CFG_SCHEDULE_TOOLTIP),
                io.String.Input("to_classes", optional=True, default="", tooltip=(
                    "Optional: the class or mix the canvas travels to (empty = none). The first tile is `classes`, "
                    "the last this one, and each tile between is conditioned on the mix at its place along the "
                    "canvas (along the height for a tall canvas). Needs one class or mix in `classes`.")),
                negative_input(),
            ],
            outputs=[
                io.Image.Output("image", tooltip="The canvases (batch, height, width, 3)."),
                Tokens.Output("tokens", tooltip="Their token grids (height × width tokens), for LPD Decode."),
            ],
        )

    @classmethod
    def execute(cls, model, tokenizer, classes, width=768, height=0, overlap=0, batch_size=1, steps=0,
                order="locality", seed=0, cfg=DEFAULT, cfg_schedule=MODEL_DEFAULT, temperature=DEFAULT, top_k=DEFAULT,
                top_p=DEFAULT, to_classes="", negative=""):
        from lpd_core.blend import parse_class_mixes
        from lpd_core.canvas import plan_canvas, wide_canvas
        from lpd_core.errors import SettingError
        from lpd_core.settings import check_pixels

        tile_labels = parse_class_mixes(classes, model.module)
        labels, tile_classes = (None, dict(tile_labels=tile_labels)) if len(tile_labels) > 1 \
            else (tile_labels * batch_size, {})
        if to_classes and to_classes.strip():
            if labels is None:
                raise SettingError("`to_classes` goes with one class or mix in `classes`; with a class per tile "
                                   "('a; b; c') leave `to_classes` empty")
            tile_classes = dict(to_labels=_mix(to_classes, model.module))
        grid, stride = model.module.config.grid_size, tokenizer.module.stride
        columns = check_pixels("width", width or grid * stride, stride)  # 0: the model's resolution
        rows = check_pixels("height", height or grid * stride, stride)
        overlap, tiles = plan_canvas(grid, columns, rows, overlap or None, stride)  # 0: the default overlap
        sampler = SamplerRun(model, tokenizer, count=batch_size, seed=seed, steps=steps, steps_up_to_tokens=True,
                             cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                             negative=negative)
        settings = sampler.settings
        result = sampler.run(lambda lpd, vq, on_step, fast: wide_canvas(
            lpd, vq, labels, batch=batch_size, width=columns, height=rows, overlap=overlap, steps=settings.steps,
            order=order, seed=seed, repulsion=settings.repulsion, fast=fast, **tile_classes, **sampler.sampling,
            callback=lambda tile, step: on_step(step, tile)),
            group_sizes=[grid * grid], preview_grid=(grid, grid), decoded=(rows * stride, columns * stride),
            tiles=len(tiles))
        tokens = sampler.token_grid(result.tokens, result.grid, labels, steps=settings.steps, order=order,
                                    overlap=overlap, tiles=len(result.tiles), classes=classes, to_classes=to_classes)
        return io.NodeOutput(result.images.float().to(runtime.intermediate_device()), tokens)


class LPDClassMorph(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDClassMorph", display_name="LPD Class Morph", category=CATEGORY,
            description=("Frames that turn one class (or mix) into another, as an image batch for an animated save "
                         "node (Save Animated WEBP / PNG): frame i is conditioned on the mix (1 − w)·classes + "
                         "w·to_classes, w going from 0 to 1 along `easing`, and every frame has the same seed and "
                         "the schedule's order, so neighbouring frames change little. The first frame is exactly "
                         "LPD Sampler's image of `classes` with that seed, the last that of `to_classes`."),
            inputs=[
                Model.Input("model", tooltip="The LPD model from LPD Model Loader."),
                Tokenizer.Input("tokenizer", tooltip="The tokenizer: it decodes the frames."),
                Schedule.Input("schedule", tooltip="Steps and order from LPD Schedule (same model), shared by all "
                                                   "frames."),
                io.String.Input("classes", default="0", tooltip="The first frame's class or mix. " + MIX_TOOLTIP),
                io.String.Input("to_classes", default="9", tooltip="The last frame's class or mix, in the same form."),
                io.Int.Input("frames", default=16, min=2, max=256, tooltip=(
                    "Frames of the animation, the first and the last included. All are one batch, so they cost "
                    "what a batch of that many images costs.")),
                io.Combo.Input("easing", options=easing_choices(), default="linear", tooltip=(
                    "How the last class's weight grows over the frames: linear, ease-in-out (slow at both ends), "
                    "ease-in (slow start), ease-out (slow end).")),
                io.Int.Input("layout_steps", default=-1, min=-1, max=4096, tooltip=(
                    "The first decode steps of every frame follow `classes` in the first half of the frames and "
                    "`to_classes` in the second, so composition and colours change once, in the middle, instead "
                    "of drifting from frame to frame; 0 blends every step. -1 = a quarter of the schedule's "
                    "steps.")),
                *sampling_inputs("Sampling seed of every frame.", CFG_SCHEDULE_TOOLTIP),
                negative_input(),
            ],
            outputs=[
                io.Image.Output("images", tooltip="The frames (frames, height, width, 3), first to last: connect "
                                                  "Save Animated WEBP or Save Animated PNG."),
                Tokens.Output("tokens", tooltip="Their token grids, for LPD Decode."),
            ],
        )

    @classmethod
    def execute(cls, model, tokenizer, schedule, classes, to_classes, frames=16, easing="linear", layout_steps=DEFAULT,
                seed=0, cfg=DEFAULT, cfg_schedule=MODEL_DEFAULT, temperature=DEFAULT, top_k=DEFAULT, top_p=DEFAULT,
                negative=""):
        from lpd_core.morph import class_morph
        from lpd_core.settings import check_easing, check_frames, check_layout_steps

        start, end = _mix(classes, model.module), _mix(to_classes, model.module)
        frames, easing = check_frames(frames), check_easing(easing)
        layout_steps = None if layout_steps == DEFAULT else check_layout_steps(layout_steps, schedule.steps)
        sampler = SamplerRun(model, tokenizer, count=frames, seed=seed, steps=schedule.steps, cfg=cfg,
                             cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                             negative=negative)
        grid = (schedule.grid_h, schedule.grid_w)
        side = (grid[0] * tokenizer.module.stride, grid[1] * tokenizer.module.stride)
        result = sampler.run(lambda lpd, vq, on_step, fast: class_morph(
            lpd, vq, start, end, schedule=schedule, frames=frames, easing=easing, layout_steps=layout_steps,
            seed=seed, callback=on_step, fast=fast, **sampler.sampling),
            group_sizes=schedule.group_sizes, preview_grid=grid, decoded=side)
        tokens = TokenGrid(result.tokens, grid, model.module.config.vocab_size, seeds=[seed] * frames,
                           settings={**sampler.sampling, "classes": classes, "to_classes": to_classes,
                                     "weights": result.weights, "easing": easing, "layout_steps": layout_steps})
        return io.NodeOutput(result.images.float().to(runtime.intermediate_device()), tokens)


NODES = [LPDClassBlend, LPDVariation, LPDWideCanvas, LPDClassMorph]
