"""What gets installed: `lpd_core` is inference only (it imports nothing from training/), and
`pip install .` / `pip install -e .` give a working library and `lpd` command outside the checkout
and leave the checkout as it was; and the test suite runs in a checkout of any folder name.

The install tests install a copy of the checkout into a fresh virtual environment the way a user
does, with pip's build isolation: pip fetches the pinned build back-end ([build-system] in
pyproject.toml) from the package index into a temporary environment of its own, so nothing of the
host's Python (its setuptools or wheel) takes part. The venv sees this interpreter's packages
(torch and the other requirements) through a .pth file, so they are not installed again."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "lpd_core"
DEMO_FILES = ("data/demo/lpd_shapes.safetensors", "data/demo/vq_shapes.safetensors", "data/demo/MODEL_CARD.md",
              "data/group_sizes.json", "data/imagenet_classes.json")


def _imports_training(node) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name == "training" or alias.name.startswith("training.") for alias in node.names)
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return node.module == "training" or node.module.startswith("training.")
    return False


def test_library_source_never_imports_training():
    """Also the imports inside functions, which importing the modules would not run."""
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if _imports_training(node):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders
    assert not (LIBRARY / "train.py").exists() and not (LIBRARY / "shapes.py").exists()


def test_importing_every_library_module_loads_nothing_from_training():
    script = """
import importlib, json, pkgutil, sys
import lpd_core
names = ["lpd_core"] + ["lpd_core." + m.name for m in pkgutil.iter_modules(lpd_core.__path__)]
for name in names:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m == "training" or m.startswith("training."))
import training.shapes  # importable from here: so the check above could have seen it
print(json.dumps({"modules": names, "leaked": leaked,
                  "seen": sorted(m for m in sys.modules if m.startswith("training"))}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"lpd_core.generate", "lpd_core.checkpoints", "lpd_core.bulk", "lpd_core.__main__"} <= set(result["modules"])
    assert result["leaked"] == []
    assert "training.shapes" in result["seen"]


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def copy_checkout(destination: Path) -> Path:
    """The checkout's files as a clone of it (with the work not committed yet) holds them: what git
    tracks or would track, so no virtual environment, download or build output is copied along.
    Outside a git checkout (an unpacked archive): everything but those."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\0")):
            if (ROOT / name).is_file():  # not a file deleted from the work tree but not yet from git
                (destination / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, destination / name)
        return destination

    def generated(folder, names):
        return {name for name in names if name in (".git", "__pycache__", ".pytest_cache", "build", "dist")
                or name.endswith(".egg-info") or (Path(folder) / name / "pyvenv.cfg").is_file()}
    return Path(shutil.copytree(ROOT, destination, ignore=generated))


@pytest.fixture(scope="module")
def checkout_copy(tmp_path_factory):
    return copy_checkout(tmp_path_factory.mktemp("checkout") / "ComfyUI-LPD")


@pytest.mark.parametrize("folder", ["ComfyUI-LPD", "ComfyUI/custom_nodes/ComfyUI-LPD"])
def test_the_tests_run_in_a_checkout_named_as_users_name_it(tmp_path, folder):
    """README's folder name is not a Python name, and the checkout's root holds ComfyUI's entry point
    (tests/conftest.py says why that matters). Inside ComfyUI the pack's own pytest configuration
    must win over ComfyUI's, which lies in a folder above: the one here would fail any run it reached."""
    checkout = copy_checkout(tmp_path / folder)
    if folder.startswith("ComfyUI/"):
        (tmp_path / "ComfyUI" / "pytest.ini").write_text("[pytest]\naddopts = --an-option-of-another-project\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_classes.py"],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.fullmatch(r"\d+ passed in .*", summary), summary


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def _install(tmp_path: Path, source: Path, *flags: str) -> tuple[Path, dict]:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = _bin(venv, "python")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    # after the venv's own site-packages on sys.path: what pip installs into the venv comes first
    (Path(site) / "outer_environment.pth").write_text("".join(f"{path}\n" for path in ours))
    # pip is this interpreter's (seen through the .pth), run by the venv's python: it installs into the venv
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    env["OMP_NUM_THREADS"] = "1"  # one small image: a second thread only waits, on shared cores
    before = _files(source)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *flags, str(source)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    left = sorted(_files(source) ^ before)
    assert not left, f"pip install {' '.join(flags)} changed the checkout: {left[:10]}"  # e.g. build/, *.egg-info
    return python, env


def _where(python: Path, cwd: Path, env: dict) -> dict:
    """Where the venv's lpd_core is, its demo file, the installed files, and which of the
    checkout's other folders the venv could import (none should be)."""
    script = """
import importlib.metadata as m, importlib.util as u, json, lpd_core
from lpd_core.checkpoints import DEMO_MODEL_PATH
files = [str(f) for f in m.files("lpd-core")]
print(json.dumps({"file": lpd_core.__file__, "demo": str(DEMO_MODEL_PATH), "demo_exists": DEMO_MODEL_PATH.is_file(),
                  "files": files, "importable": [n for n in ("nodes", "training", "benchmarks") if u.find_spec(n)]}))
"""
    done = subprocess.run([str(python), "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.packaging
def test_pip_install_gives_the_library_and_the_lpd_command(tmp_path, checkout_copy):
    python, env = _install(tmp_path, checkout_copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _where(python, elsewhere, env)
    site = Path(where["file"]).parent.parent
    assert site.name == "site-packages" and tmp_path in site.parents  # the venv's copy, not the checkout's
    installed = {Path(f).parts[0] for f in where["files"] if not Path(f).parts[0].endswith(".dist-info")}
    assert installed == {"lpd_core", ".."}  # ".." is the console script, in the venv's bin/
    assert {f"lpd_core/{name}" for name in DEMO_FILES} <= set(where["files"])
    assert where["demo_exists"] and Path(where["demo"]).is_relative_to(site)
    assert where["importable"] == []
    # the main job, from another folder
    done = subprocess.run([str(python), "-m", "lpd_core", "generate", "--class", "3", "--out", "x.png"], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "wrote x.png" in done.stdout
    image = np.asarray(Image.open(elsewhere / "x.png"))
    assert image.shape == (32, 32, 3) and image.std() > 0.02 * 255  # an image, not a flat fill
    # the console script runs the same main (its help lists the commands)
    done = subprocess.run([str(_bin(python.parent.parent, "lpd")), "--help"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: lpd ") and "\n  lpd generate --class 3 --out demo.png" in done.stdout
    assert all(command in done.stdout for command in ("generate", "download", "convert", "schedule", "sample-many"))


@pytest.mark.packaging
def test_editable_install_points_at_the_checkout(tmp_path, checkout_copy):
    python, env = _install(tmp_path, checkout_copy, "-e")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _where(python, elsewhere, env)
    assert Path(where["file"]) == checkout_copy / "lpd_core" / "__init__.py"
    assert where["demo_exists"] and where["importable"] == []  # the finder maps lpd_core only
    assert _bin(python.parent.parent, "lpd").is_file()
