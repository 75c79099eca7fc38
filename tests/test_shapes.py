import numpy as np
import pytest

from training import shapes
from training.shapes import SHAPE_CLASSES, dataset, draw


def test_classes_are_named_and_many():
    assert len(SHAPE_CLASSES) >= 10
    assert len(set(SHAPE_CLASSES)) == len(SHAPE_CLASSES)
    assert shapes.class_index("star") == SHAPE_CLASSES.index("star")
    assert shapes.class_index("Horizontal_Stripes") == SHAPE_CLASSES.index("horizontal stripes")
    with pytest.raises(ValueError, match="unknown shape class"):
        shapes.class_index("hexagon")
    with pytest.raises(ValueError, match="out of range"):
        shapes.class_index(len(SHAPE_CLASSES))


def test_draw_is_deterministic_and_in_range():
    for index in range(len(SHAPE_CLASSES)):
        image = draw(index, 7)
        assert image.shape == (32, 32, 3) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        np.testing.assert_array_equal(image, draw(index, seed=7))
        np.testing.assert_array_equal(image, draw(SHAPE_CLASSES[index], np.random.default_rng(7)))
        assert not np.array_equal(image, draw(index, 8))
        # something is drawn: the image is not one flat colour
        assert image.reshape(-1, 3).std(axis=0).max() > 0.05
    assert draw(0, 1, size=48).shape == (48, 48, 3)


def test_generator_is_advanced():
    rng = np.random.default_rng(3)
    first, second = draw(0, rng), draw(0, rng)
    assert not np.array_equal(first, second)


def test_dataset_is_deterministic_and_balanced():
    images, labels = dataset(200, seed=5)
    assert images.shape == (200, 32, 32, 3) and images.dtype == np.float32
    assert labels.shape == (200,) and labels.dtype == np.int64
    counts = np.bincount(labels, minlength=len(SHAPE_CLASSES))
    assert counts.min() == counts.max() == 200 // len(SHAPE_CLASSES)
    again, again_labels = dataset(200, seed=5)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    # a prefix of a larger set is the smaller set; another seed gives other images
    prefix, _ = dataset(50, seed=5)
    np.testing.assert_array_equal(prefix, images[:50])
    other, _ = dataset(50, seed=6)
    assert not np.array_equal(other, prefix)
    # unbalanced sizes differ by at most one image per class
    _, labels = dataset(23, seed=0)
    counts = np.bincount(labels, minlength=len(SHAPE_CLASSES))
    assert counts.max() - counts.min() <= 1


def test_images_of_one_class_vary():
    images, labels = dataset(100, seed=0)
    for c in range(len(SHAPE_CLASSES)):
        members = images[labels == c]
        # position, size and colours vary: no two images of a class are the same
        flat = members.reshape(len(members), -1)
        assert len(np.unique(flat, axis=0)) == len(members)

