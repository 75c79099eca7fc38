"""Real ComfyUI installations to test the pack in, one per tested line, and the run of the ComfyUI tests.

    python tests/comfyui_setup.py             # set up every line (cached) and run the ComfyUI tests in each
    python tests/comfyui_setup.py 0.33.0      # only the lines whose name starts so

A line is a ComfyUI release plus the frontend the browser gets:
  0.8.0            the oldest release the pack supports, with the frontend it pins (1.35.9)
  0.33.0           the current release, with the frontend it pins (1.49.6)
  0.33.0+fe1.58.1  the same tree and venv, serving the newest frontend on the package index (what artists
                   on current ComfyUI run), installed beside it and passed as --front-end-root

Where ComfyUI comes from, in this order: `$LPD_COMFYUI_SOURCES/ComfyUI-<version>.tar.gz` (a folder of source
archives; CI sets it), an archive fetched earlier into the cache, the release's source archive from ComfyUI's
official repository. With none of them, the ComfyUI tests are left out with one line that says so, and the
exit status is 0: the rest of the suite counts on its own. With LPD_COMFYUI_SOURCES given, a missing archive
and any ComfyUI test that is skipped fail the run.

The cache (`$LPD_COMFYUI_CACHE`, default ~/.cache/comfyui-lpd; CI may keep it between runs) holds per release
the unpacked tree and its venv, and the newest frontend. A venv is made with this interpreter, gets the local
CPU torch 2.13.0 (`$TORCH_INDEX` names another index for it), ComfyUI's requirements, the pack's
requirements, pytest and Playwright; it is reused while the recipe and requirement files are unchanged.

The browser is Debian's Chromium (/usr/bin/chromium, or $LPD_CHROMIUM), driven by Playwright's Python
package; Playwright's own browser downloads are never used. As root with apt-get, a missing Chromium is
installed; otherwise the browser tests fail (sources given) with a line that says how to get it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LPD_COMFYUI_CACHE", Path.home() / ".cache" / "comfyui-lpd"))
NEWEST_FRONTEND = "1.58.1"  # comfyui-frontend-package, newest on the package index on 2026-12-02
PLAYWRIGHT = "playwright==1.65.2"
TORCH = "torch==2.13.0"
RELEASE_ARCHIVE = "https://github.com/Comfy-Org/ComfyUI/archive/refs/tags/v{version}.tar.gz"
CHROMIUM = Path(os.environ.get("LPD_CHROMIUM", "/usr/bin/chromium"))
# What the ComfyUI tests are: the node tests import ComfyUI in-process, the others talk to a server; a line
# that only swaps the frontend of a tree tested already runs the browser's alone.
SERVER_TESTS = ["tests/test_nodes.py", "tests/test_editing_nodes.py", "tests/test_comfy_server.py"]
BROWSER_TESTS = ["tests/test_comfy_browser.py"]
# Bump when the way a venv is built changes, so cached venvs are built anew.
RECIPE = "3"


@dataclass(frozen=True)
class Line:
    """One tested combination: a ComfyUI release and the frontend served with it (None: the one it pins)."""

    comfyui: str
    frontend: str | None = None

    @property
    def name(self) -> str:
        return self.comfyui + (f"+fe{self.frontend}" if self.frontend else "")

    @property
    def tests(self) -> list[str]:
        return BROWSER_TESTS if self.frontend else SERVER_TESTS + BROWSER_TESTS


LINES = [Line("0.8.0"), Line("0.33.0"), Line("0.33.0", NEWEST_FRONTEND)]


class SourceMissing(Exception):
    """No ComfyUI source archive could be had: the ComfyUI tests cannot run here."""


def _log(message: str) -> None:
    print(f"[comfyui {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _run(command: list[str], **kwargs) -> None:
    """Runs a set-up step; on failure shows its output's end and stops."""
    done = subprocess.run(command, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    if done.returncode != 0:
        sys.exit(f"set-up step failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-4000:]}")


def _remove(path: Path) -> None:
    """Removes a folder, or a link in its place (older set-ups linked trees kept elsewhere)."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- sources
def source_archive(version: str) -> Path:
    """The ComfyUI source archive of `version`: from $LPD_COMFYUI_SOURCES, the cache, or the release URL."""
    name = f"ComfyUI-{version}.tar.gz"
    local = os.environ.get("LPD_COMFYUI_SOURCES")
    if local:
        path = Path(local).expanduser() / name
        if not path.is_file():
            raise SourceMissing(f"LPD_COMFYUI_SOURCES={local} holds no {name}")
        return path
    cached = CACHE / "sources" / name
    if cached.is_file():
        return cached
    url = RELEASE_ARCHIVE.format(version=version)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{name}.partial")
    try:
        with urllib.request.urlopen(url, timeout=20) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise SourceMissing(f"{url} could not be fetched ({error})") from None
    partial.replace(cached)
    return cached


def unpack(archive: Path, destination: Path) -> Path:
    """The archive's one top folder unpacked as `destination` (kept while the archive is the same)."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    marker = destination / ".lpd-source"
    if marker.is_file() and marker.read_text() == digest:
        return destination
    _log(f"unpacking {archive} into {destination}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent) as scratch, tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="data")
        (top,) = Path(scratch).iterdir()
        (top / ".lpd-source").write_text(digest)
        _remove(destination)
        top.replace(destination)
    return destination


# ------------------------------------------------------------------------------------- venv stand-ins
# ComfyUI imports torchvision and torchaudio at module level (model code such as comfy/ldm/cascade and
# comfy/ldm/lightricks, reached from nodes.py, and a few comfy_extras), so without them main.py does not
# start. The builds on the package index are compiled against the CUDA torch of their release and do not
# load beside the local CPU torch ("operator torchvision::nms does not exist"). No code path of the pack or of
# the core nodes the templates use calls them, so the venv gets stand-ins that import (any submodule, any
# attribute) and raise a clear error when something is called. They are not registered as installed
# distributions, so libraries that look for torchvision (transformers) see it as absent.
STAND_IN = '''"""Import-only stand-in for {package}: the ComfyUI tests' venv has no build of it for its CPU torch."""
import importlib.machinery
import sys
import types

__version__ = "0+lpd.stand.in"


class Unavailable:
    """Any name looked up in the stand-in: usable in imports, class statements and defaults; never callable."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return Unavailable(f"{{self._name}}.{{attribute}}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{{self._name}} is not available: {package} is an import-only stand-in here")

    def __mro_entries__(self, bases):
        return (object,)


def _module_getattr(module_name):
    def lookup(attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return Unavailable(f"{{module_name}}.{{attribute}}")
    return lookup


class _Submodules:
    """Finds and makes `{package}.<anything>` as an empty package whose names are Unavailable."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.startswith("{package}."):
            return importlib.machinery.ModuleSpec(name, _Submodules, is_package=True)
        return None

    @staticmethod
    def create_module(spec):
        module = types.ModuleType(spec.name)
        module.__getattr__ = _module_getattr(spec.name)
        return module

    @staticmethod
    def exec_module(module):
        module.__path__ = []


__getattr__ = _module_getattr("{package}")
sys.meta_path.append(_Submodules)
'''


def add_stand_ins(python: Path) -> None:
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for package in ("torchvision", "torchaudio"):
        folder = Path(site) / package
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / "__init__.py").write_text(STAND_IN.format(package=package))
    _run([str(python), "-c", "import torchvision.transforms.functional, torchvision.ops, torchaudio.functional"])


# ----------------------------------------------------------------------------------------------- venv
def _requirements_without_torch(comfyui: Path, venv: Path) -> Path:
    """ComfyUI's requirements less torch (the local CPU build is installed first) and the packages that need a
    CUDA torch from the index (torchvision, torchaudio: stand-ins; spandrel: installed without dependencies)."""
    kept = []
    for line in (comfyui / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip().split(";")[0]
        for mark in "<>=!~[ ":
            name = name.split(mark)[0]
        if name.lower() not in {"torch", "torchvision", "torchaudio", "spandrel"}:
            kept.append(line)
    path = venv / "comfyui-requirements.txt"
    path.write_text("\n".join(kept) + "\n")
    return path


def _fingerprint(*parts: str) -> str:
    """A short hash of requirement texts, blind to their comments and blank lines."""
    lines = [line.split("#")[0].strip() for part in parts for line in part.splitlines()]
    return hashlib.sha256("\n".join(line for line in lines if line).encode()).hexdigest()[:16]


def make_venv(comfyui: Path, venv: Path) -> Path:
    """A venv that runs this ComfyUI tree and the pack's tests. Built anew when the recipe or ComfyUI's
    requirements change; the pack's requirements are installed into it again when theirs change."""
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    built, wanted = venv / ".lpd-built", _fingerprint(RECIPE, TORCH, PLAYWRIGHT, (comfyui / "requirements.txt").read_text())
    if not (python.exists() and built.is_file() and built.read_text() == wanted):
        _log(f"building the venv {venv} (a few minutes, once)")
        _remove(venv)
        _run([sys.executable, "-m", "venv", str(venv)])
        index = os.environ.get("TORCH_INDEX")
        _run(pip + [TORCH] + (["--index-url", index] if index else []))
        _run(pip + ["-r", str(_requirements_without_torch(comfyui, venv)), "requests", PLAYWRIGHT])
        _run(pip + ["--no-deps", "spandrel"])
        add_stand_ins(python)
        built.write_text(wanted)
    ours = [ROOT / "requirements.txt", ROOT / "requirements-dev.txt"]
    installed, wanted = venv / ".lpd-pack-requirements", _fingerprint(*(path.read_text() for path in ours))
    if not (installed.is_file() and installed.read_text() == wanted):
        _run(pip + [argument for path in ours for argument in ("-r", str(path))])
        installed.write_text(wanted)
    return python


def frontend_root(version: str, python: Path) -> Path:
    """The static files of comfyui-frontend-package `version`, installed apart from any venv."""
    target = CACHE / f"frontend-{version}"
    static = target / "comfyui_frontend_package" / "static"
    if not (static / "index.html").is_file():
        _log(f"installing comfyui-frontend-package {version} into {target}")
        shutil.rmtree(target, ignore_errors=True)
        _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
              "--target", str(target), f"comfyui-frontend-package=={version}"])
    return static


# -------------------------------------------------------------------------------------------- browser
def chromium() -> str | None:
    """The system Chromium, installed from Debian's packages when missing and possible; None and a line if not."""
    if CHROMIUM.is_file():
        return str(CHROMIUM)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _log("installing Debian's chromium (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=False)
        if CHROMIUM.is_file():
            return str(CHROMIUM)
    print(f"ComfyUI browser tests: no Chromium at {CHROMIUM}; install Debian's package as root "
          "(apt-get install -y chromium) or set LPD_CHROMIUM to a Chromium binary", flush=True)
    return None


# ------------------------------------------------------------------------------------------------ run
def pinned_frontend(comfyui: Path) -> str:
    """The comfyui-frontend-package version a ComfyUI tree pins in its requirements."""
    for requirement in (comfyui / "requirements.txt").read_text().splitlines():
        if requirement.startswith("comfyui-frontend-package=="):
            return requirement.split("==")[1].strip()
    raise ValueError(f"{comfyui}/requirements.txt pins no comfyui-frontend-package")


def prepare(line: Line) -> dict[str, str]:
    """Sets up `line` (cached) and returns the environment the ComfyUI tests read."""
    started = time.time()
    folder = CACHE / line.comfyui
    comfyui = unpack(source_archive(line.comfyui), folder / "ComfyUI")
    python = make_venv(comfyui, folder / "venv")
    env = {"COMFYUI_DIR": str(comfyui), "COMFY_PYTHON": str(python), "LPD_COMFYUI_LINE": line.name}
    if line.frontend:
        env["LPD_FRONTEND_ROOT"] = str(frontend_root(line.frontend, python))
        env["LPD_FRONTEND_VERSION"] = line.frontend
    else:
        env["LPD_FRONTEND_VERSION"] = pinned_frontend(comfyui)
    _log(f"ComfyUI {line.name} ready in {time.time() - started:.0f} s ({comfyui})")
    return env


def _skipped(report: Path) -> int:
    """How many tests the run's JUnit report counts as skipped (all of them, 1 at least, when it is missing)."""
    if not report.is_file():
        return 1
    suites = ElementTree.parse(report).getroot().iter("testsuite")
    return sum(int(suite.get("skipped", 0)) for suite in suites)


def main(selected: list[str]) -> int:
    lines = [line for line in LINES if not selected or any(line.name.startswith(s) for s in selected)]
    try:
        for line in lines:  # every source first, so a missing one is said before minutes of set-up
            source_archive(line.comfyui)
    except SourceMissing as missing:
        print(f"ComfyUI tests not run: {missing}; set LPD_COMFYUI_SOURCES to a folder of ComfyUI-<version>.tar.gz "
              f"({', '.join(sorted({line.comfyui for line in lines}))}) or give this machine network access",
              flush=True)
        return 1 if os.environ.get("LPD_COMFYUI_SOURCES") else 0  # sources were promised: their absence fails
    browser = chromium()
    failed = []
    for line in lines:
        env = {**os.environ, **prepare(line), "LPD_CHROMIUM": browser or ""}
        shutil.rmtree(ROOT / "out" / "comfyui-screens" / line.name, ignore_errors=True)  # this run's screenshots only
        report = CACHE / f"pytest-{line.name}.xml"
        report.unlink(missing_ok=True)
        done = subprocess.run([env["COMFY_PYTHON"], "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider",
                               f"--junitxml={report}", *line.tests], cwd=ROOT, env=env, check=False)
        skipped = _skipped(report)
        if done.returncode != 0 or skipped:
            failed.append(line.name + (f" ({skipped} skipped: every ComfyUI test must run here)" if skipped else ""))
    if failed:
        print(f"ComfyUI tests failed in: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
