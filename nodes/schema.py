"""The node schema the pack is written against, and its socket types.

Inside ComfyUI this is ComfyUI's V3 schema at the pinned API version `comfy_api.v0_0_2` (shipped
by every ComfyUI the pack supports: 0.8.0 through 0.33.0 and later), so a change to ComfyUI's
`latest` API cannot change the pack's behaviour unseen. Outside ComfyUI (scripts, the unit tests
without COMFYUI_DIR) it is `standalone_io`, which declares the same schemas without ComfyUI.
Importing it never imports torch outside ComfyUI.
"""

from __future__ import annotations

try:
    from comfy_api.v0_0_2 import ComfyExtension, io
except ImportError:  # not inside ComfyUI
    from . import standalone_io as io
    from .standalone_io import ComfyExtension

CATEGORY = "LPD"
DEFAULT = -1  # what a numeric widget holds for "the model's default"

Model = io.Custom("LPD_MODEL")
Tokenizer = io.Custom("LPD_VQ")
Schedule = io.Custom("LPD_SCHEDULE")
Tokens = io.Custom("LPD_TOKENS")

__all__ = ["CATEGORY", "DEFAULT", "ComfyExtension", "Model", "Schedule", "Tokenizer", "Tokens", "io"]
