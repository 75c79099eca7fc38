"""A ComfyUI server with the pack installed, for the ComfyUI tests: started, spoken to over HTTP, stopped.

The server runs `main.py --cpu` of the tree in $COMFYUI_DIR with the venv's Python ($COMFY_PYTHON), on 127.0.0.1
and a free port, with a private --base-directory: its custom_nodes/ holds a link to this checkout under the
folder name artists give it (ComfyUI-LPD), its models/lpd/ the fixture checkpoints, and its user/, input/,
output/ and database are the run's own. $LPD_FRONTEND_ROOT, when set, is served as the frontend.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK_FOLDER = "ComfyUI-LPD"
FIXTURES = ROOT / "tests" / "fixtures" / "lpd_reference"
# Settings of a fresh user that would put a dialog over the canvas (the templates browser, release notes).
QUIET_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Release.Version": "99.0.0",
                  "Comfy.Release.Timestamp": 4102444800000}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ComfyServer:
    def __init__(self, base: Path):
        self.comfyui = Path(os.environ["COMFYUI_DIR"])
        self.python = os.environ.get("COMFY_PYTHON") or sys.executable
        self.frontend_root = os.environ.get("LPD_FRONTEND_ROOT")
        self.base = base
        self.log_path = base / "server.log"
        self.url = ""
        self._process: subprocess.Popen | None = None

    # ------------------------------------------------------------------------------------ lifecycle
    def _lay_out_base(self) -> None:
        from lpd_core.weights import convert
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (self.base / "custom_nodes" / PACK_FOLDER).symlink_to(ROOT, target_is_directory=True)
        models = self.base / "models" / "lpd"
        models.mkdir(parents=True)
        convert(FIXTURES / "lpd.pth", models / "lpd_fixture.safetensors", num_heads=4)
        convert(FIXTURES / "vq.pt", models / "vq_fixture.safetensors")
        user = self.base / "user" / "default"
        user.mkdir(parents=True)
        (user / "comfy.settings.json").write_text(json.dumps(QUIET_SETTINGS))

    def start(self, timeout: float = 240) -> ComfyServer:
        self._lay_out_base()
        port = _free_port()
        command = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                   "--base-directory", str(self.base), "--database-url", f"sqlite:///{self.base / 'comfyui.db'}"]
        if self.frontend_root:
            command += ["--front-end-root", self.frontend_root]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(command, cwd=self.comfyui, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited ({self._process.returncode}):\n{self.log()[-3000:]}")
            try:
                if self.get("/object_info/LPDSampler", timeout=10)[0] == 200:
                    return self
            except (TimeoutError, urllib.error.URLError, ConnectionError):
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"ComfyUI did not answer in {timeout:.0f} s:\n{self.log()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)

    def log(self) -> str:
        """The server's output so far, without the colour codes 0.33 puts on its lines."""
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))

    # ------------------------------------------------------------------------------------------ HTTP
    def _call(self, path: str, body: bytes | None, timeout: float):
        request = urllib.request.Request(self.url + path, data=body,
                                         headers={"Content-Type": "application/json"} if body is not None else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def get(self, path: str, timeout: float = 30):
        """(status, parsed JSON) of GET `path`."""
        return self._call(path, None, timeout)

    def post(self, path: str, data, timeout: float = 30):
        """(status, parsed JSON) of POST `path` with `data` as JSON."""
        return self._call(path, json.dumps(data).encode(), timeout)

    def set_setting(self, name: str, value) -> None:
        status, _ = self.post(f"/settings/{name}", value)
        assert status == 200, f"setting {name} was refused ({status})"

    def run(self, prompt: dict, timeout: float = 300):
        """Queues an API-format prompt and waits for it: (200, its /history entry), or (status, answer) when
        the server refuses it."""
        status, answer = self.post("/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})
        if status != 200:
            return status, answer
        return 200, self.wait_for(answer["prompt_id"], timeout)

    def wait_for(self, prompt_id: str, timeout: float = 300) -> dict:
        """The /history entry of `prompt_id` once it finished (succeeded or failed)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            entry = self.get(f"/history/{prompt_id}")[1].get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f} s")

    def output_file(self, item: dict) -> Path:
        """The file on disk of an output image entry ({filename, subfolder, type})."""
        return self.base / item.get("type", "output") / item["subfolder"] / item["filename"]

    def pack_nodes(self) -> dict[str, dict]:
        """/object_info of the pack's nodes only."""
        info = self.get("/object_info")[1]
        return {name: node for name, node in info.items() if node["python_module"] == f"custom_nodes.{PACK_FOLDER}"}
