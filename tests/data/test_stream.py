"""Image folders streamed from disk (data/stream.py): the same images, labels and splits as the in-memory loader."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convscope import DataError
from convscope.data.dataset import per_class_subset, seeded_split
from convscope.data.folder import load_folder
from convscope.data.load import load_dataset
from convscope.data.stream import FileSplit, default_workers, memory_budget, stream_batches
from convscope.errors import ConfigError
from convscope.memory import parse_bytes

SIZE = (16, 12)  # H, W the images are fitted to
CLASSES = ("cat", "dog", "owl")


def make_folder(root, per_class=13, split_dirs=()):
    """root/<class>/<i>.jpg|png (or root/<split>/<class>/… for each of split_dirs): noisy RGB images of varying sizes,
    so that decoding, resizing and JPEG all show in the pixels. 3 × 13 = 39 images by default."""
    rng = np.random.default_rng(0)
    for top in split_dirs or ("",):
        for c, name in enumerate(CLASSES):
            (root / top / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(SIZE[0] + 2 * i, SIZE[1] + 3 * i, 3), dtype=np.uint8)
                pixels[..., c] //= 2  # a little class signal, and no two classes alike
                Image.fromarray(pixels).save(root / top / name / f"{i:02d}.{'jpg' if i % 2 else 'png'}")
    return root


def as_batch(images):
    """uint8 N×H×W×C array -> the N×C×H×W tensor stream_batches gives."""
    return torch.from_numpy(images).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("stream") / "pets")


@pytest.fixture(scope="module")
def both(folder):
    """(in memory, streamed) of the same folder."""
    return load_folder(folder, SIZE, 3, seed=3), load_folder(folder, SIZE, 3, seed=3, memory_budget=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_the_in_memory_images_in_the_given_order(both, workers):
    memory, streamed = both
    order = torch.randperm(len(memory.train), generator=torch.Generator().manual_seed(7))
    batches = list(order.split(5))  # the last batch is shorter
    batches[1] = batches[1].numpy()  # arrays work as well as tensors
    got = list(stream_batches(streamed.train, batches, workers=workers))
    assert len(got) == len(batches)
    for index, batch in zip(batches, got, strict=True):
        assert batch.dtype == torch.uint8 and batch.shape == (len(index), 3, *SIZE)
        assert batch.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(batch, as_batch(memory.train.images[np.asarray(index)]))


@pytest.mark.parametrize("layout", [(), ("train", "test")])
def test_past_the_budget_the_splits_are_file_lists_with_the_same_labels(tmp_path, layout, caplog):
    root = make_folder(tmp_path / "pets", per_class=6 if layout else 13, split_dirs=layout)
    memory = load_folder(root, SIZE, 3, seed=1)
    with caplog.at_level(logging.INFO, logger="convscope.data.folder"):
        streamed = load_folder(root, SIZE, 3, seed=1, memory_budget=1000)  # 39 × 16×12×3 bytes is more
    assert "KiB decoded) exceed the memory budget of 1000 B: streaming them from disk with" in caplog.text
    assert (streamed.name, streamed.classes, streamed.source) == (memory.name, memory.classes, memory.source)
    assert streamed.image_shape == memory.image_shape == (*SIZE, 3) and streamed.skipped == ()
    for name in ("train", "val", "test"):
        files, arrays = getattr(streamed, name), getattr(memory, name)
        assert isinstance(files, FileSplit) and files.shape == (*SIZE, 3)
        assert np.array_equal(files.labels, arrays.labels) and files.labels.dtype == np.int64
        assert np.array_equal(files.load().images, arrays.images)
    # Within the budget, nothing changes.
    assert not isinstance(load_folder(root, SIZE, 3, seed=1, memory_budget=10**9).train, FileSplit)


def test_take_sample_load_and_nbytes_agree_with_the_arrays(both):
    memory, streamed = both
    files, arrays = streamed.train, memory.train
    assert len(files) == len(arrays) and files.nbytes == arrays.images.nbytes
    index = np.array([4, 0, 7])
    part = files.take(index)
    assert isinstance(part, FileSplit) and part.paths == tuple(files.paths[i] for i in index)
    assert np.array_equal(part.load().images, arrays.images[index])
    mask = arrays.labels == 1
    assert np.array_equal(files.take(mask).load().images, arrays.take(mask).images)

    sample = files.sample(6, seed=5)
    assert sample.shape == (6, *SIZE, 3) and sample.dtype == np.uint8
    found = [int(np.flatnonzero((arrays.images == image).all(axis=(1, 2, 3)))[0]) for image in sample]
    assert len(set(found)) == 6 and found == sorted(found)  # distinct images, in file order
    assert np.array_equal(files.sample(6, seed=5), sample) and not np.array_equal(files.sample(6, seed=6), sample)
    assert len(files.sample(10_000, seed=0)) == len(files)


def test_the_split_helpers_work_on_file_splits(both):
    memory, streamed = both
    rest, held = seeded_split(streamed.train, 0.3, seed=2)
    rest_arrays, held_arrays = seeded_split(memory.train, 0.3, seed=2)
    assert isinstance(held, FileSplit) and np.array_equal(held.load().images, held_arrays.images)
    assert np.array_equal(rest.labels, rest_arrays.labels)
    subset = per_class_subset(streamed.train, 2, seed=0)
    assert np.array_equal(subset.load().images, per_class_subset(memory.train, 2, seed=0).images)


def test_load_dataset_passes_the_budget_on(folder):
    data = load_dataset(str(folder), None, (*SIZE, 3), seed=0, memory_budget=0)
    assert isinstance(data.train, FileSplit) and isinstance(data.test, FileSplit)
    assert not isinstance(load_dataset(str(folder), None, (*SIZE, 3), seed=0).train, FileSplit)


def test_files_whose_header_does_not_read_are_left_out_as_in_memory(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "notes.png").write_text("not a picture\n")
    memory = load_folder(root, SIZE, 3)
    streamed = load_folder(root, SIZE, 3, memory_budget=0)
    assert sorted(streamed.skipped) == sorted(memory.skipped) and len(streamed.skipped) == 2
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(streamed, name).labels, getattr(memory, name).labels)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_file_gone_or_truncated_after_listing_is_a_one_line_error_naming_it(tmp_path, workers):
    streamed = load_folder(make_folder(tmp_path / "pets"), SIZE, 3, memory_budget=0)
    train = streamed.train
    jpeg = next(i for i, path in enumerate(train.paths) if path.endswith(".jpg"))
    gone = next(i for i in range(len(train)) if i != jpeg)
    data = Path(train.paths[jpeg]).read_bytes()
    Path(train.paths[jpeg]).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        list(stream_batches(train, [np.arange(len(train))], workers=workers))
    assert train.paths[jpeg] in str(err.value) and "truncated" in str(err.value) and "\n" not in str(err.value)

    os.remove(train.paths[gone])
    with pytest.raises(DataError, match="no such image file") as err:
        list(stream_batches(train, [[gone]], workers=workers))
    assert str(err.value).startswith(train.paths[gone] + ": ") and "\n" not in str(err.value)
    with pytest.raises(DataError, match="no such image file"):
        train.take([gone]).load()


def test_batches_are_checked(both):
    files = both[1].train
    (empty,) = stream_batches(files, [torch.tensor([], dtype=torch.int64)], workers=0)
    assert empty.shape == (0, 3, *SIZE)
    for bad in ([len(files)], [-1], [0.5]):
        with pytest.raises(IndexError, match="1-D integer indices"):
            list(stream_batches(files, [np.array(bad)], workers=0))


def test_memory_budget_reads_sizes_as_the_config_does():
    assert memory_budget("0") == 0 and memory_budget(None) > 0
    for text in ("6GiB", "500MB", "1.5 gb", "12k", "7", " 2 TiB "):
        assert memory_budget(text) == parse_bytes(text)
    with pytest.raises(ConfigError, match="cache_limit"):
        memory_budget("lots")


def test_default_workers_leaves_a_core_to_training():
    cores = len(os.sched_getaffinity(0))
    assert default_workers() == min(4, max(1, cores - 1))
