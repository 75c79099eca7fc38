"""Zero-shot editing: LPDEditSampler (inpaint, outpaint, class-swap) and LPDPadForOutpaint.

Editing needs no training: the tokens to keep are encoded from the image and fed to the model as
already-decoded context, and only the masked tokens are generated (lpd_core.editing). Outpainting
is an inpaint of the bands LPDPadForOutpaint adds around the image; a class-swap is an inpaint
under another class.
"""

from __future__ import annotations

import logging

from . import runtime
from .sampling import CFG_SCHEDULES, MAX_SEED, ORDERS
from .tokens import TokenGrid

log = logging.getLogger("ComfyUI-LPD")

MAX_BAND = 64  # tokens; the real limit (the image must keep ≥ 1 token) is checked by lpd_core


class LPDEditSampler:
    DESCRIPTION = ("Zero-shot editing with LPD: regenerates the masked part of an image under a class and "
                   "keeps the rest. Inpaint: mask an area. Outpaint: feed LPD Pad For Outpaint's canvas and "
                   "mask. Class-swap: mask the object and pick another class. The kept tokens are given to "
                   "the model as context, and the masked ones are generated from the mask's border inward "
                   "(locality order). Settings at -1 / 'default' use the model's published settings.")
    CATEGORY = "LPD"
    FUNCTION = "edit"
    RETURN_TYPES = ("IMAGE", "LPD_TOKENS")
    RETURN_NAMES = ("image", "tokens")
    OUTPUT_TOOLTIPS = (
        "The edited images at the model's resolution (grid × tokenizer stride, e.g. 256 px); with "
        "composite on, pixels outside the regenerated tokens are the input's own.",
        "The edited token grids (kept tokens + generated ones), like LPD Sampler's: LPD Decode turns them "
        "into images without compositing.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("LPD_MODEL", {"tooltip": "The LPD model from LPD Model Loader."}),
            "tokenizer": ("LPD_VQ", {"tooltip": (
                "The tokenizer the model was trained with: it encodes the image into the tokens to keep, "
                "decodes the result, and draws the live preview.")}),
            "image": ("IMAGE", {"tooltip": (
                "Images to edit (a batch shares one mask and one order; image i samples with seed + i). Each "
                "is resized so its shorter side is the model's resolution and centre-cropped to a square, like "
                "LPD Encode.")}),
            "mask": ("MASK", {"tooltip": (
                "Where to regenerate: 1 = regenerate, 0 = keep (a mask painted in the image editor, or LPD "
                "Pad For Outpaint's). Fitted like the image (same aspect ratio needed); a token is regenerated "
                "when any pixel of its patch is ≥ 0.5. A batch of masks: only the first is used. An empty "
                "mask returns the input unchanged.")}),
            "class_index": ("INT", {"default": 207, "min": 0, "max": 99999, "tooltip": (
                "Class of the regenerated part, by index: 0–999 for the ImageNet models (207 = golden "
                "retriever), 0–9 for the demo. For a class-swap, mask the object and pick the new class.")}),
            "steps": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": (
                "Decoding steps (forward passes) for the masked tokens; the kept tokens take one extra pass. "
                "0 = the model's default step count (20 for 256 px models, 48 for 512 px, the stored value "
                "for the demo). Never more than the number of tokens to regenerate.")}),
            "order": (ORDERS, {"default": "locality", "tooltip": (
                "Order of the regenerated tokens. locality: the paper's locality-aware order, started from "
                "the kept region's border, so the new part grows inward from what is kept. random: a seeded "
                "random order. raster: row by row (for comparison).")}),
            "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                             "tooltip": ("Sampling seed; it also seeds the order. Same seed + inputs + device + "
                                         "dtype = same image.")}),
            "cfg": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 30.0, "step": 0.1, "round": 0.01, "tooltip": (
                "Classifier-free guidance scale (1 = off). -1 = the model's published value for this number "
                "of steps (LPD-L-256: 4.8 at 20 steps).")}),
            "cfg_schedule": (CFG_SCHEDULES, {"default": "default", "tooltip": (
                "linear: guidance grows with the share of decoded tokens, kept ones included (the paper's). "
                "constant: the same scale throughout. default: the model's (linear for the published "
                "models).")}),
            "temperature": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 5.0, "step": 0.01, "tooltip": (
                "Softmax temperature (0 = greedy). -1 = the model's default (1.0 for the published models).")}),
            "top_k": ("INT", {"default": -1, "min": -1, "max": 1 << 20, "tooltip": (
                "Keep only the k most likely codes (0 = no limit). -1 = the model's default (0).")}),
            "top_p": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.01, "tooltip": (
                "Nucleus sampling: keep the most likely codes up to this total probability (1 = off; must be "
                "> 0). -1 = the model's default (1.0).")}),
            "grow": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": (
                "Widen the regenerated region by this many tokens in every direction (helps the new part "
                "blend in, and covers a mask drawn a little too tight).")}),
            "feather": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": (
                "With composite on: blend the generated image into the kept pixels over this many tokens "
                "outside the regenerated region (0 = hard edge; kept pixels then stay exactly the input's).")}),
            "composite": ("BOOLEAN", {"default": True, "label_on": "on", "label_off": "off", "tooltip": (
                "on: pixels outside the regenerated tokens are copied from the input, so only the masked part "
                "changes. off: the whole image is decoded from tokens (the kept part then shows the "
                "tokenizer's reconstruction).")}),
        }}

    def edit(self, model, tokenizer, image, mask, class_index, steps=0, order="locality", seed=0, cfg=-1.0,
             cfg_schedule="default", temperature=-1.0, top_k=-1, top_p=-1.0, grow=0, feather=0,
             composite=True):
        from lpd_core.checkpoints import generation_defaults
        from lpd_core.editing import check_mask, edit
        from lpd_core.preview import LivePreview
        from lpd_core.weights import check_pair

        module, vq_module = model.module, tokenizer.module
        check_pair(module, vq_module)
        check_mask(image, mask)
        num_classes = module.config.num_classes
        if not 0 <= class_index < num_classes:  # checked here too: an empty mask never reaches the model
            raise ValueError(f"class index {class_index} is out of range: this model has {num_classes} classes, "
                             f"so use 0..{num_classes - 1}")
        grid = module.config.grid_size
        labels = [int(class_index)] * image.shape[0]
        steps = min(steps or generation_defaults(module).steps, grid * grid)
        defaults = generation_defaults(module, steps=steps)
        settings = dict(
            cfg=defaults.cfg if cfg < 0 else cfg,
            cfg_schedule=defaults.cfg_schedule if cfg_schedule == "default" else cfg_schedule,
            temperature=defaults.temperature if temperature < 0 else temperature,
            top_k=defaults.top_k if top_k < 0 else top_k,
            top_p=defaults.top_p if top_p < 0 else top_p,
        )
        seeds = [(seed + i) % (MAX_SEED + 1) for i in range(len(labels))]

        vq = tokenizer.ready()
        preview = LivePreview(vq, (grid, grid))  # the palette is fitted once per tokenizer
        lpd = model.ready()
        max_size = runtime.preview_max_size()
        bar = runtime.progress_bar(steps)

        def on_step(step):
            runtime.throw_if_interrupted()
            # `known` covers the kept tokens too, so the preview starts from the kept part of the image
            bar.update_absolute(step.step + 1, step.total, ("JPEG", preview.frame(step.tokens, step.known), max_size))

        with runtime.fast_decoding(lpd) as fast:
            result = edit(lpd, vq, image[..., :3].float().cpu(), mask.float().cpu(), labels, steps=steps,
                          order=order, seed=seed, grow=grow, feather=feather, composite=composite,
                          repulsion=defaults.repulsion, callback=on_step, fast=fast, **settings)
        regenerated = int(result.regenerated.sum())
        if result.message:
            log.warning("LPD Edit Sampler: %s", result.message)
            text = result.message
        else:
            text = f"regenerated {regenerated} of {grid * grid} tokens as class {int(class_index)}"
        tokens = TokenGrid(result.tokens.cpu(), (grid, grid), vq_module.vocab_size, labels=labels, seeds=seeds,
                           settings={**settings, "steps": min(steps, regenerated), "order": order,
                                     "regenerated": regenerated})
        images = result.images.float().to(runtime.intermediate_device())
        return {"ui": {"text": [text]}, "result": (images, tokens)}


class LPDPadForOutpaint:
    DESCRIPTION = ("Prepares outpainting: places the image on a square canvas of the model's resolution, "
                   "leaving bands of new tokens on the chosen sides, and outputs the mask of what to generate. "
                   "Feed both to LPD Edit Sampler. The image is scaled down to fit inside the bands (aspect "
                   "ratio kept, centred); everything it does not cover is generated.")
    CATEGORY = "LPD"
    FUNCTION = "pad"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = (
        "The canvas (batch, size, size, 3): the image in the middle, grey where new content goes.",
        "The mask (batch, size, size): 1 where LPD Edit Sampler generates, 0 over the image.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        band = "Tokens of new content on the {} side (× the tokenizer stride in pixels: 16 px for VQ-16)."
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The images to extend."}),
                "tokenizer": ("LPD_VQ", {"tooltip": "The tokenizer: its stride (pixels per token) sizes the bands."}),
                "left": ("INT", {"default": 0, "min": 0, "max": MAX_BAND, "tooltip": band.format("left")}),
                "top": ("INT", {"default": 0, "min": 0, "max": MAX_BAND, "tooltip": band.format("top")}),
                "right": ("INT", {"default": 4, "min": 0, "max": MAX_BAND, "tooltip": band.format("right")}),
                "bottom": ("INT", {"default": 0, "min": 0, "max": MAX_BAND, "tooltip": band.format("bottom")}),
                "size": ("INT", {"default": 256, "min": 16, "max": 2048, "step": 16, "tooltip": (
                    "Canvas size in pixels when no model is connected; rounded down to a multiple of the "
                    "tokenizer's stride.")}),
            },
            "optional": {
                "model": ("LPD_MODEL", {"tooltip": (
                    "Optional: the model to edit with; the canvas then has its resolution (grid × stride, e.g. "
                    "256 px) and `size` is ignored.")}),
            },
        }

    def pad(self, image, tokenizer, left=0, top=0, right=4, bottom=0, size=256, model=None):
        from lpd_core.editing import pad_for_outpaint
        vq_module = tokenizer.module
        stride = vq_module.stride
        if model is not None:
            from lpd_core.weights import check_pair
            check_pair(model.module, vq_module)
            side = model.module.config.grid_size * stride
        else:
            side = max(stride, size // stride * stride)
        canvas, mask = pad_for_outpaint(image[..., :3].float().cpu(), side, stride, left=left, top=top, right=right,
                                        bottom=bottom)
        device = runtime.intermediate_device()
        return (canvas.to(device), mask.to(device))
