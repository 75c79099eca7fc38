"""The command line on the fixture checkpoints: through `main()` in this process, and as a user runs it
(a subprocess) where the process itself matters (environment, the Hub's offline switch, the demo)."""

import contextlib
import io
import json
import os
import socket
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


# Fast answers: what can be checked without torch is checked before torch is imported


def run_fresh(*argument_lists, env=None) -> tuple[list[dict], str]:
    """main(args) for each list of arguments in turn, in one new interpreter as a user runs it: for each,
    the exit status, what it printed on sys.stderr, and whether torch had been imported by then; and
    what else reached the process's stderr (log lines of libraries)."""
    script = """
import contextlib, io, json, sys
from lpd_core.__main__ import main
for args in json.loads(sys.argv[1]):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(args)
    print(json.dumps({"code": code, "stderr": stderr.getvalue(), "torch": "torch" in sys.modules}))
"""
    lists = [[str(a) for a in args] for args in argument_lists]
    done = subprocess.run([sys.executable, "-c", script, json.dumps(lists)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.strip().splitlines()], done.stderr


MISTAKES = [
    (["generate", "--class", "1", "--top-p", "0", "--out", "x.png"], "error: top_p must be a finite number more than 0"),
    (["generate", "--class", "1", "--cfg", "nan", "--out", "x.png"], "error: cfg must be a finite number"),
    (["generate", "--class", "1", "--top-k", "-1", "--out", "x.png"], "error: top_k must be at least 0"),
    (["generate", "--class", "1", "--seed", "-1", "--out", "x.png"], "error: seed must be between 0 and"),
    (["generate", "--class", "1", "--batch", "0", "--out", "x.png"], "error: batch size must be at least 1"),
    (["generate", "--class", "1", "--proximity", "0", "--out", "x.png"], "error: proximity must be a finite number"),
    (["generate", "--class", "1", "--out", "x"], "error: x has no image extension"),
    (["generate", "--class", "1", "--switch-step", "2", "--out", "x.png"], "error: --switch-class and --switch-step"),
    (["generate", "--model", "lpd_l_265", "--class", "1", "--out", "x.png"],
     "error: no file or folder 'lpd_l_265', and it is not a known model name"),
    (["generate", "--class", "1", "--tokenizer", "vq_ds61", "--out", "x.png"], "error: no file or folder 'vq_ds61'"),
    (["vary", "--image", "missing.png", "--class", "1", "--out", "x.png"], "error: cannot read --image missing.png"),
    (["vary", "--image", "missing.png", "--class", "1", "--strength", "1.5", "--out", "x.png"],
     "error: strength must be a finite number at least 0 and at most 1"),
    (["wide", "--class", "1", "--width", "96", "--batch", "0", "--out", "x.png"], "error: --batch must be at least 1"),
    (["schedule", "--grid", "4", "--steps", "17"], "error: steps must be between 1 and 16"),
    (["convert", "x.pth", "--num-heads", "0"], "error: --num-heads must be at least 1"),
    (["download", "lpd_l_265"], "error: unknown checkpoint 'lpd_l_265'"),
]


def test_mistakes_are_answered_before_torch_is_imported():
    answers, _ = run_fresh(*(args for args, _ in MISTAKES))
    for (args, message), answer in zip(MISTAKES, answers, strict=True):
        assert answer["code"] == 2 and answer["stderr"].startswith(message), (args, answer)
        assert len(answer["stderr"].strip().splitlines()) == 1, (args, answer)
        assert not answer["torch"], args  # and none of the cases before imported it


def test_unreachable_hub_is_one_line_at_once(tmp_path):
    """Online, with nothing answering at the Hub's address: the download error comes from the first
    request, without huggingface_hub's retries ("Retrying in 8s"), and before torch is imported."""
    listener = socket.create_server(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()  # connections to it are refused
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf")}
    answers, logged = run_fresh(["download", "lpd_l_256", "--models-dir", tmp_path / "models"],
                                ["generate", "--model", "lpd_l_256", "--class", "1", "--out", "x.png",
                                 "--models-dir", tmp_path / "models"], env=env)
    assert len(answers) == 2 and logged == ""  # huggingface_hub logs its retries ("Retrying in 8s") there
    for answer in answers:
        stderr = answer["stderr"]
        assert answer["code"] == 2 and stderr.startswith("error: cannot get lpd_l_256"), stderr
        assert "could not be reached" in stderr and f"{endpoint}/mit-han-lab/lpd_l_256" in stderr
        assert len(stderr.strip().splitlines()) == 1  # no progress bar either
        assert not answer["torch"]


def test_help_names_the_command_as_it_was_called():
    done = subprocess.run([sys.executable, "-m", "lpd_core", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m lpd_core ")
    assert "\n  python -m lpd_core generate --class 3 --out demo.png" in done.stdout
