"""LPDSchedule (groups and generation order) and LPDSampler (the decode loop, with progress,
live preview and interruption)."""

from __future__ import annotations

from . import runtime
from .tokens import TokenGrid

MAX_SEED = 0xFFFFFFFFFFFFFFFF
ORDERS = ["locality", "random", "raster"]
CFG_SCHEDULES = ["default", "linear", "constant"]


class LPDSchedule:
    DESCRIPTION = ("Decides which tokens each step generates: the number of steps (groups) and the order "
                   "over the token grid. Locality-aware order (the paper's) puts each new group next to "
                   "what is already decoded and keeps tokens of one group apart. The image shows the "
                   "order: dark = early steps, yellow = late.")
    CATEGORY = "LPD"
    FUNCTION = "build"
    RETURN_TYPES = ("LPD_SCHEDULE", "IMAGE")
    RETURN_NAMES = ("schedule", "order_map")
    OUTPUT_TOOLTIPS = ("Group sizes and generation order, for LPD Sampler.",
                       "The order map: each token cell coloured by the step that decodes it "
                       "(dark blue first, yellow last), 16 px per token.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("LPD_MODEL", {"tooltip": "The LPD model; its token grid (16×16 for 256 px, 32×32 for "
                                               "512 px) sets the schedule's size."}),
            "steps": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": (
                "Decoding steps (forward passes), 1 up to the number of tokens. 0 = the model's default: "
                "20 for the published 256 px models, 48 for 512 px, the stored value for the demo. "
                "Published step counts use the paper's group sizes, others a cosine rule.")}),
            "order": (ORDERS, {"default": "locality", "tooltip": (
                "locality: the paper's locality-aware order. random: a seeded random permutation. "
                "raster: row by row, left to right (for comparison).")}),
            "order_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF, "tooltip": (
                "Seed of the order (locality and random orders; raster ignores it). Independent of the "
                "sampler's seed, so the same order can be reused across images.")}),
            "repulsion": ("INT", {"default": -1, "min": -1, "max": 8, "tooltip": (
                "Locality order: tokens decoded in the same step stay more than this many cells apart "
                "(Chebyshev distance) when possible. -1 = default: the model's published value "
                "(3 for LPD-XXL-256), else 2 for a 16×16 grid and 4 for 32×32.")}),
            "proximity": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 7.0, "step": 0.05, "tooltip": (
                "Locality order: how close to decoded tokens a position must be to count as 'near' "
                "(sum over decoded neighbours of 1/distance; 1.0 = one edge neighbour, the paper's).")}),
        }}

    def build(self, model, steps, order, order_seed, repulsion=-1, proximity=1.0):
        import torch
        from lpd_core.checkpoints import generation_defaults
        from lpd_core.imaging import order_map_image
        from lpd_core.schedule import build_schedule

        module = model.module
        defaults = generation_defaults(module, steps=None if steps == 0 else steps)
        grid = module.config.grid_size
        schedule = build_schedule(grid, grid, steps=defaults.steps, order=order, seed=order_seed,
                                  proximity=proximity,
                                  repulsion=defaults.repulsion if repulsion < 0 else repulsion)
        picture = order_map_image(schedule.order_map(), schedule.steps)
        image = torch.from_numpy(picture)[None].to(runtime.intermediate_device())
        return (schedule, image)


class LPDSampler:
    DESCRIPTION = ("Generates token grids for a class with Locality-aware Parallel Decoding: one forward pass "
                   "per step, several tokens per step. Settings at -1 / 'default' use the model's published "
                   "evaluation settings. Connect a tokenizer for a live preview (coloured token cells) "
                   "while it runs. Decode the result with LPD Decode.")
    CATEGORY = "LPD"
    FUNCTION = "sample"
    RETURN_TYPES = ("LPD_TOKENS",)
    RETURN_NAMES = ("tokens",)
    OUTPUT_TOOLTIPS = ("Generated token grids (one per image) with their grid size, for LPD Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("LPD_MODEL", {"tooltip": "The LPD model from LPD Model Loader."}),
                "schedule": ("LPD_SCHEDULE", {"tooltip": "Steps and order from LPD Schedule (same model)."}),
                "class_index": ("INT", {"default": 207, "min": 0, "max": 99999, "tooltip": (
                    "Class to generate, by index: 0–999 for the ImageNet models (207 = golden retriever), "
                    "0–9 for the demo. The class picker below the widgets searches names.")}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": (
                    "Images per class. Image i uses seed + i, so an image does not depend on the batch.")}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                                 "tooltip": "Sampling seed. Same seed + settings + device + dtype = same image."}),
                "cfg": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 30.0, "step": 0.1, "round": 0.01,
                                  "tooltip": (
                    "Classifier-free guidance scale (1 = off). -1 = the model's published value for this "
                    "number of steps (LPD-L-256: 4.8 at 20 steps, 5.4 at 32; LPD-XL-512: 6.0).")}),
                "cfg_schedule": (CFG_SCHEDULES, {"default": "default", "tooltip": (
                    "linear: guidance grows with the share of decoded tokens (the paper's). constant: the "
                    "same scale throughout. default: the model's (linear for the published models).")}),
                "temperature": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 5.0, "step": 0.01, "tooltip": (
                    "Softmax temperature (0 = greedy). -1 = the model's default (1.0 for the published "
                    "models).")}),
                "top_k": ("INT", {"default": -1, "min": -1, "max": 1 << 20, "tooltip": (
                    "Keep only the k most likely codes (0 = no limit). -1 = the model's default (0).")}),
                "top_p": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.01, "tooltip": (
                    "Nucleus sampling: keep the most likely codes up to this total probability (1 = off; "
                    "must be > 0). -1 = the model's default (1.0).")}),
            },
            "optional": {
                "tokenizer": ("LPD_VQ", {"tooltip": (
                    "Optional: the tokenizer, for a live preview while sampling (known tokens drawn in their "
                    "approximate colours, the rest grey) and a check that it matches the model.")}),
                "classes": ("STRING", {"default": "", "tooltip": (
                    "Optional: several classes, comma-separated indices or names ('207, 1, goldfish'). "
                    "When set it replaces class_index: batch_size images of each class, in order.")}),
            },
        }

    def sample(self, model, schedule, class_index, batch_size, seed, cfg=-1.0, cfg_schedule="default",
               temperature=-1.0, top_k=-1, top_p=-1.0, tokenizer=None, classes=""):
        from lpd_core import generate
        from lpd_core.checkpoints import generation_defaults, resolve_classes
        from lpd_core.weights import check_pair

        module = model.module
        if tokenizer is not None:
            check_pair(module, tokenizer.module)
        if classes and classes.strip():
            wanted = resolve_classes(classes, module)
        else:
            wanted = [int(class_index)]
        labels = [label for label in wanted for _ in range(batch_size)]
        defaults = generation_defaults(module, steps=schedule.steps)
        settings = dict(
            cfg=defaults.cfg if cfg < 0 else cfg,
            cfg_schedule=defaults.cfg_schedule if cfg_schedule == "default" else cfg_schedule,
            temperature=defaults.temperature if temperature < 0 else temperature,
            top_k=defaults.top_k if top_k < 0 else top_k,
            top_p=defaults.top_p if top_p < 0 else top_p,
        )
        seeds = [(seed + i) % (MAX_SEED + 1) for i in range(len(labels))]

        preview = None
        if tokenizer is not None:
            from lpd_core.preview import LivePreview, cached_palette, palette_for
            vq = tokenizer.module
            if cached_palette(vq) is None:
                vq = tokenizer.ready()  # the palette is fitted once per tokenizer, on its device
                palette_for(vq)
            preview = LivePreview(vq, (schedule.grid_h, schedule.grid_w))
        max_size = runtime.preview_max_size()
        bar = runtime.progress_bar(schedule.steps)

        def on_step(step):
            runtime.throw_if_interrupted()
            frame = ("JPEG", preview.frame(step.tokens, step.known), max_size) if preview else None
            bar.update_absolute(step.step + 1, step.total, frame)

        lpd = model.ready()
        with runtime.fast_decoding(lpd) as fast:
            tokens = generate(lpd, schedule, labels, seeds=seeds, callback=on_step, fast=fast, **settings)
        grid = TokenGrid(tokens.to("cpu"), (schedule.grid_h, schedule.grid_w), module.config.vocab_size,
                         labels=labels, seeds=seeds, settings=settings)
        return (grid,)
