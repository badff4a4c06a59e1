import json
import os
import random
import re

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from convscope.errors import CheckpointError
from convscope.training import checkpoint
from convscope.training.checkpoint import (
    atomic_write_bytes,
    atomic_write_text,
    load_state_dict_file,
    load_training_state,
    load_weights,
    save_training_state,
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

    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
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


# ── training state ────────────────────────────────────────────────────────────────────────────────────────────────
def make_run(kind: str):
    model = small_net()
    if kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    return model, opt, sched


def train_step(model, opt, sched) -> float:
    # Every RNG feeds the weights: torch (data, dropout), numpy (input shift), python random (loss scale).
    x = torch.randn(8, 1, 8, 8) + float(np.random.rand())
    y = torch.randint(0, 3, (8,))
    model.train()
    loss = F.cross_entropy(model(x), y) * (1 + 0.1 * random.random())
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def draws():
    return torch.rand(3), np.random.rand(3), random.random()


def seed_all(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_resume_is_exact(tmp_path, kind):
    seed_all(0)
    model, opt, sched = make_run(kind)
    for _ in range(3):
        train_step(model, opt, sched)
    save_weights(tmp_path / "last.safetensors", model)
    save_training_state(tmp_path / "state", optimizer=opt, scheduler=sched, epoch=1, step=3, extra={"best": 0.5})
    losses = [train_step(model, opt, sched) for _ in range(2)]
    after = draws()

    seed_all(123)  # a different start everywhere: only the restore can make the runs agree
    model2, opt2, sched2 = make_run(kind)
    load_weights(tmp_path / "last.safetensors", model2)
    info = load_training_state(tmp_path / "state", optimizer=opt2, scheduler=sched2)
    assert info == {"epoch": 1, "step": 3, "best": 0.5}
    assert [train_step(model2, opt2, sched2) for _ in range(2)] == losses
    assert_same_state(model, model2)
    assert sched2.get_last_lr() == sched.get_last_lr()
    t, n, p = draws()
    assert torch.equal(t, after[0]) and np.array_equal(n, after[1]) and p == after[2]


def test_restored_optimizer_state_is_exact(tmp_path):
    seed_all(0)
    model, opt, sched = make_run("adamw")
    train_step(model, opt, sched)
    save_training_state(tmp_path, optimizer=opt, scheduler=sched, epoch=0, step=1, extra={"t": torch.arange(3)})
    _, opt2, sched2 = make_run("adamw")
    assert torch.equal(load_training_state(tmp_path, optimizer=opt2, scheduler=sched2)["t"], torch.arange(3))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]  # betas come back as a tuple, keys as ints
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k]), (i, k)


SCHEDULERS = {
    "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10),
    "lambda": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: 0.9**epoch),
    "constant": lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=0.5, total_iters=3),
    "onecycle": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10),
}


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_state_is_plain_json(tmp_path, name):
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = SCHEDULERS[name](opt)
    for _ in range(2):
        opt.step()
        sched.step()
    save_training_state(tmp_path, optimizer=opt, scheduler=sched, epoch=0, step=2, extra={})
    assert "function" not in (tmp_path / "state.json").read_text()
    opt2 = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
    sched2 = SCHEDULERS[name](opt2)
    load_training_state(tmp_path, optimizer=opt2, scheduler=sched2)
    assert sched2.state_dict() == sched.state_dict()
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_half_written_pair_is_detected(tmp_path, monkeypatch):
    seed_all(0)
    model, opt, sched = make_run("sgd")
    train_step(model, opt, sched)
    save_training_state(tmp_path, optimizer=opt, scheduler=sched, epoch=0, step=1, extra={})
    train_step(model, opt, sched)

    def crash(path, text):
        raise KeyboardInterrupt  # the process dies after state.safetensors, before state.json

    monkeypatch.setattr(checkpoint, "atomic_write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        save_training_state(tmp_path, optimizer=opt, scheduler=sched, epoch=0, step=2, extra={})
    with pytest.raises(CheckpointError, match=r"state\.safetensors: does not belong to .*state\.json"):
        load_training_state(tmp_path, optimizer=opt, scheduler=sched)


def test_missing_or_foreign_state_is_an_error(tmp_path):
    _, opt, sched = make_run("sgd")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "state.json")) + ": no such file"):
        load_training_state(tmp_path, optimizer=opt, scheduler=sched)
    save_training_state(tmp_path, optimizer=opt, scheduler=sched, epoch=0, step=0, extra={})
    doc = json.loads((tmp_path / "state.json").read_text())
    doc["format"] = "something-else"
    (tmp_path / "state.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"expected format"):
        load_training_state(tmp_path, optimizer=opt, scheduler=sched)
