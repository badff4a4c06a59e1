"""The training checkpoint: one file that restores a run exactly, and refuses damaged or edited contents."""

import hashlib
import json
import random

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from convscope.errors import CheckpointError
from convscope.training.checkpoint_file import DOC_KEY, read_checkpoint, restore, save_checkpoint
from convscope.weights import read_safetensors


def small_net() -> nn.Module:
    # 1×8×8 input → conv 4×6×6 → batchnorm (running stats are buffers) → dropout (uses the torch RNG) → 3 classes
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )


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


def seed_all(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def save(path, model, opt, sched, **kw):
    settings = {"epoch": 1, "step": 3, "extra": {"best": 0.5}} | kw
    save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, **settings)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_resume_is_exact(tmp_path, kind):
    seed_all(0)
    model, opt, sched = make_run(kind)
    for _ in range(3):
        train_step(model, opt, sched)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    save(tmp_path / "c.safetensors", model, opt, sched, best=best)
    losses = [train_step(model, opt, sched) for _ in range(2)]
    after = torch.rand(3), np.random.rand(3), random.random()

    seed_all(123)  # a different start everywhere: only the restore can make the runs agree
    model2, opt2, sched2 = make_run(kind)
    cp = read_checkpoint(tmp_path / "c.safetensors")
    assert (cp.epoch, cp.step, cp.extra) == (1, 3, {"best": 0.5})
    assert cp.best.keys() == best.keys() and all(torch.equal(cp.best[k], best[k]) for k in best)
    restore(cp, model=model2, optimizer=opt2, scheduler=sched2)
    assert [train_step(model2, opt2, sched2) for _ in range(2)] == losses
    assert_same_state(model, model2)
    assert sched2.get_last_lr() == sched.get_last_lr()
    t, n, p = torch.rand(3), np.random.rand(3), random.random()
    assert torch.equal(t, after[0]) and np.array_equal(n, after[1]) and p == after[2]


def test_restored_optimizer_state_and_extra_tensors_are_exact(tmp_path):
    seed_all(0)
    model, opt, sched = make_run("adamw")
    train_step(model, opt, sched)
    save(tmp_path / "c.safetensors", model, opt, sched, extra={"t": torch.arange(3)})
    model2, opt2, sched2 = make_run("adamw")
    cp = read_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(cp.extra["t"], torch.arange(3)) and cp.best is None
    restore(cp, model=model2, optimizer=opt2, scheduler=sched2)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]  # betas come back as a tuple, keys as ints
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
    save(tmp_path / "c.safetensors", model, opt, sched)
    assert "function" not in read_safetensors(tmp_path / "c.safetensors")[1][DOC_KEY]
    model2 = nn.Linear(2, 1)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    sched2 = SCHEDULERS[name](opt2)
    restore(read_checkpoint(tmp_path / "c.safetensors"), model=model2, optimizer=opt2, scheduler=sched2)
    assert sched2.state_dict() == sched.state_dict()
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr()


def rewrite_doc(path, edit, rehash: bool):
    """Edit the JSON document inside a checkpoint as a person with a hex editor (or a script) would."""
    tensors, meta = read_safetensors(path)
    doc = json.loads(meta[DOC_KEY])
    edit(doc)
    meta[DOC_KEY] = json.dumps(doc)
    if rehash:
        meta[DOC_KEY + ".sha256"] = hashlib.sha256(meta[DOC_KEY].encode()).hexdigest()
    path.write_bytes(safetensors.torch.save(tensors, metadata=meta))


def test_an_edited_state_is_refused_by_its_checksum(tmp_path):
    model, opt, sched = make_run("sgd")
    save(tmp_path / "c.safetensors", model, opt, sched)
    rewrite_doc(tmp_path / "c.safetensors", lambda d: d.update(epoch=2), rehash=False)
    with pytest.raises(CheckpointError, match=r"c\.safetensors: its state does not match its checksum"):
        read_checkpoint(tmp_path / "c.safetensors")


def test_a_state_nested_thousands_deep_is_refused_in_one_line_even_with_a_fresh_checksum(tmp_path):
    model, opt, sched = make_run("sgd")
    save(tmp_path / "c.safetensors", model, opt, sched)
    tensors, meta = read_safetensors(tmp_path / "c.safetensors")
    meta[DOC_KEY] = '{"format": ' + "[" * 5000 + "]" * 5000 + "}"  # json.dumps itself could not write it
    meta[DOC_KEY + ".sha256"] = hashlib.sha256(meta[DOC_KEY].encode()).hexdigest()
    (tmp_path / "c.safetensors").write_bytes(safetensors.torch.save(tensors, metadata=meta))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "c.safetensors")
    assert str(err.value) == (
        f"{tmp_path / 'c.safetensors'}: incomplete or damaged checkpoint: its state, line 1: refused: JSON nested "
        "more than 100 levels"
    )


@pytest.mark.parametrize("value", [10**30, -1, 1.5, True, "3"])
def test_an_epoch_that_no_run_can_have_is_refused_even_with_a_fresh_checksum(tmp_path, value):
    model, opt, sched = make_run("sgd")
    save(tmp_path / "c.safetensors", model, opt, sched)
    rewrite_doc(tmp_path / "c.safetensors", lambda d: d.update(epoch=value), rehash=True)
    with pytest.raises(CheckpointError, match=r"c\.safetensors: epoch must be a count from 0 to 2\*\*53"):
        read_checkpoint(tmp_path / "c.safetensors")


def test_a_flipped_bit_in_the_optimizer_state_is_refused(tmp_path):
    model, opt, sched = make_run("sgd")
    train_step(model, opt, sched)
    save(tmp_path / "c.safetensors", model, opt, sched)
    data = bytearray((tmp_path / "c.safetensors").read_bytes())
    data[-3] ^= 0x10  # tensor bytes are stored after the header
    (tmp_path / "c.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"contents do not match their checksum"):
        read_checkpoint(tmp_path / "c.safetensors")


def test_missing_foreign_and_mismatched_checkpoints_are_errors(tmp_path):
    model, opt, sched = make_run("sgd")
    with pytest.raises(CheckpointError, match=r"c\.safetensors: no such file"):
        read_checkpoint(tmp_path / "c.safetensors")
    safetensors.torch.save_file({"w": torch.zeros(2)}, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"w\.safetensors: not a convscope checkpoint"):
        read_checkpoint(tmp_path / "w.safetensors")
    save(tmp_path / "c.safetensors", model, opt, sched)
    rewrite_doc(tmp_path / "c.safetensors", lambda d: d.update(format="something-else"), rehash=True)
    with pytest.raises(CheckpointError, match=r"expected format 'convscope.checkpoint/1', found 'something-else'"):
        read_checkpoint(tmp_path / "c.safetensors")
    save(tmp_path / "c.safetensors", model, opt, sched)
    other = nn.Linear(2, 1)
    with pytest.raises(
        CheckpointError, match=r"does not match the model: missing weight, bias; unexpected 0\.bias, 0\.weight"
    ):
        restore(
            read_checkpoint(tmp_path / "c.safetensors"),
            model=other,
            optimizer=torch.optim.SGD(other.parameters(), lr=0.1),
            scheduler=None,
        )
