"""The LPD transformer: a decoder-only ViT over [class token] + image tokens in a generation order.

Parameter names and shapes match the published checkpoints, so their state dicts load as they are.

Two passes share the same blocks:
- `teacher_forced` (the training pass): every group's real tokens and position queries in one
  sequence, with the block mask that gives each query the context it would have at inference.
- `step` (inference): one forward per group through a static KV cache that the caller allocates
  once (see `KVCache`), writing the previous group's real tokens and reading the next group's
  queries. Cache writes go through slot indices and attention spans the whole cache under a mask,
  so a step's shapes depend only on its number of rows (the fast path pads and replays them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CheckpointError, SettingError

# Presets by width: (depth, heads). Head width is 64 in every published model.
PRESETS = {
    "lpd_l": dict(embed_dim=1024, depth=24, num_heads=16),
    "lpd_xl": dict(embed_dim=1280, depth=36, num_heads=20),
    "lpd_xxl": dict(embed_dim=1536, depth=48, num_heads=24),
}
HEADS_BY_WIDTH = {p["embed_dim"]: p["num_heads"] for p in PRESETS.values()}


@dataclass(frozen=True)
class LPDConfig:
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    grid_size: int = 16  # tokens per side: image size / VQ stride
    vocab_size: int = 16384
    num_classes: int = 1000
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-6

    @property
    def num_tokens(self) -> int:
        return self.grid_size * self.grid_size

    @classmethod
    def preset(cls, name: str, **overrides) -> "LPDConfig":
        if name not in PRESETS:
            raise SettingError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_state_dict(cls, state_dict: dict, num_heads: int | None = None) -> "LPDConfig":
        """Read width, depth, grid, vocabulary and classes from the weights; heads from the
        preset table by width unless given."""
        embed_dim = state_dict["pos_embed"].shape[-1]
        num_positions = state_dict["pos_embed"].shape[1] - 1
        grid_size = math.isqrt(num_positions)
        if grid_size * grid_size != num_positions:
            raise CheckpointError(f"pos_embed has {num_positions} image positions, not a square grid")
        depth = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks."))
        if num_heads is None:
            if embed_dim not in HEADS_BY_WIDTH:
                raise CheckpointError(
                    f"cannot tell the number of attention heads for width {embed_dim} (published "
                    f"widths: {sorted(HEADS_BY_WIDTH)}); pass num_heads explicitly")
            num_heads = HEADS_BY_WIDTH[embed_dim]
        mlp_hidden = state_dict["blocks.0.mlp.fc1.weight"].shape[0]
        return cls(
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, grid_size=grid_size,
            vocab_size=state_dict["token_emb.weight"].shape[0],
            num_classes=state_dict["class_emb.weight"].shape[0],
            mlp_ratio=mlp_hidden / embed_dim,
        )

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Keys and values for every layer, allocated once per generate call (or once per model and
    batch on the fast path, see `lpd_core.fast`).

    Shape per layer: (batch, heads, slots, head_dim). Slot 0 holds the class token, slot 1 + j the
    j-th token of the generation order; `spare` slots after those take the padding rows of
    fixed-shape steps and are never attended to.
    """

    def __init__(self, config: LPDConfig, batch: int, device, dtype, spare: int = 0):
        head_dim = config.embed_dim // config.num_heads
        self.slots = 1 + config.num_tokens + spare
        shape = (config.depth, batch, config.num_heads, self.slots, head_dim)
        # zeros, not empty: masked slots get weight 0, and 0 · NaN from uninitialised memory is NaN
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.slot_index = torch.arange(self.slots, device=device)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise SettingError(f"width {dim} is not divisible by {num_heads} heads; choose a number of heads that "
                               f"divides it")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def _split_heads(self, x: torch.Tensor):
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, dim // self.num_heads)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length, _ = x.shape
        return self.proj(x.transpose(1, 2).reshape(batch, length, -1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split_heads(x)
        return self._merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    def forward_cached(self, x, keys, values, slots: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Write row i's key/value at cache slot slots[i], then attend over the first mask.shape[1]
        cache slots (the mask rules out what each row must not see)."""
        q, k, v = self._split_heads(x)
        keys.index_copy_(2, slots, k)
        values.index_copy_(2, slots, v)
        span = mask.shape[1]
        return self._merge_heads(F.scaled_dot_product_attention(q, keys[:, :, :span], values[:, :, :span],
                                                                attn_mask=mask))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, config: LPDConfig):
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = Attention(dim, config.num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = MLP(dim, int(dim * config.mlp_ratio))

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))

    def forward_cached(self, x, keys, values, slots, mask):
        x = x + self.attn.forward_cached(self.norm1(x), keys, values, slots, mask)
        return x + self.mlp(self.norm2(x))


def group_starts(group_sizes) -> list[int]:
    """Cache slot where each group's tokens live: slot 0 is the class token, so group k starts
    at 1 + (tokens in groups before k). One more entry at the end (1 + N)."""
    starts = [1]
    for size in group_sizes:
        starts.append(starts[-1] + int(size))
    return starts


def teacher_forced_mask(group_sizes, device) -> torch.Tensor:
    """Boolean attention mask (True = may attend) for the teacher-forced sequence
    [class, real tokens of groups 0..T-2, queries of groups 0..T-1].

    Real tokens see the class token and real tokens of their own and earlier groups; queries of
    group k see the class token, real tokens of groups < k, and the queries of group k.
    """
    sizes = torch.as_tensor([int(s) for s in group_sizes], device=device)
    steps = len(sizes)
    # Each real slot carries the step from which it is visible; each query slot its own step.
    real_group = torch.cat([torch.zeros(1, dtype=torch.long, device=device),
                            torch.repeat_interleave(torch.arange(steps - 1, device=device), sizes[:-1])])
    query_group = torch.repeat_interleave(torch.arange(steps, device=device), sizes)
    # Real token of group g is visible from step g + 1 on; the class token from step 0.
    real_visible_from = torch.cat([real_group[:1], real_group[1:] + 1])
    n_real, n_query = real_group.numel(), query_group.numel()
    mask = torch.zeros(n_real + n_query, n_real + n_query, dtype=torch.bool, device=device)
    # real -> real: own group and earlier (class counts as group -1, visible to all)
    mask[:n_real, :n_real] = real_visible_from[None, :] <= real_visible_from[:, None]
    # query -> real: strictly earlier groups (and the class token)
    mask[n_real:, :n_real] = real_visible_from[None, :] <= query_group[:, None]
    # query -> query: same group
    mask[n_real:, n_real:] = query_group[None, :] == query_group[:, None]
    return mask


def step_rows(previous_sizes, query_size: int, start: int) -> tuple[list[int], list[int]]:
    """Cache slot and visibility of each input row of one decode step whose input is [real tokens
    of one or more groups, the next group's queries], laid out from cache slot `start` on.

    Returns (slots, visible_end): row i is written at slots[i] and sees slots < visible_end[i].
    Real tokens see the cache up to the end of their own group (block-causal, so several known
    groups can be fed in one pass exactly as if fed one step at a time); queries see everything up
    to the end of their own group.
    """
    visible_end, end = [], start
    for size in previous_sizes:
        end += int(size)
        visible_end += [end] * int(size)
    visible_end += [end + query_size] * query_size
    return list(range(start, end + query_size)), visible_end


class LPD(nn.Module):
    def __init__(self, config: LPDConfig):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.class_emb = nn.Embedding(config.num_classes, dim)
        self.token_emb = nn.Embedding(config.vocab_size, dim)
        self.fake_latent = nn.Parameter(torch.zeros(1, dim))  # the learned null class for guidance
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens + 1, dim))
        self.z_proj_ln = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, config.vocab_size, bias=False)
        # What a checkpoint says about itself; weights.load_model fills these from file metadata.
        self.class_names: list[str] | None = None  # None: ImageNet's, for 1000-class models
        self.generation_defaults = None  # settings.GenerationSettings, or None: published/plain ones
        self.tokenizer_name = "vq_ds16_c2i"  # the tokenizer to load with it

    def init_weights(self, generator: torch.Generator | None = None):
        """Initialisation used for training from scratch (random-weight models too)."""
        for p in (self.class_emb.weight, self.token_emb.weight, self.fake_latent, self.mask_token,
                  self.pos_embed):
            nn.init.normal_(p, std=0.02, generator=generator)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        return self

    # -- embeddings ---------------------------------------------------------------------------
    def condition(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Class embeddings (batch, dim); None means the null class for every sample. Float labels
        (batch, num_classes) are class mixes, weights summing to 1 per row (`lpd_core.blend.check_labels`
        makes them): the weighted mean of the embeddings."""
        if labels is None:
            return self.fake_latent.expand(batch, -1)
        if labels.is_floating_point():
            return (labels.float() @ self.class_emb.weight.float()).to(self.class_emb.weight.dtype)
        return self.class_emb(labels)

    def positions(self, orders: torch.Tensor) -> torch.Tensor:
        """Position embeddings in generation order with the class slot first: (B, 1 + N, dim)."""
        slots = torch.cat([torch.zeros_like(orders[:, :1]), orders + 1], dim=1)
        return self.pos_embed[0][slots]

    def queries(self, positions: torch.Tensor) -> torch.Tensor:
        return self.z_proj_ln(self.mask_token + positions)

    def real_tokens(self, embeddings: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.z_proj_ln(embeddings + positions)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(hidden))

    # -- passes -------------------------------------------------------------------------------
    def teacher_forced(self, tokens: torch.Tensor, labels: torch.Tensor | None, orders: torch.Tensor,
                       group_sizes) -> torch.Tensor:
        """Logits for every position at once, as the decode loop would see them.

        tokens: (B, N) raster order; orders: (B, N) generation orders; returns (B, N, vocab) where
        row j predicts tokens[b, orders[b, j]].
        """
        batch, num_tokens = tokens.shape
        last_group = int(group_sizes[-1])
        positions = self.positions(orders)
        ordered = torch.gather(tokens, 1, orders)
        real = torch.cat([self.condition(labels, batch)[:, None], self.token_emb(ordered)], dim=1)
        real = self.real_tokens(real, positions)[:, : 1 + num_tokens - last_group]
        x = torch.cat([real, self.queries(positions[:, 1:])], dim=1)
        mask = teacher_forced_mask(group_sizes, tokens.device)
        for block in self.blocks:
            x = block(x, mask)
        return self.logits(x[:, -num_tokens:])

    def step(self, content: torch.Tensor, positions: torch.Tensor, cache: KVCache, slots: torch.Tensor,
             visible_end: torch.Tensor, span: int | None = None) -> torch.Tensor:
        """One decode step over a block of rows (see `step_rows`): logits (B, L, vocab).

        content (B, L, dim): each row's embedding: a real token's (the class embedding in the class
        slot) or, for a position query, `mask_token`; positions (B, L, dim): their position
        embeddings. Row i writes its keys/values to cache slot slots[i] and attends to the slots
        < visible_end[i]. Attention reads the first `span` cache slots (default: all of them, so
        every shape is fixed by L and the step can be captured and replayed); a span that covers
        every visible slot gives the same result for less work.
        """
        x = self.real_tokens(content, positions)  # queries too: mask_token is their content
        span = cache.slots if span is None else span
        mask = cache.slot_index[None, :span] < visible_end[:, None]
        for layer, block in enumerate(self.blocks):
            x = block.forward_cached(x, cache.keys[layer], cache.values[layer], slots, mask)
        return self.logits(x)
