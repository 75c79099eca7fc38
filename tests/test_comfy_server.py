"""The pack inside a real ComfyUI server (the ComfyUI run: tests/comfyui_setup.py).

Against the session's server (tests/comfyui_server.py: the fixture checkpoints in models/lpd/): the import
log, /object_info, the class route, full workflows through /prompt (images saved to disk) and the errors a
user sees for a bad class, a missing model and an out-of-range setting.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK_FOLDER = "ComfyUI-LPD"
NODES = {"LPDModelLoader", "LPDTokenizerLoader", "LPDSchedule", "LPDSampler", "LPDDecode", "LPDEncode",
         "LPDImageGrid", "LPDEditSampler", "LPDPadForOutpaint"}  # the V1 nodes (their interface is kept)
CREATIVE_NODES = {"LPDClassBlend", "LPDVariation", "LPDWideCanvas", "LPDClassMorph"}  # added after the V3 conversion
ADDED_INPUTS = {"LPDSampler": [["negative", "STRING"]], "LPDEditSampler": [["negative", "STRING"]]}  # after V1's


def _workflow(class_index=3, batch=2, prefix="lpd_server_test"):
    return {
        "1": {"class_type": "LPDModelLoader", "inputs": {"model_name": "lpd_fixture.safetensors", "dtype": "auto"}},
        "2": {"class_type": "LPDTokenizerLoader", "inputs": {"tokenizer_name": "vq_fixture.safetensors",
                                                             "dtype": "auto"}},
        "3": {"class_type": "LPDSchedule", "inputs": {"model": ["1", 0], "steps": 8, "order": "locality",
                                                      "order_seed": 0, "repulsion": -1, "proximity": 1.0}},
        "4": {"class_type": "LPDSampler", "inputs": {
            "model": ["1", 0], "schedule": ["3", 0], "class_index": class_index, "batch_size": batch,
            "seed": 11, "cfg": -1.0, "cfg_schedule": "default", "temperature": -1.0, "top_k": -1,
            "top_p": -1.0, "tokenizer": ["2", 0], "classes": ""}},
        "5": {"class_type": "LPDDecode", "inputs": {"tokens": ["4", 0], "tokenizer": ["2", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": prefix}},
    }


def _options(spec) -> list:
    """A combo's entries: V1 lists them as the type, V3 as ("COMBO", {"options": ...})."""
    return spec[0] if isinstance(spec[0], list) else spec[1]["options"]


def test_pack_imports(comfy):
    # No time limit here (timings belong to benchmarks; on a busy CI machine this line read 0.6 s):
    # what keeps the import cheap, no torch or lpd_core at import, is tested in test_nodes.py.
    log = comfy.log()
    line = next(line for line in log.splitlines() if line.rstrip().endswith(f"custom_nodes/{PACK_FOLDER}"))
    assert "IMPORT FAILED" not in line and re.search(r"[0-9.]+ seconds", line), line
    assert "Error while calling comfy_entrypoint" not in log and "Traceback" not in log


def test_object_info(comfy):
    info = comfy.get("/object_info")[1]
    ours = {name for name, node in info.items() if node["python_module"] == f"custom_nodes.{PACK_FOLDER}"}
    assert ours == NODES | CREATIVE_NODES
    # the V3 nodes look to the frontend exactly like the V1 ones did (names, order, types, outputs)
    v1 = json.loads((ROOT / "tests" / "fixtures" / "comfy_v1_interface.json").read_text())
    for name in NODES:
        for group in ("required", "optional"):
            got = [[k, "COMBO" if isinstance(v[0], list) or v[0] == "COMBO" else v[0]]
                   for k, v in info[name]["input"].get(group, {}).items()]
            added = ADDED_INPUTS.get(name, []) if group == "optional" else []
            assert got == v1[name][group] + added, f"{name} {group}"
        assert info[name]["output"] == v1[name]["output"] and info[name]["output_name"] == v1[name]["output_name"]
        assert info[name]["display_name"] == v1[name]["display_name"]
    models = _options(info["LPDModelLoader"]["input"]["required"]["model_name"])
    assert "lpd_fixture.safetensors" in models and "lpd_l_256 (download)" in models
    assert "vq_fixture.safetensors" in _options(info["LPDTokenizerLoader"]["input"]["required"]["tokenizer_name"])
    assert info["LPDSampler"]["output"] == ["LPD_TOKENS"]
    assert info["LPDSchedule"]["output"] == ["LPD_SCHEDULE", "IMAGE"]
    for name in NODES | CREATIVE_NODES:
        assert info[name]["category"] == "LPD"


def test_class_route(comfy):
    status, fixture = comfy.get("/lpd/classes?model=lpd_fixture.safetensors")
    assert status == 200 and fixture["num_classes"] == 10 and fixture["names"] is None
    status, imagenet = comfy.get("/api/lpd/classes?model=lpd_xl_512%20(download)")
    assert status == 200 and imagenet["names"][207] == "golden retriever"


def test_workflow_saves_images(comfy):
    from PIL import Image
    status, entry = comfy.run(_workflow())
    assert status == 200, entry
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = entry["outputs"]["6"]["images"]
    assert len(images) == 2
    for item in images:
        path = comfy.output_file(item)
        with Image.open(path) as image:
            assert image.size == (128, 128) and image.mode == "RGB"


def test_bad_class_reports_the_range(comfy):
    status, entry = comfy.run(_workflow(class_index=50, batch=1, prefix="lpd_bad"))
    assert status == 200 and entry["status"]["status_str"] == "error"
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert errors and errors[0]["node_type"] == "LPDSampler"
    assert "class index 50 is out of range" in errors[0]["exception_message"] and \
        "use an index from 0 to 9" in errors[0]["exception_message"]


def test_missing_model_is_rejected_before_running(comfy):
    prompt = _workflow()
    prompt["1"]["inputs"]["model_name"] = "no_such_model.safetensors"
    status, answer = comfy.run(prompt)
    assert status == 400
    details = json.dumps(answer["node_errors"])
    assert "no checkpoint named" in details and "models/lpd" in details


def test_v1_era_workflow_runs(comfy):
    """An API workflow saved with the V1 nodes (tests/fixtures/comfy_v1_workflow_api.json: every node,
    every input as the V1 schema named it) still runs."""
    from PIL import Image
    prompt = json.loads((ROOT / "tests" / "fixtures" / "comfy_v1_workflow_api.json").read_text())
    status, entry = comfy.run(prompt)
    assert status == 200, entry
    assert entry["status"]["status_str"] == "success", entry["status"]
    (saved,) = entry["outputs"]["11"]["images"]
    with Image.open(comfy.output_file(saved)) as image:
        assert image.size[0] > 128  # a grid of the two edited 128 px images


def test_out_of_range_setting_is_the_nodes_error(comfy):
    prompt = _workflow(batch=1, prefix="lpd_bad_cfg")
    prompt["4"]["inputs"]["cfg"] = -0.5
    status, entry = comfy.run(prompt)
    assert status == 200 and entry["status"]["status_str"] == "error"
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert errors[0]["node_type"] == "LPDSampler" and errors[0]["exception_type"].endswith("SettingError")
    assert "cfg must be a finite number at least 0 and at most 1000, got -0.5" in errors[0]["exception_message"]


def test_shipped_workflows_use_known_nodes_and_list_no_models(comfy):
    """Every example workflow names only nodes this server knows, and lists no model files: the frontend's
    missing-models dialog downloads .pth/.pt files only from URLs it knows, so for the published checkpoints it
    could only show an error; LPD Model Loader and LPD Tokenizer Loader download them on the first run."""
    info = comfy.get("/object_info")[1]
    frontend_only = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
    for path in sorted((ROOT / "example_workflows").glob("*.json")):
        workflow = json.loads(path.read_text())
        for node in workflow["nodes"]:
            assert node["type"] in info or node["type"] in frontend_only, (path.name, node["type"])
        assert "models" not in workflow, path.name
        assert not any("models" in node.get("properties", {}) for node in workflow["nodes"]), path.name


def test_shipped_workflows_use_no_deprecated_core_nodes(comfy):
    """A template must not show an artist nodes marked [DEPR] (e.g. "Batch Images (DEPRECATED)")."""
    info = comfy.get("/object_info")[1]
    deprecated = {
        path.name: sorted({f"{node['id']} {info[node['type']]['display_name']}" for node in workflow["nodes"]
                           if info.get(node["type"], {}).get("deprecated")})
        for path in sorted((ROOT / "example_workflows").glob("*.json"))
        for workflow in [json.loads(path.read_text())]
    }
    assert not {name: nodes for name, nodes in deprecated.items() if nodes}
