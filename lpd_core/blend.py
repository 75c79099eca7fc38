"""Class mixes: conditioning on a weighted mix of class embeddings ("70% tiger, 30% golden retriever").

Every query of an LPD model attends to the class slot, so a mix is simply another vector in that
slot: the weighted mean of the classes' embeddings. `generate` (and everything built on it: editing,
variations, wide canvases) takes a `ClassMix`, a sequence of them (plain indices may be mixed in),
or a (batch, num_classes) weights tensor wherever it takes class labels; this module turns them
into checked weights (`check_labels`), which `LPD.condition` receives as data and turns into the
embedding. A plain index still takes the plain embedding lookup, and a mix whose
weight sits on one class gives exactly that class's embedding (the product with a one-hot row is
exact), so both ends of a sweep are plain generation, token for token.

Text form (the CLI's --blend, the nodes' class fields): "tiger:0.7, golden retriever:0.3";
classes by index or name as everywhere else (`classes.resolve_classes`), a part without a
weight counts 1, and weights are relative (normalised to sum 1). Several classes or mixes in a row
(a wide canvas's tiles) are separated by semicolons: "circle; ring:0.5, star:0.5; star".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .classes import check_class, resolve_classes
from .errors import SettingError
from .settings import check_number, whole_number


@dataclass(frozen=True)
class ClassMix:
    """(class index, weight) pairs; weights are relative and ≥ 0, at least one > 0."""
    parts: tuple[tuple[int, float], ...]

    def __post_init__(self):
        try:
            pairs = [tuple(part) for part in self.parts]
        except TypeError:
            pairs = None
        if pairs is None or any(len(pair) != 2 for pair in pairs):
            raise SettingError(f"a class mix is (class index, weight) pairs, e.g. ((3, 0.7), (5, 0.3)); got {self.parts!r}")
        parts = tuple((whole_number("a class index", label), check_number("a class weight", weight, 0.0))
                      for label, weight in pairs)
        if not parts:
            raise SettingError("a class mix needs at least one class (e.g. '3:0.7, 5:0.3')")
        if not any(weight > 0 for _, weight in parts):
            raise SettingError("a class mix needs at least one class with a weight above 0, got all weights 0")
        object.__setattr__(self, "parts", parts)

    @classmethod
    def between(cls, first: int, second: int, weight: float) -> "ClassMix":
        """`first` at 1 − weight and `second` at weight: weight 0 is `first`, 1 is `second`."""
        weight = check_number("the blend weight", weight, 0.0, 1.0)
        return cls(((first, 1.0 - weight), (second, weight)))

    def weights(self, num_classes: int) -> torch.Tensor:
        """(num_classes,) float32 weights summing to 1."""
        row = torch.zeros(num_classes, dtype=torch.float64)
        for label, weight in self.parts:
            row[check_class(label, num_classes)] += weight
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
    if not isinstance(text, str):
        raise SettingError(f"a class mix is text such as 'tiger:0.7, golden retriever:0.3', got {text!r}")
    parts = []
    for item in (piece.strip() for piece in text.split(",")):
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
    if not isinstance(text, str):
        raise SettingError(f"classes are text such as 'circle; ring:0.5, star:0.5; star', got {text!r}")
    parts = [part for part in text.split(";") if part.strip()]
    if not parts:
        raise SettingError(f"no class in {text!r}: write classes or mixes separated by ';', e.g. 'circle; star'")
    return [label_or_mix(parse_class_mix(part, model)) for part in parts]


def mix_weights(labels, num_classes: int, batch: int | None = None, what: str = "class labels") -> torch.Tensor:
    """Labels as (B, num_classes) float32 weights, rows summing to 1, checked as `check_labels` does: a
    class index becomes its one-hot row (whose embedding is exactly the class's own)."""
    checked = check_labels(labels, num_classes, batch, what)
    if checked is None:
        raise SettingError(f"{what} are needed here: the null class cannot be mixed")
    return checked if checked.is_floating_point() else torch.nn.functional.one_hot(checked, num_classes).float()


def check_labels(labels, num_classes: int, batch: int | None = None, what: str = "class labels") -> torch.Tensor | None:
    """What a generation is conditioned on, checked (SettingError with what to give), on the CPU:
    None (the null class: unconditional); class indices (an int, a sequence or an integer
    array/tensor of them) as a (B,) int64 tensor; or class mixes (a `ClassMix`, a sequence holding
    some, plain indices among them, or a float tensor of weights (num_classes,) or (B, num_classes))
    as (B, num_classes) float32 weights with rows summing to 1. With `batch`, one label serves every
    sample and otherwise there must be one per sample."""
    if labels is None:
        return None
    if _is_mix(labels):
        checked = _mix_weights(labels, num_classes)
    else:
        checked = _class_indices(labels, num_classes)
    if batch is not None and len(checked) != batch:
        if len(checked) != 1:
            raise SettingError(f"got {len(checked)} {what} for a batch of {batch}: give one label for every "
                               f"image, or one for all")
        checked = checked.expand(batch, *checked.shape[1:])
    return checked


def _is_mix(labels) -> bool:
    """Whether `labels` asks for mixes: a ClassMix, a sequence holding one, or a float weights tensor."""
    if isinstance(labels, ClassMix):
        return True
    if isinstance(labels, torch.Tensor):
        return labels.is_floating_point()
    return isinstance(labels, Sequence) and not isinstance(labels, str) and \
        any(isinstance(label, ClassMix) for label in labels)


_INDICES = ("class labels are class indices (an int, or one per image), ClassMix objects, or a float tensor of "
            "class weights (batch, number of classes)")


def _class_indices(labels, num_classes: int) -> torch.Tensor:
    if isinstance(labels, (str, bytes)):
        raise SettingError(f"{_INDICES}; got the text {labels!r} (names are resolved by "
                           f"lpd_core.classes.resolve_classes)")
    try:
        values = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise SettingError(f"{_INDICES}; got {labels!r}") from None
    if values.numel() == 0:
        raise SettingError("no class labels given: give a class index (or one per image), or None for "
                           "unconditional generation")
    if values.dtype == torch.bool or values.is_floating_point() or values.is_complex() or values.ndim > 1:
        raise SettingError(f"{_INDICES}; got {'a tensor' if isinstance(labels, torch.Tensor) else 'values'} of "
                           f"shape {tuple(values.shape)} and type {values.dtype}")
    values = values.reshape(-1).long()
    wrong = (values < 0) | (values >= num_classes)
    if wrong.any():
        check_class(int(values[wrong][0]), num_classes)
    return values


def _mix_weights(labels, num_classes: int) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        weights = labels.float().reshape(-1, labels.shape[-1]) if labels.ndim else labels.float().reshape(1, 1)
    else:
        mixes = [labels] if isinstance(labels, ClassMix) else list(labels)
        weights = torch.stack([(mix if isinstance(mix, ClassMix) else ClassMix(((mix, 1.0),))).weights(num_classes)
                               for mix in mixes])
    if weights.shape[1] != num_classes or weights.shape[0] == 0 or (isinstance(labels, torch.Tensor) and labels.ndim > 2):
        raise SettingError(f"class weights must have shape (batch, {num_classes}), one weight per class of this "
                           f"model; got shape {tuple(labels.shape) if isinstance(labels, torch.Tensor) else None}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise SettingError("class weights must be finite numbers ≥ 0")
    totals = weights.sum(dim=1, keepdim=True)
    if (totals <= 0).any():
        raise SettingError("every class mix needs at least one class with a weight above 0")
    return weights / totals
