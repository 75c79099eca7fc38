"""Beyond the paper: LPDClassBlend (a mix of classes, optionally switched part-way), LPDVariation
(variations of an image, a strength slider) and LPDWideCanvas (pictures wider or taller than the
model's square). Each is one lpd_core call on the same decode loop as LPD Sampler
(lpd_core.blend, lpd_core.variation, lpd_core.canvas).

Every class field here takes one class or a mix: "circle", "207", "tiger:0.7, golden retriever:0.3"
(indices or names; weights are relative).
"""

from __future__ import annotations

from . import runtime
from .sampling import MODEL_DEFAULT, order_choices, resolve_widget_settings, sampling_inputs, settings_record
from .schema import CATEGORY, DEFAULT, Model, Schedule, Tokenizer, Tokens, io
from .tokens import TokenGrid

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


def _progress(total: int, tokenizer, grid: tuple[int, int]):
    """A per-step callback with progress, live preview of the grid being decoded and Cancel."""
    from lpd_core.preview import LivePreview
    preview = LivePreview(tokenizer, grid)  # the palette is fitted once per tokenizer
    bar = runtime.progress_bar(total)

    def on_step(value: int, step):
        runtime.throw_if_interrupted()
        bar.update_absolute(value, total, preview.frame(step.tokens, step.known))
    return on_step


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
        from lpd_core.settings import seeds_for
        from lpd_core.weights import check_pair

        module = model.module
        if tokenizer is not None:
            check_pair(module, tokenizer.module)
        labels = [_mix(classes, module)] * batch_size
        switch = {}
        if switch_classes and switch_classes.strip():
            switch = dict(switch_labels=[_mix(switch_classes, module)] * batch_size, switch_step=int(switch_step))
        settings = resolve_widget_settings(module, steps=schedule.steps, cfg=cfg, cfg_schedule=cfg_schedule,
                                           temperature=temperature, top_k=top_k, top_p=top_p)
        seeds = seeds_for(seed, batch_size)
        progress = None if tokenizer is None else _progress(schedule.steps, tokenizer.ready(),
                                                            (schedule.grid_h, schedule.grid_w))

        def on_step(step):
            if progress is None:
                runtime.throw_if_interrupted()
            else:
                progress(step.step + 1, step)

        lpd = model.ready(runtime.decoder_memory(model, batch_size, schedule.group_sizes, settings.cfg))
        with runtime.fast_decoding(lpd) as fast:
            tokens = generate(lpd, schedule, labels, seeds=seeds, callback=on_step, fast=fast,
                              **settings_record(settings), **switch)
        grid = TokenGrid(tokens.to("cpu"), (schedule.grid_h, schedule.grid_w), module.config.vocab_size,
                         labels=labels, seeds=seeds, settings={**settings_record(settings), "classes": classes,
                                                               "switch_classes": switch_classes if switch else "",
                                                               "switch_step": switch.get("switch_step")})
        return io.NodeOutput(grid)


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
        from lpd_core.checkpoints import generation_defaults
        from lpd_core.settings import seeds_for
        from lpd_core.variation import vary
        from lpd_core.weights import check_pair

        module, vq_module = model.module, tokenizer.module
        check_pair(module, vq_module)
        label = _mix(classes, module)
        grid = module.config.grid_size
        steps = min(steps or generation_defaults(module).steps, grid * grid)
        settings = resolve_widget_settings(module, steps=steps, cfg=cfg, cfg_schedule=cfg_schedule,
                                           temperature=temperature, top_k=top_k, top_p=top_p)
        images = image[..., :3].float().cpu().repeat_interleave(variations, dim=0)
        count = images.shape[0]
        size = grid * vq_module.stride
        vq = tokenizer.ready(memory_required=runtime.vq_memory_per_image(vq_module, size, size) * count)
        progress = _progress(steps, vq, (grid, grid))
        lpd = model.ready(runtime.decoder_memory(model, count, [grid * grid], settings.cfg))
        with runtime.fast_decoding(lpd) as fast:
            result = vary(lpd, vq, images, label, float(strength), steps=steps, order=order, seed=seed,
                          repulsion=settings.repulsion, callback=lambda step: progress(step.step + 1, step),
                          fast=fast, **settings_record(settings))
        tokens = TokenGrid(result.tokens, (grid, grid), vq_module.vocab_size, labels=[label] * count,
                           seeds=seeds_for(seed, count), settings={**settings_record(settings), "steps": steps,
                                                                    "order": order, "strength": float(strength)})
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
        from lpd_core.canvas import canvas_tokens, check_canvas, tile_starts, wide_canvas
        from lpd_core.checkpoints import generation_defaults
        from lpd_core.settings import seeds_for
        from lpd_core.weights import check_pair

        module, vq_module = model.module, tokenizer.module
        check_pair(module, vq_module)
        label = _mix(classes, module)
        grid, stride = module.config.grid_size, vq_module.stride
        columns, rows = canvas_tokens(width or grid * stride, height or grid * stride, stride)
        overlap = overlap or grid // 2
        check_canvas(grid, columns, rows, overlap)
        tiles = len(tile_starts(columns, grid, overlap)) * len(tile_starts(rows, grid, overlap))
        steps = min(steps or generation_defaults(module).steps, grid * grid)
        settings = resolve_widget_settings(module, steps=steps, cfg=cfg, cfg_schedule=cfg_schedule,
                                           temperature=temperature, top_k=top_k, top_p=top_p)
        vq = tokenizer.ready(memory_required=runtime.vq_memory_per_image(vq_module, rows * stride, columns * stride)
                             * batch_size)
        progress = _progress(tiles * steps, vq, (grid, grid))
        lpd = model.ready(runtime.decoder_memory(model, batch_size, [grid * grid], settings.cfg))
        with runtime.fast_decoding(lpd) as fast:
            result = wide_canvas(lpd, vq, [label] * batch_size, width=columns, height=rows, overlap=overlap,
                                 steps=steps, order=order, seed=seed, repulsion=settings.repulsion,
                                 callback=lambda tile, step: progress(tile * steps + step.step + 1, step), fast=fast,
                                 **settings_record(settings))
        tokens = TokenGrid(result.tokens, result.grid, vq_module.vocab_size, labels=[label] * batch_size,
                           seeds=seeds_for(seed, batch_size),
                           settings={**settings_record(settings), "steps": steps, "order": order, "overlap": overlap,
                                     "tiles": len(result.tiles)})
        return io.NodeOutput(result.images.float().to(runtime.intermediate_device()), tokens)


NODES = [LPDClassBlend, LPDVariation, LPDWideCanvas]
