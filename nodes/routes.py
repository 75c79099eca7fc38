"""HTTP route for the web extension's class picker: GET /lpd/classes?model=<model loader value>."""

from __future__ import annotations

import logging
import sys

from . import loaders

log = logging.getLogger("lpd")


async def class_names(request):
    from aiohttp import web
    choice = request.rel_url.query.get("model", "")
    try:
        return web.json_response(loaders.class_names_for_choice(choice))
    except Exception as error:  # a broken file must not break the picker: ImageNet names instead
        log.warning("LPD: cannot read class names for %r: %s", choice, error)
        return web.json_response({**loaders.imagenet_classes(), "error": str(error)})


def register() -> bool:
    """Add the route to ComfyUI's server (at import time, before it builds its routing table).
    False outside a ComfyUI server."""
    server = sys.modules.get("server")  # ComfyUI's server module, imported before custom nodes
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    instance.routes.get("/lpd/classes")(class_names)
    return True
