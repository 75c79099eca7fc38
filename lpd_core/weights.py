"""Loading checkpoints safely and building models from them.

`.safetensors` files load through safetensors; `.pth`/`.pt` through `torch.load(weights_only=True)`
with only `argparse.Namespace` allowed beyond tensors and containers (the published files keep
their training arguments in one). Nothing in a checkpoint can run code.
"""

from __future__ import annotations

import argparse
import json
import pickle
import struct
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, DeviceError, SettingError
from .files import atomic_write, check_writable
from .model import LPD, LPDConfig
from .settings import GenerationSettings
from .vq import VQConfig, VQModel

# Metadata keys of our .safetensors files (all values are strings, JSON where structured).
CONFIG_METADATA_KEY = "lpd_config"  # the model config
KIND_METADATA_KEY = "lpd_kind"  # "lpd" or "vq"
CLASS_NAMES_METADATA_KEY = "lpd_class_names"  # JSON list, for models not trained on ImageNet
DEFAULTS_METADATA_KEY = "lpd_generation_defaults"  # JSON of GenerationSettings
TOKENIZER_METADATA_KEY = "lpd_tokenizer"  # what find_checkpoint should load with this model
# The tensor that identifies each kind of checkpoint (the loaders, convert and the node pickers use these).
MODEL_KEY = "pos_embed"
TOKENIZER_KEY = "quantize.embedding.weight"
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


# From this width on (every published model and LlamaGen's VQ-16 tokenizer), bf16 matmuls and
# convolutions beat fp32 on a CPU that multiplies bf16 natively: LPD-L-256 at 20 steps, batch 1, ran
# 2.4× faster, the VQ-16 decode of a 256 px image 2.2× (docs/benchmarks.md). The small demo model and
# tokenizer gain nothing, and fp32 keeps their images the ones their tests and card show.
CPU_BF16_MIN_WIDTH = 512


def cpu_multiplies_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX or AVX512-BF16) that oneDNN uses."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def auto_dtype(device, width: int) -> torch.dtype:
    """What dtype "auto" means, for the CLI, the API and the nodes alike: bf16 on a GPU; on a CPU,
    bf16 for a network of width ≥ `CPU_BF16_MIN_WIDTH` (an LPD model's `embed_dim`, a tokenizer's
    widest channels: `VQConfig.width`) when the CPU multiplies bf16 natively, else fp32."""
    if torch.device(device).type != "cpu":
        return torch.bfloat16
    if width >= CPU_BF16_MIN_WIDTH and cpu_multiplies_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype, device="cpu", width: int = 0) -> torch.dtype:
    """A dtype, or its name: fp32 / bf16 / fp16, or "auto" for a network of `width` that computes
    on `device` (see `auto_dtype`)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return auto_dtype(device, width)
    if dtype not in DTYPES:
        raise SettingError(f"unknown dtype {dtype!r}; choose one of auto, fp32, bf16, fp16")
    return DTYPES[dtype]


def resolve_device(device: str = "auto", local_rank: int = 0) -> str:
    """The device to run on, checked: "auto" → cuda when available, else cpu; plain "cuda" →
    cuda:`local_rank` (under torchrun, each process its own GPU). DeviceError when this torch build
    or this machine does not have it."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "torch sees no CUDA GPU on this machine (driver missing, or CUDA_VISIBLE_DEVICES empty)")
            raise DeviceError(f"device {device!r} is not available: {why} (torch {torch.__version__}); "
                              f"use --device cpu (or auto), or install a CUDA build of torch")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise DeviceError(f"device {device!r} is not available: this machine has {count} CUDA GPU(s), "
                              f"cuda:0..cuda:{count - 1}; pick one of those")
    elif parsed.type != "cpu":
        backend = getattr(torch.backends, parsed.type, None) or getattr(torch, parsed.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise DeviceError(f"device {device!r} is not available in this torch build or on this machine; "
                              f"use --device cpu (or auto)")
    return device


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of a dtype (fp32, bf16, fp16): its first entry in DTYPES."""
    return next(name for name, value in DTYPES.items() if value == dtype)


# What to do about a damaged or missing checkpoint file.
GET_AGAIN = ("get the file again: published models with python -m lpd_core download <name> (e.g. lpd_l_256, "
             "vq_ds16_c2i), your own by copying it again")
_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
          b"RIFF": "a RIFF file (WebP image or audio)", b"%PDF": "a PDF document", b"<": "an HTML or XML page",
          b"{": "a JSON file", b"version https://git-lfs": "a Git LFS pointer, not the file it points to"}


def checkpoint_format(path) -> str:
    """What a checkpoint file holds, read from its first bytes and its structure: "safetensors",
    "torch-zip" (torch.save's format) or "torch-pickle" (the legacy one). CheckpointError, naming
    the file and what to do, for a missing, empty, truncated or non-checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; check the path, or {GET_AGAIN}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), e.g. from an interrupted download or copy; {GET_AGAIN}")
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then a JSON header
            (header_length,) = struct.unpack("<Q", head[:8])
            if 8 + header_length > size:
                raise CheckpointError(f"{path} is truncated: its safetensors header alone needs "
                                      f"{8 + header_length} bytes, the file has {size}; {GET_AGAIN}")
            f.seek(8)
            try:
                header = json.loads(f.read(header_length))
                end = max([int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"],
                          default=0)
            except (ValueError, KeyError, TypeError, IndexError):
                raise CheckpointError(f"{path} has a damaged safetensors header; {GET_AGAIN}") from None
            if 8 + header_length + end != size:
                raise CheckpointError(f"{path} is {'truncated' if 8 + header_length + end > size else 'damaged'}: "
                                      f"its header describes {8 + header_length + end} bytes, the file has "
                                      f"{size}; {GET_AGAIN}")
            return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, OSError):
            raise CheckpointError(f"{path} is truncated or damaged (its zip directory cannot be read); "
                                  f"{GET_AGAIN}") from None
        return "torch-zip"
    if head[:1] == b"\x80":  # pickle protocol 2+: the legacy torch.save format
        return "torch-pickle"
    kind = next((what for magic, what in _MAGIC.items() if head.lstrip().startswith(magic)), None)
    raise CheckpointError(f"{path} is not a checkpoint{f': it is {kind}' if kind else ''} (expected a .safetensors "
                          f"file or a PyTorch .pth/.pt file); pass the model or tokenizer file instead")


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict]:
    """State dict and metadata of a checkpoint file; metadata holds a converted file's config.
    The file's kind is read from its content (`checkpoint_format`), whatever its suffix says."""
    path = Path(path)
    if checkpoint_format(path) == "safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            return load_file(str(path)), metadata
        except SafetensorError as error:
            raise CheckpointError(f"{path} cannot be read as safetensors ({error}); {GET_AGAIN}") from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(f"{path} is truncated or damaged ({str(error).splitlines()[0]}); "
                                  f"{GET_AGAIN}") from None
        raise CheckpointError(f"refusing to load {path}: it holds objects other than tensors and plain "
                              f"containers, and loading them could run code; use a .safetensors file or a "
                              f"checkpoint saved as a plain state dict") from None
    except (EOFError, RuntimeError) as error:  # RuntimeError: torch's zip reader on a damaged archive
        raise CheckpointError(f"{path} is truncated or damaged ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else 'no details'}); {GET_AGAIN}") from None
    state_dict = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path} is not a state dict (nor a dict with one under 'model'); pass an LPD "
                              f"model or VQ tokenizer checkpoint")
    return state_dict, {}


def is_lpd_state_dict(state_dict) -> bool:
    return MODEL_KEY in state_dict


def is_tokenizer_state_dict(state_dict) -> bool:
    return TOKENIZER_KEY in state_dict


def _check_keys(module: torch.nn.Module, state_dict: dict, path) -> None:
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match the {type(module).__name__} layout: missing keys "
                         f"{missing[:10]}{' …' if len(missing) > 10 else ''}, unexpected keys "
                         f"{unexpected[:10]}{' …' if len(unexpected) > 10 else ''}; is it a checkpoint of "
                         f"another architecture?")
    mismatched = [k for k, v in module.state_dict().items() if v.shape != state_dict[k].shape]
    if mismatched:
        k = mismatched[0]
        raise CheckpointError(f"{path}: {k} has shape {tuple(state_dict[k].shape)}, the config expects "
                              f"{tuple(module.state_dict()[k].shape)}; the file's config and weights disagree")


def lpd_config_for(state_dict: dict, metadata: dict, num_heads: int | None, path="checkpoint") -> LPDConfig:
    if num_heads is not None and MODEL_KEY in state_dict:
        width = state_dict[MODEL_KEY].shape[-1]
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1 or width % num_heads:
            divisors = [h for h in range(1, width + 1) if width % h == 0 and 32 <= width // h <= 128]
            raise SettingError(f"num_heads must divide the model's width {width}, got {num_heads!r}; e.g. "
                               f"{', '.join(map(str, divisors)) or 1}")
    if CONFIG_METADATA_KEY in metadata and metadata.get(KIND_METADATA_KEY, "lpd") == "lpd":
        try:
            stored = LPDConfig(**json.loads(metadata[CONFIG_METADATA_KEY]))
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{path} has a damaged {CONFIG_METADATA_KEY} entry ({error}); {GET_AGAIN}") from None
        return stored if num_heads is None else LPDConfig(**{**stored.to_dict(), "num_heads": num_heads})
    try:
        return LPDConfig.from_state_dict(state_dict, num_heads=num_heads)
    except ValueError as error:  # the weights do not say what the model is (heads, grid)
        raise CheckpointError(f"{path}: {error}") from None


def load_model(path, device="cpu", dtype="fp32", num_heads: int | None = None, run_on=None) -> LPD:
    """Build an LPD model from a checkpoint (published .pth, or .safetensors) in eval mode, on
    `device`. dtype: fp32 / bf16 / fp16 / "auto" (`auto_dtype`: bf16 on GPU and for wide models on
    bf16 CPUs) for the device it will compute on, `run_on` (default: `device`)."""
    state_dict, metadata = read_checkpoint(path)
    if not is_lpd_state_dict(state_dict):
        raise CheckpointError(f"{path} is not an LPD checkpoint (no pos_embed){'; it is a VQ tokenizer: pass it as the tokenizer' if is_tokenizer_state_dict(state_dict) else ''}")
    config = lpd_config_for(state_dict, metadata, num_heads, path)
    with torch.device("meta"):
        model = LPD(config)
    _check_keys(model, state_dict, path)
    model.load_state_dict(state_dict, assign=True)
    if CLASS_NAMES_METADATA_KEY in metadata:
        model.class_names = json.loads(metadata[CLASS_NAMES_METADATA_KEY])
    if DEFAULTS_METADATA_KEY in metadata:
        model.generation_defaults = GenerationSettings(**json.loads(metadata[DEFAULTS_METADATA_KEY]))
    model.tokenizer_name = metadata.get(TOKENIZER_METADATA_KEY, model.tokenizer_name)
    dtype = resolve_dtype(dtype, device if run_on is None else run_on, config.embed_dim)
    return model.to(device=device, dtype=dtype).eval()


def load_tokenizer(path, device="cpu", dtype="fp32", run_on=None) -> VQModel:
    """Build the VQ tokenizer from a checkpoint (LlamaGen layout, .pt or .safetensors) on `device`.
    dtype "auto" as for `load_model` (LlamaGen's VQ-16: bf16 on GPU and on bf16 CPUs; its error
    against fp32 is measured in tests/test_weights.py)."""
    state_dict, _ = read_checkpoint(path)
    if not is_tokenizer_state_dict(state_dict):
        raise CheckpointError(f"{path} is not a VQ tokenizer checkpoint (no {TOKENIZER_KEY})"
                              f"{'; it is an LPD model: pass it as the model' if is_lpd_state_dict(state_dict) else ''}")
    try:
        config = VQConfig.from_state_dict(state_dict)
    except (KeyError, ValueError, IndexError) as error:
        raise CheckpointError(f"{path} does not have the LlamaGen VQ layout (missing or odd {error}); pass a "
                              f"LlamaGen-layout tokenizer such as vq_ds16_c2i") from None
    with torch.device("meta"):
        model = VQModel(config)
    _check_keys(model, state_dict, path)
    model.load_state_dict(state_dict, assign=True)
    dtype = resolve_dtype(dtype, device if run_on is None else run_on, config.width)
    return model.to(device=device, dtype=dtype).eval()


def save_model(model: LPD, path, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write an LPD model as .safetensors with everything `load_model` needs in the metadata
    (plus `extra_metadata`, e.g. how it was trained)."""
    metadata = {KIND_METADATA_KEY: "lpd", CONFIG_METADATA_KEY: json.dumps(model.config.to_dict()),
                TOKENIZER_METADATA_KEY: model.tokenizer_name}
    if model.class_names:
        metadata[CLASS_NAMES_METADATA_KEY] = json.dumps(list(model.class_names))
    if model.generation_defaults is not None:
        metadata[DEFAULTS_METADATA_KEY] = json.dumps(asdict(model.generation_defaults))
    return _save(model, path, {**metadata, **(extra_metadata or {})})


def save_tokenizer(tokenizer: VQModel, path, extra_metadata: dict[str, str] | None = None) -> Path:
    metadata = {KIND_METADATA_KEY: "vq", CONFIG_METADATA_KEY: json.dumps(tokenizer.config.to_dict())}
    return _save(tokenizer, path, {**metadata, **(extra_metadata or {})})


def _save(module: torch.nn.Module, path, metadata: dict) -> Path:
    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    return atomic_write(path, lambda temp: save_file(tensors, str(temp), metadata))


def convert(source, destination=None, num_heads: int | None = None) -> Path:
    """Rewrite a checkpoint (model or tokenizer, e.g. a published .pth) as .safetensors with its
    config in the metadata, so that loading it needs no other argument."""
    source = Path(source)
    destination = Path(destination) if destination else source.with_suffix(".safetensors")
    if destination.suffix != ".safetensors":
        raise CheckpointError(f"the converted file {destination} must end in .safetensors; name it "
                              f"{destination.with_suffix('.safetensors').name}")
    if destination.resolve() == source.resolve():
        raise CheckpointError(f"{source} is already a .safetensors file; name another destination")
    check_writable(destination, "converted checkpoint")
    state_dict, _ = read_checkpoint(source)
    if is_tokenizer_state_dict(state_dict):
        return save_tokenizer(load_tokenizer(source), destination)
    return save_model(load_model(source, num_heads=num_heads), destination)


def check_pair(model: LPD, tokenizer: VQModel) -> None:
    """The tokenizer must speak the model's vocabulary."""
    if model.config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(f"tokenizer/model mismatch: the model predicts {model.config.vocab_size} codes "
                         f"but the tokenizer has {tokenizer.vocab_size}; load the tokenizer the model "
                         f"was trained with")
