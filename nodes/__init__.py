"""ComfyUI adapters over lpd_core: widgets in, one lpd_core call, results out.

Every module here that defines nodes lists them in `NODES`; `node_list()` collects them from all
modules of this package, so a new module needs no registration elsewhere. Importing this package is
cheap: it imports neither torch nor lpd_core (each node imports what it needs when it runs), builds
no model and downloads nothing.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

from . import routes, runtime
from .tokens import TokenGrid

log = logging.getLogger("lpd")


def node_list() -> list:
    """Every node class of the pack, module by module in name order. A module that fails to import
    is logged with its traceback and skipped, so the other nodes still load."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception:
            log.exception("LPD: nodes/%s.py could not be imported; its nodes are missing", info.name)
            continue
        found += [node for node in getattr(module, "NODES", []) if node not in found]
    return found


def setup() -> None:
    """What the pack does when ComfyUI imports it: register models/lpd and the class-name route."""
    runtime.register_model_folder()
    routes.register()


__all__ = ["TokenGrid", "node_list", "setup"]
