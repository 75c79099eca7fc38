import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

CHECKOUT = Path(__file__).resolve().parent.parent
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


# The checkout's root folder is two things: ComfyUI's entry point (its __init__.py imports the pack
# relatively, and ComfyUI imports it as a package under a name of its own) and the folder the test
# suite runs in. pytest sees the __init__.py and collects the root as a test package, which makes it
# import that file to look for module fixtures. It can only name the package after the folder, and
# the folder users give it, `ComfyUI-LPD`, is not a Python name: the import fails and every test
# errors; under a name that happens to be valid it runs the pack's start-up (model folder, HTTP
# route) for nothing. The root holds no tests, so it is collected as a plain folder instead, and
# nothing imports the entry point unless a test means to. This is a plugin registered from here,
# not a hook in a conftest.py at the root: a conftest's hooks apply below its own folder only, not
# to the folder itself, and a root conftest would be imported as part of the pack package in turn.
class CheckoutRootIsAFolder:
    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        return pytest.Dir.from_parent(parent, path=path) if path == CHECKOUT else None


def pytest_configure(config):
    config.pluginmanager.register(CheckoutRootIsAFolder(), "lpd-checkout-root")


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


@pytest.fixture(scope="module")
def one_thread():
    """torch on one intra-op thread while a module runs: its work is many small layers, and on two cores shared
    with other jobs, two threads spend most of their time waiting for each other (measured on the demo model's
    short training runs: 3-4× the wall time of one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
