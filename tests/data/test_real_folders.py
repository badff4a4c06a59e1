"""The real photo folders of ../shared/data (skipped where missing): CIFAR-10 as JPEGs, cats vs dogs."""

import numpy as np
from helpers import shared_data
from PIL import Image

from convscope.data.cifar import load_cifar
from convscope.data.folder import load_folder


def _first(folder, split: str, classes: list[str], count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` JPEGs of each class of folder/split, decoded as they are stored: uint8 N×32×32×3, labels."""
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / split / name).iterdir())[:count]:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(label)
    return np.stack(images), np.array(labels)


def test_a_cifar_binary_made_from_the_jpeg_folder_reads_back_exactly(tmp_path):
    # The official binary files cannot be fetched here: the reader is checked on a binary written from the folder
    # (label byte, then the R, G and B planes, row-major: the layout of data_batch_N.bin).
    folder = shared_data("cifar10-jpg")
    classes = sorted(p.name for p in (folder / "train").iterdir())
    out = tmp_path / "cifar-10-batches-bin"
    out.mkdir()
    batches = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
    parts = {}
    for split, names in batches.items():
        images, labels = parts[split] = _first(folder, split, classes, 5 if split == "train" else 3)
        planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # N×(3·32·32): R, G, B planes
        records = np.concatenate([labels[:, None].astype(np.uint8), planes], axis=1)
        for name, chunk in zip(names, np.array_split(records, len(names)), strict=True):
            (out / name).write_bytes(chunk.tobytes())
    (out / "batches.meta.txt").write_text("\n".join(classes) + "\n\n")
    data = load_cifar(tmp_path, 10)
    assert data.classes == tuple(classes)
    np.testing.assert_array_equal(data.train.images, parts["train"][0])
    np.testing.assert_array_equal(data.train.labels, parts["train"][1])
    np.testing.assert_array_equal(data.test.images, parts["test"][0])
    np.testing.assert_array_equal(data.test.labels, parts["test"][1])


def test_cats_vs_dogs_is_measured_on_its_1000_validation_images():
    # The TensorFlow tutorial's layout: train/{cats,dogs} (1,000 each) and validation/{cats,dogs} (500 each), no
    # test/. Test accuracy must be measured on validation/ (what the tutorial reports), validation from train/.
    folder = shared_data("cats_and_dogs_filtered")
    data = load_folder(folder, (32, 32), 3, val_fraction=0.1, seed=0)
    assert data.classes == ("cats", "dogs")
    assert len(data.test) == 1000 and np.bincount(data.test.labels).tolist() == [500, 500]
    assert len(data.train) + len(data.val) == 2000 and len(data.val) == 200
