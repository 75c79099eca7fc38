"""ImageNet-1k class names, and turning what a user types into a class index.

The LPD checkpoints are class-conditional on the 1000 ImageNet-1k classes, in the standard index
order (0 = tench, 207 = golden retriever, 999 = toilet tissue). Each class has several WordNet
lemmas; the first one is its display name, the others are synonyms a user may type instead.
The list ships as package data (`data/imagenet_classes.json`, a list of name lists, taken from
timm's `imagenet_synsets.txt` + `imagenet_synset_to_lemma.txt`).

A few display names are shared by two classes (134 and 517 are both "crane": the bird and the
machine; "cardigan" and "maillot" also come twice), so an index is the only unambiguous way to
name those; `find_class` says so when it happens.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from pathlib import Path

from .errors import SettingError
from .settings import whole_number

IMAGENET_NUM_CLASSES = 1000  # the published models' classes: ImageNet-1k
_CLASSES_FILE = Path(__file__).with_name("data") / "imagenet_classes.json"
_MAX_LISTED_CANDIDATES = 8
_INTEGER = re.compile(r"[+-]?\d+")


@functools.cache
def _class_name_lists() -> tuple[tuple[str, ...], ...]:
    with open(_CLASSES_FILE, encoding="utf-8") as f:
        return tuple(tuple(names) for names in json.load(f))


def _normalise(name: str) -> str:
    # Users type "Golden_Retriever" or "golden  retriever" as often as the canonical spelling.
    return " ".join(name.replace("_", " ").split()).casefold()


@functools.cache
def _normalised_names() -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(_normalise(name) for name in names) for names in _class_name_lists())


def class_names() -> list[str]:
    """Display names of the ImageNet classes, by index (a new list each call; the file is read once)."""
    return [names[0] for names in _class_name_lists()]


def check_class(index, num_classes: int) -> int:
    """A class index of a model with `num_classes` classes: a whole number from 0 to num_classes − 1.
    The one class-range rule (names, indices, mixes, generate's labels)."""
    index = whole_number("a class index", index)
    if not 0 <= index < num_classes:
        raise SettingError(f"class index {index} is out of range: this model has {num_classes} classes, so use "
                           f"an index from 0 to {num_classes - 1}")
    return index


def class_synonyms(index: int) -> list[str]:
    """All names of class `index`: its display name first, then its synonyms."""
    names = _class_name_lists()
    return list(names[check_class(index, len(names))])


def class_label(index: int) -> str:
    """The class as a user sees it in a list, e.g. "207: golden retriever"."""
    return f"{index}: {class_synonyms(index)[0]}"


def _describe(indices: list[int], name_lists) -> str:
    """Labels of up to _MAX_LISTED_CANDIDATES classes; a synonym is added where two share a display name."""
    display_names = [_normalise(names[0]) for names in name_lists]
    shown = []
    for index in indices[:_MAX_LISTED_CANDIDATES]:
        label = f"{index}: {name_lists[index][0]}"
        synonyms = list(name_lists[index][1:])
        if display_names.count(display_names[index]) > 1 and synonyms:
            label += f" ({synonyms[0]})"
        shown.append(label)
    if len(indices) > _MAX_LISTED_CANDIDATES:
        shown.append(f"... {len(indices) - _MAX_LISTED_CANDIDATES} more")
    return ", ".join(shown)


def _match_name(query: str, names) -> list[int]:
    """Indices of the classes `query` names, best tier only: display name, then any synonym, then substring."""
    by_display_name = [index for index, names_of_class in enumerate(names) if names_of_class[0] == query]
    if by_display_name:
        return by_display_name
    by_synonym = [index for index, names_of_class in enumerate(names) if query in names_of_class]
    if by_synonym:
        return by_synonym
    return [index for index, names_of_class in enumerate(names) if any(query in name for name in names_of_class)]


def _close_matches(query: str, names) -> list[int]:
    """Indices of classes with a name spelled like `query`, most similar first."""
    indices_by_name: dict[str, list[int]] = {}
    for index, names_of_class in enumerate(names):
        for name in names_of_class:
            indices_by_name.setdefault(name, []).append(index)
    close = difflib.get_close_matches(query, indices_by_name, n=_MAX_LISTED_CANDIDATES, cutoff=0.6)
    return list(dict.fromkeys(index for name in close for index in indices_by_name[name]))


def _how_to_name(num_classes: int, name_lists) -> str:
    return f"use an index from 0 to {num_classes - 1} or a class name such as '{name_lists[min(207, num_classes - 1)][0]}'"


def find_class(query: str | int, num_classes: int = IMAGENET_NUM_CLASSES, names=None) -> int:
    """The class index for an index (int or digit string) or a class name.

    `names` lists each class's names (display name first) for models with classes of their own;
    by default ImageNet's. Names are matched case-insensitively: an exact display name wins, then
    an exact synonym, then a part of a name ("retriever") if it fits one class only. Raises
    SettingError (a ValueError), listing candidates, when the query is out of range, ambiguous or unknown.
    """
    name_lists = _class_name_lists() if names is None else tuple(tuple(n) for n in names)
    normalised = _normalised_names() if names is None else tuple(tuple(map(_normalise, n)) for n in name_lists)
    if not isinstance(query, str):  # an index (int, numpy integer): anything else is refused with words
        return check_class(query, num_classes)
    text = query.strip()
    if _INTEGER.fullmatch(text):
        return check_class(int(text), num_classes)
    wanted = _normalise(text)
    if not wanted:
        raise SettingError(f"no class given: {_how_to_name(num_classes, name_lists)}")

    found = _match_name(wanted, normalised)
    if len(found) == 1:
        return check_class(found[0], num_classes)
    if found:
        raise SettingError(
            f"class name '{text}' is ambiguous; it matches {_describe(found, name_lists)}. Give the index or more of the name."
        )

    close = _close_matches(wanted, normalised)
    hint = f"did you mean {_describe(close, name_lists)}?" if close else f"{_how_to_name(num_classes, name_lists)}."
    raise SettingError(f"unknown class '{text}': {hint}")


def parse_classes(text: str, num_classes: int = IMAGENET_NUM_CLASSES, names=None) -> list[int]:
    """Class indices for a comma-separated list of indices and names, e.g. "207, goldfish, 3" -> [207, 1, 3]."""
    queries = [item for item in (part.strip() for part in text.split(",")) if item]
    if not queries:
        name_lists = _class_name_lists() if names is None else names
        raise SettingError(f"no class given: {_how_to_name(num_classes, name_lists)}; separate several with commas")
    return [find_class(item, num_classes, names) for item in queries]


def resolve_classes(text: str, model) -> list[int]:
    """Class indices for a comma-separated list of indices and names, checked against the model's
    classes: its own names (stored in its file), ImageNet's for a 1000-class model, else indices only."""
    if not isinstance(text, str):
        raise SettingError(f"classes must be text (indices or names, comma-separated), got {text!r}")
    num_classes = model.config.num_classes
    if model.class_names:
        return parse_classes(text, num_classes, names=[[name] for name in model.class_names])
    if num_classes == IMAGENET_NUM_CLASSES:
        return parse_classes(text, num_classes)
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or not all(_INTEGER.fullmatch(item) for item in items):
        raise SettingError(f"this model's classes have no names: give class indices from 0 to {num_classes - 1}")
    return [find_class(int(item), num_classes) for item in items]
