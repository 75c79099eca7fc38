"""ComfyUI adapters over lpd_core: widgets in, one lpd_core call, results out.

Importing this package is cheap: it imports neither torch nor lpd_core (each node imports what it
needs when it runs), builds no model and downloads nothing.
"""

from . import routes, runtime
from .editing import LPDEditSampler, LPDPadForOutpaint
from .loaders import LPDModelLoader, LPDTokenizerLoader
from .sampling import LPDSampler, LPDSchedule
from .tokens import LPDDecode, LPDEncode, LPDImageGrid, TokenGrid

NODE_CLASS_MAPPINGS = {
    "LPDModelLoader": LPDModelLoader,
    "LPDTokenizerLoader": LPDTokenizerLoader,
    "LPDSchedule": LPDSchedule,
    "LPDSampler": LPDSampler,
    "LPDDecode": LPDDecode,
    "LPDEncode": LPDEncode,
    "LPDImageGrid": LPDImageGrid,
    "LPDEditSampler": LPDEditSampler,
    "LPDPadForOutpaint": LPDPadForOutpaint,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LPDModelLoader": "LPD Model Loader",
    "LPDTokenizerLoader": "LPD Tokenizer Loader",
    "LPDSchedule": "LPD Schedule",
    "LPDSampler": "LPD Sampler",
    "LPDDecode": "LPD Decode",
    "LPDEncode": "LPD Encode",
    "LPDImageGrid": "LPD Image Grid",
    "LPDEditSampler": "LPD Edit Sampler",
    "LPDPadForOutpaint": "LPD Pad For Outpaint",
}


def setup() -> None:
    """What the pack does when ComfyUI imports it: register models/lpd and the class-name route."""
    runtime.register_model_folder()
    routes.register()


__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "TokenGrid", "setup"]
