"""A stand-in for the few names of ComfyUI's V3 node schema (`comfy_api.v0_0_2.io`) the nodes use,
for running them outside a ComfyUI process: scripts, and the unit tests without COMFYUI_DIR.

It only records what a schema declares (ids, tooltips, options) and carries outputs; ComfyUI's own
module does the validation, caching and UI conversion when the pack runs inside ComfyUI, and the
tests run against that one too (tests/test_nodes.py with COMFYUI_DIR set).
"""

from __future__ import annotations

from dataclasses import dataclass, field


class _Input:
    def __init__(self, io_type: str, id: str, options=None, *, optional: bool = False, tooltip: str | None = None,
                 default=None, **widget):
        self.io_type = io_type
        self.id = id
        self.optional = optional
        self.tooltip = tooltip
        self.default = default
        self.options = options
        for key, value in widget.items():  # min, max, step, control_after_generate, ...
            setattr(self, key, value)


class _Output:
    def __init__(self, io_type: str, id: str | None = None, display_name: str | None = None,
                 tooltip: str | None = None):
        self.io_type = io_type
        self.id = id
        self.display_name = display_name or id
        self.tooltip = tooltip


def Custom(io_type: str):  # noqa: N802  (named like comfy_api's factory)
    """A socket type: `.Input(id, ...)` and `.Output(id, ...)` declare one."""
    class Socket:
        Input = staticmethod(lambda *args, **kwargs: _Input(io_type, *args, **kwargs))
        Output = staticmethod(lambda *args, **kwargs: _Output(io_type, *args, **kwargs))
    Socket.io_type = io_type
    Socket.__name__ = io_type
    return Socket


Int, Float, String, Boolean, Combo = (Custom(t) for t in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"))
Image, Mask = Custom("IMAGE"), Custom("MASK")


@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = ""
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    description: str = ""
    is_output_node: bool = False


class NodeOutput:
    def __init__(self, *args, ui=None):
        self.args = args
        self.ui = ui

    @property
    def result(self):
        return self.args or None

    def __getitem__(self, index):
        return self.args[index]


class ComfyNode:
    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **inputs) -> NodeOutput:
        raise NotImplementedError


class ComfyExtension:
    async def on_load(self) -> None:
        pass

    async def get_node_list(self) -> list:
        raise NotImplementedError
