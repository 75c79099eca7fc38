"""ComfyUI-LPD: class-conditional image generation with Locality-aware Parallel Decoding
(arXiv 2507.01957) as ComfyUI nodes. The model code is the `lpd_core` library next to this file.

ComfyUI imports this package at start-up. Importing it registers the nodes, the models/lpd folder
and one small HTTP route for the web UI's class picker; it loads no model and downloads nothing.
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

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, setup  # noqa: E402

setup()

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
