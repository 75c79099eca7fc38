"""Bad inputs, as a new user makes them, across the CLI, the Python API, sample-many and editing.

Every case asserts: the error is one of `lpd_core.errors` (LPDError); its message names the
problem and what to do; through the CLI it is one line `error: …` with exit status 2 and no
traceback; and nothing on disk changed or was left behind (every file under the test's folders is
the same before and after, by content). A bug-type exception keeps its traceback.

The Python API gets the same rules with the same words (the checks live in `lpd_core.settings`,
`lpd_core.blend.check_labels`, ...), and more: wrong types, NaN, infinity, negative, huge and
empty values, wrong shapes, wrong files. Node cases are in the node tests; the nodes call the same
library checks.
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
    torch.save({"weight": torch.zeros(3)}, folder / "neither.pth")  # a state dict of some other network
    (folder / "two").mkdir()
    (folder / "two" / "a.pth").write_bytes(b"x")
    (folder / "two" / "b.pth").write_bytes(b"y")
    (folder / "a_file").write_text("a file, not a folder")
    (folder / "out_folder").mkdir()
    (folder / "empty_folder").mkdir()
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
    (["--temperature", "1e308"], ["temperature must be a finite number at least 0 and at most 1000", "got 1e+308"]),
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
    (["--switch-class", "star", "--switch-step", "-1"], ["switch_step must be at least 0, got -1"]),
    # known to be too late once the model's steps are: still before the first decode step
    (["--switch-class", "star", "--switch-step", "8"], ["switch_step must be between 0 and 7, got 8"]),
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
    ("--model", "neither.pth", ["neither.pth is not an LPD checkpoint (no pos_embed); pass an LPD model file",
                                "python -m lpd_core download lpd_l_256"]),
    ("--tokenizer", "neither.pth", ["neither.pth is not a VQ tokenizer checkpoint", "pass a VQ tokenizer file",
                                    "python -m lpd_core download vq_ds16_c2i"]),
    ("--model", "empty_folder", ["empty_folder holds 0 checkpoint files (none)", "name the file instead"]),
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


# Paths the system cannot look up: answered as the path's problem, not as a traceback from os.stat

LONG_NAME = "a" * 300  # longer than any file system takes for one name (255 bytes)
UNUSABLE_PATHS = [
    (["generate", "--class", "1", "--model", "{tmp}/loop", "--out", "{tmp}/x.png"],
     ["the checkpoint", "loop cannot be used: Too many levels of symbolic links", "check the path"]),
    (["generate", "--class", "1", "--tokenizer", "{tmp}/loop", "--out", "{tmp}/x.png"],
     ["the checkpoint", "loop cannot be used: Too many levels of symbolic links"]),
    (["generate", "--class", "1", "--model", "{tmp}/" + LONG_NAME + ".safetensors", "--out", "{tmp}/x.png"],
     ["the checkpoint", "cannot be used: File name too long", "…"]),
    (["generate", "--class", "1", "--out", "{tmp}/" + LONG_NAME + ".png"],
     ["the output image", "cannot be used: File name too long", "choose another"]),
    (["generate", "--class", "1", "--out", "{tmp}/loop/x.png"],
     ["the output image", "loop/x.png cannot be used: Too many levels of symbolic links"]),
    (["sample-many", "--num-images", "2", "--out", "{tmp}/loop/run"],
     ["the --out folder", "cannot be used: Too many levels of symbolic links"]),
    (["sample-many", "--num-images", "2", "--out", "{tmp}/" + LONG_NAME],
     ["the --out folder", "cannot be used: File name too long"]),
    (["convert", "{tmp}/loop"], ["the checkpoint", "loop cannot be used: Too many levels of symbolic links"]),
    (["convert", str(DEMO_MODEL_PATH), "{tmp}/loop/x.safetensors"],
     ["the converted checkpoint", "cannot be used: Too many levels of symbolic links"]),
    (["convert", "{tmp}/folder"], ["folder is a folder, not a checkpoint file", "name the .safetensors or .pth file"]),
    (["download", "vq_ds16_c2i", "--models-dir", "{tmp}/loop"],
     ["the models folder", "cannot be used: Too many levels of symbolic links"]),
]


@pytest.mark.parametrize("args, words", UNUSABLE_PATHS,
                         ids=["model loop", "tokenizer loop", "model long", "out long", "out in loop",
                              "sample-many in loop", "sample-many long", "convert loop", "convert to loop",
                              "convert folder", "download loop"])
def test_a_path_the_system_cannot_look_up_is_named(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # a link to itself
    (tmp_path / "folder").mkdir()
    status, stderr = cli(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert_one_line(status, stderr, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "loop"]
    assert list((tmp_path / "folder").iterdir()) == []


OTHER_COMMANDS = [
    (["schedule", "--grid", "0", "--steps", "1"], ["--grid must be at least 1"]),
    (["schedule", "--resolution", "8", "--steps", "1"], ["--resolution must be at least 16"]),
    (["schedule", "--grid", "4", "--steps", "17"], ["steps must be between 1 and 16"]),
    (["schedule", "--resolution", "250", "--steps", "1"], ["--resolution 250 px is not a multiple of the tokenizer's "
                                                           "stride (16 px)", "use 240 or 256"]),
    (["wide", "--class", "1", "--width", "16", "--out", "{tmp}/w.png"], [
        "the canvas must be at least the model's 32×32 px (8×8 tokens) on each side, got 16×32 px (4×8 tokens)"]),
    (["wide", "--class", "1", "--width", "30", "--out", "{tmp}/w.png"], ["--width 30 px is not a multiple", "28 or 32"]),
    # the memory is checked before a label or a seed is made per canvas (a list of 10^9 of them took minutes)
    (["wide", "--class", "1", "--to-class", "2", "--width", "64", "--batch", "1000000000", "--out", "{tmp}/w.png"],
     ["holding 1000000000 images needs", "images fit in one run: ask for fewer"]),
    (["vary", "--image", "{bad}/picture.png", "--class", "1", "--count", "100000000", "--out", "{tmp}/v.png"],
     ["holding 100000000 images needs", "images fit in one run: ask for fewer"]),
    (["vary", "--image", "{bad}/two", "--class", "1", "--out", "{tmp}/v.png"], ["cannot read --image", "PNG or JPEG"]),
    (["morph", "--class", "1", "--to-class", "2", "--frames", "1000000000", "--out", "{tmp}/m.webp"],
     ["holding 1000000000 images needs", "images fit in one run: ask for fewer"]),
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
    (["download", "vq_ds16_c2i", "--filename", "../../etc/passwd", "--models-dir", "{tmp}/models"],
     ["must name a file inside the repository", "got '../../etc/passwd'", "leave it out"]),
    (["download", "vq_ds16_c2i", "--filename", "/etc/passwd", "--models-dir", "{tmp}/models"],
     ["must name a file inside the repository", "got '/etc/passwd'"]),
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


@pytest.mark.parametrize("name, make, words", [
    ("images", lambda path: path.write_text("notes"), ["images is a file", "keeps the folder of its PNGs there",
                                                       "move it away, or use another --out folder"]),
    ("manifest.json", lambda path: path.mkdir(), ["manifest.json is a folder", "keeps its manifest file there"]),
], ids=["images is a file", "manifest is a folder"])
def test_sample_many_refuses_a_folder_whose_entries_are_of_the_other_kind(name, make, words, capsys, tmp_path,
                                                                          monkeypatch):
    import lpd_core.bulk
    monkeypatch.setattr(lpd_core.bulk, "load_pair", lambda *a, **k: pytest.fail("loaded a model"))
    (tmp_path / "run").mkdir()
    make(tmp_path / "run" / name)
    before = snapshot(tmp_path)
    status, stderr = cli(capsys, "sample-many", "--num-images", "2", "--no-progress", "--out", tmp_path / "run")
    assert_one_line(status, stderr, *words)
    assert snapshot(tmp_path) == before


def test_sample_many_packs_a_finished_run_again_when_its_npz_is_damaged(capsys, tmp_path):
    run = tmp_path / "run"
    args = ["sample-many", "--num-images", "2", "--no-progress", "--out", run]
    assert cli(capsys, *args)[0] == 0
    npz = run / "samples_2x32x32x3.npz"
    good = npz.read_bytes()
    npz.write_bytes(good[:100])  # cut short outside sample-many (a copy, a full disk)
    assert cli(capsys, *args)[0] == 0
    assert npz.read_bytes() == good


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
    (dict(labels=[10]), ["class index 10 is out of range", "use an index from 0 to 9"]),
    (dict(labels=[1, 2, 3]), ["got 3 class labels for a batch of 1", "give one label for every image, or one for all"]),
    (dict(grow=-1), ["grow must be at least 0"]),
    (dict(steps=0), ["steps must be at least 1, got 0"]),
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
    from lpd_core.checkpoints import resolve_settings
    from lpd_core.settings import check_seed, seeds_for
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


# The Python API: every entry point, the same rules and words as the CLI


def _fixture_model():
    from lpd_core.checkpoints import load_pair
    return load_pair()


SCHEDULE = dict(order="raster", steps=4)
PERMUTATION = list(range(64))
SIZES = [1, 3, 12, 48]

GENERATE_API = [
    # the cases
    (dict(labels=[12]), "class index 12 is out of range: this model has 10 classes, so use an index from 0 to 9"),
    (dict(schedule="16x16"), "schedule must be an lpd_core Schedule"),
    (dict(top_p=0), "top_p must be a finite number more than 0 and at most 1, got 0"),
    (dict(labels=[1, 2], seeds=[1]), "got 1 seeds for a batch of 2: give one seed per image"),
    (dict(orders=[0] * 64, group_sizes=SIZES), "an order must be a permutation of 0..63"),
    (dict(orders=PERMUTATION, group_sizes=[1, 2, 3]), "group sizes sum to 6, but the grid has 64 tokens"),
    (dict(cfg=float("nan")), "cfg must be a finite number at least 0 and at most 1000, got nan"),
    # wrong types, NaN, infinity, negative, huge, empty, wrong shapes
    (dict(labels="3"), "class labels are class indices"),
    (dict(labels=[3.5]), "class labels are class indices"),
    (dict(labels=[[1, 2]]), "class labels are class indices"),
    (dict(labels=[]), "no class labels given"),
    (dict(labels=[True]), "class labels are class indices"),
    (dict(labels=torch.ones(2, 9)), "class weights must have shape (batch, 10)"),
    (dict(labels=torch.full((1, 10), float("nan"))), "class weights must be finite numbers ≥ 0"),
    (dict(labels=[-1]), "class index -1 is out of range"),
    (dict(labels=[2**70]), "class labels are class indices"),
    (dict(batch=0), "batch size must be at least 1"),
    (dict(batch=2.5), "batch size must be a whole number, got 2.5"),
    (dict(batch="2"), "batch size must be a whole number, got '2'"),
    (dict(labels=[1, 2, 3], batch=2), "got 3 class labels for a batch of 2"),
    (dict(cfg=float("inf")), "cfg must be a finite number"),
    (dict(cfg=-1), "cfg must be a finite number at least 0"),
    (dict(cfg=1e300), "at most 1000, got 1e+300"),
    (dict(cfg="4"), "cfg must be a number, got '4'"),
    (dict(cfg=None), "cfg must be a number, got None"),
    (dict(cfg_schedule="cosine"), "unknown cfg schedule 'cosine'; choose one of linear, constant"),
    (dict(cfg_schedule=None), "unknown cfg schedule None"),
    (dict(temperature=float("nan")), "temperature must be a finite number at least 0 and at most 1000, got nan"),
    (dict(temperature=-0.5), "temperature must be a finite number at least 0"),
    (dict(temperature=1e-30), "temperature 1e-30 is too small to sample with"),
    (dict(temperature=1e39), "temperature must be a finite number at least 0 and at most 1000, got 1e+39"),
    (dict(top_k=-1), "top_k must be at least 0, got -1"),
    (dict(top_k=1.5), "top_k must be a whole number, got 1.5"),
    (dict(top_p=float("nan")), "top_p must be a finite number more than 0 and at most 1, got nan"),
    (dict(top_p=1.5), "top_p must be a finite number more than 0 and at most 1, got 1.5"),
    (dict(seeds=-1), "seed must be between 0 and 18446744073709551615, got -1"),
    (dict(seeds=2**64), "seed must be between 0 and 18446744073709551615, got 18446744073709551616"),
    (dict(seeds="0"), "seeds must be one whole number"),
    (dict(seeds=2.5), "seed must be a whole number, got 2.5"),
    (dict(labels=[1, 2], seeds=[1, -1]), "seed must be between 0 and"),
    (dict(orders=torch.arange(64).float(), group_sizes=SIZES), "an order must be a permutation of 0..63"),
    (dict(orders=list(range(63)), group_sizes=SIZES), "got shape (63,)"),
    (dict(orders=torch.arange(64).reshape(1, 1, 64), group_sizes=SIZES), "got shape (1, 1, 64)"),
    (dict(orders=torch.arange(64).expand(3, 64), group_sizes=SIZES, labels=[1, 2]), "got 3 orders for a batch of 2"),
    (dict(orders=PERMUTATION, group_sizes=[0, 64]), "every group size must be at least 1, got 0"),
    (dict(orders=PERMUTATION, group_sizes=[]), "group sizes are empty"),
    (dict(orders=PERMUTATION, group_sizes="64"), "group sizes must be a list of whole numbers"),
    (dict(orders=PERMUTATION, group_sizes=[32.5, 31.5]), "every group size must be a whole number, got 32.5"),
    (dict(orders=PERMUTATION), "give a schedule, or both orders and group_sizes"),
    (dict(with_schedule_and_orders=True), "give a schedule, or orders and group_sizes, not both"),
    (dict(known_steps=-1), "known_steps must be between 0 and 3, got -1"),
    (dict(known_steps=4), "known_steps must be between 0 and 3, got 4"),
    (dict(known_steps=1), "known_steps > 0 needs known_tokens"),
    (dict(known_steps=1, known_tokens=torch.full((64,), 10**6)), "known_tokens must be codes"),
    (dict(known_steps=1, known_tokens=torch.zeros(64)), "known_tokens must be codes"),
    (dict(known_steps=1, known_tokens=torch.zeros(2, 63, dtype=torch.long)), "got shape (2, 63)"),
    (dict(switch_step=1), "a class switch needs both switch_labels and switch_step"),
    (dict(switch_labels=[1], switch_step=4), "switch_step must be between 0 and 3, got 4"),
    (dict(switch_labels=[11], switch_step=1), "class index 11 is out of range"),
    (dict(callback=5), "callback must be a function of one step (or None), got int"),
    (dict(fast="yes"), "fast must be True or False, got 'yes'"),
    (dict(batch=10**9), "needs"),  # the tokens alone: far more memory than any machine has
]


@pytest.mark.parametrize("change, words", GENERATE_API, ids=[str(i) for i in range(len(GENERATE_API))])
def test_generate_api_refuses_with_the_words(change, words, demo):
    from lpd_core import build_schedule, generate
    model, _ = demo
    change = dict(change)
    call = dict(labels=[3])
    if "orders" not in change and "group_sizes" not in change and "schedule" not in change:
        call["schedule"] = build_schedule(model.config.grid_size, **SCHEDULE)
    if change.pop("with_schedule_and_orders", False):
        call.update(orders=PERMUTATION, group_sizes=SIZES)
    call.update(change)
    with pytest.raises(errors.LPDError) as caught:
        generate(model, **call)
    assert words in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_generate_api_refuses_a_tokenizer_as_the_model(demo):
    from lpd_core import build_schedule, generate
    _, tokenizer = demo
    with pytest.raises(errors.SettingError, match="the model must be an LPD model .*got VQModel"):
        generate(tokenizer, build_schedule(8, steps=2), [1])


def test_int_seeds_wrap_at_2_to_the_64_as_the_cli_does(demo):
    """Image i of a run that starts at seed s uses (s + i) mod 2^64, through the API as through the CLI."""
    from lpd_core import build_schedule, generate
    model, _ = demo
    schedule = build_schedule(8, steps=4)
    top = 2**64 - 1
    wrapped = generate(model, schedule, [1, 1], cfg=2.0, seeds=top)
    assert torch.equal(wrapped, generate(model, schedule, [1, 1], cfg=2.0, seeds=[top, 0]))
    import numpy as np
    assert torch.equal(wrapped, generate(model, schedule, [1, 1], cfg=2.0, seeds=np.uint64(top)))


def test_whole_numbers_of_any_kind_are_whole_numbers(demo):
    """numpy integers, one-element integer tensors and whole floats are taken where whole numbers are."""
    import numpy as np

    from lpd_core import build_schedule, generate
    model, _ = demo
    schedule = build_schedule(np.int64(8), steps=np.int32(4), seed=torch.tensor(3))
    plain = generate(model, schedule, [1], cfg=2.0, seeds=5, top_k=4)
    assert torch.equal(plain, generate(model, schedule, np.array([1]), cfg=np.float32(2.0), seeds=torch.tensor(5),
                                       top_k=4.0, batch=np.int64(1)))


SCHEDULE_API = [
    (dict(grid_h=0), "grid height must be at least 1, got 0"),
    (dict(grid_h=2.5), "grid height must be a whole number, got 2.5"),
    (dict(grid_h="16"), "grid height must be a whole number, got '16'"),
    (dict(steps=0), "steps must be between 1 and 64, got 0"),
    (dict(steps=65), "steps must be between 1 and 64, got 65"),
    (dict(steps=None), "a schedule needs its steps or its group sizes"),
    (dict(steps=float("nan")), "steps must be a whole number, got nan"),
    (dict(order="spiral"), "unknown order 'spiral'; choose one of locality, random, raster"),
    (dict(order=[0, 1, 2]), "an order must be a permutation of 0..63"),
    (dict(seed=-1), "seed must be between 0 and 18446744073709551615"),
    (dict(proximity=0), "proximity must be a finite number more than 0"),
    (dict(proximity=float("inf")), "proximity must be a finite number more than 0"),
    (dict(repulsion=-1), "repulsion must be at least 0"),
    (dict(group_sizes=[1, 2], steps=None), "group sizes sum to 3, but the grid has 64 tokens"),
    (dict(group_sizes=[32, 32], steps=3), "steps=3 but 2 group sizes were given"),
    (dict(grid_h=10**7, steps=1), "needs"),  # 10^14 tokens: more memory than there is
]


@pytest.mark.parametrize("change, words", SCHEDULE_API, ids=[str(i) for i in range(len(SCHEDULE_API))])
def test_build_schedule_refuses_with_the_words(change, words):
    from lpd_core import build_schedule
    call = dict(grid_h=8, steps=4)
    call.update(change)
    with pytest.raises(errors.LPDError) as caught:
        build_schedule(**call)
    assert words in str(caught.value), str(caught.value)


def test_tokenizer_api_refuses_with_the_words(demo):
    _, tokenizer = demo
    codes = torch.zeros(1, 64, dtype=torch.long)
    cases = [
        (lambda: tokenizer.decode_images(torch.full((1, 64), 512)), "got codes from 512 to 512: they are not this "
                                                                     "tokenizer's"),
        (lambda: tokenizer.decode_images(torch.full((1, 64), -1)), "got codes from -1 to -1"),
        (lambda: tokenizer.decode_images(codes.float()), "codes are an integer tensor (batch, tokens) of values 0..511"),
        (lambda: tokenizer.decode_images(codes[0]), "one dimension short: add the batch dimension (codes[None])"),
        (lambda: tokenizer.decode_images([[0] * 64]), "got list"),
        (lambda: tokenizer.decode_images(codes[:, :60]), "60 codes per image are not a square grid; pass grid="),
        (lambda: tokenizer.decode_images(codes, grid=(4, 4)), "height × width = 64"),
        (lambda: tokenizer.decode_images(codes, grid=(-8, -8)), "a grid side must be at least 1"),
        (lambda: tokenizer.decode_images(torch.zeros(0, 64, dtype=torch.long)), "got shape (0, 64)"),
        (lambda: tokenizer.decode(torch.full((1, 64), 512)), "got codes from 512 to 512"),
        (lambda: tokenizer.encode_images(torch.rand(1, 30, 32, 3)), "the images are 32×30 px, not a multiple of the "
                                                                    "tokenizer's stride (4 px)"),
        (lambda: tokenizer.encode_images(torch.full((1, 32, 32, 3), float("nan"))), "values must be finite"),
        (lambda: tokenizer.encode_images(torch.zeros(1, 32, 32, 3, dtype=torch.uint8)), "divide by 255"),
        (lambda: tokenizer.encode_images(torch.rand(32, 32, 3)), "one dimension short"),
        (lambda: tokenizer.encode_images(torch.rand(1, 32, 32, 4)), "4 channels (RGBA)"),
        (lambda: tokenizer.encode_images("picture.png"), "the images must be a torch tensor, got str"),
        (lambda: tokenizer.encode(torch.rand(1, 3, 30, 32)), "not a multiple of the tokenizer's stride"),
    ]
    for call, words in cases:
        with pytest.raises(errors.SettingError) as caught:
            call()
        assert words in str(caught.value), (words, str(caught.value))


CREATIVE_API = [
    ("vary", dict(strength=float("nan")), "strength must be a finite number at least 0 and at most 1, got nan"),
    ("vary", dict(strength=1.5), "strength must be a finite number at least 0 and at most 1, got 1.5"),
    ("vary", dict(strength="half"), "strength must be a number, got 'half'"),
    ("vary", dict(strength=True), "strength must be a number, got True"),
    ("vary", dict(steps=0), "steps must be at least 1, got 0"),
    ("vary", dict(labels=[10]), "class index 10 is out of range"),
    ("vary", dict(labels=[1, 2, 3]), "got 3 class labels for a batch of 1"),
    ("vary", dict(images=torch.rand(1, 32, 32, 3) * 255), "values must be finite and in [0, 1]"),
    ("vary", dict(seed=-5), "seed must be between 0 and"),
    ("vary", dict(cfg=float("inf")), "cfg must be a finite number"),
    ("vary", dict(order="spiral"), "unknown order 'spiral'"),
    ("vary", dict(proximity=-1.0), "proximity must be a finite number more than 0"),
    ("vary", dict(callback="print"), "callback must be a function"),
    ("vary", dict(images=torch.rand(1, 32, 32, 3).expand(10**8, -1, -1, -1)), "needs"),
    ("wide", dict(width=6), "at least the model's 32×32 px (8×8 tokens) on each side, got 24×32 px (6×8 tokens)"),
    ("wide", dict(width=24, overlap=0), "the tile overlap must be between 1 and 7, got 0"),
    ("wide", dict(width=24, overlap=8), "the tile overlap must be between 1 and 7, got 8"),
    ("wide", dict(width=24.5), "the canvas width must be a whole number, got 24.5"),
    ("wide", dict(width=24, height=-8), "the canvas height must be at least 1, got -8"),
    ("wide", dict(width=24, batch=0), "batch size must be at least 1"),
    ("wide", dict(width=24, labels=[3, 12]), "class index 12 is out of range"),
    ("wide", dict(width=24, steps=-1), "steps must be at least 1, got -1"),
    ("wide", dict(width=24, top_p=0.0), "top_p must be a finite number more than 0"),
    ("wide", dict(width=10**9), "needs"),  # a canvas far larger than memory
    ("wide", dict(width=24, batch=10**9), "holding 1000000000 images needs"),
    ("edit", dict(callback=3), "callback must be a function"),
    ("edit", dict(composite="no"), "composite must be True or False, got 'no'"),
    ("edit", dict(mask=[[1.0]]), "the mask must be a torch tensor"),
    ("edit", dict(mask=torch.full((32, 32), float("nan"))), "mask values must be finite and in [0, 1]"),
    ("edit", dict(feather=2.5), "feather must be a whole number, got 2.5"),
    ("edit", dict(labels="cat"), "class labels are class indices"),
]


@pytest.mark.parametrize("entry, change, words", CREATIVE_API, ids=[f"{e}{i}" for i, (e, _, _) in enumerate(CREATIVE_API)])
def test_edit_vary_wide_refuse_with_the_words(entry, change, words, demo):
    from lpd_core.canvas import wide_canvas
    from lpd_core.editing import edit
    from lpd_core.variation import vary
    model, tokenizer = demo
    change = dict(change)
    labels = change.pop("labels", [3])
    with pytest.raises(errors.LPDError) as caught:
        if entry == "vary":
            vary(model, tokenizer, change.pop("images", picture()), labels, change.pop("strength", 0.5), **change)
        elif entry == "wide":
            wide_canvas(model, tokenizer, labels, **change)
        else:
            edit(model, tokenizer, change.pop("images", picture()), change.pop("mask", full_mask()), labels, **change)
    assert words in str(caught.value), str(caught.value)


def test_a_morph_of_more_frames_than_memory_holds_is_refused_before_any_frame_is_planned(demo):
    from lpd_core import build_schedule
    from lpd_core.morph import class_morph
    model, tokenizer = demo
    with pytest.raises(errors.NotEnoughMemoryError, match="holding 1000000000 images needs .* ask for fewer"):
        class_morph(model, tokenizer, 1, 2, schedule=build_schedule(8, steps=8), frames=10**9)


@pytest.mark.parametrize("images, change, words", [
    (torch.rand(2, 8, 8, 3), dict(columns=-1), "columns must be at least 0, got -1"),
    (torch.rand(2, 8, 8, 3), dict(columns=1.5), "columns must be a whole number, got 1.5"),
    (torch.rand(2, 8, 8, 3), dict(padding=-5), "padding must be at least 0, got -5"),
    (torch.rand(0, 8, 8, 3), {}, "no images to lay out in a grid: give at least one image"),
], ids=["columns -1", "columns 1.5", "padding -5", "no images"])
def test_image_grid_refuses_with_the_words(images, change, words):
    from lpd_core.imaging import image_grid
    with pytest.raises(errors.SettingError) as caught:  # were PIL's ValueError and a ZeroDivisionError
        image_grid(images, **change)
    assert words in str(caught.value), str(caught.value)


def test_model_and_tokenizer_swapped_or_of_another_kind(demo):
    from lpd_core.editing import edit
    from lpd_core.variation import vary
    model, tokenizer = demo
    with pytest.raises(errors.SettingError, match="the model and the tokenizer are swapped"):
        vary(tokenizer, model, picture(), 3, 0.5)
    with pytest.raises(errors.SettingError, match="need an LPD model .*got str and VQModel"):
        edit("demo", tokenizer, picture(), full_mask(), 3)


def test_loading_refuses_with_the_words(bad, tmp_path):
    from lpd_core import load_model, load_tokenizer
    from lpd_core.checkpoints import load_pair
    cases = [
        (lambda: load_model(5), errors.CheckpointError, "the checkpoint is named by its path (text or a pathlib.Path), got"),
        (lambda: load_model(bad / "text.safetensors"), errors.CheckpointError, "is not a checkpoint"),
        (lambda: load_model(DEMO_MODEL_PATH, dtype="fp8"), errors.SettingError, "unknown dtype 'fp8'"),
        (lambda: load_model(DEMO_MODEL_PATH, device="warp"), errors.DeviceError, "unknown device 'warp'"),
        (lambda: load_tokenizer(DEMO_MODEL_PATH), errors.CheckpointError, "it is an LPD model: pass it as the model"),
        (lambda: load_model(DEMO_MODEL_PATH, num_heads=3), errors.SettingError, "num_heads must divide the model's width"),
        (lambda: load_model(DEMO_MODEL_PATH, num_heads=0), errors.SettingError, "num_heads must be at least 1"),
        (lambda: load_pair(42), errors.CheckpointError, "the checkpoint is named by its path (text or a pathlib.Path), got"),
        (lambda: load_pair(tmp_path / "nothing_here.safetensors"), errors.CheckpointError, "no file or folder"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind) as caught:
            call()
        assert words in str(caught.value), (words, str(caught.value))


def test_sample_many_api_refuses_before_the_folder_exists(tmp_path):
    from lpd_core.bulk import sample_many
    cases = [
        (dict(num_images=0), "number of images must be at least 1"),
        (dict(num_images=2, classes=[99]), "class index 99 is out of range"),
        (dict(num_images=2, classes=5), "classes must be class indices"),
        (dict(num_images=2, batch_size=0), "batch size must be at least 1"),
        (dict(num_images=2, fast="on"), "fast must be True or False"),
        (dict(num_images=2, steps=0), "steps must be between 1 and 64"),
        (dict(num_images=10**15), "needs"),
    ]
    for change, words in cases:
        with pytest.raises(errors.LPDError) as caught:
            sample_many(tmp_path / "run", progress=False, log=lambda line: None, **change)
        assert words in str(caught.value), (words, str(caught.value))
        assert not (tmp_path / "run").exists()


# Files are checked for what they hold


def _damaged_copies(folder: Path) -> dict[str, Path]:
    """The demo model and tokenizer with one weight set to NaN / infinity, as .safetensors and .pth."""
    from safetensors.torch import load_file, save_file
    from lpd_core.weights import read_checkpoint
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, source, key in (("model", DEMO_MODEL_PATH, "blocks.0.attn.qkv.weight"),
                              ("tokenizer", DEMO_TOKENIZER_PATH, "decoder.conv_out.weight")):
        tensors, metadata = read_checkpoint(source)
        for bad_value, label in ((float("nan"), "nan"), (float("inf"), "inf")):
            damaged = {k: v.clone() for k, v in tensors.items()}
            damaged[key].view(-1)[7] = bad_value
            made[f"{name}_{label}.safetensors"] = folder / f"{name}_{label}.safetensors"
            save_file(damaged, str(made[f"{name}_{label}.safetensors"]), metadata)
        made[f"{name}_nan.pth"] = folder / f"{name}_nan.pth"
        torch.save(load_file(str(made[f"{name}_nan.safetensors"])), made[f"{name}_nan.pth"])
    return made


def test_non_finite_weights_are_refused_on_load_with_the_file_named(tmp_path):
    from lpd_core import load_model, load_tokenizer
    made = _damaged_copies(tmp_path)
    for name, path in made.items():
        load = load_model if name.startswith("model") else load_tokenizer
        kwargs = {"num_heads": 4} if name.endswith(".pth") and name.startswith("model") else {}
        with pytest.raises(errors.CheckpointError) as caught:
            load(path, **kwargs)
        message = str(caught.value)
        assert str(path) in message and "holds 1 non-finite values (NaN or infinity)" in message, message
        assert ("blocks.0.attn.qkv.weight" if name.startswith("model") else "decoder.conv_out.weight") in message


def test_non_finite_weights_through_the_cli_are_one_line(tmp_path, capsys):
    made = _damaged_copies(tmp_path / "files")
    out = tmp_path / "out.png"
    status, stderr = cli(capsys, "generate", "--class", "1", "--model", made["model_nan.safetensors"], "--out", out)
    assert_one_line(status, stderr, "model_nan.safetensors holds 1 non-finite values", "blocks.0.attn.qkv.weight")
    status, stderr = cli(capsys, "generate", "--class", "1", "--tokenizer", made["tokenizer_inf.safetensors"],
                         "--out", out)
    assert_one_line(status, stderr, "tokenizer_inf.safetensors holds 1 non-finite values", "decoder.conv_out.weight")
    assert not out.exists()


MISLABELLED = {
    "a PNG image": lambda folder: (folder / "picture.png").read_bytes(),
    "text": lambda folder: b"this is not a checkpoint\n",
    "a zip that is not torch's": lambda folder: _zip_bytes(),
    "a damaged pickle": lambda folder: b"\x80\x02garbage that is not a pickle at all" * 3,
    "a safetensors header over nothing": lambda folder: (8).to_bytes(8, "little") + b'{"a": 1}',
}


def _zip_bytes() -> bytes:
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return buffer.getvalue()


@pytest.mark.parametrize("content", list(MISLABELLED), ids=list(MISLABELLED))
def test_a_mislabelled_file_gets_the_same_answer_whatever_its_name(content, bad, tmp_path, capsys):
    from lpd_core import load_model, load_tokenizer
    data = MISLABELLED[content](bad)
    answers = set()
    for suffix in (".safetensors", ".pth", ".pt", ".bin", ""):
        path = tmp_path / f"weights{suffix}"
        path.write_bytes(data)
        for load in (load_model, load_tokenizer):
            with pytest.raises(errors.CheckpointError) as caught:
                load(path)
            answers.add(str(caught.value).replace(str(path), "FILE"))
        status, stderr = cli(capsys, "generate", "--class", "1", "--model", path, "--out", tmp_path / "x.png")
        assert_one_line(status, stderr, "weights")
        answers.add(stderr.strip().replace(str(path), "FILE").removeprefix("error: "))
    assert len(answers) == 1, answers
