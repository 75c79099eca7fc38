"""The real ComfyUI frontend in headless Chromium, driven as an artist would use it (Playwright).

Chromium is Debian's (/usr/bin/chromium or $LPD_CHROMIUM); Playwright only drives it, its own browser
downloads are never used. Every page records what came over ComfyUI's websocket (JSON messages, binary
preview frames) and the browser console's errors, for the tests to read.

Screen and graph coordinates: the frontend draws the graph on a canvas at `app.canvas.ds` (scale, offset);
a point (x, y) of the graph is at ((x + offset_x) * scale, (y + offset_y) * scale) inside the canvas element.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

WINDOW = {"width": 1600, "height": 1000}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
# Below this zoom the frontend draws nodes as plain boxes: no titles, no widgets (LiteGraph's low quality).
READABLE_ZOOM = 0.6
APP = "(window.comfyAPI?.app?.app ?? window.app)"


@dataclass
class Rect:
    """A node's box on the screen, in CSS pixels of the page (title bar included)."""

    node: str
    left: float
    top: float
    right: float
    bottom: float

    def overlap(self, other: Rect) -> float:
        """The area both boxes cover, in square pixels (0 when they only touch)."""
        width = min(self.right, other.right) - max(self.left, other.left)
        height = min(self.bottom, other.bottom) - max(self.top, other.top)
        return max(width, 0) * max(height, 0)


@dataclass
class PageRecord:
    """What a page received and logged while open."""

    messages: list[dict] = field(default_factory=list)  # JSON websocket messages: {"type", "data"}
    preview_frames: int = 0  # binary websocket frames (live previews)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)  # the start of each dialog that opened over the canvas


def launch(playwright):
    executable = os.environ.get("LPD_CHROMIUM") or "/usr/bin/chromium"
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)


class Canvas:
    """One browser tab on the ComfyUI server, with the frontend loaded."""

    def __init__(self, browser, url: str):
        self.url = url
        self.record = PageRecord()
        self.context = browser.new_context(viewport=WINDOW)
        self.page = self.context.new_page()
        self.page.on("websocket", self._watch_socket)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.record.console_errors.append(
            f"{error.name}: {error.message}\n{error.stack or ''}"))

    def _watch_socket(self, socket) -> None:
        def frame(payload) -> None:
            if isinstance(payload, (bytes, bytearray)):
                self.record.preview_frames += 1
            else:
                try:
                    self.record.messages.append(json.loads(payload))
                except ValueError:
                    pass
        socket.on("framereceived", frame)

    def _console(self, message) -> None:
        if message.type == "error":
            where = message.location or {}
            self.record.console_errors.append(f"{message.text} ({where.get('url', '')})")

    def close(self) -> None:
        self.context.close()

    def js(self, body: str, argument=None):
        """Evaluates `body` (a function body; `app` is the frontend's app, `arg` the argument) in the page."""
        return self.page.evaluate(f"(arg) => {{ const app = {APP}; {body} }}", argument)

    # ------------------------------------------------------------------------------------ opening
    def open_template(self, name: str, source: str, node_count: int, timeout: float = 60) -> None:
        """Opens an example workflow of a pack by the frontend's template link, as its templates dialog does."""
        self.page.goto(f"{self.url}/?{urlencode({'template': name, 'source': source}, quote_via=quote)}")
        self.wait(f"return {APP}?.graph?.nodes?.length === {node_count}", timeout,
                  f"template {name} did not open with its {node_count} nodes")
        self.settle()
        self.close_dialogs()

    def close_dialogs(self) -> None:
        """Closes what opened over the canvas as an artist would, with Escape, and records its text."""
        dialogs = self.page.locator(".p-dialog:visible")
        for _ in range(3):
            if dialogs.count() == 0:
                return
            self.record.dialogs.append(dialogs.first.inner_text()[:300])
            self.page.keyboard.press("Escape")
            self.page.wait_for_timeout(300)
        raise AssertionError(f"a dialog stays open over the canvas: {dialogs.first.inner_text()[:300]!r}")

    def open_blank(self) -> None:
        self.page.goto(self.url)
        self.wait(f"return !!{APP}?.graph", 60, "the frontend did not load")

    def wait(self, condition: str, timeout: float, failure: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.page.evaluate(f"() => {{ {condition} }}"):
                    return
            except Exception:  # the page is still navigating  # noqa: BLE001
                pass
            self.page.wait_for_timeout(250)
        raise AssertionError(failure)

    def settle(self, quiet: float = 1.0, timeout: float = 20) -> None:
        """Waits until node sizes and the view stop changing for `quiet` seconds (images load, nodes grow)."""
        deadline, last, since = time.time() + timeout, None, time.time()
        while time.time() < deadline:
            state = self.js("const ds = app.canvas.ds; return JSON.stringify([ds.scale, ds.offset, "
                            "app.graph.nodes.map(n => [n.id, n.size, n.pos])]);")
            if state != last:
                last, since = state, time.time()
            elif time.time() - since >= quiet:
                return
            self.page.wait_for_timeout(200)

    # ------------------------------------------------------------------------------------- seeing
    def zoom(self) -> float:
        return self.js("return app.canvas.ds.scale;")

    def canvas_box(self) -> Rect:
        box = self.js("const r = app.canvas.canvas.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom];")
        return Rect("canvas", *box)

    def node_rects(self) -> list[Rect]:
        """Every node's box on the screen: the DOM node in Nodes 2.0 mode, else LiteGraph's bounding box."""
        rects = self.js("""
            const ds = app.canvas.ds, c = app.canvas.canvas.getBoundingClientRect();
            return app.graph.nodes.map(n => {
              const label = `${n.id} ${n.title ?? n.type}`;
              const el = document.querySelector(`[data-node-id="${n.id}"]`);
              if (el) { const r = el.getBoundingClientRect(); return [label, r.left, r.top, r.right, r.bottom]; }
              const [x, y, w, h] = n.getBounding();
              const left = (x + ds.offset[0]) * ds.scale + c.left, top = (y + ds.offset[1]) * ds.scale + c.top;
              return [label, left, top, left + w * ds.scale, top + h * ds.scale];
            });""")
        return [Rect(*r) for r in rects]

    def overlapping_nodes(self, min_area: float = 4.0) -> list[str]:
        """'<a> and <b> overlap by W×H px' for every pair of nodes that cover each other."""
        rects = self.node_rects()
        found = []
        for i, a in enumerate(rects):
            for b in rects[i + 1:]:
                if a.overlap(b) >= min_area:
                    width = min(a.right, b.right) - max(a.left, b.left)
                    height = min(a.bottom, b.bottom) - max(a.top, b.top)
                    found.append(f"'{a.node}' and '{b.node}' overlap by {width:.0f}×{height:.0f} px")
        return found

    def nodes_outside_view(self) -> list[str]:
        view = self.canvas_box()
        return [f"'{r.node}' ({r.left:.0f},{r.top:.0f})-({r.right:.0f},{r.bottom:.0f})" for r in self.node_rects()
                if r.left < view.left or r.top < view.top or r.right > view.right or r.bottom > view.bottom]

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))

    def frontend_version(self) -> str:
        return self.page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ ?? ''")

    def widget_value(self, node_id: int, name: str):
        return self.js("return app.graph.getNodeById(arg[0]).widgets.find(w => w.name === arg[1])?.value;",
                       [node_id, name])

    def nodes_of_type(self, node_type: str) -> list[int]:
        return self.js("return app.graph.nodes.filter(n => n.type === arg).map(n => n.id);", node_type)

    # -------------------------------------------------------------------------------------- doing
    def set_setting(self, name: str, value) -> None:
        """Changes a setting the way the settings dialog does (stored on the server, applied now)."""
        self.js("return app.extensionManager.setting.set(arg[0], arg[1]);", [name, value])

    def show_node(self, node_id: int) -> None:
        """Scrolls the canvas so the node is in the middle of the view, at the zoom the artist has."""
        self.js("const n = app.graph.getNodeById(arg); app.canvas.centerOnNode(n); app.canvas.setDirty(true, true);",
                node_id)
        self.settle(quiet=0.5)

    def widget_point(self, node_id: int, name: str) -> tuple[float, float]:
        """The middle of a canvas-drawn widget on the screen."""
        return tuple(self.js("""
            const n = app.graph.getNodeById(arg[0]), w = n.widgets.find(w => w.name === arg[1]);
            const ds = app.canvas.ds, c = app.canvas.canvas.getBoundingClientRect();
            const height = w.computedHeight ?? w.computeSize?.(n.size[0])?.[1] ?? LiteGraph.NODE_WIDGET_HEIGHT;
            const x = n.pos[0] + n.size[0] / 2, y = n.pos[1] + (w.last_y ?? w.y) + height / 2;
            return [(x + ds.offset[0]) * ds.scale + c.left, (y + ds.offset[1]) * ds.scale + c.top];""",
                             [node_id, name]))

    def click_widget(self, node_id: int, name: str) -> None:
        """Clicks a node's widget: its DOM element in Nodes 2.0 mode, its place on the canvas otherwise."""
        self.show_node(node_id)
        button = self.widget_button(node_id, name)
        if button is not None:
            button.click()
        else:
            x, y = self.widget_point(node_id, name)
            self.page.mouse.click(x, y)

    def widget_button(self, node_id: int, name: str):
        """The DOM button of a button widget in Nodes 2.0 mode, else None (drawn on the canvas)."""
        button = self.page.locator(f'[data-node-id="{node_id}"] [data-widget-name="{name}"] button')
        return button if button.count() == 1 else None

    def button_label(self, node_id: int, name: str, settled: str = "", timeout: float = 10) -> str:
        """A button widget's text as shown: the DOM button's in Nodes 2.0 mode, else the label drawn. With
        `settled`, waits up to `timeout` s for a text that starts so (a label that depends on the server)."""
        deadline = time.time() + timeout
        while True:
            button = self.widget_button(node_id, name)
            if button is not None:
                text = button.inner_text().strip()
            else:
                text = self.js("return app.graph.getNodeById(arg[0]).widgets.find(w => w.name === arg[1]).label;",
                               [node_id, name])
            if text.startswith(settled) or time.time() > deadline:
                return text
            self.page.wait_for_timeout(200)

    def run_workflow(self, timeout: float = 600) -> dict:
        """Queues the open workflow with the keyboard shortcut (Ctrl+Enter) and waits until it ran; returns the
        last execution message (execution_success, or the error)."""
        start = len(self.record.messages)
        self.js("document.activeElement?.blur();")  # the shortcut is the page's, not a text box's
        self.page.keyboard.press("Control+Enter")
        deadline = time.time() + timeout
        while time.time() < deadline:
            for message in self.record.messages[start:]:
                if message.get("type") in ("execution_success", "execution_error", "execution_interrupted"):
                    self.wait_for_images()
                    return message
            self.page.wait_for_timeout(250)
        raise AssertionError(f"the workflow did not finish in {timeout:.0f} s")

    def wait_for_images(self, timeout: float = 30) -> None:
        """Waits until every node that was sent images shows them (loaded), then for the layout to settle."""
        shown = [str(m["data"]["node"]) for m in self.record.messages
                 if m.get("type") == "executed" and (m["data"].get("output") or {}).get("images")]
        self.wait(f"const app = {APP}; return {json.dumps(shown)}.every(id => {{"
                  "const n = app.graph.getNodeById(id); "
                  "return n?.imgs?.length && n.imgs.every(i => i.complete && i.naturalWidth > 0); });",
                  timeout, f"nodes {shown} did not show their images")
        self.settle(quiet=1.5)

    def progress(self) -> list[tuple[str, float, float]]:
        """(node id, value, max) of every progress report, as 'progress' or as 'progress_state' messages."""
        found = []
        for message in self.record.messages:
            data = message.get("data") or {}
            if message.get("type") == "progress":
                found.append((str(data.get("node")), data["value"], data["max"]))
            elif message.get("type") == "progress_state":
                found += [(str(node), state["value"], state["max"]) for node, state in data["nodes"].items()]
        return found

    def messages_of(self, kind: str) -> list[dict]:
        return [m.get("data", {}) for m in self.record.messages if m.get("type") == kind]
