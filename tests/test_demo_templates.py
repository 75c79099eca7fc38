"""The example workflows that run on the demo model show what their notes say: each is run node by
node with its saved widget values (benchmarks/bench_templates.py) and judged with the demo's judge
CNN. The bars sit between what the templates showed before their settings were chosen and what
they show now (docs/benchmarks.md, "The demo templates")."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_templates import Graph, measure_canvas, measure_edit, pack_nodes, read_templates, widget_inputs
from training.judge import load_judge

JUDGE_PATH = Path(__file__).parent / "fixtures" / "shape_judge.safetensors"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run():
    """run(template, node id) → the benchmark's figures for that node of the template as saved."""
    nodes, loaded, judge, templates = pack_nodes(), {}, load_judge(JUDGE_PATH), read_templates(None)

    def measured(name: str, node_id: int) -> dict:
        graph = Graph(templates[name], nodes, loaded)
        kind = graph.nodes[node_id]["type"]
        return (measure_edit if kind == "LPDEditSampler" else measure_canvas)(graph, node_id, judge)
    return measured


def test_saved_widget_values_are_read_by_input_name():
    """ComfyUI saves widget values by position, with the seed's 'control after generate' mode after the seed."""
    values = read_templates(None)["lpd_inpaint_demo"]["nodes"]
    (edit,) = [node["widgets_values"] for node in values if node["type"] == "LPDEditSampler"]
    inputs = widget_inputs(pack_nodes()["LPDEditSampler"], edit)
    assert inputs == dict(class_index=9, steps=0, order="locality", seed=17, cfg=-1, cfg_schedule="default",
                          temperature=-1, top_k=-1, top_p=-1, grow=0, feather=1, composite=True)


def test_inpaint_finishes_each_star_in_its_own_colours(run):
    figures = run("lpd_inpaint_demo", 13)
    assert min(figures["p_class"]) > 0.9  # every result is a star to the judge
    assert np.mean(figures["new_colours"]) < 0.1  # before (the centre of diamonds): 0.276
    # the border of the edit is about as sharp as the same token borders of the input (before: 6.07 against 2.26)
    assert figures["seam_edge"] / figures["seam_other"] < 1.2 * figures["input_seam_edge"] / figures["input_seam_other"]


def test_outpaint_continues_the_background(run):
    figures = run("lpd_outpaint_demo", 8)
    assert min(figures["p_class"]) > 0.9
    assert np.mean(figures["new_colours"]) < 0.1  # before (2-token bands, no feather): 0.742
    assert figures["seam_edge"] / figures["seam_other"] < 1.0  # before: 5.27


def test_class_swap_replaces_every_whole_shape(run):
    figures = run("lpd_class_swap_demo", 13)
    assert min(figures["p_class"]) > 0.9  # rings; before (stars, shapes reaching into the border): 0.68 on average
    assert max(figures["p_old_class"]) < 0.05 and min(figures["p_input"]) > 0.8


@pytest.mark.parametrize("node_id, least", [(4, 0.5), (8, 0.75)])
def test_every_tile_of_the_wide_canvases_holds_its_class(run, node_id, least):
    figures = run("lpd_wide_canvas", node_id)
    named = np.array(figures["named"])  # (tiles, canvases)
    assert named.min(0).mean() >= least  # before (overlap 4): 0.00 for both canvases


def test_canvases_between_classes_hold_a_shape_in_every_tile(run):
    travel = np.array(run("lpd_travel_canvas", 4)["named"])  # circle → star
    assert travel[-1].mean() >= 0.75 and travel.mean() >= 0.75  # before (overlap 4): last tile 0.00
    per_tile = run("lpd_travel_canvas", 8)  # ring; square; triangle; star
    assert [x for x, _ in per_tile["tiles"]] == [0, 28, 56, 84]  # one tile per class
    assert np.array(per_tile["named"]).min(0).mean() >= 0.5  # before: 0.00
