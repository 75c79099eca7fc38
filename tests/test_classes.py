"""ImageNet-1k class names and class lookup, with real names."""

import pytest

from lpd_core.classes import class_label, class_names, class_synonyms, find_class, parse_classes


def test_class_list_is_the_standard_imagenet_order():
    names = class_names()
    assert len(names) == 1000
    assert (names[0], names[1], names[207], names[208], names[999]) == (
        "tench",
        "goldfish",
        "golden retriever",
        "Labrador retriever",
        "toilet tissue",
    )


def test_synonyms_and_label():
    assert class_synonyms(2)[:2] == ["great white shark", "white shark"]
    assert class_synonyms(999) == ["toilet tissue", "toilet paper", "bathroom tissue"]
    assert class_label(207) == "207: golden retriever"
    with pytest.raises(ValueError, match="0 to 999"):
        class_label(1000)


@pytest.mark.parametrize(
    "query, index",
    [
        (207, 207),
        ("207", 207),
        (" 1 ", 1),
        ("goldfish", 1),
        ("GOLDEN RETRIEVER", 207),
        ("golden_retriever", 207),
        ("great white shark", 2),
        ("white shark", 2),  # a synonym
        ("toilet paper", 999),
        ("crayfish", 124),  # display name of 124 beats the same synonym of 123 (spiny lobster)
        ("Labrador", 208),  # unique part of a name
    ],
)
def test_find_class(query, index):
    assert find_class(query) == index


def test_partial_name_matching_several_classes_lists_them():
    with pytest.raises(ValueError, match="ambiguous") as error:
        find_class("retriever")
    assert "207: golden retriever" in str(error.value)
    assert "208: Labrador retriever" in str(error.value)


def test_shared_display_name_is_ambiguous_and_shows_a_synonym():
    with pytest.raises(ValueError) as error:
        find_class("maillot")
    assert "638: maillot" in str(error.value) and "639: maillot (tank suit)" in str(error.value)


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="unknown class 'golden retreiver'") as error:
        find_class("golden retreiver")
    assert "207: golden retriever" in str(error.value)
    with pytest.raises(ValueError, match="unknown class 'zzzz'.*0 to 999"):
        find_class("zzzz")


@pytest.mark.parametrize("query", [-1, 1000, "1000", "-3"])
def test_index_out_of_range(query):
    with pytest.raises(ValueError, match="from 0 to 999"):
        find_class(query)


def test_range_follows_num_classes():
    assert find_class("9", num_classes=10) == 9
    with pytest.raises(ValueError, match="from 0 to 9"):
        find_class("golden retriever", num_classes=10)


def test_parse_classes():
    assert parse_classes("207, goldfish, 3") == [207, 1, 3]
    assert parse_classes("white shark,") == [2]
    with pytest.raises(ValueError, match="no class given"):
        parse_classes(" , ")
    with pytest.raises(ValueError, match="unknown class 'zzzz'"):
        parse_classes("207, zzzz")
