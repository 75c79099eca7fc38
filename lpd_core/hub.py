"""Known LPD checkpoints, their published sampling settings, and getting them from the Hugging Face Hub.

Registry: `LPD_MODELS` (the five generators, `mit-han-lab/lpd_*`) and `TOKENIZERS` (LlamaGen's
VQ-16, `FoundationVision/LlamaGen` file `vq_ds16_c2i.pt`). The file name inside an LPD repo is not
recorded here: it is looked up as the repo's single `.safetensors` (preferred) or `.pth` file.

Where files go: `download(name, folder)` puts a checkpoint at `<folder>/<name>/<file name in the
repo>`, one subfolder per checkpoint because nothing guarantees that the LPD repos use distinct
file names. `resolve_local` also accepts the file placed by hand as `<folder>/<file name in the
repo>` or `<folder>/<name>.safetensors|.pth`.

Order of `download`: a complete file already in the folder is returned without contacting the
Hub; else a copy in the huggingface_hub cache (HF_HUB_CACHE, e.g. from `hf download`) is linked or
copied into the folder; else the file is downloaded with `hf_hub_download(..., local_dir=...)`.

Why a file at the final path is always complete: `hf_hub_download(local_dir=...)` writes into
`<local_dir>/.cache/huggingface/download/*.incomplete` and renames that file to its final path only
after all bytes arrived and the size matched. Older huggingface_hub (0.23 to 1.0 at least) keeps
the .incomplete file after a failure and resumes from it on the next call; 2.4 gives each attempt
its own .incomplete file, deletes it on failure and starts over next time (within one call it
still resumes after transient network errors). A copy out of the cache is written the
same way: temporary hidden `.incomplete` name, then an atomic rename.

Offline (HF_HUB_OFFLINE=1) or with the Hub unreachable, a file that is neither in the folder nor in
the cache raises one `DownloadError` that names the file, its URL and the folder to put it in, at
once: without huggingface_hub's retries (`_check_reachable`).

Nothing damaged is reported as ready: every file `download` returns passed `files.checkpoint_format`
(not empty, not truncated, a real safetensors / torch file), and a fetched file (or, with
`check_hub=True`, one found on disk) is compared with the size and hash the Hub publishes for it
(sha256 for LFS files, the git blob hash otherwise) whenever the Hub can be reached. A damaged file
raises `CheckpointError` with its path and what to do.
"""

from __future__ import annotations

import bisect
import hashlib
import inspect
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from huggingface_hub import (HfApi, constants, get_hf_file_metadata, get_session, hf_hub_download, hf_hub_url,
                             snapshot_download)
from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.utils import tqdm as hf_tqdm

from .errors import CheckpointError, DownloadError, SettingError
from .files import atomic_write, check_output_folder, checkpoint_format
from .settings import check_integer

# Checkpoint file types, most preferred first: safetensors loads without unpickling. The one list
# of checkpoint suffixes (registry lookup, folders, downloads).
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")
# Pixels per token side of the published tokenizer (LlamaGen VQ-16): 256 px = 16×16 tokens.
TOKENIZER_STRIDE = 16

# Called as progress(done_bytes, total_bytes); total_bytes is None when the server does not say.
ProgressCallback = Callable[[int, int | None], None]

# What reaching the Hub can raise. huggingface_hub's own errors are OSErrors: LocalEntryNotFoundError
# (offline, or unreachable and not cached), HfHubHTTPError (404, 401, 5xx ...); so are a failed
# size check and a full disk. Transport errors of the HTTP client it uses are not always OSErrors
# (requests in < 1.0: they are; httpx in 1.x, httpx2 in 2.x: they are not, e.g. list_repo_files
# raises httpx2.ConnectError as is), but HfHubHTTPError derives from that client's base error, so
# its bases name it without importing a particular client.
_HUB_ERRORS: tuple[type[BaseException], ...] = (OSError, *HfHubHTTPError.__bases__)

# How long the first request to the Hub may take. huggingface_hub retries a request that fails to
# connect five times, with pauses of 1 to 8 s and a log line for each ("Retrying in 4s"), so an
# offline machine would wait about half a minute for its error. One request of ours, without
# retries, comes first: a Hub that cannot be reached is answered at once. Two seconds is long
# for a connection and its TLS handshake, even on a slow network.
_FIRST_CONTACT_TIMEOUT = 2.0

# hf_hub_download takes a progress bar class only in recent huggingface_hub versions; older ones
# still download (with their own console bar) but cannot report bytes to a callback.
_DOWNLOAD_TAKES_TQDM_CLASS = "tqdm_class" in inspect.signature(hf_hub_download).parameters


@dataclass(frozen=True)
class LPDCheckpoint:
    """A published LPD generator and the settings its paper results were evaluated with."""

    name: str
    repo_id: str
    preset: str  # model size preset: "lpd_l", "lpd_xl" or "lpd_xxl"
    image_size: int
    published_cfg: tuple[tuple[int, float], ...]  # (steps, cfg scale) pairs, linear cfg schedule
    default_steps: int
    repulsion: int | None = None  # locality-aware order's repulsion threshold; None: the grid's default
    cfg_schedule: str = "linear"
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filtering
    top_p: float = 1.0  # 1: no nucleus filtering
    tokenizer: str = "vq_ds16_c2i"
    filename: str | None = None  # None: the repo's single .safetensors or .pth file


@dataclass(frozen=True)
class TokenizerCheckpoint:
    """A published VQ tokenizer checkpoint."""

    name: str
    repo_id: str
    filename: str


Checkpoint = LPDCheckpoint | TokenizerCheckpoint

LPD_MODELS: dict[str, LPDCheckpoint] = {
    model.name: model
    for model in (
        LPDCheckpoint("lpd_l_256", "mit-han-lab/lpd_l_256", "lpd_l", 256, ((20, 4.8), (32, 5.4)), default_steps=20),
        LPDCheckpoint("lpd_xl_256", "mit-han-lab/lpd_xl_256", "lpd_xl", 256, ((20, 4.9), (32, 5.0)), default_steps=20),
        LPDCheckpoint(
            "lpd_xxl_256", "mit-han-lab/lpd_xxl_256", "lpd_xxl", 256, ((20, 5.9),), default_steps=20, repulsion=3
        ),
        LPDCheckpoint("lpd_l_512", "mit-han-lab/lpd_l_512", "lpd_l", 512, ((48, 7.3),), default_steps=48),
        LPDCheckpoint("lpd_xl_512", "mit-han-lab/lpd_xl_512", "lpd_xl", 512, ((48, 6.0),), default_steps=48),
    )
}

TOKENIZERS: dict[str, TokenizerCheckpoint] = {
    "vq_ds16_c2i": TokenizerCheckpoint("vq_ds16_c2i", "FoundationVision/LlamaGen", "vq_ds16_c2i.pt"),
}

CHECKPOINTS: dict[str, Checkpoint] = {**LPD_MODELS, **TOKENIZERS}


def get_checkpoint(name_or_entry: str | Checkpoint) -> Checkpoint:
    """The registry entry for a name such as "lpd_l_256" or "LPD-L-256"; entries pass through."""
    if isinstance(name_or_entry, (LPDCheckpoint, TokenizerCheckpoint)):
        return name_or_entry
    key = name_or_entry.strip().lower().replace("-", "_")
    if key not in CHECKPOINTS:
        raise CheckpointError(f"unknown checkpoint '{name_or_entry}': known ones are {', '.join(CHECKPOINTS)}")
    return CHECKPOINTS[key]


def _lpd_model(name_or_entry: str | Checkpoint) -> LPDCheckpoint:
    entry = get_checkpoint(name_or_entry)
    if not isinstance(entry, LPDCheckpoint):
        raise CheckpointError(f"'{entry.name}' is a tokenizer, not an LPD model: use one of {', '.join(LPD_MODELS)}")
    return entry


def default_cfg(name_or_entry: str | LPDCheckpoint, steps: int) -> float:
    """The published cfg scale for `steps`, linearly interpolated between published step counts.

    Outside the published range the nearest published value is used (e.g. LPD-L-256: 20 -> 4.8,
    32 -> 5.4, 26 -> 5.1, 64 -> 5.4); models published at one step count have one cfg for all.
    """
    model = _lpd_model(name_or_entry)
    steps = check_integer("steps", steps, 1)
    points = sorted(model.published_cfg)
    if steps <= points[0][0]:
        return points[0][1]
    if steps >= points[-1][0]:
        return points[-1][1]
    above = bisect.bisect_left([published_steps for published_steps, _ in points], steps)
    (low_steps, low_cfg), (high_steps, high_cfg) = points[above - 1], points[above]
    # Rounded so that UI widgets show 5.1, not 5.1000000000000005.
    return round(low_cfg + (high_cfg - low_cfg) * (steps - low_steps) / (high_steps - low_steps), 3)


def published_repulsion(name_or_entry: str | LPDCheckpoint) -> int | None:
    """The published repulsion threshold (3 for LPD-XXL-256), or None for "use the grid's default"."""
    return _lpd_model(name_or_entry).repulsion


def _checkpoint_files(directory: Path) -> list[str]:
    """Checkpoint files under `directory` as repo-style relative paths, skipping hidden folders.

    Hidden folders hold huggingface_hub's bookkeeping (`.cache/huggingface/...`), where unfinished
    downloads live; those never count as checkpoints.
    """
    found = []
    for root, folders, files in os.walk(directory):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        found += [
            (Path(root) / file).relative_to(directory).as_posix()
            for file in files
            if file.endswith(CHECKPOINT_SUFFIXES) and not file.startswith(".")
        ]
    return sorted(found)


def _pick_checkpoint(files: list[str], where: str) -> str | None:
    """The single checkpoint among `files` (a .safetensors before a .pth), None if there is none."""
    for suffix in CHECKPOINT_SUFFIXES:
        matching = [file for file in files if file.endswith(suffix)]
        if len(matching) == 1:
            return matching[0]
        if matching:
            raise CheckpointError(
                f"{where} holds several {suffix} checkpoints ({', '.join(matching)}): pass filename= "
                f"(--filename) to choose one, or remove the others"
            )
    return None


def check_filename(filename: str | None) -> str | None:
    """A file name inside a Hub repository (None: let the repository decide): relative, with no
    '..' or empty parts, so it names the same file in the repository and under the models folder."""
    if filename is None:
        return None
    parts = filename.replace("\\", "/").split("/") if isinstance(filename, str) else None
    if not parts or filename.startswith(("/", "\\")) or any(part in ("", ".", "..") for part in parts):
        raise SettingError(f"the file name must name a file inside the repository (e.g. vq_ds16_c2i.pt, or "
                           f"a path under the repository like weights/model.safetensors), got {filename!r}; "
                           f"leave it out to take the repository's checkpoint")
    return filename


def resolve_local(
    name_or_entry: str | Checkpoint, folder: str | os.PathLike, filename: str | None = None
) -> Path | None:
    """The checkpoint for `name_or_entry` already in `folder`, or None.

    Looks where `download` puts it (`<folder>/<name>/<file>`), then where a user may put it by hand
    (`<folder>/<file>`, `<folder>/<name>.safetensors|.pth`). Without a known file name the single
    checkpoint file in `<folder>/<name>/` is taken.
    """
    entry = get_checkpoint(name_or_entry)
    folder = Path(folder)
    own_folder = folder / entry.name
    wanted = check_filename(filename) or entry.filename
    if wanted:
        candidates = [own_folder / wanted, folder / wanted]
    else:
        picked = _pick_checkpoint(_checkpoint_files(own_folder), where=str(own_folder))
        candidates = [own_folder / picked] if picked else []
    candidates += [folder / f"{entry.name}{suffix}" for suffix in CHECKPOINT_SUFFIXES]
    return next((path for path in candidates if path.is_file()), None)


def _manual_download_message(entry: Checkpoint, folder: Path, filename: str | None, error: BaseException) -> str:
    own_folder = folder / entry.name
    if filename:
        instructions = f"download {hf_hub_url(entry.repo_id, filename)} and save it as {own_folder / filename}"
    else:
        instructions = (
            f"download its checkpoint file (.safetensors or .pth) from {constants.ENDPOINT}/{entry.repo_id}/tree/main"
            f" and save it, under its own name, in {own_folder}"
        )
    what_to_do = (
        "huggingface_hub is in offline mode (HF_HUB_OFFLINE=1). Unset it to download"
        if constants.HF_HUB_OFFLINE
        else "the Hugging Face Hub could not be reached or refused the request. Check the connection and retry"
    )
    detail = str(error).strip().splitlines()[0] if str(error).strip() else "no details"
    return (
        f"cannot get {entry.name} ({filename or 'checkpoint'} from {entry.repo_id}): {what_to_do},"
        f" or install it by hand: {instructions}. (huggingface_hub: {type(error).__name__}: {detail})"
    )


def _check_reachable(entry: Checkpoint, folder: Path, filename: str | None) -> None:
    """DownloadError now if the Hub cannot be reached (no network, no name resolution, refused, no
    answer in time). Offline mode is left to huggingface_hub, which refuses at once without a request."""
    if constants.HF_HUB_OFFLINE:
        return
    try:
        get_session().head(constants.ENDPOINT, timeout=_FIRST_CONTACT_TIMEOUT)
    except _HUB_ERRORS as error:
        raise DownloadError(_manual_download_message(entry, folder, filename, error)) from error


def _cached_snapshot_files(repo_id: str) -> list[str]:
    """Checkpoint files of the repo's cached snapshot, without network.

    huggingface_hub cannot list a repo's files offline (list_repo_files raises OfflineModeIsEnabled),
    but `snapshot_download(local_files_only=True)` resolves `refs/main` to the cached snapshot folder.
    """
    try:
        snapshot = snapshot_download(
            repo_id, local_files_only=True, allow_patterns=[f"*{suffix}" for suffix in CHECKPOINT_SUFFIXES]
        )
    except LocalEntryNotFoundError:
        return []
    return _checkpoint_files(Path(snapshot))


def _cached_checkpoint_name(entry: Checkpoint) -> str | None:
    """The checkpoint's file name in its repo as the cached snapshot has it, or None; no network."""
    return _pick_checkpoint(_cached_snapshot_files(entry.repo_id), where=f"the cached snapshot of {entry.repo_id}")


def _listed_checkpoint_name(entry: Checkpoint, folder: Path) -> str:
    """The checkpoint's file name in its repo, from the Hub's listing."""
    try:
        files = HfApi().list_repo_files(entry.repo_id)
    except _HUB_ERRORS as error:
        raise DownloadError(_manual_download_message(entry, folder, None, error)) from error
    picked = _pick_checkpoint(files, where=f"Hub repo {entry.repo_id}")
    if picked is None:
        raise DownloadError(
            f"Hub repo {entry.repo_id} holds no .safetensors or .pth file (files: {', '.join(files)});"
            f" pass filename= to choose the checkpoint"
        )
    return picked


def _place(source: Path, destination: Path) -> Path:
    """Hard-link (or copy) `source` to `destination` via a temporary name, so `destination` is never partial."""

    def link_or_copy(temporary: Path) -> None:
        try:
            # A link costs no disk space; checkpoints are gigabytes.
            os.link(source.resolve(), temporary)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(source, temporary)

    return atomic_write(destination, link_or_copy)


def _file_hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file, streamed: the Hub's etag is one or the other."""
    size = path.stat().st_size
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def _damaged(problem: str, entry: Checkpoint) -> CheckpointError:
    return CheckpointError(f"{problem}; delete it and run python -m lpd_core download {entry.name} again "
                           f"(or put a good copy there by hand)")


def verify_checkpoint(path, name_or_entry: str | Checkpoint, filename: str | None = None) -> str:
    """Check a checkpoint file of the registry: its structure always (`files.checkpoint_format`:
    not empty, not truncated, really a checkpoint); its size and hash against the Hub's metadata
    for `filename` (its name in the repo) when the Hub can be reached. Returns what was checked, in
    words; CheckpointError (with the path and what to do) if the file is damaged."""
    entry, path = get_checkpoint(name_or_entry), Path(path)
    try:
        checkpoint_format(path)
    except CheckpointError as error:
        raise _damaged(str(error).split(";")[0], entry) from None
    if filename is None or constants.HF_HUB_OFFLINE:
        return "structure checked (offline: size and hash not compared with the Hub)"
    try:
        metadata = get_hf_file_metadata(hf_hub_url(entry.repo_id, filename))
    except _HUB_ERRORS as error:
        return f"structure checked (the Hub could not be reached to compare size and hash: {type(error).__name__})"
    size = path.stat().st_size
    if metadata.size is not None and metadata.size != size:
        raise _damaged(f"{path} is damaged: {size} bytes, but {entry.repo_id}/{filename} has {metadata.size}", entry)
    etag = (metadata.etag or "").strip('"').lower()
    if re.fullmatch(r"[0-9a-f]{64}|[0-9a-f]{40}", etag):
        sha256, blob = _file_hashes(path)
        if etag not in (sha256, blob):
            raise _damaged(f"{path} is damaged: its hash {sha256[:12]}… differs from {entry.repo_id}/{filename}'s "
                           f"{etag[:12]}…", entry)
        return "size and hash match the Hub's"
    return "structure and size checked (the Hub gave no hash)"


def _progress_bar_class(progress: ProgressCallback) -> type[hf_tqdm]:
    """A huggingface_hub progress bar class that also reports (done bytes, total bytes) to `progress`."""

    class CallbackProgressBar(hf_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Counted here because a disabled tqdm (no TTY, as under ComfyUI, or HF_HUB_DISABLE_PROGRESS_BARS)
            # stops counting; `n` starts at the bytes a resumed download already has.
            self.bytes_done = self.n

        def update(self, n=1):
            self.bytes_done += n
            progress(int(self.bytes_done), int(self.total) if self.total else None)
            return super().update(n)

        # With these two, huggingface_hub 2.x drives one bar for a Xet download instead of two (file bytes
        # written + network bytes received). Network bytes are ignored: `update` counts the file's bytes,
        # whose total is the file size.
        def update_transfer(self, n=1):
            pass

        def set_transfer_postfix_str(self, postfix, refresh=False):
            pass

    return CallbackProgressBar


def download(
    name_or_entry: str | Checkpoint,
    folder: str | os.PathLike,
    filename: str | None = None,
    progress: ProgressCallback | None = None,
    check_hub: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The path of the checkpoint in `folder`, downloading it from the Hub if needed.

    `filename` overrides the file taken from the repo. `progress(done_bytes, total_bytes)` is called
    as bytes arrive and once at the end. Raises DownloadError when the file is not on disk and the
    Hub cannot provide it; the message says where to download it by hand and where to put it.
    Raises CheckpointError when the repo, its cached snapshot or `<folder>/<name>/` holds several
    checkpoint files of the preferred type (pass `filename` to choose), or when the file found or
    fetched is damaged (`verify_checkpoint`). A file found on disk is compared with the Hub's size
    and hash only with `check_hub` (the `download` command), so loading never needs the network;
    `log` receives one line saying what was checked.
    """
    entry = get_checkpoint(name_or_entry)
    folder = Path(folder)
    filename = check_filename(filename)
    existing = resolve_local(entry, folder, filename)
    if existing is not None:
        repo_name = filename or entry.filename or _name_in_repo(existing, folder / entry.name)
        checked = verify_checkpoint(existing, entry, repo_name if check_hub else None)
        if log:
            log(f"{existing}: {checked}")
        return existing

    own_folder = check_output_folder(folder / entry.name, "models folder")
    filename = filename or entry.filename or _cached_checkpoint_name(entry)
    cached = _cached_file(entry, filename) if filename else None
    own_folder.mkdir(parents=True, exist_ok=True)
    if cached is not None:
        path = _place(cached, own_folder / filename)
        repo_name = None  # the blob's name in the cache is its hash: the structure check suffices
    else:
        # Not in the cache under a known name: the Hub has it. (Without a cached snapshot of the repo
        # no file of it is cached, so a name the listing gives cannot be in the cache either.)
        _check_reachable(entry, folder, filename)
        filename = filename or _listed_checkpoint_name(entry, folder)
        options = {"tqdm_class": _progress_bar_class(progress)} if progress and _DOWNLOAD_TAKES_TQDM_CLASS else {}
        try:
            path = Path(hf_hub_download(entry.repo_id, filename, local_dir=own_folder, **options))
        except _HUB_ERRORS as error:
            raise DownloadError(_manual_download_message(entry, folder, filename, error)) from error
        repo_name = filename
    try:
        checked = verify_checkpoint(path, entry, repo_name)
    except CheckpointError:
        path.unlink(missing_ok=True)  # ours, and damaged: never left where a loader would take it
        raise
    if log:
        log(f"{path}: {checked}{' (from the Hugging Face cache)' if cached is not None else ''}")
    if progress:
        size = path.stat().st_size
        progress(size, size)
    return path


def _cached_file(entry: Checkpoint, filename: str) -> Path | None:
    """The file in the huggingface_hub cache (e.g. from `hf download`), or None; no network."""
    try:
        return Path(hf_hub_download(entry.repo_id, filename, local_files_only=True))
    except LocalEntryNotFoundError:
        return None


def _name_in_repo(path: Path, own_folder: Path) -> str | None:
    """The repo-relative name of a file `download` placed in `own_folder`; None for a file put
    elsewhere by hand (its name need not be the repo's)."""
    try:
        return path.relative_to(own_folder).as_posix()
    except ValueError:
        return None
