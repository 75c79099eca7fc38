"""Loading checkpoints safely and building models from them.

`.safetensors` files load through safetensors; `.pth`/`.pt` through `torch.load(weights_only=True)`
with only `argparse.Namespace` allowed beyond tensors and containers (the published files keep
their training arguments in one). Nothing in a checkpoint can run code.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
import pickle
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .model import LPD, LPDConfig
from .settings import GenerationSettings
from .vq import VQConfig, VQModel

# Metadata keys of our .safetensors files (all values are strings, JSON where structured).
CONFIG_METADATA_KEY = "lpd_config"  # the model config
KIND_METADATA_KEY = "lpd_kind"  # "lpd" or "vq"
CLASS_NAMES_METADATA_KEY = "lpd_class_names"  # JSON list, for models not trained on ImageNet
DEFAULTS_METADATA_KEY = "lpd_generation_defaults"  # JSON of GenerationSettings
TOKENIZER_METADATA_KEY = "lpd_tokenizer"  # what find_checkpoint should load with this model
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


# From this width on (every published model), bf16 matmuls beat fp32 on a CPU that multiplies bf16
# natively: LPD-L-256 at 20 steps, batch 1, ran 2.4× faster (benchmarks/bench_generate.py). The
# small demo model gains nothing, and fp32 keeps its images the ones its tests and card show.
CPU_BF16_MIN_WIDTH = 512


def cpu_multiplies_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX or AVX512-BF16) that oneDNN uses."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def auto_dtype(device, width: int | None = None) -> torch.dtype:
    """What dtype "auto" means: bf16 on a GPU; on a CPU, bf16 for an LPD model of width ≥
    `CPU_BF16_MIN_WIDTH` when the CPU multiplies bf16 natively, else fp32 (tokenizers: width None,
    fp32 on the CPU)."""
    if torch.device(device).type != "cpu":
        return torch.bfloat16
    if width is not None and width >= CPU_BF16_MIN_WIDTH and cpu_multiplies_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype, device="cpu", width: int | None = None) -> torch.dtype:
    """A dtype, or its name: fp32 / bf16 / fp16, or "auto" (see `auto_dtype`)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return auto_dtype(device, width)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of auto, fp32, bf16, fp16")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of a dtype (fp32, bf16, fp16): its first entry in DTYPES."""
    return next(name for name, value in DTYPES.items() if value == dtype)


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict]:
    """State dict and metadata of a checkpoint file; metadata holds a converted file's config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"refusing to load {path}: it holds objects other than tensors and plain "
                         f"containers, and loading them could run code ({error})") from None
    state_dict = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} is not a state dict (nor a dict with one under 'model')")
    return state_dict, {}


def _check_keys(module: torch.nn.Module, state_dict: dict, path) -> None:
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(f"{path} does not match the {type(module).__name__} layout: missing keys "
                         f"{missing[:10]}{' …' if len(missing) > 10 else ''}, unexpected keys "
                         f"{unexpected[:10]}{' …' if len(unexpected) > 10 else ''}")
    mismatched = [k for k, v in module.state_dict().items() if v.shape != state_dict[k].shape]
    if mismatched:
        k = mismatched[0]
        raise ValueError(f"{path}: {k} has shape {tuple(state_dict[k].shape)}, the config expects "
                         f"{tuple(module.state_dict()[k].shape)}")


def lpd_config_for(state_dict: dict, metadata: dict, num_heads: int | None) -> LPDConfig:
    if CONFIG_METADATA_KEY in metadata and metadata.get(KIND_METADATA_KEY, "lpd") == "lpd":
        stored = LPDConfig(**json.loads(metadata[CONFIG_METADATA_KEY]))
        return stored if num_heads is None else LPDConfig(**{**stored.to_dict(), "num_heads": num_heads})
    return LPDConfig.from_state_dict(state_dict, num_heads=num_heads)


def load_model(path, device="cpu", dtype="fp32", num_heads: int | None = None) -> LPD:
    """Build an LPD model from a checkpoint (published .pth, or .safetensors) in eval mode.
    dtype: fp32 / bf16 / fp16 / "auto" (`auto_dtype`: bf16 on GPU and for wide models on bf16 CPUs)."""
    state_dict, metadata = read_checkpoint(path)
    if "pos_embed" not in state_dict:
        raise ValueError(f"{path} is not an LPD checkpoint (no pos_embed); is it a tokenizer?")
    config = lpd_config_for(state_dict, metadata, num_heads)
    with torch.device("meta"):
        model = LPD(config)
    _check_keys(model, state_dict, path)
    model.load_state_dict(state_dict, assign=True)
    if CLASS_NAMES_METADATA_KEY in metadata:
        model.class_names = json.loads(metadata[CLASS_NAMES_METADATA_KEY])
    if DEFAULTS_METADATA_KEY in metadata:
        model.generation_defaults = GenerationSettings(**json.loads(metadata[DEFAULTS_METADATA_KEY]))
    model.tokenizer_name = metadata.get(TOKENIZER_METADATA_KEY, model.tokenizer_name)
    return model.to(device=device, dtype=resolve_dtype(dtype, device, config.embed_dim)).eval()


def load_tokenizer(path, device="cpu", dtype="fp32") -> VQModel:
    """Build the VQ tokenizer from a checkpoint (LlamaGen layout, .pt or .safetensors).
    dtype "auto": bf16 on GPU, fp32 on CPU."""
    state_dict, _ = read_checkpoint(path)
    if "quantize.embedding.weight" not in state_dict:
        raise ValueError(f"{path} is not a VQ tokenizer checkpoint (no quantize.embedding.weight); "
                         f"is it an LPD model?")
    config = VQConfig.from_state_dict(state_dict)
    with torch.device("meta"):
        model = VQModel(config)
    _check_keys(model, state_dict, path)
    model.load_state_dict(state_dict, assign=True)
    return model.to(device=device, dtype=resolve_dtype(dtype, device)).eval()


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(path), metadata)
    return path


def convert(source, destination=None, num_heads: int | None = None) -> Path:
    """Rewrite a checkpoint (model or tokenizer, e.g. a published .pth) as .safetensors with its
    config in the metadata, so that loading it needs no other argument."""
    source = Path(source)
    destination = Path(destination) if destination else source.with_suffix(".safetensors")
    if destination.resolve() == source.resolve():
        raise ValueError(f"{source} is already a .safetensors file; name another destination")
    state_dict, _ = read_checkpoint(source)
    if "quantize.embedding.weight" in state_dict:
        return save_tokenizer(load_tokenizer(source), destination)
    return save_model(load_model(source, num_heads=num_heads), destination)


def check_pair(model: LPD, tokenizer: VQModel) -> None:
    """The tokenizer must speak the model's vocabulary."""
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"tokenizer/model mismatch: the model predicts {model.config.vocab_size} codes "
                         f"but the tokenizer has {tokenizer.vocab_size}; load the tokenizer the model "
                         f"was trained with")
