"""The command line on the fixture checkpoints: through `main()` in this process, and as a user runs it
(a subprocess) where the process itself matters (environment, the Hub's offline switch, the demo)."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpd_core import load_model

from conftest import REFERENCE, REFERENCE_HEADS

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env=None, process=False):
    """Run the CLI with these arguments: in a subprocess when `process` or `env` is given (a new
    interpreter each time costs seconds), else through `lpd_core.__main__.main` here."""
    args = [str(a) for a in args]
    if process or env is not None:
        return subprocess.run([sys.executable, "-m", "lpd_core", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    from lpd_core.__main__ import main
    out, err, cwd = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(ROOT)  # relative paths as for the subprocess
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    result = run_cli("convert", REFERENCE / "lpd.pth", folder / "lpd.safetensors", "--num-heads", REFERENCE_HEADS)
    assert result.returncode == 0, result.stderr
    return folder / "lpd.safetensors"


def test_convert_keeps_outputs_identical(converted, reference_model, reference_tensors):
    model = load_model(converted)  # no num_heads: the config travels in the file
    t = {k.split(".", 1)[1]: v for k, v in reference_tensors.items() if k.startswith("tf_groups.")}
    with torch.no_grad():
        before = reference_model.teacher_forced(t["tokens"], t["labels"], t["orders"], [1, 2, 4, 6, 9, 12, 14, 16])
        after = model.teacher_forced(t["tokens"], t["labels"], t["orders"], [1, 2, 4, 6, 9, 12, 14, 16])
    assert torch.equal(before, after)


def test_convert_tokenizer_round_trips(tmp_path, reference_vq):
    result = run_cli("convert", REFERENCE / "vq.pt", tmp_path / "vq.safetensors")
    assert result.returncode == 0, result.stderr
    from lpd_core import load_tokenizer
    codes = torch.randint(0, 512, (1, 64))
    with torch.no_grad():
        assert torch.equal(load_tokenizer(tmp_path / "vq.safetensors").decode(codes), reference_vq.decode(codes))


def test_generate_writes_a_grid_png(converted, tmp_path):
    out = tmp_path / "grid.png"
    result = run_cli("generate", "--model", converted, "--tokenizer", REFERENCE / "vq.pt", "--class", "3",
                     "--class", "5,7", "--batch", "2", "--steps", "8", "--cfg", "2", "--seed", "4", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "3 image(s)" not in result.stdout and "6 image(s)" in result.stdout
    image = np.asarray(Image.open(out))
    assert image.shape == (3 * 128 + 2 * 2, 2 * 128 + 2, 3)  # 3 classes × 2 images, 2 per row
    assert image.std() > 5  # a picture, not a flat colour


def test_main_command_generates_with_the_bundled_demo_offline(tmp_path):
    out = tmp_path / "demo.png"
    result = run_cli("generate", "--class", "3", "--out", out, env={"LPD_MODELS_DIR": str(tmp_path / "empty")})
    assert result.returncode == 0, result.stderr
    assert "bundled demo model" in result.stdout and "lpd_l_256" in result.stdout  # where the real ones are
    assert "8 steps" in result.stdout and "cfg 3" in result.stdout  # the settings stored in the demo's file
    image = np.asarray(Image.open(out))
    assert image.shape == (32, 32, 3) and image.std() > 10
    named = run_cli("generate", "--class", "cross", "--out", tmp_path / "named.png")
    assert named.returncode == 0, named.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "named.png")), image)  # class 3 is the cross


def test_generate_fast_path_gives_the_same_png(converted, tmp_path):
    common = ["generate", "--model", converted, "--tokenizer", REFERENCE / "vq.pt", "--class", "2", "--steps", "8",
              "--cfg", "2", "--temperature", "0"]
    for fast in ("on", "off"):
        result = run_cli(*common, "--fast", fast, "--out", tmp_path / f"{fast}.png")
        assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "on.png")), np.asarray(Image.open(tmp_path / "off.png")))


def test_generate_is_deterministic_by_seed(converted, tmp_path):
    outputs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.png"
        assert run_cli("generate", "--model", converted, "--tokenizer", REFERENCE / "vq.pt", "--class", "2",
                       "--steps", "4", "--seed", seed, "--out", out).returncode == 0
        outputs.append(np.asarray(Image.open(out)))
    assert np.array_equal(outputs[0], outputs[1]) and not np.array_equal(outputs[0], outputs[2])


def test_schedule_prints_sizes_and_saves_order_map(tmp_path):
    out = tmp_path / "map.png"
    result = run_cli("schedule", "--resolution", "256", "--steps", "20", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "1, 2, 4, 5, 7, 8, 10, 11, 12, 14, 15, 16, 17, 18, 18, 19, 19, 20, 20, 20" in result.stdout
    assert Image.open(out).size == (256, 256)


@pytest.mark.parametrize("args, message", [
    (["generate", "--model", "lpd_nonexistent", "--class", "1", "--out", "x.png"],
     "error: no file or folder 'lpd_nonexistent', and it is not a known model name"),
    (["generate", "--model", "/nowhere/model.pth", "--class", "1", "--out", "x.png"],
     "error: no file or folder '/nowhere/model.pth'"),
    (["generate", "--class", "goldfish", "--steps", "4", "--out", "x.png"],
     "error: this model's classes have no names: give class indices from 0 to 9"),
    (["generate", "--class", "12", "--steps", "4", "--out", "x.png"],
     "error: class index 12 is out of range"),
    (["generate", "--class", "1", "--steps", "65", "--out", "x.png"],
     "error: steps must be between 1 and 64"),
    (["schedule", "--grid", "4", "--steps", "17"], "error: steps must be between 1 and 16"),
])
def test_bad_input_is_one_line_and_exit_2(converted, args, message, tmp_path):
    if args[0] == "generate" and "--model" not in args:
        args = args[:1] + ["--model", str(converted), "--tokenizer", str(REFERENCE / "vq.pt")] + args[1:]
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message), result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_published_model_offline_says_where_to_put_it(tmp_path):
    result = run_cli("download", "lpd_l_256", "--models-dir", tmp_path, process=True)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "huggingface.co/mit-han-lab/lpd_l_256" in line and str(tmp_path) in line
    assert "Traceback" not in result.stderr


def test_generate_by_registry_name_from_the_hub_cache(converted, tmp_path):
    """The published-name path end to end: names resolve through huggingface_hub (offline, from a
    hub cache built here) into the models folder, then load and generate."""
    from test_hub import add_to_cache
    cache = tmp_path / "hf_cache"
    add_to_cache(cache, "mit-han-lab/lpd_l_256", "checkpoint-last.safetensors", converted.read_bytes())
    add_to_cache(cache, "FoundationVision/LlamaGen", "vq_ds16_c2i.pt", (REFERENCE / "vq.pt").read_bytes())
    models = tmp_path / "models"
    result = run_cli("generate", "--model", "lpd_l_256", "--models-dir", models, "--class", "2", "--steps", "4",
                     "--cfg", "1", "--out", tmp_path / "x.png",
                     env={"HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf_home")})
    assert result.returncode == 0, result.stderr
    assert (models / "lpd_l_256" / "checkpoint-last.safetensors").is_file()
    assert (models / "vq_ds16_c2i" / "vq_ds16_c2i.pt").is_file()
    assert Image.open(tmp_path / "x.png").size == (128, 128)
