import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "lpd_reference"
REFERENCE_HEADS = 4  # the fixture model's width (64) is not a published one, so heads are given

# The tests that need a ComfyUI server belong to the ComfyUI run (tests/comfyui_setup.py sets COMFYUI_DIR);
# without one they are not collected at all rather than counted as skipped.
if not os.environ.get("COMFYUI_DIR"):
    collect_ignore_glob = ["test_comfy_*.py"]


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """One ComfyUI server with the pack for the whole ComfyUI run (tests/comfyui_server.py)."""
    from comfyui_server import ComfyServer
    server = ComfyServer(tmp_path_factory.mktemp("comfy_base")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def reference_cases():
    return json.loads((REFERENCE / "cases.json").read_text())


@pytest.fixture(scope="session")
def reference_tensors():
    return load_file(str(REFERENCE / "cases.safetensors"))


@pytest.fixture(scope="session")
def reference_model():
    from lpd_core import load_model
    torch.manual_seed(0)
    return load_model(REFERENCE / "lpd.pth", num_heads=REFERENCE_HEADS)


@pytest.fixture(scope="session")
def reference_vq():
    from lpd_core import load_tokenizer
    return load_tokenizer(REFERENCE / "vq.pt")
