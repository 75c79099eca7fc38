"""Checkpoint registry, published defaults, and downloads through huggingface_hub's real code path.

No test reaches the internet. Offline tests build a hub cache on disk (the layout huggingface_hub
writes: refs/main, blobs/, snapshots/<commit>/<file> -> blob) and set offline mode. Online tests
point huggingface_hub at a small local HTTP server that answers like the Hub (HEAD/GET on
/<repo>/resolve/main/<file>, the tree listing API), so hf_hub_download does its real HEAD, GET,
progress and rename.
"""

import hashlib
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from huggingface_hub import constants

from lpd_core.hub import (
    CHECKPOINTS,
    LPD_MODELS,
    DownloadError,
    default_cfg,
    published_repulsion,
    download,
    get_checkpoint,
    resolve_local,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def checkpoint_bytes(kind: str, value: float = 1.0, size: int = 4) -> bytes:
    """A small but well-formed checkpoint file: "safetensors" or "torch" (torch.save's zip format)."""
    import io

    import torch
    from safetensors.torch import save

    tensors = {"weight": torch.full((size,), value)}
    if kind == "safetensors":
        return save(tensors)
    buffer = io.BytesIO()
    torch.save({"model": tensors}, buffer)
    return buffer.getvalue()


TOKENIZER = checkpoint_bytes("torch", 2.0)
MODEL_PTH = checkpoint_bytes("torch", 3.0)
MODEL_SAFE = checkpoint_bytes("safetensors", 4.0)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache in tmp_path, in offline mode. huggingface_hub reads its env at import: patch constants."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def add_to_cache(cache: Path, repo_id: str, filename: str, content: bytes) -> Path:
    """Store a file the way hf_hub_download does: blob by hash, snapshot symlink, refs/main."""
    repo_folder = cache / f"models--{repo_id.replace('/', '--')}"
    blob = repo_folder / "blobs" / hashlib.sha256(content).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    pointer = repo_folder / "snapshots" / COMMIT / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    (repo_folder / "refs").mkdir(exist_ok=True)
    (repo_folder / "refs" / "main").write_text(COMMIT)  # no newline: huggingface_hub does not strip it
    return pointer


# Registry and published defaults


def test_registry():
    assert list(LPD_MODELS) == ["lpd_l_256", "lpd_xl_256", "lpd_xxl_256", "lpd_l_512", "lpd_xl_512"]
    xl512 = get_checkpoint("LPD-XL-512")
    assert (xl512.repo_id, xl512.preset, xl512.image_size, xl512.default_steps) == (
        "mit-han-lab/lpd_xl_512", "lpd_xl", 512, 48
    )
    assert all(model.default_steps == (20 if model.image_size == 256 else 48) for model in LPD_MODELS.values())
    vq = CHECKPOINTS["vq_ds16_c2i"]
    assert (vq.repo_id, vq.filename) == ("FoundationVision/LlamaGen", "vq_ds16_c2i.pt")
    with pytest.raises(ValueError, match="unknown checkpoint 'lpd_s_256'.*lpd_l_256"):
        get_checkpoint("lpd_s_256")


@pytest.mark.parametrize(
    "name, steps, cfg",
    [
        ("lpd_l_256", 20, 4.8),
        ("lpd_l_256", 32, 5.4),
        ("lpd_l_256", 26, 5.1),  # halfway
        ("lpd_l_256", 8, 4.8),  # clamped below
        ("lpd_l_256", 256, 5.4),  # clamped above
        ("lpd_xl_256", 20, 4.9),
        ("lpd_xl_256", 32, 5.0),
        ("lpd_xxl_256", 20, 5.9),
        ("lpd_l_512", 48, 7.3),
        ("lpd_xl_512", 48, 6.0),
        ("lpd_xl_512", 64, 6.0),
    ],
)
def test_default_cfg(name, steps, cfg):
    assert default_cfg(name, steps) == pytest.approx(cfg)


def test_default_cfg_rejects_tokenizer_and_bad_steps():
    with pytest.raises(ValueError, match="tokenizer, not an LPD model"):
        default_cfg("vq_ds16_c2i", 20)
    with pytest.raises(ValueError, match="at least 1"):
        default_cfg("lpd_l_256", 0)


def test_published_repulsion():
    assert published_repulsion("lpd_xxl_256") == 3
    assert published_repulsion("lpd_l_256") is None


# Offline: the folder and the hub cache


def test_file_already_in_folder_is_returned_without_the_hub(tmp_path, hub_cache):
    models = tmp_path / "models"
    by_hand = models / "vq_ds16_c2i.pt"
    by_hand.parent.mkdir()
    by_hand.write_bytes(TOKENIZER)
    assert download("vq_ds16_c2i", models) == by_hand
    lpd = models / "lpd_l_256" / "lpd_l_256.pth"
    lpd.parent.mkdir()
    lpd.write_bytes(MODEL_PTH)
    assert resolve_local("lpd_l_256", models) == lpd
    assert download("lpd_l_256", models) == lpd


def test_file_named_after_the_registry_name_is_found(tmp_path):
    (tmp_path / "lpd_xl_512.safetensors").write_bytes(MODEL_SAFE)
    assert resolve_local("lpd_xl_512", tmp_path) == tmp_path / "lpd_xl_512.safetensors"
    assert resolve_local("lpd_l_512", tmp_path) is None


def test_download_takes_the_file_from_the_hub_cache(tmp_path, hub_cache):
    add_to_cache(hub_cache, "FoundationVision/LlamaGen", "vq_ds16_c2i.pt", TOKENIZER)
    reported = []
    path = download("vq_ds16_c2i", tmp_path / "models", progress=lambda done, total: reported.append((done, total)))
    assert path == tmp_path / "models" / "vq_ds16_c2i" / "vq_ds16_c2i.pt"
    assert path.read_bytes() == TOKENIZER and not path.is_symlink()
    assert reported[-1] == (len(TOKENIZER), len(TOKENIZER))
    assert resolve_local("vq_ds16_c2i", tmp_path / "models") == path


def test_lpd_file_name_is_resolved_from_the_cached_snapshot(tmp_path, hub_cache):
    # Offline, huggingface_hub cannot list a repo; the cached snapshot tells the file name instead.
    add_to_cache(hub_cache, "mit-han-lab/lpd_l_256", "lpd_l_256.pth", MODEL_PTH)
    add_to_cache(hub_cache, "mit-han-lab/lpd_l_256", "README.md", b"readme")
    path = download("lpd_l_256", tmp_path)
    assert path == tmp_path / "lpd_l_256" / "lpd_l_256.pth"
    assert path.read_bytes() == MODEL_PTH


def test_offline_and_not_cached_names_file_url_and_folder(tmp_path, hub_cache):
    with pytest.raises(DownloadError) as error:
        download("vq_ds16_c2i", tmp_path)
    message = str(error.value)
    assert "https://huggingface.co/FoundationVision/LlamaGen/resolve/main/vq_ds16_c2i.pt" in message
    assert str(tmp_path / "vq_ds16_c2i" / "vq_ds16_c2i.pt") in message
    assert "HF_HUB_OFFLINE=1" in message


def test_offline_lpd_without_known_file_name_points_to_the_repo(tmp_path, hub_cache):
    with pytest.raises(DownloadError) as error:
        download("lpd_xl_256", tmp_path)
    assert "https://huggingface.co/mit-han-lab/lpd_xl_256/tree/main" in str(error.value)
    assert str(tmp_path / "lpd_xl_256") in str(error.value)


def test_unfinished_downloads_are_never_taken_for_a_model(tmp_path, hub_cache):
    own_folder = tmp_path / "lpd_l_256"
    hub_partial = own_folder / ".cache" / "huggingface" / "download" / "abc.etag.1234abcd.incomplete"
    hub_partial.parent.mkdir(parents=True)
    hub_partial.write_bytes(b"half")
    (own_folder / ".lpd_l_256.pth.5678abcd.incomplete").write_bytes(b"half")
    (own_folder / ".cache" / "huggingface" / "download" / "lpd_l_256.pth").write_bytes(b"stray")
    assert resolve_local("lpd_l_256", tmp_path) is None
    with pytest.raises(DownloadError):
        download("lpd_l_256", tmp_path)


def test_local_checkpoint_choice(tmp_path):
    own_folder = tmp_path / "lpd_l_256"
    own_folder.mkdir()
    (own_folder / "model.pth").write_bytes(MODEL_PTH)
    (own_folder / "model.safetensors").write_bytes(MODEL_SAFE)
    assert resolve_local("lpd_l_256", tmp_path) == own_folder / "model.safetensors"
    (own_folder / "other.safetensors").write_bytes(MODEL_SAFE)
    with pytest.raises(ValueError, match="several .safetensors checkpoints.*filename="):
        resolve_local("lpd_l_256", tmp_path)
    assert resolve_local("lpd_l_256", tmp_path, filename="model.pth") == own_folder / "model.pth"


# Online, against a local server that answers like the Hub


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.repos = repos
        self.gets = []
        self.etags: dict[str, str] = {}  # file name -> announced sha256, to serve files that do not match

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeHubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        path = unquote(urlparse(self.path).path)
        repos = self.server.repos
        if path.startswith("/api/models/") and "/tree/main" in path:
            repo_id = path[len("/api/models/") :].split("/tree/main")[0]
            if repo_id not in repos:
                return self._reply(404, {"X-Error-Code": "RepoNotFound"})
            listing = [
                {"type": "file", "path": name, "size": len(content), "oid": hashlib.sha1(content).hexdigest()}
                for name, content in repos[repo_id].items()
            ]
            return self._reply(200, {"Content-Type": "application/json"}, json.dumps(listing).encode())
        repo_id, _, filename = path.lstrip("/").partition("/resolve/main/")
        content = repos.get(repo_id, {}).get(filename)
        if content is None:
            return self._reply(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        if self.command == "GET":
            self.server.gets.append(filename)
        headers = {
            "X-Repo-Commit": COMMIT,
            "ETag": f'"{self.server.etags.get(filename) or hashlib.sha256(content).hexdigest()}"',
            "Content-Length": str(len(content)),
        }
        self._reply(200, headers, content)

    do_GET = do_HEAD = _route


@pytest.fixture
def fake_hub(hub_cache, monkeypatch):
    """Serve `fake_hub.repos` and point huggingface_hub at it, online, with 1 KiB download chunks.

    huggingface_hub 2.x reads these constants at call time; versions < 1.0 copied some at import,
    so there this fixture would not redirect them.
    """
    server = FakeHub({})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    yield server
    server.shutdown()
    server.server_close()


def test_online_download_resolves_the_file_name_and_reports_progress(tmp_path, fake_hub):
    weights = checkpoint_bytes("torch", 5.0, size=1200)  # several chunks of 1 KiB
    fake_hub.repos["mit-han-lab/lpd_l_256"] = {"README.md": b"readme", "lpd_l_256.pth": weights}
    reported = []
    path = download("lpd_l_256", tmp_path, progress=lambda done, total: reported.append((done, total)))
    assert path == tmp_path / "lpd_l_256" / "lpd_l_256.pth"
    assert path.read_bytes() == weights
    assert fake_hub.gets == ["lpd_l_256.pth"]
    done = [d for d, _ in reported]
    assert len(reported) > 4 and done == sorted(done)
    assert reported[-1] == (len(weights), len(weights))
    assert not list(tmp_path.rglob("*.incomplete"))
    # Second call: the file is in the folder, so no request at all.
    fake_hub.server_close()
    assert download("lpd_l_256", tmp_path) == path


def test_repo_with_several_checkpoints_asks_for_a_file_name(tmp_path, fake_hub):
    fake_hub.repos["mit-han-lab/lpd_xl_256"] = {"a.safetensors": MODEL_SAFE, "b.safetensors": MODEL_SAFE,
                                                "c.pth": MODEL_PTH}
    with pytest.raises(ValueError, match="several .safetensors checkpoints.*a.safetensors, b.safetensors"):
        download("lpd_xl_256", tmp_path)
    assert download("lpd_xl_256", tmp_path, filename="c.pth").read_bytes() == MODEL_PTH


def test_missing_file_on_the_hub_is_a_download_error(tmp_path, fake_hub):
    fake_hub.repos["FoundationVision/LlamaGen"] = {}
    with pytest.raises(DownloadError, match="vq_ds16_c2i.pt"):
        download("vq_ds16_c2i", tmp_path)


def test_interrupted_download_leaves_no_file_at_the_final_path(tmp_path, fake_hub):
    class Interrupted(Exception):
        pass

    def interrupt_after_first_chunk(done, total):
        if done >= 1024:
            raise Interrupted  # what ComfyUI's cancel button does from a progress hook

    weights = checkpoint_bytes("torch", 6.0, size=1200)
    fake_hub.repos["FoundationVision/LlamaGen"] = {"vq_ds16_c2i.pt": weights}
    with pytest.raises(Interrupted):
        download("vq_ds16_c2i", tmp_path, progress=interrupt_after_first_chunk)
    assert not (tmp_path / "vq_ds16_c2i" / "vq_ds16_c2i.pt").exists()
    assert resolve_local("vq_ds16_c2i", tmp_path) is None
    assert download("vq_ds16_c2i", tmp_path).read_bytes() == weights


def test_unreachable_hub_is_a_download_error_at_once(tmp_path, hub_cache, monkeypatch):
    """No route or nothing listening: one DownloadError, without huggingface_hub's retries and their pauses."""
    closed = FakeHub({})
    endpoint = closed.endpoint
    closed.server_close()  # nothing listens on this port any more: connections are refused
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    pauses = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    # the file name not known: the message points to the repository's file list
    with pytest.raises(DownloadError, match=f"could not be reached.*{endpoint}/mit-han-lab/lpd_l_512/tree/main"):
        download("lpd_l_512", tmp_path)
    with pytest.raises(DownloadError, match="could not be reached.*vq_ds16_c2i.pt"):
        download("vq_ds16_c2i", tmp_path)
    assert pauses == []
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]


def test_hub_that_does_not_answer_is_asked_once(tmp_path, hub_cache, monkeypatch):
    """A server that takes the connection and never answers (a dead proxy): one request, then the error."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections = []
    threading.Thread(target=lambda: [connections.append(listener.accept()[0]) for _ in range(10)], daemon=True).start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    with pytest.raises(DownloadError, match="could not be reached.*Timeout"):
        download("lpd_l_256", tmp_path)
    assert len(connections) == 1
    listener.close()


# Verification: nothing damaged is reported as ready


def test_damaged_file_in_the_folder_is_refused_with_what_to_do(tmp_path, hub_cache):
    from lpd_core.errors import CheckpointError
    own = tmp_path / "vq_ds16_c2i"
    own.mkdir()
    for content, problem in ((b"", "is empty (0 bytes)"), (TOKENIZER[: len(TOKENIZER) // 2], "truncated or damaged"),
                             (b"<html>rate limited</html>", "it is an HTML or XML page")):
        (own / "vq_ds16_c2i.pt").write_bytes(content)
        with pytest.raises(CheckpointError) as error:
            download("vq_ds16_c2i", tmp_path)
        message = str(error.value)
        assert str(own / "vq_ds16_c2i.pt") in message and problem in message
        assert "delete it and run python -m lpd_core download vq_ds16_c2i again" in message
        assert (own / "vq_ds16_c2i.pt").read_bytes() == content  # the user's file: reported, not removed


def test_truncated_safetensors_by_hand_is_refused(tmp_path, hub_cache):
    from lpd_core.errors import CheckpointError
    (tmp_path / "lpd_xl_512.safetensors").write_bytes(MODEL_SAFE[:-3])
    with pytest.raises(CheckpointError, match=r"lpd_xl_512.safetensors is truncated: its header describes \d+ bytes"):
        download("lpd_xl_512", tmp_path)


def test_damaged_blob_in_the_hub_cache_is_not_placed(tmp_path, hub_cache):
    from lpd_core.errors import CheckpointError
    add_to_cache(hub_cache, "FoundationVision/LlamaGen", "vq_ds16_c2i.pt", TOKENIZER[:100])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        download("vq_ds16_c2i", tmp_path)
    assert resolve_local("vq_ds16_c2i", tmp_path) is None and not list(tmp_path.rglob("*.tmp"))


def test_fetched_file_that_does_not_match_the_hubs_hash_is_removed(tmp_path, fake_hub):
    """The server announces (ETag: the sha256 the Hub publishes for LFS files) other bytes than it sends."""
    from lpd_core.errors import CheckpointError
    fake_hub.repos["FoundationVision/LlamaGen"] = {"vq_ds16_c2i.pt": TOKENIZER}
    fake_hub.etags["vq_ds16_c2i.pt"] = hashlib.sha256(b"the real file").hexdigest()
    with pytest.raises(CheckpointError, match=r"is damaged: its hash .* differs from FoundationVision/LlamaGen"):
        download("vq_ds16_c2i", tmp_path)
    assert not (tmp_path / "vq_ds16_c2i" / "vq_ds16_c2i.pt").exists()
    del fake_hub.etags["vq_ds16_c2i.pt"]
    assert download("vq_ds16_c2i", tmp_path).read_bytes() == TOKENIZER  # the next try fetches it anew


def test_check_hub_compares_a_file_on_disk_with_the_hub(tmp_path, fake_hub):
    from lpd_core.errors import CheckpointError
    fake_hub.repos["FoundationVision/LlamaGen"] = {"vq_ds16_c2i.pt": TOKENIZER}
    lines = []
    path = download("vq_ds16_c2i", tmp_path, check_hub=True, log=lines.append)
    assert lines == [f"{path}: size and hash match the Hub's"]
    path.write_bytes(checkpoint_bytes("torch", 9.0))  # well-formed, same size, other weights
    assert path.stat().st_size == len(TOKENIZER)
    assert download("vq_ds16_c2i", tmp_path) == path  # loading never asks the Hub
    with pytest.raises(CheckpointError, match=r"its hash .* differs from FoundationVision/LlamaGen/vq_ds16_c2i.pt"):
        download("vq_ds16_c2i", tmp_path, check_hub=True)


def test_offline_check_says_what_was_checked(tmp_path, hub_cache):
    (tmp_path / "vq_ds16_c2i.pt").write_bytes(TOKENIZER)
    lines = []
    download("vq_ds16_c2i", tmp_path, check_hub=True, log=lines.append)
    assert lines == [f"{tmp_path / 'vq_ds16_c2i.pt'}: structure checked (offline: size and hash not compared with the Hub)"]
