"""The ComfyUI nodes, called directly on the fixture checkpoints.

With COMFYUI_DIR pointing to a ComfyUI source tree (and its dependencies importable), the nodes run
against ComfyUI's real folder_paths / model_management / ModelPatcher / ProgressBar; otherwise they
use the pack's plain fallbacks (CPU, one models folder, no progress display). Either way the pack is
imported the way ComfyUI imports it: as a package from the repository root's __init__.py.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "lpd_reference"
PACK_NAME = "lpd_nodes_under_test"
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
V1_INTERFACE = json.loads((ROOT / "tests" / "fixtures" / "comfy_v1_interface.json").read_text())
CREATIVE_NODES = {"LPDClassBlend", "LPDVariation", "LPDWideCanvas", "LPDClassMorph"}  # added after the V1 nodes
# Optional inputs added after the V1 nodes, at the end of their lists: workflows saved before keep their
# widget values in place (values are stored by position), and a missing one takes its default.
ADDED_INPUTS = {"LPDSampler": [["negative", "STRING"]], "LPDEditSampler": [["negative", "STRING"]]}


def _import_comfyui() -> bool:
    """Put ComfyUI's modules on the path (CPU mode) when COMFYUI_DIR is set; True if they import."""
    if not COMFYUI_DIR:
        return False
    if COMFYUI_DIR not in sys.path:
        sys.path.append(COMFYUI_DIR)
    try:
        import comfy.cli_args
        comfy.cli_args.args.cpu = True  # before comfy.model_management is imported (CPU-only torch)
        import comfy.model_management  # noqa: F401
        import comfy.model_patcher  # noqa: F401
        import comfy.utils  # noqa: F401
        import folder_paths  # noqa: F401  (checks it imports)
    except ImportError as error:
        pytest.fail(f"COMFYUI_DIR={COMFYUI_DIR} is set but ComfyUI does not import here: {error}")
    return True


REAL_COMFY = _import_comfyui()


def _load_pack():
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = pack
    spec.loader.exec_module(pack)
    return pack


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A models/lpd folder holding the fixture model and tokenizer as .safetensors."""
    from lpd_core.weights import convert
    folder = tmp_path_factory.mktemp("models_lpd")
    convert(FIXTURES / "lpd.pth", folder / "lpd_fixture.safetensors", num_heads=4)
    convert(FIXTURES / "vq.pt", folder / "vq_fixture.safetensors")
    previous = os.environ.get("LPD_MODELS_DIR")
    os.environ["LPD_MODELS_DIR"] = str(folder)
    if REAL_COMFY:
        import folder_paths
        folder_paths.add_model_folder_path("lpd", str(folder), is_default=True)
    yield folder
    if REAL_COMFY:
        import folder_paths
        folder_paths.folder_names_and_paths["lpd"][0].remove(str(folder))
    if previous is None:
        os.environ.pop("LPD_MODELS_DIR", None)
    else:
        os.environ["LPD_MODELS_DIR"] = previous


def node_classes(pack) -> dict:
    """The pack's node classes by node id, as its comfy_entrypoint hands them to ComfyUI."""
    import asyncio
    extension = asyncio.run(pack.comfy_entrypoint())
    return {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}


def schema_inputs(cls) -> dict:
    return {item.id: item for item in cls.define_schema().inputs}


@pytest.fixture(scope="module")
def pack(models_dir):
    return _load_pack()


@pytest.fixture(scope="module")
def nodes(pack):
    return node_classes(pack)


@pytest.fixture(scope="module")
def model(nodes):
    return nodes["LPDModelLoader"].execute("lpd_fixture.safetensors", "auto")[0]


@pytest.fixture(scope="module")
def vq(nodes):
    return nodes["LPDTokenizerLoader"].execute("vq_fixture.safetensors", "auto")[0]


@pytest.fixture(scope="module")
def schedule(nodes, model):
    return nodes["LPDSchedule"].execute(model, 8, "locality", 0)[0]


class Recorder:
    """Stands in for the progress display: records (value, total, preview image) per update."""

    def __init__(self):
        self.updates = []
        self.then = None  # called after each update (a test can press Cancel there)

    def __call__(self, value, total, preview):
        self.updates.append((value, total, preview))
        if self.then is not None:
            self.then()


@contextlib.contextmanager
def recording_progress(monkeypatch):
    """Records the nodes' progress updates. With ComfyUI: through its V3 progress API, as inside a run
    (an executing-node context and a progress registry with a recording handler; previews arrive as
    ComfyUI's ("JPEG", image, size) tuples). Without: by replacing the pack's progress bar."""
    recorder = Recorder()
    if REAL_COMFY:
        from comfy_execution import progress as comfy_progress
        from comfy_execution.utils import CurrentNodeContext

        class Handler(comfy_progress.ProgressHandler):
            def update_handler(self, node_id, value, max_value, state, prompt_id, image=None):
                if image is not None:
                    assert image[0] == "JPEG" and (image[2] is None or image[2] >= 256)
                recorder(value, max_value, image[1] if image is not None else None)

        comfy_progress.reset_progress_state("lpd-test", None)
        comfy_progress.add_progress_handler(Handler("lpd-test"))
        with CurrentNodeContext("lpd-test", "1"):
            yield recorder
    else:
        runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]

        class Bar:
            def __init__(self, total):
                self.total = total

            def update_absolute(self, value, total=None, preview=None):
                recorder(value, total or self.total, preview)

        monkeypatch.setattr(runtime, "progress_bar", Bar)
        yield recorder


@pytest.fixture
def progress(pack, monkeypatch):
    with recording_progress(monkeypatch) as recorder:
        yield recorder


def small_tokenizer(vocab: int):
    """A randomly initialised VQ tokenizer with another vocabulary (for mismatch errors)."""
    from lpd_core.vq import VQConfig, VQModel
    runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]
    torch.manual_seed(0)
    module = VQModel(VQConfig(codebook_size=vocab, codebook_dim=8, ch=32, ch_mult=(1, 2), z_channels=32,
                              num_res_blocks=1)).eval()
    return runtime.Managed(module, "other", "vq")


# ------------------------------------------------------------------------------------------ the pack
def test_import_is_cheap_and_lazy():
    """Importing the pack (as ComfyUI does) and listing its nodes imports neither torch nor lpd_core."""
    code = (
        "import importlib.util, sys, time\n"
        "t = time.perf_counter()\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
        "import asyncio; nodes = asyncio.run(asyncio.run(m.comfy_entrypoint()).get_node_list())\n"
        "print(time.perf_counter() - t, 'torch' in sys.modules, 'lpd_core' in sys.modules, "
        "len(nodes), m.WEB_DIRECTORY, hasattr(m, 'NODE_CLASS_MAPPINGS'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout.split()
    torch_loaded, core_loaded, count, web, v1 = out[1], out[2], int(out[3]), out[4], out[5]
    assert torch_loaded == "False" and core_loaded == "False"
    assert count == len(V1_INTERFACE) + len(CREATIVE_NODES) and web == "./web"
    assert v1 == "False"  # ComfyUI ignores comfy_entrypoint when NODE_CLASS_MAPPINGS exists
    # No time bound (timings belong to benchmarks; 0.12 s on an idle 2-core machine, several times that
    # on a busy one): what keeps it cheap is that neither torch nor lpd_core is imported.


def test_node_definitions(pack):
    """Every node is a V3 node (define_schema / execute) with an LPD id, category, description and a
    tooltip on every input and output."""
    classes = node_classes(pack)
    assert set(classes) == set(V1_INTERFACE) | CREATIVE_NODES
    for name, cls in classes.items():
        schema = cls.define_schema()
        assert name.startswith("LPD") and schema.category == "LPD" and schema.description
        if name in V1_INTERFACE:
            assert schema.display_name == V1_INTERFACE[name]["display_name"]
        for item in [*schema.inputs, *schema.outputs]:
            assert item.tooltip, f"{name}.{item.id}: no tooltip"
    assert schema_inputs(classes["LPDSampler"])["seed"].control_after_generate is True


def test_same_interface_as_the_v1_nodes(pack):
    """Node ids, input names, their order, required/optional, types and outputs are those of the V1 nodes
    (tests/fixtures/comfy_v1_interface.json, from ComfyUI 0.8.0's /object_info before the conversion), with
    only the optional inputs of ADDED_INPUTS after them, so saved workflows, whose widget values are stored
    by position, keep loading."""
    classes = node_classes(pack)
    for name, expected in V1_INTERFACE.items():
        schema = classes[name].define_schema()
        for group in ("required", "optional"):
            declared = [[i.id, "COMBO" if i.io_type == "COMBO" else i.io_type] for i in schema.inputs
                        if i.optional == (group == "optional")]
            added = ADDED_INPUTS.get(name, []) if group == "optional" else []
            assert declared == expected[group] + added, f"{name} {group}"
        assert [o.io_type for o in schema.outputs] == expected["output"]
        assert [o.id for o in schema.outputs] == expected["output_name"]
        assert bool(schema.is_output_node) == expected["output_node"]
    if REAL_COMFY:  # ComfyUI's own V1 view of the V3 nodes (what /object_info serves)
        for name in V1_INTERFACE:
            info = classes[name].GET_NODE_INFO_V1()
            for group in ("required", "optional"):
                got = [[k, "COMBO" if isinstance(v[0], list) or v[0] == "COMBO" else v[0]]
                       for k, v in info["input"].get(group, {}).items()]
                added = ADDED_INPUTS.get(name, []) if group == "optional" else []
                assert got == V1_INTERFACE[name][group] + added, f"{name} {group}"
            assert list(info["output"]) == V1_INTERFACE[name]["output"]


def test_published_names_listed_before_download(pack, models_dir):
    from lpd_core import hub
    classes = node_classes(pack)
    models = schema_inputs(classes["LPDModelLoader"])["model_name"].options
    tokenizers = schema_inputs(classes["LPDTokenizerLoader"])["tokenizer_name"].options
    for name in hub.LPD_MODELS:
        assert f"{name} (download)" in models
    assert "vq_ds16_c2i (download)" in tokenizers
    # files are told apart by their header: the tokenizer is not offered as a model and vice versa
    assert "lpd_fixture.safetensors" in models and "vq_fixture.safetensors" not in models
    assert "vq_fixture.safetensors" in tokenizers and "lpd_fixture.safetensors" not in tokenizers
    assert models[0] == "demo" and tokenizers[0] == "demo"  # bundled: first in both lists


def test_validate_inputs(pack, models_dir):
    loader = node_classes(pack)["LPDModelLoader"]
    assert loader.validate_inputs("lpd_l_256") is True
    assert loader.validate_inputs("lpd_l_256 (download)") is True
    assert loader.validate_inputs("lpd_fixture.safetensors") is True
    message = loader.validate_inputs("missing.safetensors")
    assert isinstance(message, str) and "models/lpd" in message and str(models_dir) in message
    assert isinstance(loader.validate_inputs("../lpd_fixture.safetensors"), str)


def test_published_model_downloads_with_progress(pack, nodes, monkeypatch, progress, models_dir):
    """A published name not on disk goes to lpd_core's download with a progress callback that
    drives the node's progress bar (the download itself is replaced: no network in tests)."""
    import lpd_core.checkpoints
    calls = []

    def fake_find_checkpoint(spec, folder=None, progress=None, tokenizer=False):
        calls.append((spec, Path(folder), tokenizer))
        progress(512, 1024)
        progress(1024, 1024)
        return models_dir / "vq_fixture.safetensors"

    monkeypatch.setattr(lpd_core.checkpoints, "find_checkpoint", fake_find_checkpoint)
    tokenizer = nodes["LPDTokenizerLoader"].execute("vq_ds16_c2i (download)", "fp32")[0]
    assert calls == [("vq_ds16_c2i", models_dir, True)]
    assert [(v, t) for v, t, _ in progress.updates] == [(512, 1024), (1024, 1024)]
    assert tokenizer.module.vocab_size == 512


# ------------------------------------------------------------------------------------------ loaders
def test_loaders(model, vq):
    assert type(model).__name__ == "Managed" and model.kind == "lpd" and model.name == "lpd_fixture.safetensors"
    assert model.module.config.grid_size == 8 and model.module.config.num_classes == 10
    assert not model.module.training
    assert next(model.module.parameters()).dtype == torch.float32  # auto on the CPU
    assert vq.kind == "vq" and vq.module.vocab_size == 512 and vq.module.stride == 16
    if REAL_COMFY:
        assert model.patcher is not None and vq.patcher is not None


def test_loader_dtype(nodes, monkeypatch):
    half = nodes["LPDModelLoader"].execute("lpd_fixture.safetensors", "bf16")[0]
    assert next(half.module.parameters()).dtype == torch.bfloat16
    # auto is the library's rule for the device ComfyUI computes on, not for where the weights wait
    runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]
    monkeypatch.setattr(runtime, "torch_device", lambda: torch.device("cuda"))
    for node, name in (("LPDModelLoader", "lpd_fixture.safetensors"), ("LPDTokenizerLoader", "demo")):
        loaded = nodes[node].execute(name, "auto")[0]
        assert {(p.device.type, p.dtype) for p in loaded.module.parameters()} == {("cpu", torch.bfloat16)}


def test_memory_management(nodes, model, schedule):
    """Inside ComfyUI the model is loaded through load_models_gpu, can be unloaded, and comes back."""
    if not REAL_COMFY:
        pytest.skip("needs ComfyUI (set COMFYUI_DIR)")
    import comfy.model_management as mm
    nodes["LPDSampler"].execute(model, schedule, 1, 1, 0)
    assert model.patcher in mm.loaded_models()
    mm.unload_all_models()
    assert model.patcher not in mm.loaded_models()
    tokens = nodes["LPDSampler"].execute(model, schedule, 1, 1, 0)[0]
    assert model.patcher in mm.loaded_models() and tokens.batch == 1


# ------------------------------------------------------------------------------------------ schedule
def test_schedule(nodes, model):
    schedule, image = nodes["LPDSchedule"].execute(model, 8, "locality", 0)
    assert schedule.steps == 8 and sum(schedule.group_sizes) == 64 and schedule.grid_h == 8
    assert image.shape == (1, 128, 128, 3) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    default, _ = nodes["LPDSchedule"].execute(model, 0, "locality", 0)
    from lpd_core.checkpoints import generation_defaults
    assert default.steps == generation_defaults(model.module).steps
    raster, _ = nodes["LPDSchedule"].execute(model, 8, "raster", 0)
    assert np.array_equal(raster.order, np.arange(64))
    again, _ = nodes["LPDSchedule"].execute(model, 8, "random", 5)
    assert np.array_equal(again.order, nodes["LPDSchedule"].execute(model, 8, "random", 5)[0].order)
    assert not np.array_equal(again.order, nodes["LPDSchedule"].execute(model, 8, "random", 6)[0].order)
    with pytest.raises(ValueError, match=r"steps must be between 1 and 64, got 65"):
        nodes["LPDSchedule"].execute(model, 65, "locality", 0)


# ------------------------------------------------------------------------------------------ sampler
def test_sampler_outputs_and_determinism(nodes, model, schedule):
    sampler = nodes["LPDSampler"]
    tokens = sampler.execute(model, schedule, 3, 2, 7)[0]
    assert tokens.tokens.shape == (2, 64) and tokens.tokens.dtype == torch.int64
    assert tokens.tokens.device.type == "cpu"
    assert 0 <= int(tokens.tokens.min()) and int(tokens.tokens.max()) < 512
    assert tokens.grid == (8, 8) and tokens.vocab_size == 512 and tokens.labels == [3, 3]
    assert tokens.seeds == [7, 8]
    # defaults resolved from the model (fixture: plain settings, cfg 4 linear)
    assert tokens.settings == {"cfg": 4.0, "cfg_schedule": "linear", "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                               "negative": None}
    same = sampler.execute(model, schedule, 3, 2, 7)[0]
    assert torch.equal(tokens.tokens, same.tokens)
    other = sampler.execute(model, schedule, 3, 2, 8)[0]
    assert not torch.equal(tokens.tokens, other.tokens)
    # image i uses seed + i: the second image of seed 7 is the first of seed 8
    assert torch.equal(tokens.tokens[1], other.tokens[0])


def test_sampler_explicit_settings(nodes, model, schedule):
    greedy = nodes["LPDSampler"].execute(model, schedule, 2, 1, 0, cfg=1.0, cfg_schedule="constant",
                                        temperature=1.0, top_k=1, top_p=1.0)[0]
    greedy_other_seed = nodes["LPDSampler"].execute(model, schedule, 2, 1, 99, cfg=1.0, cfg_schedule="constant",
                                                   temperature=1.0, top_k=1, top_p=1.0)[0]
    assert greedy.settings["top_k"] == 1 and greedy.settings["cfg"] == 1.0
    assert torch.equal(greedy.tokens, greedy_other_seed.tokens)  # top-1 ignores the seed


def test_sampler_several_classes(nodes, model, schedule):
    tokens = nodes["LPDSampler"].execute(model, schedule, 0, 2, 0, classes="1, 3")[0]
    assert tokens.labels == [1, 1, 3, 3] and tokens.tokens.shape == (4, 64)


def test_out_of_range_class(nodes, model, schedule):
    with pytest.raises(ValueError, match=r"class index 10 is out of range.*0 to 9"):
        nodes["LPDSampler"].execute(model, schedule, 10, 1, 0)
    with pytest.raises(ValueError, match="out of range"):
        nodes["LPDSampler"].execute(model, schedule, 0, 1, 0, classes="2, 12")


def test_negative_batch_size_is_named_as_given(nodes, model, schedule):
    from lpd_core.errors import SettingError
    with pytest.raises(SettingError, match=r"batch size must be at least 1, got -2"):  # not the 0 labels it made
        nodes["LPDSampler"].execute(model, schedule, 1, -2, 0, classes="1, 2")


def test_model_tokenizer_mismatch(nodes, model, schedule):
    other = small_tokenizer(256)
    with pytest.raises(ValueError, match="tokenizer/model mismatch.*512.*256"):
        nodes["LPDSampler"].execute(model, schedule, 1, 1, 0, tokenizer=other)
    tokens = nodes["LPDSampler"].execute(model, schedule, 1, 1, 0)[0]
    with pytest.raises(ValueError, match="tokenizer/model mismatch"):
        nodes["LPDDecode"].execute(tokens, other)
    with pytest.raises(ValueError, match="tokenizer/model mismatch"):
        nodes["LPDEncode"].execute(torch.rand(1, 64, 64, 3), other, model=model)


def test_progress_and_live_preview(nodes, model, schedule, vq, progress):
    nodes["LPDSampler"].execute(model, schedule, 3, 2, 0, tokenizer=vq)
    updates = [u for u in progress.updates if u[1] == schedule.steps]
    assert [value for value, _, _ in updates] == list(range(1, schedule.steps + 1))
    grey = []
    for _, _, image in updates:
        pixels = np.asarray(image)
        assert pixels.ndim == 3 and pixels.shape[2] == 3 and max(pixels.shape[:2]) >= 128
        grey.append(np.mean(np.all(pixels == 128, axis=-1)))
    assert grey[0] > grey[-1] and grey[-1] == 0  # filled in step by step; nothing grey at the end


def test_no_preview_without_tokenizer(nodes, model, schedule, progress):
    nodes["LPDSampler"].execute(model, schedule, 3, 1, 0)
    assert progress.updates and all(preview is None for _, _, preview in progress.updates)


def test_interrupt_stops_and_frees_the_cache(pack, nodes, model, schedule, progress, monkeypatch):
    from lpd_core.model import KVCache
    if REAL_COMFY:
        import comfy.model_management as mm
        expected = mm.InterruptProcessingException

        def press_cancel_after_two():
            if len(progress.updates) == 2:
                mm.interrupt_current_processing(True)  # what POST /interrupt does

        progress.then = press_cancel_after_two
    else:
        runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]

        class Cancelled(Exception):
            pass

        expected = Cancelled
        calls = []

        def throw_if_interrupted():
            calls.append(1)
            if len(calls) == 3:
                raise Cancelled()

        monkeypatch.setattr(runtime, "throw_if_interrupted", throw_if_interrupted)
    with pytest.raises(expected):
        nodes["LPDSampler"].execute(model, schedule, 3, 2, 0)
    assert [value for value, _, _ in progress.updates] == [1, 2]
    gc.collect()
    assert not [obj for obj in gc.get_objects() if type(obj) is KVCache], "KV cache still alive"
    # the next run is unaffected
    assert nodes["LPDSampler"].execute(model, schedule, 3, 1, 0)[0].batch == 1
    assert len(progress.updates) == 2 + schedule.steps


# ------------------------------------------------------------------------------------------ decode / encode
def test_decode(nodes, model, schedule, vq):
    tokens = nodes["LPDSampler"].execute(model, schedule, 5, 2, 0)[0]
    image = nodes["LPDDecode"].execute(tokens, vq)[0]
    assert image.shape == (2, 128, 128, 3) and image.dtype == torch.float32 and image.device.type == "cpu"
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    direct = vq.module.decode_images(tokens.tokens[1:])
    assert torch.allclose(image[1:], direct, atol=1e-4)


def test_encode(nodes, model, vq):
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 100, 150, 3, generator=generator)
    tokens = nodes["LPDEncode"].execute(image, vq, model=model)[0]
    assert tokens.tokens.shape == (2, 64) and tokens.grid == (8, 8) and tokens.vocab_size == 512
    assert 0 <= int(tokens.tokens.min()) and int(tokens.tokens.max()) < 512
    small = nodes["LPDEncode"].execute(image, vq, size=70)[0]  # no model: size rounded down to the stride
    assert small.grid == (4, 4) and small.tokens.shape == (2, 16)
    # an image already at the model's size is encoded as it is (no resampling)
    exact = torch.rand(1, 128, 128, 3, generator=generator)
    assert torch.equal(nodes["LPDEncode"].execute(exact, vq, model=model)[0].tokens, vq.module.encode_images(exact))
    # encode → decode gives an image of the model's size
    first = type(tokens)(tokens.tokens[:1], tokens.grid, tokens.vocab_size)
    assert nodes["LPDDecode"].execute(first, vq)[0].shape == (1, 128, 128, 3)


def test_image_grid(nodes):
    images = torch.rand(3, 16, 24, 3)
    sheet = nodes["LPDImageGrid"].execute(images, 0, 2)[0]
    assert sheet.shape == (1, 2 * 16 + 2, 2 * 24 + 2, 3) and sheet.dtype == torch.float32
    row = nodes["LPDImageGrid"].execute(images, 3, 0)[0]
    assert row.shape == (1, 16, 72, 3)
    assert torch.allclose(row[0, :, 24:48], images[1], atol=1 / 255)


# ------------------------------------------------------------------------------------------ web support
def test_class_names_for_the_picker(pack, models_dir):
    loaders = sys.modules[f"{PACK_NAME}.nodes.loaders"]
    fixture = loaders.class_names_for_choice("lpd_fixture.safetensors")
    assert fixture == {"names": None, "aliases": None, "num_classes": 10}
    imagenet = loaders.class_names_for_choice("lpd_l_256 (download)")
    assert imagenet["num_classes"] == 1000 and imagenet["names"][207] == "golden retriever"
    assert len(imagenet["aliases"]) == 1000
    json.dumps(imagenet)
    routes = sys.modules[f"{PACK_NAME}.nodes.routes"]
    assert routes.register() is ("server" in sys.modules)


def test_demo_class_names(pack):
    from training.shapes import SHAPE_CLASSES
    loaders = sys.modules[f"{PACK_NAME}.nodes.loaders"]
    assert loaders.class_names_for_choice("demo")["names"] == list(SHAPE_CLASSES)


# ------------------------------------------------------------------------------------------ preview helper
class SyntheticTokenizer(torch.nn.Module):
    """A stand-in tokenizer whose decoder is known: each code has a colour (a mildly non-linear
    function of its codebook vector), patches bleed into their neighbours, plus texture."""

    stride = 8

    def __init__(self, vocab=512, dim=8):
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.vocab_size = vocab
        self.codes = torch.nn.Parameter(torch.randn(vocab, dim, generator=generator), requires_grad=False)
        self.mix = torch.randn(dim, 3, generator=generator)
        self.quantize = self

    def codebook(self):
        return torch.nn.functional.normalize(self.codes, dim=-1)

    def colours(self, codes):
        return torch.sigmoid(1.5 * self.codebook()[codes] @ self.mix)

    def encode_images(self, images):
        """Each patch → the code whose colour is nearest its mean colour."""
        batch, height, width, _ = images.shape
        means = _patch_means(images, self.stride).reshape(batch, -1, 3)
        return torch.cdist(means, self.colours(torch.arange(self.vocab_size))[None]).argmin(dim=-1)

    def decode_images(self, codes, grid=None):
        batch, count = codes.shape
        side = int(count ** 0.5)
        cells = self.colours(codes).reshape(batch, side, side, 3).permute(0, 3, 1, 2)
        blurred = 0.8 * cells + 0.2 * torch.nn.functional.avg_pool2d(cells, 3, 1, 1, count_include_pad=False)
        pixels = blurred.repeat_interleave(self.stride, 2).repeat_interleave(self.stride, 3)
        texture = 0.05 * torch.sin(torch.arange(side * self.stride) * 1.3)
        return (pixels + texture).clamp(0, 1).permute(0, 2, 3, 1)


def _patch_means(images, stride):
    batch, height, width, _ = images.shape
    return images.reshape(batch, height // stride, stride, width // stride, stride, 3).mean(dim=(2, 4))


def test_palette_matches_the_decoder():
    from lpd_core.preview import build_palette
    tokenizer = SyntheticTokenizer()
    palette = build_palette(tokenizer)
    assert palette.shape == (512, 3) and palette.dtype == torch.float32
    codes = torch.randint(0, 512, (4, 256), generator=torch.Generator().manual_seed(5))
    real = _patch_means(tokenizer.decode_images(codes), tokenizer.stride).reshape(-1, 3)
    painted = palette[codes.reshape(-1)]
    for channel in range(3):
        r = np.corrcoef(painted[:, channel], real[:, channel])[0, 1]
        assert r > 0.9, f"channel {channel}: correlation {r:.3f}"


def test_last_preview_frame_of_demo_samples_shows_their_colours():
    """The preview of a finished decode (every token known), at the decoded size, against the image
    the demo tokenizer decodes: 20 samples, two of each class, with the demo's sampling settings."""
    from lpd_core import build_schedule, generate
    from lpd_core.checkpoints import load_pair
    from lpd_core.preview import LivePreview
    model, tokenizer = load_pair()
    settings = model.generation_defaults
    schedule = build_schedule(8, steps=settings.steps, order="locality", seed=0)
    tokens = generate(model, schedule, torch.arange(20) % 10, cfg=settings.cfg, cfg_schedule=settings.cfg_schedule,
                      seeds=0)
    images = tokenizer.decode_images(tokens)
    preview = LivePreview(tokenizer, (8, 8), size=32, max_images=1)
    frames = torch.stack([torch.from_numpy(np.array(preview.frame(row[None]))) for row in tokens]) / 255
    assert frames.shape == images.shape == (20, 32, 32, 3)
    error = (frames - images).abs().mean().item()
    # 0.118 measured; the linear map from codebook vectors used before gave 0.142, and one colour
    # per cell cannot go below 0.048 on these samples (docs/benchmarks.md, "Live preview colours").
    assert error < 0.13, f"mean colour difference {error:.4f}"


def test_preview_frames():
    from lpd_core.preview import LivePreview
    tokenizer = SyntheticTokenizer()
    preview = LivePreview(tokenizer, (16, 16), size=256)
    tokens = torch.randint(0, 512, (3, 256))
    known = torch.zeros(3, 256, dtype=torch.bool)
    known[:, :128] = True
    frame = np.asarray(preview.frame(tokens, known))
    assert frame.shape == (2 * 256 + 4, 2 * 256 + 4, 3)  # 3 samples in a 2×2 sheet
    first = frame[:256, :256]
    assert np.all(first[128:] == 128)  # unknown half grey
    assert not np.all(first[:128] == 128)


# ------------------------------------------------------------------------------------------ rules shared with lpd_core
def test_exact_default_sentinels(nodes, model, schedule):
    """-1 means the model's default; any other value below 0 is refused with the valid range."""
    from lpd_core.errors import SettingError
    default = nodes["LPDSampler"].execute(model, schedule, 1, 1, 0, cfg=-1.0, temperature=-1.0, top_p=-1.0)[0]
    assert default.settings == {"cfg": 4.0, "cfg_schedule": "linear", "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                                "negative": None}
    for name in ("cfg", "temperature", "top_p"):
        with pytest.raises(SettingError, match=rf"{name} must be .*got -0.5"):
            nodes["LPDSampler"].execute(model, schedule, 1, 1, 0, **{name: -0.5})
    with pytest.raises(SettingError, match="top_k must be"):
        nodes["LPDSampler"].execute(model, schedule, 1, 1, 0, top_k=-2)


def test_encode_fits_images_like_the_edit_sampler(nodes, model, vq, monkeypatch):
    """LPD Encode and LPD Edit Sampler hand the tokenizer the very same fitted pixels (one fitting
    function, lpd_core.editing.fit_to_resolution), enlarging and shrinking."""
    seen = []
    encode = type(vq.module).encode_images
    monkeypatch.setattr(type(vq.module), "encode_images", lambda self, images: (seen.append(images.clone()),
                                                                                encode(self, images))[1])
    generator = torch.Generator().manual_seed(3)
    for height, width in ((40, 60), (300, 200)):
        image = torch.rand(1, height, width, 3, generator=generator)
        seen.clear()
        encoded = nodes["LPDEncode"].execute(image, vq, model=model)[0]
        _, edited = nodes["LPDEditSampler"].execute(model, vq, image, torch.zeros(1, height, width), 3, steps=2)
        assert len(seen) == 2 and seen[0].shape == (1, 128, 128, 3)
        assert torch.equal(seen[0], seen[1])
        assert torch.equal(encoded.tokens, edited.tokens)  # an empty mask keeps every encoded token


def test_one_loader_entry_per_checkpoint(pack, models_dir):
    """A published checkpoint on disk is listed once, by its name, not also as its file."""
    import shutil
    loaders = sys.modules[f"{PACK_NAME}.nodes.loaders"]
    folder = models_dir / "vq_ds16_c2i"
    folder.mkdir()
    try:
        shutil.copy(FIXTURES / "vq.pt", folder / "vq_ds16_c2i.pt")  # the published file name
        entries = loaders.choices("vq")
        assert "vq_ds16_c2i" in entries and "vq_ds16_c2i (download)" not in entries
        assert not [e for e in entries if e.startswith("vq_ds16_c2i/")], entries
        assert "vq_fixture.safetensors" in entries
    finally:
        shutil.rmtree(folder)


# ------------------------------------------------------------------------------------------ decoder reuse
@pytest.fixture
def fast_on_cpu(monkeypatch):
    """Take generate's fast path on the CPU too: the same code path as on a GPU (fixed-shape steps over
    a decoder kept on the model), minus the graph capture, so its bookkeeping can be checked here."""
    import lpd_core.fast
    monkeypatch.setattr(lpd_core.fast, "on_by_default", lambda device: True)


def _decoder(module):
    return getattr(module, "_lpd_fast_state", None)


def test_decoder_lives_while_the_model_stays_put(nodes, model, schedule, fast_on_cpu):
    """The sampler keeps the fast decoder between runs of the same batch on the same device, and
    rebuilds it when the batch changes; results are those of the eager path."""
    eager = nodes["LPDSampler"].execute(model, schedule, 3, 2, 7)[0]  # fast_on_cpu: already the fast path
    first = _decoder(model.module)
    assert first is not None
    again = nodes["LPDSampler"].execute(model, schedule, 3, 2, 7)[0]
    assert _decoder(model.module) is first  # reused, not rebuilt
    assert torch.equal(eager.tokens, again.tokens)
    nodes["LPDSampler"].execute(model, schedule, 3, 1, 7)
    assert _decoder(model.module) is not first and _decoder(model.module) is not None  # another batch


def test_decoder_released_on_unload_and_interrupt(nodes, model, schedule, fast_on_cpu, monkeypatch):
    """ComfyUI unloading the model (what /free and memory pressure do) and an interrupted run release
    the decoder; the next run builds a new one."""
    if not REAL_COMFY:
        pytest.skip("needs ComfyUI's model management (set COMFYUI_DIR)")
    import comfy.model_management as mm
    nodes["LPDSampler"].execute(model, schedule, 3, 1, 0)
    assert _decoder(model.module) is not None and model.patcher in mm.loaded_models()
    mm.unload_all_models()  # POST /free {"unload_models": true} runs this
    assert _decoder(model.module) is None
    nodes["LPDSampler"].execute(model, schedule, 3, 1, 0)
    assert _decoder(model.module) is not None
    mm.free_memory(1e30, model.patcher.load_device)  # room made for another model
    assert _decoder(model.module) is None
    nodes["LPDSampler"].execute(model, schedule, 3, 1, 0)
    runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]
    monkeypatch.setattr(runtime, "throw_if_interrupted", lambda: mm.throw_exception_if_processing_interrupted())
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException):
        nodes["LPDSampler"].execute(model, schedule, 3, 1, 0)
    assert _decoder(model.module) is None


def test_memory_asked_of_comfyui(nodes, model, schedule, vq, monkeypatch):
    """The sampler asks load_models_gpu for the fast decoder's memory (the library's estimate), and LPD
    Decode for its images' working memory, sizing its batches from the free memory."""
    from lpd_core.fast import decoder_memory_bytes, step_rows
    runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]
    asked = []
    monkeypatch.setattr(runtime, "load_together", lambda managed, memory_required=0: asked.append(
        ([m.kind for m in managed], memory_required)))
    import lpd_core.fast
    monkeypatch.setattr(lpd_core.fast, "on_by_default", lambda device: True)
    tokens = nodes["LPDSampler"].execute(model, schedule, 3, 4, 0)[0]
    decoder = decoder_memory_bytes(model.module.config, 8, torch.float32, step_rows(schedule.group_sizes))
    assert asked == [(["lpd"], decoder)]
    asked.clear()
    per_image = vq.module.memory_per_image(128, 128)
    monkeypatch.setattr(runtime, "free_memory", lambda device: int(2.5 * per_image))
    calls = []
    decode = type(vq.module).decode_images
    monkeypatch.setattr(type(vq.module), "decode_images", lambda self, codes, grid=None: (calls.append(
        codes.shape[0]), decode(self, codes, grid))[1])
    images = nodes["LPDDecode"].execute(tokens, vq)[0]
    assert asked == [(["vq"], 4 * per_image)] and calls == [2, 2] and images.shape[0] == 4


def test_model_and_tokenizer_load_in_one_call(nodes, model, schedule, vq, monkeypatch):
    """Where a sampler needs the tokenizer too (its preview palette, the images it decodes), both are
    loaded in one load_models_gpu call with the memory both need, so the second cannot unload the
    first."""
    from lpd_core.fast import decoder_memory_bytes, step_rows
    from lpd_core.preview import cached_palette
    runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]
    asked = []
    monkeypatch.setattr(runtime, "load_together", lambda managed, memory_required=0: asked.append(
        ([m.kind for m in managed], memory_required)))
    import lpd_core.fast
    monkeypatch.setattr(lpd_core.fast, "on_by_default", lambda device: True)
    decoder = decoder_memory_bytes(model.module.config, 2, torch.float32, step_rows(schedule.group_sizes))
    palette = vq.module.memory_per_image(schedule.grid_h * vq.module.stride, schedule.grid_w * vq.module.stride)
    first_time = cached_palette(vq.module) is None
    nodes["LPDSampler"].execute(model, schedule, 3, 1, 0, tokenizer=vq)
    nodes["LPDSampler"].execute(model, schedule, 3, 1, 0, tokenizer=vq)  # the palette is made once
    assert asked[-1] == (["lpd"], decoder)
    if first_time:
        assert asked[0] == (["lpd", "vq"], decoder + palette)
    asked.clear()
    picture, mask = torch.rand(1, 128, 128, 3), torch.ones(1, 128, 128)
    nodes["LPDEditSampler"].execute(model, vq, picture, mask, 3, steps=2)
    grid = model.module.config.grid_size
    kept = decoder_memory_bytes(model.module.config, 2, torch.float32, step_rows([grid * grid]))
    assert asked == [(["lpd", "vq"], kept + vq.module.memory_per_image(128, 128))]


def test_registry_metadata():
    """pyproject.toml carries what the Comfy registry reads, and its model list is the published checkpoints'."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    comfy = project["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"].endswith("docs/icon.png")
    assert (ROOT / "docs" / "icon.png").is_file() and comfy["requires-comfyui"] == ">=0.8.0"
    assert project["project"]["urls"]["Repository"].startswith("https://github.com/")
    from huggingface_hub import hf_hub_url

    from lpd_core.hub import LPD_MODELS, TOKENIZERS
    registry = {Path(m["location"]).name: m["model_url"] for m in comfy["Models"]}
    published = {f"{entry.name}.pth": hf_hub_url(entry.repo_id, f"{entry.name}.pth") for entry in LPD_MODELS.values()}
    published |= {entry.filename: hf_hub_url(entry.repo_id, entry.filename) for entry in TOKENIZERS.values()}
    assert registry == published


def test_template_names_work_in_template_links():
    """ComfyUI's template browser titles a pack's template with its file name, and its template links
    (`/?template=<name>&source=ComfyUI-LPD`, checked in frontends 1.49.6 and 1.58.1) load only names of
    letters, digits, '_', '.' and '-': a friendlier title with spaces would break every shared link."""
    import re
    names = [path.stem for path in (ROOT / "example_workflows").glob("*.json")]
    assert len(names) == 14
    assert [name for name in names if not re.fullmatch(r"[A-Za-z0-9_.-]+", name)] == []
    for name in names:
        assert (ROOT / "example_workflows" / f"{name}.jpg").is_file(), name


def test_template_outputs_have_their_own_file_prefixes():
    """Every save node of the templates writes under a prefix of its own, so one template's two results, or two
    templates' results, never share a numbered series of files."""
    prefixes = [node["widgets_values"][0]
                for path in sorted((ROOT / "example_workflows").glob("*.json"))
                for node in json.loads(path.read_text())["nodes"] if node["type"].startswith("Save")]
    assert len(prefixes) == 16
    assert len(set(prefixes)) == len(prefixes), sorted(prefixes)
