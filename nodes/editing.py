"""Zero-shot editing: LPDEditSampler (inpaint, outpaint, class-swap) and LPDPadForOutpaint.

Editing needs no training: the tokens to keep are encoded from the image and fed to the model as
already-decoded context, and only the masked tokens are generated (lpd_core.editing). Outpainting
is an inpaint of the bands LPDPadForOutpaint adds around the image; a class-swap is an inpaint
under another class.
"""

from __future__ import annotations

from . import runtime
from .sampling import MODEL_DEFAULT, SamplerRun, negative_input, order_choices, sampling_inputs
from .schema import CATEGORY, DEFAULT, Model, Tokenizer, Tokens, io

MAX_BAND = 64  # tokens; the real limit (the image must keep ≥ 1 token) is checked by lpd_core


class LPDEditSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDEditSampler", display_name="LPD Edit Sampler", category=CATEGORY,
            description=("Zero-shot editing with LPD: regenerates the masked part of an image under a class and "
                         "keeps the rest. Inpaint: mask an area. Outpaint: feed LPD Pad For Outpaint's canvas and "
                         "mask. Class-swap: mask the object and pick another class. The kept tokens are given to "
                         "the model as context, and the masked ones are generated from the mask's border inward "
                         "(locality order). Settings at -1 / 'default' use the model's published settings."),
            inputs=[
                Model.Input("model", tooltip="The LPD model from LPD Model Loader."),
                Tokenizer.Input("tokenizer", tooltip=(
                    "The tokenizer the model was trained with: it encodes the image into the tokens to keep, "
                    "decodes the result, and draws the live preview.")),
                io.Image.Input("image", tooltip=(
                    "Images to edit (a batch shares one mask and one order; image i samples with seed + i). Each "
                    "is resized so its shorter side is the model's resolution and centre-cropped to a square, "
                    "exactly as LPD Encode fits its images.")),
                io.Mask.Input("mask", tooltip=(
                    "Where to regenerate: 1 = regenerate, 0 = keep (a mask painted in the image editor, or LPD "
                    "Pad For Outpaint's). Fitted like the image (same aspect ratio needed); a token is regenerated "
                    "when any pixel of its patch is ≥ 0.5. A batch of masks: only the first is used. An empty "
                    "mask returns the input unchanged, with a warning.")),
                io.Int.Input("class_index", default=207, min=0, max=99999, tooltip=(
                    "Class of the regenerated part, by index: 0–999 for the ImageNet models (207 = golden "
                    "retriever), 0–9 for the demo. For a class-swap, mask the object and pick the new class.")),
                io.Int.Input("steps", default=0, min=0, max=4096, tooltip=(
                    "Decoding steps (forward passes) for the masked tokens; the kept tokens take one extra pass. "
                    "0 = the model's default step count (20 for 256 px models, 48 for 512 px, the stored value "
                    "for the demo). Never more than the number of tokens to regenerate.")),
                io.Combo.Input("order", options=order_choices(), default="locality", tooltip=(
                    "Order of the regenerated tokens. locality: the paper's locality-aware order, started from the "
                    "kept region's border, so the new part grows inward from what is kept. random: a seeded random "
                    "order. raster: row by row (for comparison).")),
                *sampling_inputs(
                    "Sampling seed; it also seeds the order. Same seed + inputs + device + dtype = same image.",
                    "linear: guidance grows with the share of decoded tokens, kept ones included (the paper's). "
                    "constant: the same scale throughout. default: the model's (linear for the published models)."),
                io.Int.Input("grow", default=0, min=0, max=64, tooltip=(
                    "Widen the regenerated region by this many tokens in every direction (helps the new part blend "
                    "in, and covers a mask drawn a little too tight).")),
                io.Int.Input("feather", default=0, min=0, max=64, tooltip=(
                    "With composite on: blend the generated image into the kept pixels over this many tokens "
                    "outside the regenerated region (0 = hard edge; kept pixels then stay exactly the input's).")),
                io.Boolean.Input("composite", default=True, label_on="on", label_off="off", tooltip=(
                    "on: pixels outside the regenerated tokens are copied from the input, so only the masked part "
                    "changes. off: the whole image is decoded from tokens (the kept part then shows the "
                    "tokenizer's reconstruction).")),
                negative_input(),
            ],
            outputs=[
                io.Image.Output("image", tooltip=(
                    "The edited images at the model's resolution (grid × tokenizer stride, e.g. 256 px); with "
                    "composite on, pixels outside the regenerated tokens are the input's own.")),
                Tokens.Output("tokens", tooltip=(
                    "The edited token grids (kept tokens + generated ones), like LPD Sampler's: LPD Decode turns "
                    "them into images without compositing.")),
            ],
        )

    @classmethod
    def execute(cls, model, tokenizer, image, mask, class_index, steps=0, order="locality", seed=0, cfg=DEFAULT,
                cfg_schedule=MODEL_DEFAULT, temperature=DEFAULT, top_k=DEFAULT, top_p=DEFAULT, grow=0, feather=0,
                composite=True, negative=""):
        from lpd_core.editing import check_mask, edit

        check_mask(image, mask)  # before the models are loaded; edit checks the rest before its work
        labels = [class_index] * image.shape[0]
        grid = model.module.config.grid_size
        sampler = SamplerRun(model, tokenizer, count=len(labels), seed=seed, steps=steps, steps_up_to_tokens=True,
                             cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                             negative=negative)
        settings, side = sampler.settings, grid * tokenizer.module.stride
        # `known` covers the kept tokens too, so the preview starts from the kept part of the image; the
        # kept tokens are one more group of the plan, at most the whole grid wide
        result = sampler.run(lambda lpd, vq, on_step, fast: edit(
            lpd, vq, image[..., :3].float().cpu(), mask.float().cpu(), labels, steps=settings.steps, order=order,
            seed=seed, grow=grow, feather=feather, composite=composite, repulsion=settings.repulsion,
            callback=on_step, fast=fast, **sampler.sampling),
            group_sizes=[grid * grid], preview_grid=(grid, grid), decoded=(side, side))
        if result.message:
            runtime.notify(result.message, "LPD Edit Sampler")
        regenerated = int(result.regenerated.sum())
        tokens = sampler.token_grid(result.tokens, (grid, grid), labels, steps=min(settings.steps, regenerated),
                                    order=order, regenerated=regenerated)
        return io.NodeOutput(result.images.float().to(runtime.intermediate_device()), tokens)


class LPDPadForOutpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        band = "Tokens of new content on the {} side (× the tokenizer stride in pixels: 16 px for VQ-16)."
        return io.Schema(
            node_id="LPDPadForOutpaint", display_name="LPD Pad For Outpaint", category=CATEGORY,
            description=("Prepares outpainting: places the image on a square canvas of the model's resolution, "
                         "leaving bands of new tokens on the chosen sides, and outputs the mask of what to "
                         "generate. Feed both to LPD Edit Sampler. The image is scaled down to fit inside the bands "
                         "(aspect ratio kept, centred); everything it does not cover is generated."),
            inputs=[
                io.Image.Input("image", tooltip="The images to extend."),
                Tokenizer.Input("tokenizer", tooltip="The tokenizer: its stride (pixels per token) sizes the bands."),
                *(io.Int.Input(side, default=4 if side == "right" else 0, min=0, max=MAX_BAND,
                               tooltip=band.format(side)) for side in ("left", "top", "right", "bottom")),
                io.Int.Input("size", default=256, min=16, max=2048, step=16, tooltip=(
                    "Canvas size in pixels when no model is connected; rounded down to a multiple of the "
                    "tokenizer's stride.")),
                Model.Input("model", optional=True, tooltip=(
                    "Optional: the model to edit with; the canvas then has its resolution (grid × stride, e.g. "
                    "256 px) and `size` is ignored.")),
            ],
            outputs=[
                io.Image.Output("image", tooltip=(
                    "The canvas (batch, size, size, 3): the image in the middle, grey where new content goes.")),
                io.Mask.Output("mask", tooltip=(
                    "The mask (batch, size, size): 1 where LPD Edit Sampler generates, 0 over the image.")),
            ],
        )

    @classmethod
    def execute(cls, image, tokenizer, left=0, top=0, right=4, bottom=0, size=256, model=None):
        from lpd_core.editing import pad_for_outpaint, square_side
        vq_module = tokenizer.module
        stride = vq_module.stride
        side = square_side(vq_module, None if model is None else model.module, size)
        canvas, mask = pad_for_outpaint(image[..., :3].float().cpu(), side, stride, left=left, top=top, right=right,
                                        bottom=bottom)
        device = runtime.intermediate_device()
        return io.NodeOutput(canvas.to(device), mask.to(device))


NODES = [LPDEditSampler, LPDPadForOutpaint]
