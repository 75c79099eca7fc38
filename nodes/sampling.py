"""LPDSchedule (groups and generation order) and LPDSampler (the decode loop, with progress,
live preview and interruption), and the sampling widgets both samplers share."""

from __future__ import annotations

from . import runtime
from .schema import CATEGORY, DEFAULT, Model, Schedule, Tokenizer, Tokens, io
from .tokens import TokenGrid

MODEL_DEFAULT = "default"  # the cfg_schedule entry for "the model's"


def order_choices() -> list[str]:
    from lpd_core.settings import ORDER_KINDS
    return list(ORDER_KINDS)


def cfg_schedule_choices() -> list[str]:
    from lpd_core.settings import CFG_SCHEDULES
    return [MODEL_DEFAULT, *CFG_SCHEDULES]


def max_seed() -> int:
    from lpd_core.settings import MAX_SEED
    return MAX_SEED


def given(value):
    """A numeric widget's value, or None (the model's default) for exactly DEFAULT. Any other value,
    -0.5 say, is passed on and refused by the library with the valid range."""
    return None if value == DEFAULT else value


def resolve_widget_settings(module, *, steps=None, cfg=DEFAULT, cfg_schedule=MODEL_DEFAULT, temperature=DEFAULT,
                            top_k=DEFAULT, top_p=DEFAULT, repulsion=DEFAULT, steps_up_to_tokens=False):
    """The widgets' values → `lpd_core.checkpoints.resolve_settings` (checked, model defaults filled
    in). A steps widget's 0 means the model's default, as its tooltip says."""
    from lpd_core.checkpoints import resolve_settings
    return resolve_settings(module, steps=steps or None, cfg=given(cfg), temperature=given(temperature),
                            cfg_schedule=None if cfg_schedule == MODEL_DEFAULT else cfg_schedule,
                            top_k=given(top_k), top_p=given(top_p), repulsion=given(repulsion),
                            steps_up_to_tokens=steps_up_to_tokens)


NEGATIVE_TOOLTIP = ("Optional: a class or mix to guide away from, by index or name ('circle', 'tiger:0.5, lion:0.5'). "
                    "Guidance then contrasts the class with this one instead of the null class: 'a fox, less like a "
                    "dog'. Empty = the null class (plain guidance). Needs cfg above 1.")


def negative_input():
    """The optional negative-class field every sampler node has, last among its inputs."""
    return io.String.Input("negative", optional=True, default="", tooltip=NEGATIVE_TOOLTIP)


def negative_class(text: str, module):
    """The negative class of the field: None (the null class) when empty, else the class or mix."""
    if not text or not text.strip():
        return None
    from lpd_core.blend import label_or_mix, parse_class_mix
    return label_or_mix(parse_class_mix(text, module))


class SamplerRun:
    """What every sampler node does around its one lpd_core call, in one place: the model and
    tokenizer checked as a pair, the widgets' settings resolved (`resolve_widget_settings`) and the
    negative class read (`negative_class`, checked against cfg), the seeds of its images, both modules loaded in one `load_models_gpu` call with the memory the run
    needs (`runtime.load_together`: the fast decoder's and the tokenizer's), progress with a live
    preview and Cancel at every step, the fast decoder on a GPU (`runtime.fast_decoding`), and the
    token grid out."""

    def __init__(self, model, tokenizer, *, count: int, seed, steps=None, steps_up_to_tokens: bool = False,
                 negative: str = "", **widgets):
        from lpd_core.settings import check_negative, seeds_for
        from lpd_core.weights import check_pair
        self.model, self.tokenizer, self.module = model, tokenizer, model.module
        if tokenizer is not None:
            check_pair(self.module, tokenizer.module)
        self.settings = resolve_widget_settings(self.module, steps=steps, steps_up_to_tokens=steps_up_to_tokens,
                                                **widgets)
        self.negative = negative_class(negative, self.module)
        check_negative(self.negative, self.settings.cfg)
        self.seeds = seeds_for(seed, count)

    @property
    def sampling(self) -> dict:
        """The sampling settings and the negative class as lpd_core calls take them (and a TokenGrid
        records them)."""
        settings = self.settings
        return dict(cfg=settings.cfg, cfg_schedule=settings.cfg_schedule, temperature=settings.temperature,
                    top_k=settings.top_k, top_p=settings.top_p, negative=self.negative)

    def run(self, call, *, group_sizes, preview_grid: tuple[int, int], decoded: tuple[int, int] | None = None,
            tiles: int = 1):
        """`call(lpd, vq, on_step, fast)` with both modules ready. `group_sizes`: the steps' sizes (for
        the fast decoder's memory); `decoded`: (height, width) in pixels of the images the tokenizer
        decodes, None when it only draws the preview; `tiles`: generations in a row (wide canvases),
        `on_step(step, tile)` then counts across them."""
        from lpd_core.preview import LivePreview, cached_palette
        count, vq = len(self.seeds), self.tokenizer
        memory = runtime.decoder_memory(self.model, count, group_sizes, self.settings.cfg)
        modules = [self.model]
        if vq is not None and (decoded is not None or cached_palette(vq.module) is None):
            modules.append(vq)  # to decode, or to fit its preview palette once (lpd_core.preview)
            memory += vq.module.memory_per_image(*(decoded or (preview_grid[0] * vq.module.stride,
                                                               preview_grid[1] * vq.module.stride))) * count
        runtime.load_together(modules, memory)
        preview = None if vq is None else LivePreview(vq.module, preview_grid)
        bar = runtime.progress_bar(1)

        def on_step(step, tile: int = 0) -> None:
            runtime.throw_if_interrupted()
            bar.update_absolute(tile * step.total + step.step + 1, tiles * step.total,
                                None if preview is None else preview.frame(step.tokens, step.known))

        with runtime.fast_decoding(self.module) as fast:
            return call(self.module, None if vq is None else vq.module, on_step, fast)

    def token_grid(self, tokens, grid: tuple[int, int], labels, **record) -> TokenGrid:
        """The run's tokens on an LPD_TOKENS link, with their labels, seeds and settings."""
        return TokenGrid(tokens.to("cpu"), grid, self.module.config.vocab_size, labels=labels, seeds=self.seeds,
                         settings={**self.sampling, **record})


def sampling_inputs(seed_tooltip: str, cfg_schedule_tooltip: str) -> list:
    """seed, cfg, cfg_schedule, temperature, top_k, top_p: the same widgets on both samplers."""
    return [
        io.Int.Input("seed", default=0, min=0, max=max_seed(), control_after_generate=True, tooltip=seed_tooltip),
        io.Float.Input("cfg", default=-1.0, min=-1.0, max=30.0, step=0.1, round=0.01, tooltip=(
            "Classifier-free guidance scale (1 = off). -1 = the model's published value for this number of "
            "steps (LPD-L-256: 4.8 at 20 steps, 5.4 at 32; LPD-XL-512: 6.0). Exactly -1 or at least 0.")),
        io.Combo.Input("cfg_schedule", options=cfg_schedule_choices(), default=MODEL_DEFAULT,
                       tooltip=cfg_schedule_tooltip),
        io.Float.Input("temperature", default=-1.0, min=-1.0, max=5.0, step=0.01, tooltip=(
            "Softmax temperature (0 = greedy). -1 = the model's default (1.0 for the published models). "
            "Exactly -1 or at least 0.")),
        io.Int.Input("top_k", default=-1, min=-1, max=1 << 20, tooltip=(
            "Keep only the k most likely codes (0 = no limit). -1 = the model's default (0).")),
        io.Float.Input("top_p", default=-1.0, min=-1.0, max=1.0, step=0.01, tooltip=(
            "Nucleus sampling: keep the most likely codes up to this total probability (1 = off; must be > 0). "
            "-1 = the model's default (1.0).")),
    ]


class LPDSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDSchedule", display_name="LPD Schedule", category=CATEGORY,
            description=("Decides which tokens each step generates: the number of steps (groups) and the order "
                         "over the token grid. Locality-aware order (the paper's) puts each new group next to "
                         "what is already decoded and keeps tokens of one group apart. The image shows the "
                         "order: dark = early steps, yellow = late."),
            inputs=[
                Model.Input("model", tooltip=("The LPD model; its token grid (16×16 for 256 px, 32×32 for 512 px) "
                                              "sets the schedule's size.")),
                io.Int.Input("steps", default=0, min=0, max=4096, tooltip=(
                    "Decoding steps (forward passes), 1 up to the number of tokens. 0 = the model's default: 20 "
                    "for the published 256 px models, 48 for 512 px, the stored value for the demo. Published "
                    "step counts use the paper's group sizes, others a cosine rule.")),
                io.Combo.Input("order", options=order_choices(), default="locality", tooltip=(
                    "locality: the paper's locality-aware order. random: a seeded random permutation. raster: row "
                    "by row, left to right (for comparison).")),
                io.Int.Input("order_seed", default=0, min=0, max=0xFFFFFFFF, tooltip=(
                    "Seed of the order (locality and random orders; raster ignores it). Independent of the "
                    "sampler's seed, so the same order can be reused across images.")),
                io.Int.Input("repulsion", default=-1, min=-1, max=8, tooltip=(
                    "Locality order: tokens decoded in the same step stay more than this many cells apart "
                    "(Chebyshev distance) when possible. -1 = default: the model's published value (3 for "
                    "LPD-XXL-256), else 2 for a 16×16 grid and 4 for 32×32.")),
                io.Float.Input("proximity", default=1.0, min=0.0, max=7.0, step=0.05, tooltip=(
                    "Locality order: how close to decoded tokens a position must be to count as 'near' (sum over "
                    "decoded neighbours of 1/distance; 1.0 = one edge neighbour, the paper's).")),
            ],
            outputs=[
                Schedule.Output("schedule", tooltip="Group sizes and generation order, for LPD Sampler."),
                io.Image.Output("order_map", tooltip=(
                    "The order map: each token cell coloured by the step that decodes it (dark blue first, "
                    "yellow last), 16 px per token.")),
            ],
        )

    @classmethod
    def execute(cls, model, steps, order, order_seed, repulsion=DEFAULT, proximity=1.0):
        import torch
        from lpd_core.imaging import order_map_image
        from lpd_core.schedule import build_schedule

        module = model.module
        settings = resolve_widget_settings(module, steps=steps, repulsion=repulsion)
        grid = module.config.grid_size
        schedule = build_schedule(grid, grid, steps=settings.steps, order=order, seed=order_seed,
                                  proximity=proximity, repulsion=settings.repulsion)
        picture = order_map_image(schedule.order_map(), schedule.steps)
        image = torch.from_numpy(picture)[None].to(runtime.intermediate_device())
        return io.NodeOutput(schedule, image)


class LPDSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LPDSampler", display_name="LPD Sampler", category=CATEGORY,
            description=("Generates token grids for a class with Locality-aware Parallel Decoding: one forward pass "
                         "per step, several tokens per step. Settings at -1 / 'default' use the model's published "
                         "evaluation settings. Connect a tokenizer for a live preview (coloured token cells) "
                         "while it runs. Decode the result with LPD Decode. Which classes: `classes` when it is "
                         "not empty, else `class_index`; the class picker button edits whichever is in use."),
            inputs=[
                Model.Input("model", tooltip="The LPD model from LPD Model Loader."),
                Schedule.Input("schedule", tooltip="Steps and order from LPD Schedule (same model)."),
                io.Int.Input("class_index", default=207, min=0, max=99999, tooltip=(
                    "Class to generate, by index: 0–999 for the ImageNet models (207 = golden retriever), 0–9 for "
                    "the demo. Used when `classes` is empty. The class picker below the widgets searches names.")),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip=(
                    "Images per class. Image i uses seed + i, so an image does not depend on the batch.")),
                *sampling_inputs(
                    "Sampling seed. Same seed + settings + device + dtype = same image.",
                    "linear: guidance grows with the share of decoded tokens (the paper's). constant: the same "
                    "scale throughout. default: the model's (linear for the published models)."),
                Tokenizer.Input("tokenizer", optional=True, tooltip=(
                    "Optional: the tokenizer, for a live preview while sampling (known tokens drawn in their "
                    "approximate colours, the rest grey) and a check that it matches the model.")),
                io.String.Input("classes", optional=True, default="", tooltip=(
                    "Optional: several classes, comma-separated indices or names ('207, 1, goldfish'). When not "
                    "empty it replaces class_index: batch_size images of each class, in order. While it is "
                    "set, the class picker adds the picked class to this list; empty it to use class_index.")),
                negative_input(),
            ],
            outputs=[Tokens.Output("tokens", tooltip=(
                "Generated token grids (one per image) with their grid size, for LPD Decode."))],
        )

    @classmethod
    def execute(cls, model, schedule, class_index, batch_size, seed, cfg=DEFAULT, cfg_schedule=MODEL_DEFAULT,
                temperature=DEFAULT, top_k=DEFAULT, top_p=DEFAULT, tokenizer=None, classes="", negative=""):
        from lpd_core import generate
        from lpd_core.classes import resolve_classes
        from lpd_core.settings import check_count

        batch_size = check_count("batch size", batch_size)  # before the labels are repeated by it
        wanted = resolve_classes(classes, model.module) if classes and classes.strip() else [int(class_index)]
        labels = [label for label in wanted for _ in range(batch_size)]
        sampler = SamplerRun(model, tokenizer, count=len(labels), seed=seed, steps=schedule.steps, cfg=cfg,
                             cfg_schedule=cfg_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                             negative=negative)
        grid = (schedule.grid_h, schedule.grid_w)
        tokens = sampler.run(lambda lpd, vq, on_step, fast: generate(
            lpd, schedule, labels, seeds=sampler.seeds, callback=on_step, fast=fast, **sampler.sampling),
            group_sizes=schedule.group_sizes, preview_grid=grid)
        return io.NodeOutput(sampler.token_grid(tokens, grid, labels))


NODES = [LPDSchedule, LPDSampler]
