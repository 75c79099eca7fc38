"""Class mixes: conditioning on a weighted mix of class embeddings ("70% tiger, 30% golden retriever").

Every query of an LPD model attends to the class slot, so a mix is simply another vector in that
slot: the weighted mean of the classes' embeddings. `generate` (and everything built on it: editing,
variations, wide canvases) takes a `ClassMix`, a sequence of them (plain indices may be mixed in),
or a (batch, num_classes) weights tensor wherever it takes class labels; `LPD.condition` turns the
weights into the embedding. A plain index still takes the plain embedding lookup, and a mix whose
weight sits on one class gives exactly that class's embedding (the product with a one-hot row is
exact), so both ends of a sweep are plain generation, token for token.

Text form (the CLI's --blend, the nodes' class fields): "tiger:0.7, golden retriever:0.3";
classes by index or name as everywhere else (`checkpoints.resolve_classes`), a part without a
weight counts 1, and weights are relative (normalised to sum 1). Several classes or mixes in a row
(a wide canvas's tiles) are separated by semicolons: "circle; ring:0.5, star:0.5; star".
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import SettingError


@dataclass(frozen=True)
class ClassMix:
    """(class index, weight) pairs; weights are relative and ≥ 0, at least one > 0."""
    parts: tuple[tuple[int, float], ...]

    def __post_init__(self):
        parts = tuple((int(label), float(weight)) for label, weight in self.parts)
        if not parts:
            raise SettingError("a class mix needs at least one class (e.g. '3:0.7, 5:0.3')")
        for label, weight in parts:
            if not math.isfinite(weight) or weight < 0:
                raise SettingError(f"class weights must be finite numbers ≥ 0, got {weight:g} for class {label}")
        if not any(weight > 0 for _, weight in parts):
            raise SettingError("a class mix needs at least one class with a weight above 0, got all weights 0")
        object.__setattr__(self, "parts", parts)

    @classmethod
    def between(cls, first: int, second: int, weight: float) -> "ClassMix":
        """`first` at 1 − weight and `second` at weight: weight 0 is `first`, 1 is `second`."""
        if not 0 <= weight <= 1:
            raise SettingError(f"the blend weight must be between 0 and 1, got {weight}")
        return cls(((first, 1.0 - weight), (second, weight)))

    def weights(self, num_classes: int) -> torch.Tensor:
        """(num_classes,) float32 weights summing to 1."""
        row = torch.zeros(num_classes, dtype=torch.float64)
        for label, weight in self.parts:
            if not 0 <= label < num_classes:
                raise SettingError(f"class index {label} in the mix is out of range: this model has {num_classes} "
                                   f"classes, so use 0..{num_classes - 1}")
            row[label] += weight
        return (row / row.sum()).float()

    def __str__(self) -> str:
        total = sum(weight for _, weight in self.parts)
        return " + ".join(f"{weight / total:.2g}×{label}" for label, weight in self.parts if weight > 0)


def label_or_mix(mix: ClassMix) -> int | ClassMix:
    """A mix of one class as that plain class index (what callers that predate mixes understand)."""
    classes = {label for label, weight in mix.parts if weight > 0}
    return classes.pop() if len(classes) == 1 else mix


def parse_class_mix(text: str, model) -> ClassMix:
    """A mix from text: "tiger:0.7, golden retriever:0.3", "3:1, 5:2" or a single class ("star")."""
    from .checkpoints import resolve_classes

    parts = []
    for item in (piece.strip() for piece in str(text).split(",")):
        if not item:
            continue
        name, colon, weight = item.rpartition(":")
        if not colon:
            name, weight = item, "1"
        try:
            value = float(weight)
        except ValueError:
            raise SettingError(f"the weight of {name.strip()!r} in {text!r} must be a number, got {weight.strip()!r} "
                               f"(write classes as 'name:weight, name:weight', e.g. 'tiger:0.7, golden retriever:0.3')"
                               ) from None
        parts.append((resolve_classes(name, model)[0], value))
    if not parts:
        raise SettingError(f"no class in {text!r}: write one class, or a mix like 'tiger:0.7, golden retriever:0.3'")
    return ClassMix(tuple(parts))


def parse_class_mixes(text: str, model) -> list:
    """Classes or mixes separated by semicolons, in order: each a class index, or a `ClassMix` when
    it mixes several ("circle; ring:0.5, star:0.5; star" → [0, mix, 9])."""
    parts = [part for part in str(text).split(";") if part.strip()]
    if not parts:
        raise SettingError(f"no class in {text!r}: write classes or mixes separated by ';', e.g. 'circle; star'")
    return [label_or_mix(parse_class_mix(part, model)) for part in parts]


def is_class_mix(labels) -> bool:
    """Whether `labels` asks for mixes: a ClassMix, a sequence holding one, or a float weights tensor."""
    if isinstance(labels, ClassMix):
        return True
    if isinstance(labels, torch.Tensor):
        return labels.is_floating_point()
    return isinstance(labels, Sequence) and any(isinstance(label, ClassMix) for label in labels)


def class_weights(labels, num_classes: int, batch: int | None, device) -> torch.Tensor:
    """(batch, num_classes) float32 weights, rows summing to 1, from mixes (and plain indices among
    them, or one plain index) or a weights tensor ((num_classes,) or (B, num_classes)); a single mix
    serves every sample."""
    if isinstance(labels, torch.Tensor):
        weights = labels.float().reshape(-1, labels.shape[-1]) if labels.ndim else labels.float().reshape(1, 1)
    else:
        mixes = [labels] if isinstance(labels, (ClassMix, numbers.Integral)) else list(labels)
        weights = torch.stack([(mix if isinstance(mix, ClassMix) else ClassMix(((mix, 1.0),))).weights(num_classes)
                               for mix in mixes])
    weights = normalised_weights(weights, num_classes)
    if batch is not None and weights.shape[0] == 1:
        weights = weights.expand(batch, -1)
    return weights.to(device)


def normalised_weights(weights: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Check a (B, num_classes) weights tensor and scale its rows to sum 1 (SettingError if unusable)."""
    if weights.ndim != 2 or weights.shape[1] != num_classes:
        raise SettingError(f"class weights must have shape (batch, {num_classes}), one weight per class of this "
                           f"model; got shape {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise SettingError("class weights must be finite numbers ≥ 0")
    totals = weights.sum(dim=1, keepdim=True)
    if (totals <= 0).any():
        raise SettingError("every class mix needs at least one class with a weight above 0")
    return weights / totals
