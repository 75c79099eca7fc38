"""Bulk sampling (`sample-many`): the same images whatever the processes, batches and crashes.

One clean single-process run (in this process) is the reference; a 2-process torchrun run (gloo,
CPU) and a run killed with SIGKILL then resumed must give the same PNGs, index by index, and the
same .npz.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpd_core import bulk
from lpd_core.bulk import outputs
from lpd_core.files import atomic_write

from conftest import REFERENCE, REFERENCE_HEADS

ROOT = Path(__file__).resolve().parent.parent
COUNT = 12
SETTINGS = dict(num_images=COUNT, steps=6, order="locality", cfg=2.0, seed=7)
CLI_SETTINGS = ["--num-images", COUNT, "--steps", 6, "--order", "locality", "--cfg", 2, "--seed", 7]
NPZ = f"samples_{COUNT}x128x128x3.npz"



@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from lpd_core.weights import convert
    return convert(REFERENCE / "lpd.pth", tmp_path_factory.mktemp("models") / "lpd.safetensors",
                   num_heads=REFERENCE_HEADS)


def run_here(out, converted, **overrides):
    """sample_many in this process, quietly; returns (manifest, log lines)."""
    lines = []
    manifest = bulk.sample_many(out, str(converted), str(REFERENCE / "vq.pt"), device="cpu", progress=False,
                                log=lines.append, **{**SETTINGS, "batch_size": 5, **overrides})
    return manifest, lines


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory, converted):
    """2 processes under torchrun (gloo), started first: they run while this process works."""
    out = tmp_path_factory.mktemp("torchrun") / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "lpd_core", *cli_args(converted, out, batch_size=4)]
    process = subprocess.Popen(command, cwd=ROOT, env=worker_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    yield out, process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, converted, one_thread, torchrun_run):
    out = tmp_path_factory.mktemp("clean")
    manifest, _ = run_here(out, converted, batch_size=5)
    return out, manifest


def worker_env():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def cli_args(converted, out, batch_size):
    return [str(a) for a in ("sample-many", "--model", converted, "--tokenizer", REFERENCE / "vq.pt",
                             *CLI_SETTINGS, "--batch-size", batch_size, "--device", "cpu", "--no-progress",
                             "--out", out)]


def pngs(out) -> dict[int, np.ndarray]:
    return {int(p.stem): np.asarray(Image.open(p)) for p in sorted((Path(out) / "images").glob("*.png"))}


def assert_same_images(out, reference):
    got, want = pngs(out), pngs(reference)
    assert sorted(got) == list(range(COUNT))
    for index in range(COUNT):
        assert np.array_equal(got[index], want[index]), f"image {index} differs"
    assert not list((Path(out) / "images").glob(".*")), "a temp file was left behind"
    with np.load(Path(out) / NPZ) as a, np.load(Path(reference) / NPZ) as b:
        assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["arr_1"], b["arr_1"])


def test_clean_run_writes_pngs_npz_and_manifest(clean_run):
    out, manifest = clean_run
    images = pngs(out)
    assert sorted(images) == list(range(COUNT))
    # the .npz, read the way the ADM evaluator streams it: zip member, npy header 1.0, raw bytes
    with zipfile.ZipFile(out / NPZ) as archive, archive.open("arr_0.npy") as member:
        assert np.lib.format.read_magic(member) == (1, 0)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        assert (shape, fortran, dtype) == ((COUNT, 128, 128, 3), False, np.uint8)
        streamed = np.frombuffer(member.read(), dtype=np.uint8).reshape(shape)
    with np.load(out / NPZ) as data:
        assert np.array_equal(data["arr_0"], streamed)
        assert data["arr_1"].tolist() == [i % 10 for i in range(COUNT)]  # all 10 classes in turn
    assert all(np.array_equal(streamed[i], images[i]) for i in range(COUNT))
    assert len({streamed[i].tobytes() for i in range(COUNT)}) == COUNT and streamed.std() > 5

    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest and manifest["status"] == "complete"
    settings = manifest["settings"]
    assert (settings["steps"], settings["cfg"], settings["base_seed"], settings["classes"]) == (6, 2.0, 7, "all")
    assert sum(settings["group_sizes"]) == 64 and settings["dtype"] == "fp32"
    assert "base_seed + i" in settings["seed_rule"] and "i % len(classes)" in settings["class_rule"]
    assert manifest["npz"]["shape"] == [COUNT, 128, 128, 3]
    assert {"python", "torch", "numpy", "lpd_core_git_revision"} <= set(manifest["software"])


def test_image_zero_is_what_generate_makes(clean_run, converted):
    """Image i is `generate` with seed base+i, class i % C, and the schedule built with that seed."""
    from lpd_core import build_schedule, generate, load_model, load_tokenizer
    from lpd_core.imaging import to_pil
    model, vq = load_model(converted), load_tokenizer(REFERENCE / "vq.pt")
    index = 3
    schedule = build_schedule(8, steps=6, order="locality", seed=7 + index)
    tokens = generate(model, schedule, [index % 10], cfg=2.0, seeds=7 + index)
    with torch.no_grad():
        expected = np.asarray(to_pil(vq.decode_images(tokens)[0]))
    assert np.array_equal(pngs(clean_run[0])[index], expected)


def test_two_processes_with_torchrun_match_one(clean_run, torchrun_run):
    out, process = torchrun_run
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stdout + stderr
    assert "with 2 process(es) (6 on rank 0)" in stdout
    assert_same_images(out, clean_run[0])
    assert json.loads((out / "manifest.json").read_text())["last_run"]["processes"] == 2


def test_killed_run_resumes_to_the_same_images(clean_run, converted, tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "lpd_core", *cli_args(converted, out, batch_size=2)],
                               cwd=ROOT, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while len(list((out / "images").glob("0*.png"))) < 2:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no image appeared"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    done = len(list((out / "images").glob("0*.png")))
    assert 2 <= done < COUNT, f"the run was not killed midway ({done} images)"
    assert not (out / NPZ).exists()

    manifest, lines = run_here(out, converted, batch_size=3)  # another batch size, in this process
    assert any(line.startswith(f"resuming: {done} of {COUNT}") for line in lines), lines
    assert manifest["last_run"]["images_sampled"] == COUNT - done
    assert_same_images(out, clean_run[0])


def test_interrupt_abandons_the_batch_cleanly_then_resumes(clean_run, converted, tmp_path, monkeypatch):
    """SIGTERM (what torchrun sends on Ctrl-C) stops the run like Ctrl-C: no partial file remains."""
    out = tmp_path / "interrupted"
    written = []
    original = outputs.write_png

    def write_then_signal(image, path):
        if len(written) == 4:  # in the middle of a write: its temp file exists
            def partial(temp):
                temp.write_bytes(b"half a png")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises KeyboardInterrupt here
            atomic_write(path, partial)
        original(image, path)
        written.append(path)

    monkeypatch.setattr(outputs, "write_png", write_then_signal)
    with pytest.raises(KeyboardInterrupt):
        run_here(out, converted, batch_size=4)
    monkeypatch.undo()
    assert sorted(pngs(out)) == [0, 1, 2, 3]
    assert not [p for p in (out / "images").iterdir() if p.suffix != ".png"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert json.loads((out / "manifest.json").read_text())["status"] == "sampling"

    run_here(out, converted, batch_size=8)
    assert_same_images(out, clean_run[0])


def test_resume_with_other_settings_is_refused(clean_run, converted, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(clean_run[0], out)
    with pytest.raises(ValueError, match=r"was started with other settings \(cfg: 2.0 there, 3.0 now\)"):
        run_here(out, converted, cfg=3.0)
    # more images (or another batch size) is fine: the first 12 are kept
    manifest, lines = run_here(out, converted, num_images=COUNT + 1, batch_size=1)
    assert manifest["last_run"]["images_sampled"] == 1 and manifest["npz"]["shape"][0] == COUNT + 1
    assert np.array_equal(pngs(out)[COUNT - 1], pngs(clean_run[0])[COUNT - 1])


def test_class_list_and_shards():
    classes = [3, 1, 4]
    assert [bulk.class_of(i, classes) for i in range(7)] == [3, 1, 4, 3, 1, 4, 3]
    missing = [0, 2, 3, 5, 8, 9, 10]
    parts = [bulk.shard(missing, rank, 3) for rank in range(3)]
    assert sorted(i for part in parts for i in part) == missing
    assert all(not set(a) & set(b) for a in parts for b in parts if a is not b)
    assert bulk.image_path("x", 123).as_posix() == "x/images/000123.png"
    assert bulk.image_path("x", 1234567).name == "1234567.png"


# One folder, one run (on the bundled demo model: 8×8 tokens, fast on the CPU)

DEMO_RUN = dict(num_images=3, steps=4, seed=11, batch_size=2, device="cpu", progress=False)


def demo_run(out, **overrides):
    lines = []
    manifest = bulk.sample_many(out, log=lines.append, **{**DEMO_RUN, **overrides})
    return manifest, lines


def files_in(folder) -> dict:
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory):
    """The demo model and tokenizer with one weight changed each: same shapes, same position
    embedding, same codebook; another run's images."""
    from lpd_core.checkpoints import load_pair
    from lpd_core.weights import save_model, save_tokenizer
    folder = tmp_path_factory.mktemp("other")
    model, tokenizer = load_pair()
    with torch.no_grad():
        model.head.weight[0, 0] += 0.5
        tokenizer.decoder.conv_out.bias[0] += 0.5
    return save_model(model, folder / "model.safetensors"), save_tokenizer(tokenizer, folder / "vq.safetensors")


def test_resume_with_other_weights_is_refused(tmp_path, other_weights):
    from lpd_core.checkpoints import DEMO_MODEL_PATH, DEMO_TOKENIZER_PATH
    from lpd_core.errors import ResumeError
    out = tmp_path / "run"
    manifest, _ = demo_run(out, num_images=2)
    assert len(manifest["settings"]["model_sha256"]) == 64
    before = files_in(out)
    model, tokenizer = map(str, other_weights)
    for spec, kind in (((model, str(DEMO_TOKENIZER_PATH)), "model_sha256"),
                       ((str(DEMO_MODEL_PATH), tokenizer), "tokenizer_sha256")):
        with pytest.raises(ResumeError, match=f"started with other weights \\({kind}: .* there"):
            demo_run(out, model=spec[0], tokenizer=spec[1])
        assert files_in(out) == before  # nothing added, nothing removed (the lock file went away too)
    # the same weights under another name resume (and extend) the run
    manifest, lines = demo_run(out, model=str(DEMO_MODEL_PATH), tokenizer=str(DEMO_TOKENIZER_PATH))
    assert manifest["last_run"]["images_sampled"] == 1 and any(line.startswith("resuming: 2 of 3") for line in lines)


def test_a_bad_setting_never_poisons_the_folder(tmp_path):
    from lpd_core.errors import SettingError
    out = tmp_path / "run"
    with pytest.raises(SettingError, match="top_p must be a finite number more than 0"):
        demo_run(out, top_p=0.0)
    assert not out.exists()
    manifest, _ = demo_run(out, top_p=1.0)  # the corrected command just runs
    assert manifest["status"] == "complete" and manifest["settings"]["top_p"] == 1.0
    json.loads((out / "manifest.json").read_text())  # valid JSON


def test_a_second_run_on_a_busy_folder_is_refused(tmp_path):
    from lpd_core.bulk.provenance import LOCK_NAME, FolderLock
    from lpd_core.errors import ResumeError
    out = tmp_path / "run"
    out.mkdir()
    holder = FolderLock(out)
    holder.acquire()  # another run is writing here
    try:
        with pytest.raises(ResumeError, match=r"another sample-many run \(pid \d+ on .*\) is writing to"):
            demo_run(out)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no image computed, no manifest
    finally:
        holder.release()
    assert not (out / LOCK_NAME).exists()


def test_a_lock_left_by_a_killed_run_is_not_in_the_way(tmp_path):
    from lpd_core.bulk.provenance import LOCK_NAME
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text("pid 999999 on a machine that crashed")  # the file, but nobody holds it
    manifest, _ = demo_run(out)
    assert manifest["status"] == "complete" and not (out / LOCK_NAME).exists()


def test_state_dict_sha256_covers_every_tensor():
    from lpd_core.bulk.provenance import state_dict_sha256
    module = torch.nn.Linear(3, 2)
    before = state_dict_sha256(module)
    with torch.no_grad():
        module.bias[1] += 1e-6
    assert state_dict_sha256(module) != before
    assert state_dict_sha256(module.to(torch.bfloat16)) != state_dict_sha256(module.float())


def test_orders_are_built_ahead_in_a_worker_whose_errors_surface(tmp_path, monkeypatch):
    import threading
    built_in, original = [], bulk.orders_for

    def orders_for(indices, *args):
        built_in.append(threading.current_thread().name)
        if len(built_in) == 3:  # the settings check, batch 0, then batch 1's orders fail
            raise RuntimeError("order building failed")
        return original(indices, *args)

    monkeypatch.setattr(bulk, "orders_for", orders_for)
    with pytest.raises(RuntimeError, match="order building failed"):
        demo_run(tmp_path / "out")
    assert built_in[0] == threading.current_thread().name
    assert [name.startswith("lpd-orders") for name in built_in[1:]] == [True, True]
    assert not [t for t in threading.enumerate() if t.name.startswith("lpd-orders")]

    monkeypatch.setattr(bulk, "orders_for", original)
    manifest, _ = demo_run(tmp_path / "out")
    assert manifest["status"] == "complete" and sorted(pngs(tmp_path / "out")) == [0, 1, 2]
