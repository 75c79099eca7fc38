"""Loading checkpoints safely and building models from them.

`.safetensors` files load through safetensors; `.pth`/`.pt` through `torch.load(weights_only=True)`
with only `argparse.Namespace` allowed beyond tensors and containers (the published files keep
their training arguments in one). Nothing in a checkpoint can run code.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, DeviceError, SettingError
from .files import GET_AGAIN, as_path, atomic_write, check_writable, checkpoint_format
from .model import LPD, LPDConfig
from .settings import GenerationSettings, check_integer, check_settings
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


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict]:
    """State dict and metadata of a checkpoint file; metadata holds a converted file's config.
    The file's kind is read from its content (`files.checkpoint_format`), whatever its suffix says,
    so a mislabelled file gets the same answer under any name."""
    path = as_path(path, "checkpoint", CheckpointError)
    if checkpoint_format(path) == "safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            return load_file(str(path)), metadata
        except (SafetensorError, ValueError, RuntimeError, TypeError) as error:
            raise CheckpointError(f"{path} cannot be read as safetensors ({_first_line(error)}); {GET_AGAIN}") from None
    try:
        # an open file, not its name: torch.load goes by a name's suffix (.safetensors), the content decides here
        with open(path, "rb") as f, torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(f"{path} is truncated or damaged ({_first_line(error)}); {GET_AGAIN}") from None
        # the weights-only unpickler cannot tell objects it refuses from bytes it cannot read
        raise CheckpointError(f"refusing to load {path}: it is not a plain state dict of tensors (it holds other "
                              f"objects, and loading them could run code, or it is damaged); use a .safetensors "
                              f"file or a checkpoint saved as a plain state dict") from None
    # torch's readers on a damaged archive or pickle: RuntimeError (zip), the others (legacy format)
    except (EOFError, RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is truncated or damaged ({type(error).__name__}: {_first_line(error)}); "
                              f"{GET_AGAIN}") from None
    state_dict = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path} is not a state dict (nor a dict with one under 'model'); pass an LPD "
                              f"model or VQ tokenizer checkpoint")
    return state_dict, {}


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error).strip() else "no details"


def safetensors_header(path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """Metadata and tensor shapes of a .safetensors file, read from its header alone (no weights are
    loaded); CheckpointError, as for loading, for a file that is not one whatever its name says."""
    path = Path(path)
    if checkpoint_format(path) != "safetensors":
        raise CheckpointError(f"{path} is not a .safetensors file (it is a PyTorch checkpoint); its header "
                              f"cannot be read without loading it")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, ValueError, RuntimeError, TypeError) as error:
        raise CheckpointError(f"{path} cannot be read as safetensors ({_first_line(error)}); {GET_AGAIN}") from None


def is_lpd_state_dict(state_dict) -> bool:
    return MODEL_KEY in state_dict


def is_tokenizer_state_dict(state_dict) -> bool:
    return TOKENIZER_KEY in state_dict


def checkpoint_kind(metadata: dict, keys) -> str | None:
    """"lpd" (a model), "vq" (a tokenizer) or None, from a checkpoint's metadata and tensor names."""
    kind = metadata.get(KIND_METADATA_KEY)
    if kind in ("lpd", "vq"):
        return kind
    return "lpd" if is_lpd_state_dict(keys) else "vq" if is_tokenizer_state_dict(keys) else None


def check_finite(state_dict: dict, path) -> None:
    """Refuse weights that hold NaN or infinity: they would decode to noise (or nothing) without an
    error. One sum per tensor is one pass over its memory; a sum that is not finite is confirmed
    element by element (large finite weights can overflow a sum) and names the tensor."""
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not math.isfinite(tensor.sum()) and not torch.isfinite(tensor).all():
            bad = (~torch.isfinite(tensor)).sum()
            raise CheckpointError(f"{path} holds {int(bad)} non-finite values (NaN or infinity) in {name}: the file "
                                  f"is damaged, or was saved from a training run that diverged; {GET_AGAIN}")


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


def _checked_config(config: LPDConfig, path) -> LPDConfig:
    """A model config from a file: whole sizes ≥ 1, heads that divide the width, positive ratios."""
    sizes = ("embed_dim", "depth", "num_heads", "grid_size", "vocab_size", "num_classes")
    ratios = ("mlp_ratio", "layer_norm_eps")
    good = all(isinstance(getattr(config, k), int) and not isinstance(getattr(config, k), bool)
               and getattr(config, k) >= 1 for k in sizes) \
        and all(isinstance(getattr(config, k), (int, float)) and math.isfinite(getattr(config, k))
                and getattr(config, k) > 0 for k in ratios) \
        and config.embed_dim % config.num_heads == 0 and int(config.embed_dim * config.mlp_ratio) >= 1
    if not good:
        raise CheckpointError(f"{path} describes a model that cannot be built ({config}); {GET_AGAIN}")
    return config


def lpd_config_for(state_dict: dict, metadata: dict, num_heads: int | None, path="checkpoint") -> LPDConfig:
    if num_heads is not None and MODEL_KEY in state_dict:
        width = state_dict[MODEL_KEY].shape[-1]
        divisors = [h for h in range(1, width + 1) if width % h == 0 and 32 <= width // h <= 128]
        if check_integer("num_heads", num_heads, 1) > width or width % num_heads:
            raise SettingError(f"num_heads must divide the model's width {width}, got {num_heads!r}; e.g. "
                               f"{', '.join(map(str, divisors)) or 1}")
    if CONFIG_METADATA_KEY in metadata and metadata.get(KIND_METADATA_KEY, "lpd") == "lpd":
        try:
            stored = LPDConfig(**json.loads(metadata[CONFIG_METADATA_KEY]))
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{path} has a damaged {CONFIG_METADATA_KEY} entry ({error}); {GET_AGAIN}") from None
        return _checked_config(stored if num_heads is None else LPDConfig(**{**stored.to_dict(), "num_heads": num_heads}),
                               path)
    try:
        config = LPDConfig.from_state_dict(state_dict, num_heads=num_heads)
    except (ValueError, KeyError, IndexError, TypeError) as error:  # the weights do not say what the model is
        raise CheckpointError(f"{path}: {error}") from None
    return _checked_config(config, path)


def _stored_extras(model: LPD, metadata: dict, path) -> None:
    """What a model's file says about itself: class names, generation defaults, its tokenizer."""
    num_classes, num_tokens = model.config.num_classes, model.config.num_tokens
    try:
        if CLASS_NAMES_METADATA_KEY in metadata:
            names = json.loads(metadata[CLASS_NAMES_METADATA_KEY])
            if not isinstance(names, list) or len(names) != num_classes or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{CLASS_NAMES_METADATA_KEY} must list {num_classes} names")
            model.class_names = names
        if DEFAULTS_METADATA_KEY in metadata:
            model.generation_defaults = check_settings(GenerationSettings(**json.loads(metadata[DEFAULTS_METADATA_KEY])),
                                                       num_tokens)
    except (ValueError, TypeError) as error:  # SettingError is a ValueError: defaults out of range
        raise CheckpointError(f"{path} has damaged metadata ({error}); {GET_AGAIN}") from None
    model.tokenizer_name = str(metadata.get(TOKENIZER_METADATA_KEY, model.tokenizer_name))


def load_model(path, device="cpu", dtype="fp32", num_heads: int | None = None, run_on=None) -> LPD:
    """Build an LPD model from a checkpoint (published .pth, or .safetensors) in eval mode, on
    `device`. dtype: fp32 / bf16 / fp16 / "auto" (`auto_dtype`: bf16 on GPU and for wide models on
    bf16 CPUs) for the device it will compute on, `run_on` (default: `device`). CheckpointError for
    a file that cannot be used, weights holding NaN or infinity included."""
    device = resolve_device(device)
    resolve_dtype(dtype, device)  # checked before the file is read
    state_dict, metadata = read_checkpoint(path)
    if not is_lpd_state_dict(state_dict):
        raise CheckpointError(f"{path} is not an LPD checkpoint (no pos_embed); "
                              + ("it is a VQ tokenizer: pass it as the tokenizer" if is_tokenizer_state_dict(state_dict)
                                 else "pass an LPD model file (e.g. python -m lpd_core download lpd_l_256)"))
    config = lpd_config_for(state_dict, metadata, num_heads, path)
    with torch.device("meta"):
        model = LPD(config)
    _check_keys(model, state_dict, path)
    check_finite(state_dict, path)
    model.load_state_dict(state_dict, assign=True)
    _stored_extras(model, metadata, path)
    dtype = resolve_dtype(dtype, device if run_on is None else run_on, config.embed_dim)
    return model.to(device=device, dtype=dtype).eval()


def load_tokenizer(path, device="cpu", dtype="fp32", run_on=None) -> VQModel:
    """Build the VQ tokenizer from a checkpoint (LlamaGen layout, .pt or .safetensors) on `device`.
    dtype "auto" as for `load_model` (LlamaGen's VQ-16: bf16 on GPU and on bf16 CPUs; its error
    against fp32 is bounded in tests/test_weights.py). CheckpointError for a file that cannot be
    used, weights holding NaN or infinity included."""
    device = resolve_device(device)
    resolve_dtype(dtype, device)  # checked before the file is read
    state_dict, _ = read_checkpoint(path)
    if not is_tokenizer_state_dict(state_dict):
        raise CheckpointError(f"{path} is not a VQ tokenizer checkpoint (no {TOKENIZER_KEY}); "
                              + ("it is an LPD model: pass it as the model" if is_lpd_state_dict(state_dict)
                                 else "pass a VQ tokenizer file (e.g. python -m lpd_core download vq_ds16_c2i)"))
    try:
        config = VQConfig.from_state_dict(state_dict)
        with torch.device("meta"):
            model = VQModel(config)
    except (KeyError, ValueError, IndexError, ZeroDivisionError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not have the LlamaGen VQ layout (missing or odd {error}); pass a "
                              f"LlamaGen-layout tokenizer such as vq_ds16_c2i") from None
    _check_keys(model, state_dict, path)
    check_finite(state_dict, path)
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
    source = as_path(source, "checkpoint", CheckpointError)
    destination = as_path(destination, "converted checkpoint") if destination else source.with_suffix(".safetensors")
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
    """A model (`load_model`) and a tokenizer (`load_tokenizer`) that speaks its vocabulary."""
    if not isinstance(model, LPD) or not isinstance(tokenizer, VQModel):
        swapped = isinstance(model, VQModel) and isinstance(tokenizer, LPD)
        raise SettingError("the model and the tokenizer are swapped: pass the LPD model first, then the tokenizer"
                           if swapped else f"need an LPD model (lpd_core.load_model) and a VQ tokenizer "
                           f"(lpd_core.load_tokenizer), got {type(model).__name__} and {type(tokenizer).__name__}")
    if model.config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(f"tokenizer/model mismatch: the model predicts {model.config.vocab_size} codes "
                         f"but the tokenizer has {tokenizer.vocab_size}; load the tokenizer the model "
                         f"was trained with")
