"""ComfyUI-LPD: class-conditional image generation with Locality-aware Parallel Decoding
(arXiv 2507.01957) as ComfyUI nodes. The model code is the `lpd_core` library next to this file.

ComfyUI imports this package at start-up and asks `comfy_entrypoint` for the nodes (V3 schema,
`comfy_api.v0_0_2`). Importing it registers the models/lpd folder and one small HTTP route for the
web UI's class picker; it loads no model and downloads nothing.
"""

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _make_lpd_core_importable() -> None:
    # lpd_core is a plain top-level package (also used without ComfyUI); ComfyUI does not put pack
    # folders on sys.path, so add ours, at the end so that it shadows nothing.
    spec = importlib.util.find_spec("lpd_core")
    if spec is None:
        sys.path.append(_HERE)
    elif not os.path.realpath(spec.origin or "").startswith(os.path.realpath(_HERE) + os.sep):
        # another lpd_core is installed: use the one this pack was written with
        sys.path.insert(0, _HERE)


_make_lpd_core_importable()

from .nodes import node_list, setup  # noqa: E402
from .nodes.schema import ComfyExtension  # noqa: E402

setup()

WEB_DIRECTORY = "./web"


class LPDExtension(ComfyExtension):
    """The pack's nodes for ComfyUI's V3 loader (`comfy_entrypoint`)."""

    async def get_node_list(self):
        return node_list()


async def comfy_entrypoint() -> LPDExtension:
    return LPDExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
