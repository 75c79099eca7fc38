"""Beyond the paper: LPDClassBlend (a mix of classes, optionally switched part-way), LPDVariation
(variations of an image, a strength slider) and LPDWideCanvas (pictures wider or taller than the
model's square). Each is one lpd_core call on the same decode loop as LPD Sampler
(lpd_core.blend, lpd_core.variation, lpd_core.canvas).

Every class field here takes one class or a mix: "circle", "207", "tiger:0.7, golden retriever:0.3"
(indices or names; weights are relative).
"""

from __future__ import annotations

from . import runtime
from .sampling import MODEL_DEFAULT, SamplerRun, order_choices, sampling_inputs
from .schema import CATEGORY, DEFAULT, Model, Schedule, Tokenizer, Tokens, io

MIX_TOOLTIP = ("One class or a mix of classes, by index or name: 'star', '207', or 'tiger:0.7, golden retriever:0.3' "
               "(the weights are relative: '3:1, 5:1' is half and half). A mix conditions on the weighted mean of the "
               "classes' embeddings; a weight of 1 on one class is exactly that class.")
CFG_SCHEDULE_TOOLTIP = ("linear: guidance grows with the share of decoded tokens, kept ones included (the paper's). "
                        "constant: the same scale throughout. default: the model's (linear for the published models).")
STEPS_TOOLTIP = ("Decoding steps for the generated tokens; 0 = the model's default step count (20 for 256 px models, "
                 "the stored value for the demo). Never more than the number of tokens to generate.")


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
            ],
            outputs=[Tokens.Output("tokens", tooltip="The generated token grids, for LPD Decode.")],
        )

    @classmethod
    def execute(cls, model, schedule, classes, batch_size, seed, cfg=DEFAULT, cfg_schedule=MODEL_DEFAULT,
                temperature=DEFAULT, top_k=DEFAULT, top_p=DEFAULT, switch_classes="", switch_step=1, tokenizer=None):
        from lpd_core import generate

        labels = [_mix(classes, model.module)] * batch_size
        switch = {}
        if switch_classes and switch_classes.strip():
            switch = dict(switch_labels=[_mix(switch_classes, model.module)] * batch_size, switch_step=switch_step)
        sampler = SamplerRun(model, tokenizer, count=batch_size, seed=seed, steps=schedule.steps, cfg=cfg,
                             cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p)
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
            ],
            outputs=[
                io.Image.Output("image", tooltip="The variations at the model's resolution (image by image, "
                                                 "`variations` of each)."),
                Tokens.Output("tokens", tooltip="Their token grids, for LPD Decode."),
            ],
        )

    @classmethod
    def execute(cls, model, tokenizer, image, classes, strength, variations, steps=0, order="locality", seed=0,
                cfg=DEFAULT, cfg_schedule=MODEL_DEFAULT, temperature=DEFAULT, top_k=DEFAULT, top_p=DEFAULT):
        from lpd_core.variation import vary

        label = _mix(classes, model.module)
        images = image[..., :3].float().cpu().repeat_interleave(variations, dim=0)
        count, grid = images.shape[0], model.module.config.grid_size
        sampler = SamplerRun(model, tokenizer, count=count, seed=seed, steps=steps, steps_up_to_tokens=True, cfg=cfg,
                             cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p)
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
                         "with the tiles before it, then the whole canvas decoded at once (no seam)."),
            inputs=[
                Model.Input("model", tooltip="The LPD model from LPD Model Loader."),
                Tokenizer.Input("tokenizer", tooltip="The tokenizer: it decodes the whole canvas in one pass."),
                io.String.Input("classes", default="4", tooltip=MIX_TOOLTIP),
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
            ],
            outputs=[
                io.Image.Output("image", tooltip="The canvases (batch, height, width, 3)."),
                Tokens.Output("tokens", tooltip="Their token grids (height × width tokens), for LPD Decode."),
            ],
        )

    @classmethod
    def execute(cls, model, tokenizer, classes, width=768, height=0, overlap=0, batch_size=1, steps=0,
                order="locality", seed=0, cfg=DEFAULT, cfg_schedule=MODEL_DEFAULT, temperature=DEFAULT, top_k=DEFAULT,
                top_p=DEFAULT):
        from lpd_core.canvas import plan_canvas, wide_canvas
        from lpd_core.settings import check_pixels

        label = _mix(classes, model.module)
        grid, stride = model.module.config.grid_size, tokenizer.module.stride
        columns = check_pixels("width", width or grid * stride, stride)  # 0: the model's resolution
        rows = check_pixels("height", height or grid * stride, stride)
        overlap, tiles = plan_canvas(grid, columns, rows, overlap or None, stride)  # 0: the default overlap
        sampler = SamplerRun(model, tokenizer, count=batch_size, seed=seed, steps=steps, steps_up_to_tokens=True,
                             cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p)
        settings = sampler.settings
        result = sampler.run(lambda lpd, vq, on_step, fast: wide_canvas(
            lpd, vq, [label] * batch_size, width=columns, height=rows, overlap=overlap, steps=settings.steps,
            order=order, seed=seed, repulsion=settings.repulsion, fast=fast, **sampler.sampling,
            callback=lambda tile, step: on_step(step, tile)),
            group_sizes=[grid * grid], preview_grid=(grid, grid), decoded=(rows * stride, columns * stride),
            tiles=len(tiles))
        tokens = sampler.token_grid(result.tokens, result.grid, [label] * batch_size, steps=settings.steps,
                                    order=order, overlap=overlap, tiles=len(result.tiles))
        return io.NodeOutput(result.images.float().to(runtime.intermediate_device()), tokens)


NODES = [LPDClassBlend, LPDVariation, LPDWideCanvas]
