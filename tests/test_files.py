"""Nothing half-written: every output goes to a temporary name and is renamed into place."""

import os

import numpy as np
import pytest
from PIL import Image

from lpd_core.files import atomic_write, check_writable
from lpd_core.errors import OutputError


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "result.bin"
    path.write_bytes(b"the good old content")

    def half_then_ctrl_c(temp):
        temp.write_bytes(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_ctrl_c)
    assert path.read_bytes() == b"the good old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.bin"]
    atomic_write(path, lambda temp: temp.write_bytes(b"new"))
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["result.bin"]


def test_ctrl_c_while_generate_saves_keeps_the_old_image(tmp_path, monkeypatch, capsys):
    """The reported case: Ctrl-C during `generate --out x.png` over a good image."""
    from lpd_core.__main__ import main
    out = tmp_path / "x.png"
    Image.new("RGB", (32, 32), "blue").save(out)
    good = out.read_bytes()
    real_save = Image.Image.save

    def save_half_then_interrupt(picture, target, *args, **kwargs):
        real_save(picture, target, *args, **kwargs)
        with open(target, "r+b") as f:
            f.truncate(33)  # what was left on disk before
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", save_half_then_interrupt)
    status = main(["generate", "--class", "3", "--out", str(out)])
    stderr = capsys.readouterr().err
    assert status == 130 and "error: interrupted" in stderr and "Traceback" not in stderr
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]
    monkeypatch.undo()
    assert main(["generate", "--class", "3", "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).std() > 10 and sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_converted_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    from lpd_core.checkpoints import DEMO_MODEL_PATH
    from lpd_core import weights
    destination = tmp_path / "model.safetensors"
    destination.write_bytes(b"previous")

    def interrupted(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(weights, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        weights.convert(DEMO_MODEL_PATH, destination)
    assert destination.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_writable_check_leaves_nothing_behind(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "x.png")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(tmp_path / "file" / "x.png")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputError, match="does not accept new files"):
            check_writable(locked / "x.png")
