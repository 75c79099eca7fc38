"""What an artist does with the pack in ComfyUI's own frontend, in headless Chromium (the ComfyUI run).

Open each example workflow from the templates link and look at it: readable zoom, every node in view, no node
over another. Run each demo template: its images arrive, the samplers report progress and live previews, and the
console stays free of the pack's errors; the nodes still do not cover each other with the previews shown. Pick a
class by name on the samplers' class picker, on the canvas and in Nodes 2.0 mode.

Screenshots of every template before and after its run, and the files each demo template saved:
out/comfyui-screens/<line>/ (git-ignored; `python -m benchmarks.make_figures --thumbnails <that folder>` makes the
templates' thumbnails from the saved files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from comfyui_browser import READABLE_ZOOM, Canvas, PageRecord, launch
from comfyui_server import PACK_FOLDER
from comfyui_setup import pinned_frontend

ROOT = Path(__file__).resolve().parent.parent
LINE = os.environ.get("LPD_COMFYUI_LINE", "comfyui")
# the frontend served: the one the line names, else the one the ComfyUI tree pins
FRONTEND = os.environ.get("LPD_FRONTEND_VERSION") or pinned_frontend(Path(os.environ["COMFYUI_DIR"]))
SCREENS = ROOT / "out" / "comfyui-screens" / LINE
WORKFLOWS = {path.stem: json.loads(path.read_text()) for path in sorted((ROOT / "example_workflows").glob("*.json"))}
# The templates that run on the bundled demo model (the others need published checkpoints of gigabytes).
DEMOS = sorted(name for name, workflow in WORKFLOWS.items()
               if {n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "LPDModelLoader"} == {"demo"})
OUTPUT_NODES = ("SaveImage", "PreviewImage")
# Nodes 2.0 (Vue-drawn nodes, the `Comfy.VueNodes.Enabled` setting) is tested where the frontend has it settled.
NODES_2_FROM = (1, 58)
MODES = ["canvas"] + (["nodes 2.0"] if tuple(int(p) for p in FRONTEND.split(".")[:2]) >= NODES_2_FROM else [])


def _about_the_pack(errors: list[str]) -> list[str]:
    """The console errors that come from the pack: its scripts (/extensions/ComfyUI-LPD/...), its '[LPD]' lines,
    its node types. (Offline, the frontend's own size probes of the published model URLs fail too: not ours.)"""
    return [e for e in errors if re.search(re.escape(PACK_FOLDER) + r"|\[LPD\]|\bLPD[A-Z]\w+", e)]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def canvas(comfy, browser):
    tab = Canvas(browser, comfy.url)
    yield tab
    tab.close()


def _open(canvas, name: str) -> None:
    canvas.open_template(name, PACK_FOLDER, len(WORKFLOWS[name]["nodes"]))


def test_the_server_serves_the_lines_frontend(canvas):
    canvas.open_blank()
    assert canvas.frontend_version() == FRONTEND


@dataclass
class Look:
    """What the artist sees of an open template at one moment."""

    zoom: float
    outside: list[str]
    overlaps: list[str]

    @classmethod
    def at(cls, canvas) -> Look:
        return cls(canvas.zoom(), canvas.nodes_outside_view(), canvas.overlapping_nodes())


@dataclass
class Visit:
    """A template opened from the templates link, looked at, and (a demo) run from the browser."""

    opened: Look
    ran: Look | None = None
    finished: dict | None = None
    progress: list = field(default_factory=list)
    record: PageRecord | None = None


def _keep_saved_files(comfy, name: str, messages: list[dict]) -> None:
    """Copies what the template's save nodes wrote beside its screenshots: <name>-saved-<node>-<k>.<ext>."""
    savers = {str(n["id"]) for n in WORKFLOWS[name]["nodes"] if n["type"].startswith("Save")}
    for message in messages:
        data = message.get("data") or {}
        if message.get("type") == "executed" and str(data.get("node")) in savers:
            for k, item in enumerate((data.get("output") or {}).get("images", [])):
                source = comfy.output_file(item)
                shutil.copyfile(source, SCREENS / f"{name}-saved-{data['node']}-{k}{source.suffix}")


@pytest.fixture(scope="session")
def visit(comfy, browser):
    """Each template visited once per session (a frontend start costs seconds), for the tests to look at."""
    visits = {}

    def go(name: str) -> Visit:
        if name not in visits:
            tab = Canvas(browser, comfy.url)
            try:
                _open(tab, name)
                tab.screenshot(SCREENS / f"{name}-opened.png")
                seen = Visit(Look.at(tab))
                if name in DEMOS:
                    seen.finished = tab.run_workflow()
                    tab.screenshot(SCREENS / f"{name}-ran.png")
                    seen.ran, seen.progress = Look.at(tab), tab.progress()
                    _keep_saved_files(comfy, name, tab.record.messages)
                seen.record = tab.record
                visits[name] = seen
            finally:
                tab.close()
        return visits[name]
    return go


@pytest.mark.parametrize("name", WORKFLOWS)
def test_template_opens_readable(visit, name):
    """Opened from the templates link at 1600×1000: no dialog over it, zoomed where titles and widgets are drawn,
    all of it in view, no node covering another."""
    seen = visit(name)
    look = seen.opened
    problems = [] if look.zoom >= READABLE_ZOOM else [
        f"opens at {look.zoom:.0%} zoom (titles and widgets are drawn from {READABLE_ZOOM:.0%})"]
    if look.outside:
        problems.append(f"at {look.zoom:.0%}, {len(look.outside)} node(s) lie outside the 1600×1000 view: "
                        + "; ".join(look.outside))
    problems += [f"at {look.zoom:.0%}, {overlap}" for overlap in look.overlaps]
    problems += [f"a dialog opened over it: {text!r}" for text in seen.record.dialogs]
    assert not problems, f"{name}: " + "\n".join(problems)


@pytest.mark.parametrize("name", DEMOS)
def test_demo_template_runs(comfy, visit, name):
    """Run from the browser: it succeeds, every image node gets its images (files on disk), the samplers sent
    progress and live preview frames over the websocket, and the console has no error naming the pack."""
    seen = visit(name)
    assert seen.finished["type"] == "execution_success", seen.finished
    messages = seen.record.messages
    executed = {str(m["data"]["node"]): m["data"]["output"] for m in messages if m.get("type") == "executed"}
    image_nodes = [str(n["id"]) for n in WORKFLOWS[name]["nodes"] if n["type"] in OUTPUT_NODES and n.get("mode", 0) == 0]
    assert image_nodes and all(executed.get(node, {}).get("images") for node in image_nodes), (image_nodes, executed)
    for node in image_nodes:
        for item in executed[node]["images"]:
            assert comfy.output_file(item).is_file(), item
    ours = {str(n["id"]) for n in WORKFLOWS[name]["nodes"] if n["type"].startswith("LPD")}
    progress = [(node, value, top) for node, value, top in seen.progress if node in ours]
    assert all(0 <= value <= top for _, value, top in progress), progress
    assert any(0 < value < top for _, value, top in progress), f"no step of a pack node was reported: {progress}"
    assert seen.record.preview_frames > 0, "no live preview frame came over the websocket"


@pytest.mark.parametrize("name", WORKFLOWS)
def test_template_logs_no_error_of_the_pack(visit, name):
    """Opened (and a demo run): the browser console holds no error from the pack's scripts or nodes."""
    assert not _about_the_pack(visit(name).record.console_errors)


@pytest.mark.parametrize("name", DEMOS)
def test_demo_template_stays_readable_after_a_run(visit, name):
    """With the results and previews shown, no node covers another."""
    look = visit(name).ran
    assert not look.overlaps, f"{name} after a run, at {look.zoom:.0%}:\n" + "\n".join(look.overlaps)


@pytest.fixture(params=MODES)
def mode(request, canvas, comfy):
    """The frontend's node drawing: LiteGraph's canvas (default) or Nodes 2.0."""
    comfy.set_setting("Comfy.VueNodes.Enabled", request.param == "nodes 2.0")
    yield request.param
    comfy.set_setting("Comfy.VueNodes.Enabled", False)


@pytest.mark.parametrize("template, sampler, typed, index, label", [
    ("lpd_inpaint_demo", "LPDSampler", "checker", 7, "7: checkerboard"),  # the demo model's own class names
    ("lpd_inpaint_demo", "LPDEditSampler", "star", 9, "9: star"),
    ("lpd_class_to_image_256", "LPDSampler", "volc", 980, "980: volcano"),  # ImageNet's
])
def test_class_picker_sets_the_class_by_name(canvas, mode, template, sampler, typed, index, label):
    """Click the sampler's class button, type part of a name, pick the entry: class_index holds its number and
    the button names it."""
    _open(canvas, template)
    node = canvas.nodes_of_type(sampler)[0]
    assert canvas.widget_value(node, "classes") in ("", None), "this case needs the sampler's 'classes' text empty"
    current = canvas.widget_value(node, "class_index")
    shown = canvas.button_label(node, "lpd_class_picker", settled=f"{current}: ")
    assert shown.startswith(f"{current}: "), f"before the pick the button reads {shown!r}, class_index is {current}"
    canvas.click_widget(node, "lpd_class_picker")
    picker = canvas.page.locator("#lpd-class-picker")
    try:
        picker.wait_for(state="visible", timeout=5000)
    except Exception:  # Playwright's TimeoutError: say what the artist would have seen instead  # noqa: BLE001
        canvas.screenshot(SCREENS / f"picker-{template}-{sampler}-{mode.replace(' ', '')}-failed.png")
        errors = _about_the_pack(canvas.record.console_errors)
        raise AssertionError(f"the class picker did not open; the pack's console errors: {errors}") from None
    canvas.page.keyboard.type(typed)
    picker.get_by_text(label, exact=True).click()
    assert canvas.widget_value(node, "class_index") == index
    assert canvas.button_label(node, "lpd_class_picker") == label
    assert picker.count() == 0
    assert not _about_the_pack(canvas.record.console_errors), canvas.record.console_errors
    canvas.screenshot(SCREENS / f"picker-{template}-{sampler}-{mode.replace(' ', '')}.png")
