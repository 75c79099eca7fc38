"""Bad inputs, as a new user makes them, across the CLI, the Python API, sample-many and editing.

Every case asserts: the error is one of `lpd_core.errors` (LPDError); its message names the
problem and what to do; through the CLI it is one line `error: …` with exit status 2 and no
traceback; and nothing on disk changed or was left behind (every file under the test's folders is
the same before and after, by content). A bug-type exception keeps its traceback.

Node cases are left to the node tests (the nodes are being converted to ComfyUI's V3 API); they
call the same library checks (`settings.resolve_settings`, `editing.check_mask`, ...).
"""

import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from lpd_core import errors
from lpd_core.__main__ import main
from lpd_core.checkpoints import DEMO_MODEL_PATH, DEMO_TOKENIZER_PATH

ROOT = Path(__file__).resolve().parent.parent


def snapshot(*folders) -> dict:
    """Every file and folder under `folders`, with the sha256 of each file's content."""
    seen = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
    return seen


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Damaged and mislabelled checkpoint files, and other things a user may pass."""
    folder = tmp_path_factory.mktemp("bad")
    model = DEMO_MODEL_PATH.read_bytes()
    (folder / "empty.safetensors").write_bytes(b"")
    (folder / "truncated.safetensors").write_bytes(model[: len(model) // 2])
    (folder / "text.safetensors").write_bytes(b"this is not a checkpoint\n")
    (folder / "empty.pth").write_bytes(b"")
    buffer = io.BytesIO()
    torch.save({"model": {"pos_embed": torch.zeros(1, 65, 8)}}, buffer)
    (folder / "truncated.pth").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    Image.new("RGB", (8, 8), "red").save(folder / "picture.png")
    shutil.copy(folder / "picture.png", folder / "picture.pth")  # a PNG with a checkpoint's name
    (folder / "two").mkdir()
    (folder / "two" / "a.pth").write_bytes(b"x")
    (folder / "two" / "b.pth").write_bytes(b"y")
    (folder / "a_file").write_text("a file, not a folder")
    (folder / "out_folder").mkdir()
    (folder / "good.png").write_bytes((folder / "picture.png").read_bytes())
    return folder


def cli(capsys, *args):
    """main() in this process: (exit status, stderr)."""
    capsys.readouterr()
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


def assert_one_line(status, stderr, *words):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert status == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


# (arguments, words the one-line message must contain: the problem, the range, the fix)
GENERATE = [
    (["--cfg", "nan"], ["cfg must be a finite number at least 0", "got nan", "1 turns guidance off"]),
    (["--cfg", "inf"], ["cfg must be a finite number", "got inf"]),
    (["--cfg", "-2"], ["cfg must be a finite number at least 0", "got -2"]),
    (["--temperature", "nan"], ["temperature must be a finite number", "0 is greedy"]),
    (["--temperature", "-1"], ["temperature must be a finite number at least 0", "got -1"]),
    (["--top-p", "0"], ["top_p must be a finite number more than 0 and at most 1", "1 turns nucleus filtering off"]),
    (["--top-p", "1.5"], ["top_p must be", "at most 1", "got 1.5"]),
    (["--top-k", "-1"], ["top_k must be at least 0", "0 turns top-k filtering off"]),
    (["--steps", "0"], ["steps must be between 1 and 64", "got 0"]),
    (["--steps", "65"], ["steps must be between 1 and 64", "got 65"]),
    (["--batch", "0"], ["batch size must be at least 1", "ask for at least one image"]),
    (["--seed", "-1"], ["seed must be between 0 and 18446744073709551615", "got -1"]),
    (["--seed", str(2**64)], ["seed must be between 0 and 18446744073709551615", "got 18446744073709551616"]),
    (["--repulsion", "-1"], ["repulsion must be at least 0", "leave it out for the grid's default"]),
    (["--proximity", "0"], ["proximity must be a finite number more than 0", "default is 1.0"]),
    (["--proximity", "nan"], ["proximity must be a finite number"]),
    (["--class", "12"], ["class index 12 is out of range", "10 classes", "0 to 9"]),
    (["--class", "goldfish"], ["unknown class 'goldfish'"]),
    (["--class", " , "], ["no class given", "use an index from 0 to 9"]),
    (["--device", "cuda"], ["device 'cuda:0' is not available", "use --device cpu"]),
    (["--device", "warp-drive"], ["unknown device 'warp-drive'", "use auto, cpu, cuda"]),
]


@pytest.mark.parametrize("args, words", GENERATE, ids=[" ".join(a) for a, _ in GENERATE])
def test_generate_setting_out_of_range(args, words, capsys, tmp_path, bad):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "x.png"
    shutil.copy(bad / "good.png", out)  # an earlier good image must survive the failed run
    before = snapshot(tmp_path, bad)
    if "--class" not in args:
        args = ["--class", "3", *args]
    status, stderr = cli(capsys, "generate", *args, "--out", out)
    assert_one_line(status, stderr, *words)
    assert snapshot(tmp_path, bad) == before


FILES = [
    ("--model", "empty.safetensors", ["empty.safetensors is empty (0 bytes)", "python -m lpd_core download"]),
    ("--model", "truncated.safetensors", ["truncated.safetensors is truncated", "the file has", "download"]),
    ("--model", "text.safetensors", ["text.safetensors is not a checkpoint", "pass the model or tokenizer file"]),
    ("--model", "empty.pth", ["empty.pth is empty (0 bytes)", "get the file again"]),
    ("--model", "truncated.pth", ["truncated.pth is truncated or damaged", "get the file again"]),
    ("--model", "picture.png", ["picture.png is not a checkpoint: it is a PNG image"]),
    ("--model", "picture.pth", ["picture.pth is not a checkpoint: it is a PNG image"]),
    ("--model", "two", ["holds 2 checkpoint files (a.pth, b.pth)", "name the file instead"]),
    ("--model", "no_such_model", ["no file or folder", "not a known model name", "lpd_l_256"]),
    ("--model", str(DEMO_TOKENIZER_PATH), ["is not an LPD checkpoint", "it is a VQ tokenizer: pass it as the tokenizer"]),
    ("--tokenizer", str(DEMO_MODEL_PATH), ["is not a VQ tokenizer checkpoint", "it is an LPD model: pass it as the model"]),
]


@pytest.mark.parametrize("option, name, words", FILES, ids=[f"{o} {n}" for o, n, _ in FILES])
def test_unusable_checkpoint_is_named_with_what_to_do(option, name, words, capsys, tmp_path, bad):
    before = snapshot(tmp_path, bad)
    path = name if os.path.isabs(name) or name == "no_such_model" else bad / name
    status, stderr = cli(capsys, "generate", option, path, "--class", "1", "--out", tmp_path / "x.png",
                         "--models-dir", tmp_path / "models")
    assert_one_line(status, stderr, *words)
    assert snapshot(tmp_path, bad) == before


OUTPUTS = [
    (lambda bad, tmp: tmp / "x.txt", ["x.txt has no image extension (.txt)", "name the output x.png"]),
    (lambda bad, tmp: tmp / "x", ["has no image extension (none)", "x.png"]),
    (lambda bad, tmp: bad / "out_folder", ["is a folder", "give a file name inside it"]),
    (lambda bad, tmp: bad / "a_file" / "x.png", ["a_file is a file, not a folder", "choose another path"]),
]


@pytest.mark.parametrize("out, words", OUTPUTS, ids=["txt", "no suffix", "folder", "under a file"])
def test_unwritable_output_is_refused_before_any_work(out, words, capsys, tmp_path, bad, monkeypatch):
    import lpd_core.checkpoints
    monkeypatch.setattr(lpd_core.checkpoints, "load_pair", lambda *a, **k: pytest.fail("loaded a model"))
    before = snapshot(tmp_path, bad)
    status, stderr = cli(capsys, "generate", "--class", "1", "--out", out(bad, tmp_path))
    assert_one_line(status, stderr, *words)
    assert snapshot(tmp_path, bad) == before


OTHER_COMMANDS = [
    (["schedule", "--grid", "0", "--steps", "1"], ["--grid must be at least 1"]),
    (["schedule", "--resolution", "8", "--steps", "1"], ["--resolution must be at least 16"]),
    (["schedule", "--grid", "4", "--steps", "17"], ["steps must be between 1 and 16"]),
    (["schedule", "--grid", "4", "--steps", "4", "--seed", "-3"], ["seed must be between 0 and"]),
    (["schedule", "--grid", "4", "--steps", "4", "--out", "{tmp}/map.xyz"], ["map.xyz has no image extension", "map.png"]),
    (["convert", "{bad}/empty.pth"], ["empty.pth is empty (0 bytes)"]),
    (["convert", "{bad}/picture.png", "{tmp}/x.safetensors"], ["picture.png is not a checkpoint: it is a PNG image"]),
    (["convert", str(DEMO_MODEL_PATH), "{tmp}/x.bin"], ["must end in .safetensors", "x.safetensors"]),
    (["convert", str(DEMO_MODEL_PATH), "{bad}/a_file/x.safetensors"], ["a_file is a file, not a folder"]),
    (["convert", str(DEMO_MODEL_PATH), str(DEMO_MODEL_PATH)], ["is already a .safetensors file", "name another destination"]),
    (["convert", str(DEMO_MODEL_PATH), "{tmp}/x.safetensors", "--num-heads", "0"], ["--num-heads must be at least 1"]),
    (["download", "lpd_s_256", "--models-dir", "{tmp}/models"], ["unknown checkpoint 'lpd_s_256'", "lpd_l_256"]),
    (["download", "vq_ds16_c2i", "--models-dir", "{bad}/a_file"], ["a_file is a file", "give a folder"]),
    (["download", "vq_ds16_c2i", "--models-dir", "{bad}/hand"], ["vq_ds16_c2i.pt is empty (0 bytes)",
                                                                   "delete it and run python -m lpd_core download vq_ds16_c2i again"]),
]


@pytest.mark.parametrize("args, words", OTHER_COMMANDS, ids=[" ".join(a[:3]) for a, _ in OTHER_COMMANDS])
def test_schedule_convert_download(args, words, capsys, tmp_path, bad, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (bad / "hand").mkdir(exist_ok=True)
    (bad / "hand" / "vq_ds16_c2i.pt").write_bytes(b"")  # put there by hand, and empty
    before = snapshot(tmp_path, bad)
    status, stderr = cli(capsys, *[a.format(tmp=tmp_path, bad=bad) for a in args])
    assert_one_line(status, stderr, *words)
    assert snapshot(tmp_path, bad) == before


SAMPLE_MANY = [
    (["--top-p", "0"], ["top_p must be a finite number more than 0"]),
    (["--cfg", "nan"], ["cfg must be a finite number"]),
    (["--batch-size", "0"], ["batch size must be at least 1"]),
    (["--num-images", "0"], ["number of images must be at least 1"]),
    (["--images-per-class", "-5"], ["images per class must be at least 1"]),
    (["--classes", "99"], ["class index 99 is out of range", "0 to 9"]),
    (["--seed", str(2**64 + 5)], ["seed must be between 0 and 18446744073709551615"]),
    (["--steps", "100"], ["steps must be between 1 and 64"]),
    (["--device", "cuda:7"], ["device 'cuda:7' is not available"]),
]


@pytest.mark.parametrize("args, words", SAMPLE_MANY, ids=[" ".join(a) for a, _ in SAMPLE_MANY])
def test_sample_many_refuses_before_the_folder_exists(args, words, capsys, tmp_path):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    count = [] if "--images-per-class" in args else ["--num-images", "2"]
    status, stderr = cli(capsys, "sample-many", *count, *args, "--no-progress", "--out", out)
    assert_one_line(status, stderr, *words)
    assert not out.exists() and snapshot(tmp_path) == {}


def test_sample_many_out_is_a_file(capsys, tmp_path):
    (tmp_path / "run").write_text("notes")
    before = snapshot(tmp_path)
    status, stderr = cli(capsys, "sample-many", "--num-images", "2", "--out", tmp_path / "run")
    assert_one_line(status, stderr, "--out folder", "run is a file", "give a folder")
    assert snapshot(tmp_path) == before


# Editing, through the Python API


@pytest.fixture(scope="module")
def demo():
    from lpd_core.checkpoints import load_pair
    return load_pair()


def picture(height=32, width=32, channels=3):
    return torch.rand(1, height, width, channels, generator=torch.Generator().manual_seed(0))


def full_mask(height=32, width=32):
    mask = torch.zeros(height, width)
    mask[: height // 2] = 1
    return mask


EDITS = [
    (dict(images=picture(channels=4)), ["4 channels (RGBA)", "images[..., :3]"]),
    (dict(images=picture()[0]), ["one dimension short", "images[None]"]),
    (dict(images=torch.zeros(1, 0, 0, 3), mask=torch.zeros(0, 0)), ["the images are empty", "at least 1×1"]),
    (dict(images=(picture() * 255).to(torch.uint8)), ["floats in [0, 1], got torch.uint8", "divide by 255"]),
    (dict(images=picture() * 255), ["values must be finite and in [0, 1]", "divide by 255"]),
    (dict(images=picture().masked_fill(picture() > 0.5, float("nan"))), ["values must be finite"]),
    (dict(mask=full_mask()[None, None]), ["mask must be (height, width) or (batch, height, width)", "squeeze"]),
    (dict(mask=full_mask(32, 48)), ["mask is 48×32 px but the image 32×32 px", "aspect ratios differ",
                                    "use a mask made for this image"]),
    (dict(mask=full_mask() * 2), ["mask values must be finite and in [0, 1]"]),
    (dict(labels=[10]), ["class index must be between 0 and 9", "got 10"]),
    (dict(labels=[1, 2, 3]), ["labels must be one class index, or one per image (1)"]),
    (dict(grow=-1), ["grow must be at least 0"]),
    (dict(steps=0), ["steps must be between 1 and 64"]),
    (dict(cfg=float("nan")), ["cfg must be a finite number"]),
    (dict(top_p=0.0), ["top_p must be a finite number more than 0"]),
    (dict(order="spiral"), ["unknown order 'spiral'", "locality, random, raster"]),
    (dict(seed=-1), ["seed must be between 0 and"]),
]


@pytest.mark.parametrize("change, words", EDITS, ids=[",".join(c) + str(i) for i, (c, _) in enumerate(EDITS)])
def test_edit_refuses_bad_inputs(change, words, demo):
    from lpd_core.editing import edit
    model, tokenizer = demo
    inputs = dict(images=picture(), mask=full_mask(), labels=[3], **{k: v for k, v in change.items()
                                                                      if k not in ("images", "mask", "labels")})
    inputs.update({k: v for k, v in change.items() if k in ("images", "mask", "labels")})
    with pytest.raises(errors.SettingError) as caught:
        edit(model, tokenizer, inputs.pop("images"), inputs.pop("mask"), inputs.pop("labels"), **inputs)
    for word in words:
        assert word in str(caught.value), str(caught.value)


# The library API


def test_library_checks_raise_the_family(demo, bad):
    from lpd_core import load_model, load_tokenizer
    from lpd_core.settings import check_seed, resolve_settings, seeds_for
    from lpd_core.weights import resolve_device, resolve_dtype
    model, _ = demo
    cases = [
        (lambda: resolve_settings(model, top_p=0), errors.SettingError, "top_p must be a finite number more than 0"),
        (lambda: resolve_settings(model, cfg_schedule="cosine"), errors.SettingError, "choose one of linear, constant"),
        (lambda: seeds_for(0, 0), errors.SettingError, "batch size must be at least 1"),
        (lambda: check_seed(2**64), errors.SettingError, "seed must be between 0 and 18446744073709551615"),
        (lambda: resolve_dtype("fp8"), errors.SettingError, "choose one of auto, fp32, bf16, fp16"),
        (lambda: load_model(bad / "picture.png"), errors.CheckpointError, "it is a PNG image"),
        (lambda: load_tokenizer(bad / "truncated.safetensors"), errors.CheckpointError, "is truncated"),
    ]
    if not torch.cuda.is_available():
        cases.append((lambda: resolve_device("cuda"), errors.DeviceError, "use --device cpu"))
    for call, kind, words in cases:
        with pytest.raises(kind) as caught:
            call()
        assert isinstance(caught.value, errors.LPDError) and words in str(caught.value)


# Through a real process: one line on stderr, no traceback; a bug keeps its traceback


def run_cli(*args, code=None):
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "lpd_core"]
    return subprocess.run([*command, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("args, words", [
    (["generate", "--class", "3", "--cfg", "nan", "--out", "{tmp}/x.png"], "cfg must be a finite number"),
    (["generate", "--class", "3", "--model", "{bad}/truncated.safetensors", "--out", "{tmp}/x.png"], "is truncated"),
    (["sample-many", "--top-p", "0", "--out", "{tmp}/run"], "top_p must be"),
], ids=["cfg nan", "truncated", "sample-many top-p 0"])
def test_user_error_in_a_real_process_is_one_line(args, words, tmp_path, bad):
    before = snapshot(tmp_path, bad)
    result = run_cli(*[a.format(tmp=tmp_path, bad=bad) for a in args])
    assert_one_line(result.returncode, result.stderr, words)
    assert snapshot(tmp_path, bad) == before


def test_a_bug_keeps_its_traceback(tmp_path):
    code = ("import sys, lpd_core.checkpoints as c, lpd_core.__main__ as m\n"
            "def broken(*args, **kwargs): return {}['no such key']\n"
            "c.load_pair = broken\n"
            "sys.exit(m.main(sys.argv[1:]))\n")
    result = run_cli("generate", "--class", "3", "--out", tmp_path / "x.png", code=code)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "KeyError: 'no such key'" in result.stderr
    assert not list(tmp_path.iterdir())
