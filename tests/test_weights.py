import os

import pytest
import safetensors.torch
import torch
from torch import nn

from convscope import files
from convscope.errors import CheckpointError, OutputError
from convscope.files import atomic_write_bytes, atomic_write_text
from convscope.run import remove_run_temp_files
from convscope.weights import (
    load_state_dict_file,
    load_weights,
    save_weights,
)


def small_net() -> nn.Module:
    # 1×8×8 input → conv 4×6×6 → batchnorm (running stats are buffers) → dropout (uses the torch RNG) → 3 classes
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


# ── atomic writes ─────────────────────────────────────────────────────────────────────────────────────────────────
def test_atomic_write_replaces_content(tmp_path):
    path = tmp_path / "sub" / "notes.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["notes.txt"]


def test_failed_replace_leaves_old_file_and_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OutputError, match=r"weights\.bin: cannot write \(disk full\); nothing was changed"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["weights.bin"]


def test_failed_write_leaves_old_file_and_no_temp_files(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # the write itself raises, after the temp file exists
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["weights.bin"]


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS", "EACCES"])
def test_os_errors_on_write_are_one_line_naming_the_path(tmp_path, monkeypatch, errno_name):
    import errno

    path = tmp_path / "last.safetensors"
    path.write_bytes(b"old")
    code = getattr(errno, errno_name)

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(OutputError) as info:
        atomic_write_bytes(path, b"new")
    assert str(info.value) == f"{path}: cannot write ({os.strerror(code)}); nothing was changed"
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["last.safetensors"]


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"file/sub/a\.txt: cannot write \(Not a directory\)"):
        atomic_write_text(tmp_path / "file" / "sub" / "a.txt", "hello")


def test_an_atomic_write_never_replaces_a_pipe_or_a_folder(tmp_path):
    pipe, folder = tmp_path / "pipe", tmp_path / "folder"
    os.mkfifo(pipe)
    folder.mkdir()
    (folder / "inside.txt").write_text("kept")
    with pytest.raises(OutputError, match=r"pipe: is a named pipe \(FIFO\), not a file convscope may replace"):
        atomic_write_bytes(pipe, b"x")
    with pytest.raises(OutputError, match=r"folder: is a folder, not a file convscope may replace"):
        atomic_write_text(folder, "x")
    assert pipe.is_fifo() and (folder / "inside.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "pipe"]  # no temporary file left either


def test_temp_files_left_by_a_kill_are_found_and_removed_and_nothing_else(tmp_path):
    (tmp_path / "weights").mkdir()
    left = [tmp_path / ".checkpoint.safetensors.abc123_x.tmp", tmp_path / "weights" / ".last.safetensors.9zz_0000.tmp"]
    for p in left:
        p.write_bytes(b"half")
    (tmp_path / "keep.tmp").write_text("a user's file, not ours")
    # A temporary file of another program's, named as tempfile names them, and one of ours in a folder that is not
    # the run's: neither is the run's to remove.
    theirs = [tmp_path / ".notes.txt.abcd1234.tmp", tmp_path / "data" / ".config.yaml.abcd1234.tmp"]
    theirs[1].parent.mkdir()
    for p in theirs:
        p.write_text("someone else's")
    assert sorted(remove_run_temp_files(tmp_path)) == sorted(left)
    assert not any(p.exists() for p in left) and (tmp_path / "keep.tmp").exists()
    assert all(p.exists() for p in theirs)


# ── weights ───────────────────────────────────────────────────────────────────────────────────────────────────────
def test_weights_round_trip_exactly_with_buffers_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = small_net()
    model.train()
    model(torch.randn(16, 1, 8, 8))  # moves the batchnorm running stats and counter away from their defaults
    path = tmp_path / "w.safetensors"
    save_weights(path, model, metadata={"spec": "cifar-3conv"})

    torch.manual_seed(1)
    fresh = small_net()
    assert load_weights(path, fresh) == {"spec": "cifar-3conv"}
    assert_same_state(model, fresh)
    assert int(fresh[1].num_batches_tracked) == 1


def test_shared_storage_is_saved(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    model[1].weight = model[0].weight  # tied weights: safetensors refuses shared storage unless cloned
    save_weights(tmp_path / "tied.safetensors", model)
    fresh = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    load_weights(tmp_path / "tied.safetensors", fresh)
    assert torch.equal(fresh[1].weight, model[0].weight)


class FileNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, bias=False)
        self.conv9 = nn.Conv2d(16, 16, 3, bias=False)


class ModelNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, bias=False)
        self.conv3 = nn.Conv2d(32, 32, 3)


def test_mismatch_lists_missing_unexpected_and_shapes_and_leaves_model_alone(tmp_path):
    path = tmp_path / "best.safetensors"
    save_weights(path, FileNet())
    model = ModelNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = (
        f"{path}: does not match the model: missing conv3.weight, conv3.bias; unexpected conv9.weight; "
        "conv1.weight is 16×3×3×3 in the file, 32×3×3×3 in the model"
    )
    with pytest.raises(CheckpointError) as info:
        load_weights(path, model)
    assert str(info.value) == expected
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


def test_dtype_mismatch_is_named(tmp_path):
    path = tmp_path / "half.safetensors"
    save_weights(path, nn.Linear(2, 2).half())
    with pytest.raises(CheckpointError, match=r"weight is float16 in the file, float32 in the model"):
        load_weights(path, nn.Linear(2, 2))


def test_missing_and_truncated_files_are_checkpoint_errors(tmp_path):
    path = tmp_path / "w.safetensors"
    with pytest.raises(CheckpointError, match=r"w\.safetensors: no such file"):
        load_weights(path, small_net())
    save_weights(path, small_net())
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"w\.safetensors: not a readable safetensors file"):
        load_weights(path, small_net())


def test_one_flipped_byte_in_tensor_data_fails_the_checksum(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, small_net())
    data = bytearray(path.read_bytes())
    data_start = 8 + int.from_bytes(data[:8], "little")
    data[data_start + 5] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    safetensors.torch.load(bytes(data))  # safetensors alone does not notice
    with pytest.raises(CheckpointError, match=r"contents do not match their checksum \(file damaged or edited\)"):
        load_weights(path, small_net())


# ── user .pt files ────────────────────────────────────────────────────────────────────────────────────────────────
RAN: list[str] = []


def _record(what):
    RAN.append(what)
    return what


class Reducer:
    def __reduce__(self):
        return (_record, ("__reduce__ ran",))  # unpickling would call _record


class Stateful:
    def __init__(self):
        self.x = 1

    def __setstate__(self, state):
        RAN.append("__setstate__ ran")
        self.__dict__.update(state)


@pytest.mark.parametrize("make", [Reducer, Stateful])
def test_pickled_custom_class_is_refused_without_running_it(tmp_path, make):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": make()}, path)
    RAN.clear()
    with pytest.raises(CheckpointError, match=r"evil\.pt: .*only plain state dicts"):
        load_state_dict_file(path)
    assert RAN == []


def test_plain_state_dict_pt_loads(tmp_path):
    model = small_net()
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    loaded = load_state_dict_file(tmp_path / "plain.pth")
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    save_weights(tmp_path / "w.safetensors", model)
    assert set(load_state_dict_file(tmp_path / "w.safetensors")) == set(model.state_dict())


def test_garbled_pt_is_refused_without_advising_weights_only_false(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"junk\.pt: cannot be read as a PyTorch state dict") as info:
        load_state_dict_file(tmp_path / "junk.pt")
    assert "weights_only" not in str(info.value)


def test_pt_that_is_not_a_state_dict_is_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 3}, tmp_path / "full.pt")
    with pytest.raises(CheckpointError, match=r"expected a state dict mapping names to tensors; found keys"):
        load_state_dict_file(tmp_path / "full.pt")
