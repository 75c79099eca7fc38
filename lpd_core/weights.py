"""Loading checkpoints safely and building models from them.

`.safetensors` files load through safetensors; `.pth`/`.pt` through `torch.load(weights_only=True)`
with only `argparse.Namespace` allowed beyond tensors and containers (the published files keep
their training arguments in one). Nothing in a checkpoint can run code.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .model import LPD, LPDConfig
from .vq import VQConfig, VQModel

CONFIG_METADATA_KEY = "lpd_config"  # JSON of the model config in a converted .safetensors file
KIND_METADATA_KEY = "lpd_kind"  # "lpd" or "vq"
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of fp32, bf16, fp16")
    return DTYPES[dtype]


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
    """Build an LPD model from a checkpoint (published .pth, or .safetensors) in eval mode."""
    state_dict, metadata = read_checkpoint(path)
    if "pos_embed" not in state_dict:
        raise ValueError(f"{path} is not an LPD checkpoint (no pos_embed); is it a tokenizer?")
    config = lpd_config_for(state_dict, metadata, num_heads)
    with torch.device("meta"):
        model = LPD(config)
    _check_keys(model, state_dict, path)
    model.load_state_dict(state_dict, assign=True)
    return model.to(device=device, dtype=resolve_dtype(dtype)).eval()


def load_tokenizer(path, device="cpu", dtype="fp32") -> VQModel:
    """Build the VQ tokenizer from a checkpoint (LlamaGen layout, .pt or .safetensors)."""
    state_dict, _ = read_checkpoint(path)
    if "quantize.embedding.weight" not in state_dict:
        raise ValueError(f"{path} is not a VQ tokenizer checkpoint (no quantize.embedding.weight); "
                         f"is it an LPD model?")
    config = VQConfig.from_state_dict(state_dict)
    with torch.device("meta"):
        model = VQModel(config)
    _check_keys(model, state_dict, path)
    model.load_state_dict(state_dict, assign=True)
    return model.to(device=device, dtype=resolve_dtype(dtype)).eval()


def convert(source, destination=None, num_heads: int | None = None) -> Path:
    """Write a checkpoint (model or tokenizer) as .safetensors with its config in the metadata,
    so that loading it needs no other argument. Returns the new file's path."""
    source = Path(source)
    destination = Path(destination) if destination else source.with_suffix(".safetensors")
    if destination.resolve() == source.resolve():
        raise ValueError(f"{source} is already a .safetensors file; name another destination")
    state_dict, metadata = read_checkpoint(source)
    if "pos_embed" in state_dict:
        kind, config = "lpd", lpd_config_for(state_dict, metadata, num_heads).to_dict()
    elif "quantize.embedding.weight" in state_dict:
        kind, config = "vq", VQConfig.from_state_dict(state_dict).to_dict()
    else:
        raise ValueError(f"{source} is neither an LPD model nor a VQ tokenizer checkpoint")
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(destination), metadata={KIND_METADATA_KEY: kind, CONFIG_METADATA_KEY: json.dumps(config)})
    return destination


def check_pair(model: LPD, tokenizer: VQModel) -> None:
    """The tokenizer must speak the model's vocabulary."""
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"tokenizer/model mismatch: the model predicts {model.config.vocab_size} codes "
                         f"but the tokenizer has {tokenizer.vocab_size}; load the tokenizer the model "
                         f"was trained with")
